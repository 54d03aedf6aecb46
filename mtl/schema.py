"""Typed, validated data schemas: which columns are features, which are labels, which heads learn them.

A schema is a TOML file (built-ins live in `mtl/schemas/`):

    name = "census_income"
    group = "request_id"            # optional: rows sharing it never go to different splits

    [[dense]]                        # standardized with training statistics (mtl/data.py)
    name = "age"
    transform = "none"               # or "log1p"

    [[categorical]]                  # exactly one of vocabulary / hash_buckets / integer_buckets
    name = "education"
    embedding_dim = 4
    integer_buckets = 32             # value v in [0, 32) -> id v + 1; anything else -> 0

    [[heads]]
    name = "income"
    kind = "binary"                  # binary | regression | ziln
    label = "income"                 # the label column
    mask = "click"                   # optional: train only where this (other head's) label is > 0

Categorical ids always reserve 0 for out-of-vocabulary / missing, so `input_spec()` reports buckets that
include it: `vocabulary` -> len + 1 (id = position + 1), `hash_buckets = N` -> N (ids 1..N-1 from a stable
FNV-1a hash of the value's string form), `integer_buckets = N` -> N + 1 (id = value + 1 for 0 <= value < N).

The pydantic models below only declare types, bounds and meaning (each field's `description` is its
documentation); cross-field rules live in `Schema`'s validator. Every problem is reported as a
`SchemaError` that names the key, the value received, what was expected and how to fix it.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mtl.spec import CategoricalInput, HeadKind, HeadSpec, InputSpec

SCHEMA_DIR = Path(__file__).parent / "schemas"

Name = Annotated[str, Field(min_length=1)]


class SchemaError(ValueError):
    """A schema file or dict is invalid; the message names the key, what was received and expected, and the fix."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DenseFeature(_Section):
    name: Name = Field(description="Column holding the feature (any numeric dtype).")
    transform: Literal["none", "log1p"] = Field(
        default="none", description="Applied before standardization; log1p for heavy-tailed non-negative counts.")


class CategoricalFeature(_Section):
    name: Name = Field(description="Column holding the feature.")
    embedding_dim: Annotated[int, Field(ge=1)] = Field(description="Width of this feature's embedding.")
    vocabulary: tuple[str | int, ...] | None = Field(
        default=None, description="Known values (matched on their string form); id = position + 1, 0 = unknown.")
    hash_buckets: Annotated[int, Field(ge=2)] | None = Field(
        default=None, description="Hash the value's string form into ids 1..N-1 (FNV-1a 64); 0 = missing.")
    integer_buckets: Annotated[int, Field(ge=1)] | None = Field(
        default=None, description="Non-negative ints: id = value + 1 for value < N; >= N, negative or null -> 0.")

    @model_validator(mode="after")
    def _one_encoding(self) -> CategoricalFeature:
        given = [key for key in ("vocabulary", "hash_buckets", "integer_buckets") if getattr(self, key) is not None]
        if len(given) != 1:
            raise ValueError(
                f"received {given or 'none'} of vocabulary / hash_buckets / integer_buckets; expected exactly one. "
                "Fix: keep one encoding, e.g. `integer_buckets = 64` for label-encoded ints, `hash_buckets = 100003` "
                "for open-ended ids, or `vocabulary = [\"a\", \"b\"]` for a closed set"
            )
        if self.vocabulary is not None:
            if not self.vocabulary:
                raise ValueError("received an empty vocabulary; expected at least one value. "
                                 "Fix: list the values, or use hash_buckets")
            forms = [str(v) for v in self.vocabulary]
            duplicates = sorted({v for v in forms if forms.count(v) > 1})
            if duplicates:
                raise ValueError(f"received duplicate vocabulary values {duplicates} (compared as strings); "
                                 "expected each value once. Fix: remove the repeats")
        return self

    @property
    def encoding(self) -> Literal["vocabulary", "hash", "integer"]:
        if self.vocabulary is not None:
            return "vocabulary"
        return "hash" if self.hash_buckets is not None else "integer"

    @property
    def buckets(self) -> int:
        """Embedding rows, including the 0 (out-of-vocabulary / missing) bucket."""
        if self.vocabulary is not None:
            return len(self.vocabulary) + 1
        if self.hash_buckets is not None:
            return self.hash_buckets
        assert self.integer_buckets is not None  # guaranteed by _one_encoding
        return self.integer_buckets + 1


class HeadConfig(_Section):
    name: Name = Field(description="Head name, the key of predictions, labels and masks.")
    kind: HeadKind = Field(description="binary (0/1 labels), regression, or ziln (zero-inflated lognormal amount).")
    label: Name = Field(description="Label column the head learns.")
    mask: Name | None = Field(
        default=None, description="Another head's label column; the head trains only on rows where it is > 0.")
    allow_negative: bool = Field(
        default=False, description="Allow negative labels (regression heads only; labels must be >= 0 otherwise).")

    @property
    def spec(self) -> HeadSpec:
        return HeadSpec(name=self.name, kind=self.kind, label=self.label, mask=self.mask)


