"""PlanInputs.validate: every malformed input raises PlanInputError saying what was received, what was
expected and how to fix it; merit_lower_bound is max(0, mean - z se)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from fairness.planner import PlanInputError, PlanInputs, merit_lower_bound
from tests.fairness.planner.cases import random_inputs


def _valid() -> PlanInputs:
    return random_inputs(np.random.default_rng(0), n_creators=4, n_segments=2)


# (case id, field changes as a function of the valid inputs, substrings the message must contain)
INVALID: list[tuple[str, Any, tuple[str, ...]]] = [
    ("2-d merit", lambda v: {"merit": v.merit[:, None]}, ("merit", "(4, 1)", "1-D")),
    ("float ids", lambda v: {"creator": v.creator.astype(float)}, ("creator", "int64", "float64", "astype")),
    ("short cluster", lambda v: {"cluster": v.cluster[:3]}, ("cluster", "length A = 4", "received 3")),
    ("short value", lambda v: {"value": v.value[:-1]}, ("value", "length P =", "per (creator, segment)")),
    ("supply per segment", lambda v: {"supply": np.ones(3) / 3}, ("supply", "length S = 2", "received 3")),
    ("nan value", lambda v: {"value": np.where(np.arange(v.n_pairs) == 1, np.nan, v.value)},
     ("value", "finite", "1 NaN/inf", "index 1")),
    ("inf demand", lambda v: {"demand": np.full(v.n_pairs, np.inf)}, ("demand", "finite", "NaN/inf")),
    ("negative merit", lambda v: {"merit": v.merit - 5.0}, ("merit", ">= 0", "negative", "clip at 0")),
    ("negative demand", lambda v: {"demand": -v.demand}, ("demand", ">= 0", "negative")),
    ("risk above 1", lambda v: {"risk": v.risk + 2.0}, ("risk", "[0, 1]", "calibrated")),
    ("supply sum", lambda v: {"supply": v.supply * 2.0}, ("supply", "summing to 1", "received sum 2", "divide")),
    ("duplicate ids", lambda v: {"creator": np.array([1, 1, 2, 3])}, ("creator", "unique", "[1]", "merge")),
    ("segment index", lambda v: {"pair_segment": v.pair_segment + 5}, ("pair_segment", "[0, 1]", "received range")),
    ("creator index", lambda v: {"pair_creator": v.pair_creator + v.creator[0]},
     ("pair_creator", "[0, 3]", "positions in the creator arrays")),
    ("duplicate segments", lambda v: {"segments": ("a", "a")}, ("segments", "unique", "['a', 'a']")),
]


@pytest.mark.parametrize(("change", "expected"), [(c, e) for _, c, e in INVALID], ids=[i for i, _, _ in INVALID])
def test_invalid_inputs_say_what_was_received_and_expected(change: Any, expected: tuple[str, ...]) -> None:
    valid = _valid()
    with pytest.raises(PlanInputError) as info:
        replace(valid, **change(valid)).validate()
    message = str(info.value)
    for part in expected:
        assert part in message, f"{part!r} not in {message!r}"


def test_validate_lists_every_problem_at_once() -> None:
    valid = _valid()
    with pytest.raises(PlanInputError) as info:
        replace(valid, merit=-valid.merit - 1.0, demand=-valid.demand - 1.0).validate()
    assert "merit" in str(info.value)
    assert "demand" in str(info.value)


def test_plan_input_error_is_a_value_error() -> None:
    assert issubclass(PlanInputError, ValueError)


def test_merit_lower_bound() -> None:
    mean, se = np.array([1.0, 0.5, 2.0]), np.array([0.1, 1.0, 0.0])
    np.testing.assert_allclose(merit_lower_bound(mean, se, 1.0), [0.9, 0.0, 2.0])
    np.testing.assert_allclose(merit_lower_bound(mean, se, 0.0), mean)
    with pytest.raises(PlanInputError, match="same shape"):
        merit_lower_bound(mean, se[:2], 1.0)
    with pytest.raises(PlanInputError, match="z >= 0"):
        merit_lower_bound(mean, se, -1.0)
