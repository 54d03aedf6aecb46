"""The policy sweep: every knob of its space moves the simulated objectives, the Pareto filter and the choice
rules on hand-made points, and a smoke sweep on the session's local Ray writes a front that really is the
non-dominated set, a policy file that loads with the trial's knobs, resumes from its storage and draws the
same trials from the same seed."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from experiments.cli import build_parser, main
from experiments.config import ConfigError, load_scenario
from experiments.tune.policy_sweep import (
    OBJECTIVES,
    SMOKE,
    SPACE,
    PolicySweep,
    choose,
    evaluate_trial,
    pareto_mask,
    policy_toml,
)
from fairness.policy import load_policy


def _dominates(a: pd.Series, b: pd.Series) -> bool:
    """a dominates b: no worse on every objective, strictly better on one (written out, not vectorized)."""
    no_worse = all(a[k] >= b[k] if m == "max" else a[k] <= b[k] for k, m in OBJECTIVES.items())
    better = any(a[k] > b[k] if m == "max" else a[k] < b[k] for k, m in OBJECTIVES.items())
    return no_worse and better


def _dotted(policy: object, key: str) -> float:
    node = policy
    for part in key.split("."):
        node = getattr(node, part)
    return float(node)  # type: ignore[arg-type]


def test_pareto_mask_on_hand_made_points() -> None:
    # columns: maximize the first, minimize the second
    points = np.array([
        [10.0, 0.5],  # front: the highest value
        [8.0, 0.2],  # front: the lowest cost
        [9.0, 0.4],  # front: a trade-off between the two
        [7.0, 0.5],  # dominated by every front point but the second
        [9.0, 0.45],  # dominated by [9, 0.4] (same value, higher cost)
        [8.0, 0.2],  # an exact duplicate of a front point: kept, neither dominates the other
        [np.nan, 0.1],  # not comparable: never on the front
    ])
    assert pareto_mask(points, [True, False]).tolist() == [True, True, True, False, False, True, False]
    assert pareto_mask(np.zeros((0, 2)), [True, False]).tolist() == []
    with pytest.raises(ValueError, match=r"received shape \(7, 2\); expected \(n, 3\)"):
        pareto_mask(points, [True, False, False])


def _front(rows: list[tuple[str, float, float, float, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["trial_id", *OBJECTIVES])


def test_choice_rules_on_a_hand_made_front() -> None:
    front = _front([("rich", 100.0, 0.6, 5.0, 0.05), ("even", 90.0, 0.3, 5.0, 0.05), ("middle", 97.0, 0.35, 5.0, 0.05)])
    # the balanced point: scaled GMV loss 0.3 and Gini loss 1/6, nearer the ideal than either end (1 on one axis)
    assert choose(front)["trial_id"] == "middle"
    assert choose(front, max_gini=0.34)["trial_id"] == "even"
    assert choose(front, max_gini=0.6)["trial_id"] == "rich"
    with pytest.raises(ConfigError, match=r"no Pareto point has gini_account at most that \(the lowest is 0.3\)"):
        choose(front, max_gini=0.1)


def test_policy_toml_reads_back_to_the_same_policy(tmp_path: Path) -> None:
    policy = load_policy(overrides=["budgets.risk=0.05", "planner.kappa=2.25", "name=round trip"])
    path = tmp_path / "policy.toml"
    path.write_text(policy_toml(policy, header=["a comment"]))
    assert load_policy(path) == policy


def test_every_knob_of_the_space_moves_an_objective() -> None:
    """A knob that changes nothing (as P-MMF's lambda turned out to) would only dilute the search."""
    sweep = PolicySweep(config=load_scenario("S4", preset="tiny", overrides=["run.rounds=12"]), seeds=(0,))
    sweep.check()  # every corner of the space is a valid policy
    base = sweep.base_point()
    assert base is not None  # the shipped default lies inside the space, so it is trial 1
    for key, (_, low, high) in SPACE.items():
        at_low, at_high = (evaluate_trial({**base, key: value}, sweep) for value in (low, high))
        assert at_low != at_high, f"{key}: {low} and {high} give the same objectives {at_low}"


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory, ray_session: None) -> Path:
    out = tmp_path_factory.mktemp("policy_sweep")
    assert main(["tune", "policy", "--out", str(out), "--smoke-test"]) == 0
    return out


