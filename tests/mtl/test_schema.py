from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from mtl.schema import Schema, SchemaError, builtin_schemas, load_schema
from mtl.spec import HeadSpec

BUILTINS = ["ecorank", "census_income", "ali_ccp"]


def _minimal() -> dict[str, Any]:
    return {
        "name": "toy",
        "dense": [{"name": "x", "transform": "log1p"}],
        "categorical": [{"name": "c", "embedding_dim": 4, "hash_buckets": 101}],
        "heads": [
            {"name": "click", "kind": "binary", "label": "click"},
            {"name": "amount", "kind": "ziln", "label": "amount", "mask": "click"},
        ],
    }


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_schemas_load_and_round_trip(name: str) -> None:
    schema = load_schema(name)
    assert schema.name == name
    assert all(isinstance(h, HeadSpec) for h in schema.heads)
    again = Schema.from_dict(schema.to_dict())
    assert again == schema
    assert again.fingerprint() == schema.fingerprint() == load_schema(name).fingerprint()
    assert len(schema.fingerprint()) == 64
    assert sorted(builtin_schemas()) == sorted(BUILTINS)


def test_fingerprints_differ_and_ignore_key_order_and_description() -> None:
    prints = {load_schema(n).fingerprint() for n in BUILTINS}
    assert len(prints) == 3
    data = load_schema("ali_ccp").to_dict()
    shuffled = {k: data[k] for k in reversed(list(data))}
    shuffled["description"] = "reworded"
    assert Schema.from_dict(shuffled).fingerprint() == load_schema("ali_ccp").fingerprint()
    data["heads"][1]["mask"] = "click"
    assert Schema.from_dict(data).fingerprint() != load_schema("ali_ccp").fingerprint()


def test_ecorank_schema_columns_heads_and_width() -> None:
    schema = load_schema("ecorank")
    assert schema.group == "request_id"
    assert [h.name for h in schema.heads] == ["gmv", "prosperity", "risk", "complaint"]
    assert schema.heads[0] == HeadSpec(name="gmv", kind="ziln", label="gmv")
    assert "position" not in schema.columns()  # a bias feature, unknown at serving time
    assert schema.columns()[-1] == "request_id"
    spec = schema.input_spec()
    assert (spec.n_dense, spec.categorical, spec.width) == (12, (), 12)
    assert {f.name: f.transform for f in schema.dense}["price"] == "log1p"


def test_census_and_ali_ccp_input_specs_count_the_zero_bucket() -> None:
    census = load_schema("census_income")
    spec = census.input_spec()
    assert spec.n_dense == 7
    assert len(spec.categorical) == 32
    assert spec.width == 7 + sum(c.embedding_dim for c in census.categorical)
    education = next(c for c in census.categorical if c.name == "education")
    assert education.integer_buckets == 32
    assert education.buckets == 33
    assert [h.label for h in census.heads] == ["income", "marital status"]

    ali = load_schema("ali_ccp")
    assert ali.input_spec().n_dense == 8
    assert len(ali.input_spec().categorical) == 23
    assert [(h.name, h.label, h.mask) for h in ali.heads] == [("click", "click", None), ("purchase", "purchase", None)]
    assert ali.group is None


def test_bucket_counts_per_encoding() -> None:
    data = _minimal()
    data["categorical"] = [
        {"name": "v", "embedding_dim": 2, "vocabulary": ["red", "green", 3]},
        {"name": "h", "embedding_dim": 2, "hash_buckets": 50},
        {"name": "i", "embedding_dim": 2, "integer_buckets": 10},
    ]
    schema = Schema.from_dict(data)
    assert [c.buckets for c in schema.categorical] == [4, 50, 11]
    assert [c.encoding for c in schema.categorical] == ["vocabulary", "hash", "integer"]
    assert schema.input_spec().width == 1 + 6
    assert schema.columns() == ["x", "v", "h", "i", "click", "amount"]


