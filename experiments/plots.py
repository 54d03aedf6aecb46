"""Plots of an experiment's run folder: key round metrics over time, one line per policy.

Lines are the mean over seeds with a band from the lowest to the highest seed; the shaded region
before the dashed line is burn-in (excluded from the summary).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import matplotlib.pyplot as plt
import pandas as pd

PANELS = (  # (round metric, title)
    ("gmv", "GMV per round"),
    ("gini_account", "exposure Gini, account (window)"),
    ("gini_operator", "exposure Gini, operator (window)"),
    ("gini_panel", "exposure Gini, panel after burn-in (lock-in)"),
    ("accounts_alive", "live creator accounts"),
    ("original_share", "original exposure share"),
    ("sybil_share", "sybil (multi-account operator) share"),
    ("piracy_leakage", "piracy leakage"),
    ("risk_share", "risk exposure share"),
    ("complaints_per_1k", "complaints per 1,000 impressions"),
    ("user_utility", "user value per request"),
)


def plot_rounds(rounds: pd.DataFrame, path: Path, *, title: str, burn_in: int) -> Path:
    """Write a grid of time series (one panel per metric) to `path` (PNG) and return it."""
    columns = 3
    rows = -(-len(PANELS) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(5.2 * columns, 3.2 * rows), squeeze=False)
    stats = rounds.groupby(["policy", "round"], sort=False)
    mean, low, high = stats.mean(numeric_only=True), stats.min(numeric_only=True), stats.max(numeric_only=True)
    policies = list(dict.fromkeys(rounds["policy"]))
    for axis, (metric, label) in zip(axes.ravel(), PANELS, strict=False):
        for policy in policies:
            line = mean.loc[policy, metric]
            (drawn,) = axis.plot(line.index, line.to_numpy(), label=policy, linewidth=1.4)
            axis.fill_between(line.index, low.loc[policy, metric].to_numpy(), high.loc[policy, metric].to_numpy(),
                              color=drawn.get_color(), alpha=0.15, linewidth=0)
        axis.axvspan(0, burn_in, color="0.9", zorder=0)
        axis.axvline(burn_in, color="0.5", linestyle="--", linewidth=0.8)
        axis.set_title(label, fontsize=10)
        axis.set_xlabel("round", fontsize=8)
        axis.tick_params(labelsize=8)
    for axis in axes.ravel()[len(PANELS):]:
        axis.set_visible(False)
    axes[0, 0].legend(fontsize=8, frameon=False)
    figure.suptitle(title, fontsize=12)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
