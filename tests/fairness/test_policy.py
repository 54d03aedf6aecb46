"""The fairness policy: loads, validates every bound, and rejects contradictions with a fix-it message."""

from __future__ import annotations

from pathlib import Path

import pytest

from fairness.policy import DEFAULT_POLICY, FairnessPolicy, PolicyError, load_policy


def test_default_policy_loads_by_name_and_path() -> None:
    by_name = load_policy("default")
    assert by_name == load_policy(DEFAULT_POLICY)
    assert isinstance(by_name, FairnessPolicy)
    assert by_name.blend.weights() == {"gmv": 1.0, "prosperity": 0.5, "risk": 1.0, "complaint": 1.0}


def test_fingerprint_changes_with_any_knob() -> None:
    base = load_policy()
    assert base.fingerprint() == load_policy().fingerprint()
    assert base.fingerprint() != load_policy(overrides=["allocation.tau=0.2"]).fingerprint()


def test_override_typo_suggests_the_key() -> None:
    with pytest.raises(PolicyError, match=r"unknown key 'tua'.*did you mean 'tau'"):
        load_policy(overrides=["allocation.tua=0.2"])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["allocation.tau=0"], r"allocation\.tau: received 0; expected: Input should be greater than 0"),
        (["allocation.item_cap=1.5"], r"allocation\.item_cap: received 1\.5"),
        (["planner.originals_floor=0.97"], r"floors sum past 1: originals_floor 0\.97 \+ newcomer_share 0\.05"),
        (["planner.newcomer_floor=0.06", "planner.newcomer_share=0.1"],
         r"newcomer_floor 0\.06 exceeds planner\.cluster_cap 0\.05.*lower newcomer_floor to at most 0\.05"),
        (["allocation.creator_cap=0.5"], r"creator_cap 0\.5 exceeds allocation\.cluster_cap 0\.3"),
        (["blend.risk=9"], r"blend\.risk = 9 lies outside its own override range \[0\.5, 5\]"),
        (["blend.mode=budgets", "budgets.risk=nan", "budgets.complaint=0.02"], r"budgets\.risk"),
        (["blend.mode=budgets"], r"blend\.mode = 'budgets'.*budgets\.risk = None"),
        (["blend.mode=budgets", "budgets.risk=0.05", "budgets.complaint=0.02"], None),
    ],
)
def test_bad_settings_name_the_conflict(overrides: list[str], message: str | None) -> None:
    if message is None:
        assert load_policy(overrides=overrides).blend.mode == "budgets"
        return
    with pytest.raises(PolicyError, match=message):
        load_policy(overrides=overrides)


def test_budget_mode_needs_both_budgets(tmp_path: Path) -> None:
    text = DEFAULT_POLICY.read_text().replace('mode = "weights"', 'mode = "budgets"').replace(
        'risk = "none"', "risk = 0.05")
    path = tmp_path / "p.toml"
    path.write_text(text)
    with pytest.raises(PolicyError, match=r"blend\.mode = 'budgets'.*budgets\.complaint = None"):
        load_policy(path)


def test_unknown_policy_name_lists_built_ins() -> None:
    with pytest.raises(PolicyError, match=r"unknown policy 'nope'.*\['default'\]"):
        load_policy("nope")