def test_smoke_sweep_writes_a_true_pareto_front_and_a_loadable_policy(smoke: Path) -> None:
    for name in ("trials.csv", "pareto.csv", "pareto.png", "policy.toml", "sweep.json"):
        assert (smoke / name).is_file(), name
    trials = pd.read_csv(smoke / "trials.csv", dtype={"trial_id": str})
    front = pd.read_csv(smoke / "pareto.csv", dtype={"trial_id": str})
    assert len(trials) == SMOKE.samples
    assert (trials["seeds"] == "0 1").all()  # recorded: every trial met the same two worlds
    assert trials["is_base"].sum() == 1
    assert trials.loc[0, "is_base"]
    for key, (_, low, high) in SPACE.items():
        assert trials[key].between(low, high).all(), key
    assert np.isfinite(trials[list(OBJECTIVES)].to_numpy()).all()
    assert (trials["gmv"] > 0).all()
    on_front = set(front["trial_id"])
    assert on_front == set(trials.loc[trials["on_front"], "trial_id"])
    for _, row in trials.iterrows():
        dominated = any(_dominates(other, row) for _, other in trials.iterrows())
        assert dominated != (row["trial_id"] in on_front), row["trial_id"]
    assert front["gmv"].is_monotonic_decreasing
    chosen = front[front["chosen"]]
    assert len(chosen) == 1
    policy = load_policy(smoke / "policy.toml")
    assert policy.name == f"tuned-{chosen['trial_id'].iloc[0]}"
    for key in SPACE:
        assert math.isclose(_dotted(policy, key), float(chosen[key].iloc[0])), key
    # `ecorank serve --policy FILE` loads it the same way
    args = build_parser().parse_args(["serve", "--policy", str(smoke / "policy.toml")])
    assert load_policy(args.policy) == policy


def test_any_trial_exports_without_running_again(smoke: Path) -> None:
    trials = pd.read_csv(smoke / "trials.csv", dtype={"trial_id": str})
    last = trials.iloc[-1]
    assert main(["tune", "policy", "--out", str(smoke), "--export", last["trial_id"]]) == 0
    policy = load_policy(smoke / f"policy-{last['trial_id']}.toml")
    for key in SPACE:
        assert math.isclose(_dotted(policy, key), float(last[key])), key


def test_the_same_command_resumes_without_new_trials(smoke: Path) -> None:
    before = pd.read_csv(smoke / "trials.csv", dtype={"trial_id": str})
    # a different choice rule on the finished sweep: the same trials (same Ray ids), the max-GMV front point
    assert main(["tune", "policy", "--out", str(smoke), "--smoke-test", "--max-gini", "1.0"]) == 0
    after = pd.read_csv(smoke / "trials.csv", dtype={"trial_id": str})
    pd.testing.assert_frame_equal(after, before)
    front = pd.read_csv(smoke / "pareto.csv", dtype={"trial_id": str})
    assert front.loc[front["chosen"], "trial_id"].tolist() == [front.loc[front["gmv"].idxmax(), "trial_id"]]


def test_the_same_seed_draws_the_same_trials(smoke: Path, tmp_path: Path) -> None:
    # a smaller world, one seed: the drawn knobs depend only on the search's seed
    out = tmp_path / "again"
    assert main(["tune", "policy", "--out", str(out), "--preset", "tiny", "--rounds", "6", "--seeds", "1",
                 "--samples", str(SMOKE.samples)]) == 0
    first = pd.read_csv(smoke / "trials.csv")[list(SPACE)]
    again = pd.read_csv(out / "trials.csv")[list(SPACE)]
    pd.testing.assert_frame_equal(again, first)


def test_bad_policy_sweep_arguments_say_what_to_send(smoke: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tune", "policy", "--out", str(tmp_path), "--max-gini", "2"]) == 2
    assert "--max-gini: received 2; expected a Gini in (0, 1]" in capsys.readouterr().err
    assert main(["tune", "policy", "--out", str(tmp_path), "--preset", "tiny", "--rounds", "3"]) == 2
    assert "run.burn_in = 4 must be smaller than run.rounds = 3" in capsys.readouterr().err
    assert main(["tune", "policy", "--out", str(tmp_path), "--bundle", str(tmp_path / "none")]) == 2
    assert "is not a model bundle" in capsys.readouterr().err
    assert main(["tune", "policy", "--out", str(tmp_path), "--export", "abc"]) == 2
    assert "holds no finished policy sweep" in capsys.readouterr().err
    assert main(["tune", "policy", "--out", str(smoke), "--export", "abc"]) == 2
    assert "received trial 'abc'; expected a trial_id of" in capsys.readouterr().err
    # the smoke sweep's folder cannot resume a different sweep
    assert main(["tune", "policy", "--out", str(smoke), "--smoke-test", "--seed", "5"]) == 2
    assert "holds a different policy sweep (it differs in ['search_seed', 'seeds'])" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["tune", "policy", "--samples", "0"])
    assert exit_info.value.code == 2
    assert "--samples: received '0'; expected an integer >= 1" in capsys.readouterr().err
