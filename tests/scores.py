"""Comparing two score tables (serving.batch): ids and row order exact, numbers within float32 noise.

The model runs in float32, and a row's outputs may differ in the last bits with the batch it is computed
in (torch's kernels block the batch dimension differently by size), so scores of the same candidates in
different engine calls agree to about 1e-6 relative, not bit for bit; the allocation follows them.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from fairness.policy import HEADS

RTOL = 1e-4
ATOL = 1e-5  # calibrated probabilities near 0
WEIGHT_ATOL = 1e-6
ID_COLUMNS = ("item_id", "creator_id", "cluster_id", "request_id")


def assert_same_scores(actual: pa.Table, expected: pa.Table) -> None:
    """Same candidates in the same rows; numbers within float32 noise; ranks that may differ only between
    candidates whose weights tie within that noise."""
    assert actual.column_names == expected.column_names
    assert actual.num_rows == expected.num_rows
    for name in actual.column_names:
        a, e = actual.column(name).to_numpy(), expected.column(name).to_numpy()
        if name in ID_COLUMNS:
            np.testing.assert_array_equal(a, e, err_msg=name)
        elif name == "rank":
            _assert_consistent_ranks(actual, expected)
        elif name == "weight":
            np.testing.assert_allclose(a, e, rtol=0, atol=WEIGHT_ATOL, err_msg=name)
        else:
            assert name in (*HEADS, "utility"), name
            np.testing.assert_allclose(a, e, rtol=RTOL, atol=ATOL, err_msg=name)


def _assert_consistent_ranks(actual: pa.Table, expected: pa.Table) -> None:
    """In each request, the ranks are 0..n-1, and the expected weights taken in the actual rank order never
    rise by more than the weights' tolerance: only near-ties are ordered differently."""
    requests = actual.column("request_id").to_numpy()
    rank = actual.column("rank").to_numpy()
    order = np.lexsort((rank, requests))  # request by request, actual rank order
    starts = np.flatnonzero(np.r_[True, np.diff(requests[order]) != 0])
    sizes = np.diff(np.r_[starts, len(order)])
    np.testing.assert_array_equal(rank[order], np.arange(len(order)) - np.repeat(starts, sizes))
    weights = expected.column("weight").to_numpy()[order]
    rises = np.diff(weights)
    rises[starts[1:] - 1] = 0.0  # across two requests: not a rise
    assert rises.max(initial=0.0) <= 2 * WEIGHT_ATOL, rises.max()