class Schema(_Section):
    """A validated schema. Build it with `load_schema` or `Schema.from_dict` (both raise SchemaError)."""

    name: Name = Field(description="Schema name, e.g. ecorank.")
    description: str = Field(default="", description="Free text; not part of the fingerprint.")
    group: Name | None = Field(
        default=None, description="Column whose equal values must stay in one split (e.g. request_id).")
    dense: tuple[DenseFeature, ...] = Field(default=(), description="Dense (numeric) features, in model order.")
    categorical: tuple[CategoricalFeature, ...] = Field(default=(), description="Categorical features, in order.")
    head_configs: tuple[HeadConfig, ...] = Field(alias="heads", description="Prediction heads, in model order.")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _check_consistency(self) -> Schema:
        problems = _consistency_problems(self)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    # -- views -------------------------------------------------------------------------------------

    @property
    def heads(self) -> tuple[HeadSpec, ...]:
        return tuple(h.spec for h in self.head_configs)

    def head(self, name: str) -> HeadConfig:
        for config in self.head_configs:
            if config.name == name:
                return config
        raise KeyError(f"no head {name!r}; expected one of {[h.name for h in self.head_configs]}")

    def input_spec(self) -> InputSpec:
        return InputSpec(
            n_dense=len(self.dense),
            categorical=tuple(CategoricalInput(buckets=c.buckets, embedding_dim=c.embedding_dim)
                              for c in self.categorical),
        )

    def feature_columns(self) -> list[str]:
        return [f.name for f in self.dense] + [c.name for c in self.categorical]

    def label_columns(self) -> list[str]:
        """Head labels and masks (masks are other heads' labels), each once, in head order."""
        return _unique([h.label for h in self.head_configs] + [h.mask for h in self.head_configs if h.mask])

    def columns(self) -> list[str]:
        """Every column a table must have: features, labels, then the group column."""
        return _unique([*self.feature_columns(), *self.label_columns(), *([self.group] if self.group else [])])

    # -- serialization -----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON- and TOML-safe dict (unset optional keys are left out); `Schema.from_dict` reads it back."""
        data: dict[str, Any] = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "schema dict") -> Schema:
        if not isinstance(data, Mapping):
            raise SchemaError(f"{source}: received {type(data).__name__}; expected a mapping of schema keys "
                              "(name, dense, categorical, heads, group)")
        try:
            return cls.model_validate(dict(data))
        except ValidationError as err:
            raise SchemaError(_format_validation_error(err, source=source, data=data)) from None

    def fingerprint(self) -> str:
        """sha256 of the canonical JSON of everything but `description`; stable across runs and platforms."""
        payload = {k: v for k, v in self.to_dict().items() if k != "description"}
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------------------------------
# Cross-field rules (one helper writes every message)


def _consistency_problems(schema: Schema) -> list[str]:
    problems: list[str] = []
    if not schema.head_configs:
        problems.append("heads: received an empty list; expected at least one [[heads]] table. "
                        "Fix: add e.g. [[heads]] name = \"click\", kind = \"binary\", label = \"click\"")
    if not schema.dense and not schema.categorical:
        problems.append("dense / categorical: received no features; expected at least one. "
                        "Fix: add a [[dense]] or [[categorical]] table")

    features = [("dense", i, f.name) for i, f in enumerate(schema.dense)]
    features += [("categorical", i, c.name) for i, c in enumerate(schema.categorical)]
    seen: dict[str, str] = {}  # feature name -> "dense" / "categorical"
    first_key: dict[str, str] = {}
    for section, index, name in features:
        if name in seen:
            problems.append(f"{section}[{index}].name: received {name!r}, already used by {first_key[name]}; "
                            "expected unique feature names. Fix: remove or rename the duplicate")
        seen.setdefault(name, section)
        first_key.setdefault(name, f"{section}[{index}]")

    head_names = [h.name for h in schema.head_configs]
    for name in sorted({n for n in head_names if head_names.count(n) > 1}):
        problems.append(f"heads.name: received {name!r} {head_names.count(name)} times; expected unique head "
                        "names. Fix: rename one")

    labels = [h.label for h in schema.head_configs]
    for index, head in enumerate(schema.head_configs):
        key = f"heads[{index}] ({head.name!r})"
        if head.label in seen:
            problems.append(f"{key}.label: received {head.label!r}, which is also a {seen[head.label]} feature; "
                            "expected a column that is not an input (the model would see its own label). "
                            "Fix: drop the feature or point the head at another column")
        if head.mask is not None:
            if head.mask == head.label:
                problems.append(f"{key}.mask: received {head.mask!r}, the head's own label; expected another "
                                "head's label (a head masked by itself only sees positives). Fix: remove the mask")
            elif head.mask not in labels:
                problems.append(f"{key}.mask: received {head.mask!r}; expected the label of another head, one of "
                                f"{labels}{_did_you_mean(head.mask, labels)}. Fix: add a head for that label or "
                                "correct the mask")
        if head.allow_negative and head.kind != "regression":
            problems.append(f"{key}.allow_negative: received true for a {head.kind} head; expected false "
                            f"({'labels must be 0/1' if head.kind == 'binary' else 'ZILN amounts are >= 0'}). "
                            "Fix: remove allow_negative or use kind = \"regression\"")

    if schema.group is not None:
        if schema.group in labels:
            problems.append(f"group: received {schema.group!r}, which is a head label; expected an id column such "
                            "as request_id. Fix: choose another column or remove group")
        if schema.group in seen:
            problems.append(f"group: received {schema.group!r}, which is also a {seen[schema.group]} feature; "
                            "expected an id column that is not an input. Fix: choose another column or remove group")
    return problems