def test_load_schema_from_a_path(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text('name = "mine"\n[[dense]]\nname = "x"\n[[heads]]\nname = "y"\nkind = "regression"\n'
                    'label = "y"\nallow_negative = true\n')
    schema = load_schema(path)
    assert schema.name == "mine"
    assert schema.dense[0].transform == "none"
    assert schema.head("y").allow_negative
    assert load_schema(str(path)) == schema


def test_unknown_name_lists_the_builtins() -> None:
    with pytest.raises(SchemaError, match="ecorank") as info:
        load_schema("ecornk")
    message = str(info.value)
    assert "expected" in message
    assert "census_income" in message
    assert "did you mean 'ecorank'" in message


def test_missing_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="does not exist"):
        load_schema(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n")
    with pytest.raises(SchemaError, match="not valid TOML"):
        load_schema(bad)


def _drop_categorical_encoding(d: dict[str, Any]) -> None:
    del d["categorical"][0]["hash_buckets"]


def _two_encodings(d: dict[str, Any]) -> None:
    d["categorical"][0]["integer_buckets"] = 10


BAD_CASES = [
    pytest.param(lambda d: d["heads"].clear(), "heads", id="empty-heads"),
    pytest.param(lambda d: d["dense"].append({"name": "c"}), "categorical[0].name", id="duplicate-feature"),
    pytest.param(lambda d: d["heads"].append({"name": "click", "kind": "binary", "label": "other"}),
                 "heads.name", id="duplicate-head"),
    pytest.param(lambda d: d["heads"].append({"name": "leak", "kind": "binary", "label": "x"}),
                 "heads[2] ('leak').label", id="label-is-feature"),
    pytest.param(lambda d: d["heads"][1].update(mask="clik"), "heads[1] ('amount').mask", id="unknown-mask"),
    pytest.param(lambda d: d["heads"][1].update(mask="amount"), "heads[1] ('amount').mask", id="self-mask"),
    pytest.param(lambda d: d["categorical"][0].update(embedding_dim=0), "categorical[0] ('c').embedding_dim",
                 id="embedding-dim-0"),
    pytest.param(_drop_categorical_encoding, "categorical[0] ('c')", id="no-encoding"),
    pytest.param(_two_encodings, "categorical[0] ('c')", id="two-encodings"),
    pytest.param(lambda d: d["categorical"][0].update(hash_buckets=1), "hash_buckets", id="hash-buckets-1"),
    pytest.param(lambda d: d["heads"][0].update(kind="binray"), "heads[0] ('click').kind", id="bad-kind"),
    pytest.param(lambda d: d["dense"][0].update(transform="log"), "dense[0] ('x').transform", id="bad-transform"),
    pytest.param(lambda d: d["dense"][0].update(transfrom="log1p"), "did you mean 'transform'", id="typo-key"),
    pytest.param(lambda d: d.update(grop="g"), "did you mean 'group'", id="typo-top-key"),
    pytest.param(lambda d: d["heads"][0].update(allow_negative=True), "heads[0] ('click').allow_negative",
                 id="allow-negative-binary"),
    pytest.param(lambda d: d.update(group="click"), "group", id="group-is-label"),
    pytest.param(lambda d: (d["dense"].clear(), d["categorical"].clear()), "dense / categorical", id="no-features"),
    pytest.param(lambda d: d["heads"][0].pop("label"), "heads[0] ('click').label", id="missing-label"),
    pytest.param(lambda d: d["categorical"][0].update(hash_buckets=None, vocabulary=["a", "a"]), "duplicate",
                 id="duplicate-vocabulary"),
]


@pytest.mark.parametrize(("mutate", "key"), BAD_CASES)
def test_bad_schemas_name_the_key_and_what_was_expected(mutate: Any, key: str) -> None:
    data = copy.deepcopy(_minimal())
    mutate(data)
    data = {k: v for k, v in data.items() if v is not None}
    for entry in data.get("categorical", []):
        for field in [f for f, v in entry.items() if v is None]:
            del entry[field]
    with pytest.raises(SchemaError) as info:
        Schema.from_dict(data)
    message = str(info.value)
    assert key in message
    assert "expected" in message
    assert "Fix" in message or "did you mean" in message or "expected a" in message


def test_from_dict_rejects_a_non_mapping() -> None:
    with pytest.raises(SchemaError, match="expected a mapping"):
        Schema.from_dict(["name"])  # type: ignore[arg-type]
