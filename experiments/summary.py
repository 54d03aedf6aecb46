"""Summary of an experiment: each metric per policy, with paired bootstrap 95% CIs against a reference.

Runs share seeds across policies (common random numbers), so the comparison is paired: for every
seed s the difference d_s = m(policy, s) - m(reference, s) is formed, and the CI is the 2.5% and
97.5% percentiles of the mean of d over seeds resampled with replacement.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

import numpy as np
import pandas as pd

SUMMARY_COLUMNS = ["policy", "metric", "mean", "std", "n_seeds", "delta", "ci_low", "ci_high"]


def paired_bootstrap_ci(differences: np.ndarray, *, samples: int, rng: np.random.Generator,
                        level: float = 0.95) -> tuple[float, float]:
    """Percentile CI of the mean paired difference; NaN when fewer than two finite pairs."""
    d = differences[np.isfinite(differences)]
    if len(d) < 2:
        return float("nan"), float("nan")
    means = d[rng.integers(0, len(d), size=(samples, len(d)))].mean(axis=1)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def add_gmv_relative(runs: pd.DataFrame, *, baseline: str) -> pd.DataFrame:
    """gmv_rel: each run's GMV divided by the baseline policy's GMV on the same seed."""
    base = runs.loc[runs["policy"] == baseline].set_index("seed")["gmv"]
    out = runs.copy()
    out["gmv_rel"] = out["gmv"] / out["seed"].map(base)
    return out


def summarize(runs: pd.DataFrame, *, metrics: list[str], reference: str, samples: int, seed: int) -> pd.DataFrame:
    """Long table: one row per (policy, metric) with mean, std and the paired CI of the difference."""
    rng = np.random.default_rng(seed)
    ref = runs.loc[runs["policy"] == reference].set_index("seed")
    rows = []
    for policy, group in runs.groupby("policy", sort=False):
        group = group.set_index("seed")
        for metric in metrics:
            values = group[metric].to_numpy(dtype=float)
            finite = values[np.isfinite(values)]
            mean = float(finite.mean()) if len(finite) else float("nan")
            std = float(finite.std(ddof=1)) if len(finite) > 1 else float("nan")
            if policy == reference:
                delta, low, high = 0.0, float("nan"), float("nan")
            else:
                paired = group[metric] - ref[metric].reindex(group.index)
                d = paired.to_numpy(dtype=float)
                delta = float(np.nanmean(d)) if np.isfinite(d).any() else float("nan")
                low, high = paired_bootstrap_ci(d, samples=samples, rng=rng)
            rows.append({"policy": policy, "metric": metric, "mean": mean, "std": std,
                         "n_seeds": len(finite), "delta": delta, "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def format_table(summary: pd.DataFrame, *, reference: str, direction: Mapping[str, str] | None = None) -> str:
    """Metrics as rows, policies as columns: the reference's mean, others' mean and delta [95% CI].

    `direction` marks a metric "+" (higher is better) or "-" (lower is better) after its name.
    """
    policies = list(dict.fromkeys(summary["policy"]))
    metrics = list(dict.fromkeys(summary["metric"]))
    cells = {(r.policy, r.metric): r for r in summary.itertuples()}
    header = ["metric", *[f"{p} (ref)" if p == reference else p for p in policies]]
    lines = [header]
    for metric in metrics:
        mark = (direction or {}).get(metric)
        row = [f"{metric} ({mark})" if mark else metric]
        for policy in policies:
            r = cells[(policy, metric)]
            # These columns are float; pandas-stubs types itertuples() fields as any pandas scalar.
            mean, delta, low, high = cast(tuple[float, float, float, float], (r.mean, r.delta, r.ci_low, r.ci_high))
            text = _number(mean)
            if policy != reference and np.isfinite(low):
                text += f"  {_signed(delta)} [{_signed(low)}, {_signed(high)}]"
            row.append(text)
        lines.append(row)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    rendered = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in lines]
    rendered.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(rendered)


def _number(value: float) -> str:
    """Three significant digits, with k/M/G suffixes: the table is for reading, summary.csv for precision."""
    if not np.isfinite(value):
        return "n/a"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"


def _signed(value: float) -> str:
    text = _number(abs(value))
    return ("-" if value < 0 else "+") + text