def _format_validation_error(err: ValidationError, *, source: str, data: Mapping[str, Any]) -> str:
    lines = [f"invalid schema {source}:"]
    for problem in err.errors():
        loc = _loc(problem["loc"], data)
        received = problem.get("input")
        shown = "{...}" if isinstance(received, dict) else repr(received)
        if problem["type"] == "extra_forbidden":
            options = _fields_at(problem["loc"][:-1])
            lines.append(f"  - {loc}: unknown key (received {shown}); expected one of {options}"
                         f"{_did_you_mean(str(problem['loc'][-1]), options)}. Fix: rename or remove it")
        elif problem["type"] == "missing":
            lines.append(f"  - {loc}: missing; expected a value. Fix: add `{problem['loc'][-1]} = ...` to that table")
        elif problem["type"] == "value_error":
            message = str(problem["msg"]).removeprefix("Value error, ")
            if loc:
                lines.append(f"  - {loc}: {message}")
            else:
                lines.extend(f"  - {part}" for part in message.split("\n"))
        else:
            expected = str(problem["msg"]).removeprefix("Input should be ").removeprefix("input should be ")
            lines.append(f"  - {loc or '(schema)'}: received {shown}; expected {expected}. "
                         f"Fix: change {loc or 'the schema'}")
    return "\n".join(lines)


def _loc(parts: Sequence[int | str], data: Mapping[str, Any]) -> str:
    """`heads[1] ('purchase').mask`: the dotted key, with the entry's name when it has one."""
    text = ""
    for depth, part in enumerate(parts):
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
        if depth == 1 and isinstance(part, int):
            entries = data.get(str(parts[0]))
            entry = entries[part] if isinstance(entries, Sequence) and part < len(entries) else None
            if isinstance(entry, Mapping) and isinstance(entry.get("name"), str):
                text += f" ({entry['name']!r})"
    return text


_SECTION_MODELS: dict[str, type[BaseModel]] = {
    "dense": DenseFeature, "categorical": CategoricalFeature, "heads": HeadConfig,
}


def _fields_at(loc: Sequence[int | str]) -> list[str]:
    if not loc:
        return sorted(field.alias or name for name, field in Schema.model_fields.items())
    model = _SECTION_MODELS.get(str(loc[0]))
    return sorted(model.model_fields) if model else []


def _did_you_mean(word: str, options: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _unique(items: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(items))


# --------------------------------------------------------------------------------------------------
# Loading


def builtin_schemas() -> list[str]:
    """Names of the schemas shipped in mtl/schemas/."""
    return sorted(p.stem for p in SCHEMA_DIR.glob("*.toml"))


def load_schema(schema: str | Path) -> Schema:
    """Load a built-in schema by name (`ecorank`, `census_income`, `ali_ccp`) or a schema .toml file."""
    path = Path(schema)
    if path.suffix != ".toml" and not path.exists():
        if str(schema) in builtin_schemas():
            path = SCHEMA_DIR / f"{schema}.toml"
        else:
            raise SchemaError(
                f"unknown schema {str(schema)!r}; expected a built-in name ({', '.join(builtin_schemas())})"
                f"{_did_you_mean(str(schema), builtin_schemas())} or a path to a schema .toml file"
            )
    if not path.is_file():
        raise SchemaError(f"schema file {str(path)!r} does not exist; expected an existing .toml file or a built-in "
                          f"name ({', '.join(builtin_schemas())})")
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as err:
        raise SchemaError(f"{path} is not valid TOML: {err}; expected a schema file like mtl/schemas/ecorank.toml"
                          ) from None
    except OSError as err:
        raise SchemaError(f"cannot read schema file {path}: {err.strerror}") from None
    return Schema.from_dict(data, source=str(path))
