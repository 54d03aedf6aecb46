"""PNG plots of a closed-loop experiment report, drawn from the loop's pandas tables.

Files written by `plot_all` (each also has its own function):

- `gini.png`: window exposure Gini over rounds; one row per scenario, account level left, operator level right.
- `lorenz.png`: Lorenz curves of final cumulative exposure; one row per scenario, accounts left, operators
  (exposure summed per true operator) right; equality diagonal dashed.
- `original_share.png`: share of exposure going to original content, over rounds, one panel per scenario.
- `gmv.png`: top row cumulative GMV over rounds; bottom row cumulative GMV relative to the reference policy on
  the same seed (1.0 = the reference); one column per scenario.
- `complaint_rate.png`: complaints per 1,000 impressions over rounds, one panel per scenario.
- `sybil_share.png`: exposure share of multi-account (sybil) operators over rounds.
- `piracy_leakage.png`: piracy leakage over rounds.
- `risk_share.png`: exposure share of risky items over rounds.
- `newcomer_survival.png`: newcomer survival per scenario, one bar per policy (error bars: lowest..highest seed).
- `pareto.png`: GMV relative to the reference against exposure Gini, one panel per scenario: each policy as a
  labelled marker, each fairness-strength sweep as a line through its knob values, and the empirical Pareto
  front (lower Gini, higher GMV) as a dashed step line.

Lines are the mean over seeds with a band from the lowest to the highest seed; NaN values (ratios in rounds
without a denominator) are skipped. The shaded region before the dashed vertical line is burn-in. Each policy
keeps one color across every plot (`policy_colors`); the reference policy is always dark grey.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

REFERENCE_COLOR = "#333333"
# tab10 without its grey (index 7), which would read as a lighter shade of the reference
_PALETTE = tuple(to_hex(matplotlib.colormaps["tab10"](i)) for i in range(10) if i != 7)
LORENZ_GRID = np.linspace(0.0, 1.0, 101)
DPI = 110

SERIES = (  # (file name, round metric, title) of the one-metric-over-rounds plots
    ("original_share.png", "original_share", "original exposure share"),
    ("complaint_rate.png", "complaints_per_1k", "complaints per 1,000 impressions"),
    ("sybil_share.png", "sybil_share", "sybil (multi-account operator) exposure share"),
    ("piracy_leakage.png", "piracy_leakage", "piracy leakage"),
    ("risk_share.png", "risk_share", "risk exposure share"),
)


REFERENCES = ("oracle", "random")  # drawn on the Pareto plot, left out of its front


def policy_colors(policies: Sequence[str], *, reference: str = "p0") -> dict[str, str]:
    """Map each policy to a hex color: the reference dark grey, the others tab10 in order of first appearance."""
    colors: dict[str, str] = {}
    others = 0
    for policy in dict.fromkeys(policies):
        if policy == reference:
            colors[policy] = REFERENCE_COLOR
        else:
            colors[policy] = _PALETTE[others % len(_PALETTE)]
            others += 1
    return colors


def lorenz_curve(values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Share of the total held by the poorest fraction p of holders, for each p in `grid` (0..1).

    The curve through (k/n, cumulative share of the k smallest values) is interpolated linearly, so it is 0 at 0
    and 1 at 1. With nothing to share (no holders or a zero total) every holder is equally poor: the diagonal.
    """
    values = np.asarray(values, dtype=float).ravel()
    grid = np.asarray(grid, dtype=float)
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError(f"lorenz_curve needs finite values >= 0; got min {np.min(values)!r} over {values.size} "
                         "holders. Drop or zero the rows with missing or negative exposure first.")
    total = values.sum()
    if values.size == 0 or total <= 0:
        return grid.copy()
    population = np.arange(values.size + 1) / values.size
    share = np.concatenate(([0.0], np.cumsum(np.sort(values)) / total))
    return np.asarray(np.interp(grid, population, share))


def pareto_front(points: pd.DataFrame, *, x: str, y: str) -> pd.DataFrame:
    """The rows not dominated by any other row when lower `x` and higher `y` are better, sorted by `x`.

    A row is dominated when another is at least as good on both axes and strictly better on one, so exact
    duplicates of a front point are all kept. Rows with NaN in `x` or `y` cannot be compared and are dropped.
    """
    _require(points, [x, y], "points")
    valid = points.dropna(subset=[x, y])
    xs, ys = valid[x].to_numpy(dtype=float), valid[y].to_numpy(dtype=float)
    # (n, n): [i, j] says whether row j dominates row i; n is a few dozen plotted points, so O(n^2) is fine
    no_worse = (xs[None, :] <= xs[:, None]) & (ys[None, :] >= ys[:, None])
    better = (xs[None, :] < xs[:, None]) | (ys[None, :] > ys[:, None])
    dominated = np.asarray((no_worse & better).any(axis=1), dtype=bool)
    return valid.iloc[np.flatnonzero(~dominated)].sort_values([x, y], ascending=[True, False], kind="stable")


def plot_gini(rounds: pd.DataFrame, path: Path, *, burn_in: int, colors: Mapping[str, str] | None = None) -> Path:
    """Window exposure Gini over rounds: one row per scenario, account level and operator level side by side."""
    _require(rounds, ["scenario", "policy", "seed", "round", "gini_account", "gini_operator"], "rounds")
    scenarios, policies = _scenarios(rounds), _policies(rounds["policy"])
    colors = _complete(colors, policies)
    figure, axes = plt.subplots(len(scenarios), 2, figsize=(10.4, 2.8 * len(scenarios) + 0.6), squeeze=False,
                                layout="constrained")
    for row, scenario in zip(axes, scenarios, strict=True):
        frame = rounds[rounds["scenario"] == scenario]
        for axis, metric, level in ((row[0], "gini_account", "account"), (row[1], "gini_operator", "operator")):
            for policy in _policies(frame["policy"]):
                _band(axis, frame[frame["policy"] == policy], x="round", y=metric, color=colors[policy])
            _burn_in(axis, burn_in)
            _style(axis, f"{scenario}: exposure Gini, {level} (window)", xlabel="round")
    _finish(figure, path, title="Exposure concentration over rounds", handles=_lines(policies, colors))
    return path


def plot_lorenz(accounts: pd.DataFrame, path: Path, *, colors: Mapping[str, str] | None = None) -> Path:
    """Lorenz curves of final cumulative exposure, accounts and operators, one row per scenario."""
    _require(accounts, ["scenario", "policy", "seed", "account", "operator", "exposure"], "accounts")
    scenarios, policies = _scenarios(accounts), _policies(accounts["policy"])
    colors = _complete(colors, policies)
    figure, axes = plt.subplots(len(scenarios), 2, figsize=(7.8, 3.6 * len(scenarios) + 0.6), squeeze=False,
                                layout="constrained")
    for row, scenario in zip(axes, scenarios, strict=True):
        frame = accounts[accounts["scenario"] == scenario]
        for policy in _policies(frame["policy"]):
            seeds = frame[frame["policy"] == policy].groupby("seed", sort=True)
            by_account = np.vstack([lorenz_curve(run["exposure"].to_numpy(), LORENZ_GRID) for _, run in seeds])
            by_operator = np.vstack([lorenz_curve(run.groupby("operator")["exposure"].sum().to_numpy(), LORENZ_GRID)
                                     for _, run in seeds])
            for axis, curves in ((row[0], by_account), (row[1], by_operator)):
                axis.plot(LORENZ_GRID, curves.mean(axis=0), color=colors[policy], linewidth=1.4)
                axis.fill_between(LORENZ_GRID, curves.min(axis=0), curves.max(axis=0), color=colors[policy],
                                  alpha=0.12, linewidth=0)
        for axis, level in ((row[0], "accounts"), (row[1], "operators")):
            axis.plot([0, 1], [0, 1], color="0.5", linestyle="--", linewidth=0.8)
            axis.set_xlim(0, 1)
            axis.set_ylim(0, 1)
            axis.set_aspect("equal")
            _style(axis, f"{scenario}: Lorenz curve, {level}", xlabel=f"share of {level} (poorest first)",
                   ylabel="share of exposure")
    _finish(figure, path, title="Final cumulative exposure (mean over seeds)", handles=_lines(policies, colors))
    return path


def plot_series(rounds: pd.DataFrame, path: Path, *, metric: str, title: str, burn_in: int,
                colors: Mapping[str, str] | None = None) -> Path:
    """One round metric over rounds, one panel per scenario (up to three per row), one line per policy."""
    _require(rounds, ["scenario", "policy", "seed", "round", metric], "rounds")
    scenarios, policies = _scenarios(rounds), _policies(rounds["policy"])
    colors = _complete(colors, policies)
    figure, panels = _panels(len(scenarios))
    for axis, scenario in zip(panels, scenarios, strict=False):
        frame = rounds[rounds["scenario"] == scenario]
        for policy in _policies(frame["policy"]):
            _band(axis, frame[frame["policy"] == policy], x="round", y=metric, color=colors[policy])
        _burn_in(axis, burn_in)
        _style(axis, str(scenario), xlabel="round", ylabel=metric)
    _finish(figure, path, title=title, handles=_lines(policies, colors))
    return path


def plot_gmv(rounds: pd.DataFrame, path: Path, *, burn_in: int, reference: str = "p0",
             colors: Mapping[str, str] | None = None) -> Path:
    """Cumulative GMV per policy (top row) and relative to `reference` on the same seed (bottom row)."""
    _require(rounds, ["scenario", "policy", "seed", "round", "gmv"], "rounds")
    scenarios, policies = _scenarios(rounds), _policies(rounds["policy"])
    colors = _complete(colors, policies, reference=reference)
    ordered = rounds.sort_values("round", kind="stable")
    cumulative = ordered.assign(cum_gmv=ordered.groupby(["scenario", "policy", "seed"], sort=False)["gmv"].cumsum())
    keys = ["scenario", "seed", "round"]
    baseline = cumulative.loc[cumulative["policy"] == reference, [*keys, "cum_gmv"]].rename(
        columns={"cum_gmv": "ref_gmv"})
    relative = cumulative.merge(baseline, on=keys, how="inner")
    # a ratio per seed before averaging, so a seed with a large market does not outweigh the others
    relative["gmv_rel"] = (relative["cum_gmv"] / relative["ref_gmv"]).where(relative["ref_gmv"] > 0)
    figure, axes = plt.subplots(2, len(scenarios), figsize=(4.6 * len(scenarios), 6.4), squeeze=False,
                                layout="constrained")
    for column, scenario in enumerate(scenarios):
        top, bottom = axes[0, column], axes[1, column]
        frame = cumulative[cumulative["scenario"] == scenario]
        for policy in _policies(frame["policy"]):
            _band(top, frame[frame["policy"] == policy], x="round", y="cum_gmv", color=colors[policy])
        ratios = relative[relative["scenario"] == scenario]
        # the reference is 1.0 by construction: the horizontal line stands for it
        for policy in _policies(ratios["policy"]):
            if policy != reference:
                _band(bottom, ratios[ratios["policy"] == policy], x="round", y="gmv_rel", color=colors[policy])
        bottom.axhline(1.0, color=colors.get(reference, REFERENCE_COLOR), linestyle="--", linewidth=0.9)
        if ratios.empty:
            bottom.text(0.5, 0.5, f"no {reference} runs", transform=bottom.transAxes, ha="center", fontsize=8)
        for axis in (top, bottom):
            _burn_in(axis, burn_in)
        _style(top, f"{scenario}: cumulative GMV", xlabel="round")
        _style(bottom, f"{scenario}: cumulative GMV / {reference}", xlabel="round")
    _finish(figure, path, title=f"GMV (bottom: ratio to {reference} on the same seed)",
            handles=_lines(policies, colors))
    return path


def plot_newcomer_survival(runs: pd.DataFrame, path: Path, *, colors: Mapping[str, str] | None = None) -> Path:
    """Newcomer survival: scenarios on x, one bar per policy, mean over seeds, error bars lowest..highest seed."""
    _require(runs, ["scenario", "policy", "seed", "newcomer_survival"], "runs")
    scenarios, policies = _scenarios(runs), _policies(runs["policy"])
    colors = _complete(colors, policies)
    stats = runs.groupby(["scenario", "policy"])["newcomer_survival"].agg(["mean", "min", "max"]).dropna()
    width = 0.8 / len(policies)
    figure, axis = plt.subplots(figsize=(max(5.0, 1.5 + len(scenarios) * (0.4 + 0.22 * len(policies))), 3.6),
                                layout="constrained")
    for slot, policy in enumerate(policies):
        at = [(position, stats.loc[(scenario, policy)]) for position, scenario in enumerate(scenarios)
              if (scenario, policy) in stats.index]
        if not at:
            continue
        positions = np.array([position for position, _ in at]) + (slot - (len(policies) - 1) / 2) * width
        mean, low, high = (np.array([row[name] for _, row in at], dtype=float) for name in ("mean", "min", "max"))
        axis.bar(positions, mean, width, yerr=np.vstack([mean - low, high - mean]), color=colors[policy],
                 capsize=2, error_kw={"linewidth": 0.8})
    axis.set_xticks(range(len(scenarios)), [str(scenario) for scenario in scenarios])
    axis.set_xlim(-0.5, len(scenarios) - 0.5)
    axis.set_ylim(bottom=0)
    _style(axis, "", ylabel="newcomer survival")
    _finish(figure, path, title="Newcomer survival (mean over seeds, bars lowest..highest seed)",
            handles={policy: Patch(color=colors[policy]) for policy in policies})
    return path


def plot_pareto(runs: pd.DataFrame, sweep: pd.DataFrame, path: Path, *, reference: str = "p0",
                gini: str = "gini_account", colors: Mapping[str, str] | None = None,
                outside_front: Sequence[str] = REFERENCES) -> Path:
    """GMV relative to `reference` against the `gini` column, one panel per scenario.

    Policies of `runs` are labelled markers; each family of `sweep` is a line through its knob values (in value
    order, each point annotated); the dashed step line is the empirical Pareto front over every plotted point
    except the policies in `outside_front` (the oracle sees ground truth and random is a floor: references,
    not attainable policies).
    """
    _require(runs, ["scenario", "policy", "seed", "gmv_rel", gini], "runs")
    if not sweep.empty:
        _require(sweep, ["scenario", "family", "value", "seed", "gmv_rel", gini], "sweep")
    scenarios, policies = _scenarios(runs), _policies(runs["policy"])
    families = [] if sweep.empty else _policies(sweep["family"])
    colors = _complete(colors, [*policies, *families], reference=reference)
    handles: dict[str, Artist] = {}
    figure, panels = _panels(len(scenarios))
    for axis, scenario in zip(panels, scenarios, strict=False):
        marks = runs[runs["scenario"] == scenario].groupby("policy", sort=False)[[gini, "gmv_rel"]].mean()
        plotted = [marks.loc[[p for p in marks.index if p not in outside_front]]]
        if not sweep.empty:
            for family, curve in sweep[sweep["scenario"] == scenario].groupby("family", sort=False):
                means = curve.groupby("value", sort=True)[[gini, "gmv_rel"]].mean()
                knob = f" ({curve['knob'].iloc[0]})" if "knob" in curve else ""
                name = f"{family} sweep{knob}"
                handles[name] = axis.plot(means[gini], means["gmv_rel"], color=colors[str(family)], linewidth=1.0,
                                          marker=".", markersize=5, alpha=0.8)[0]
                for value, point in means.iterrows():
                    axis.annotate(f"{value:g}", (point[gini], point["gmv_rel"]), textcoords="offset points",
                                  xytext=(3, -8), fontsize=6, color=colors[str(family)])
                plotted.append(means)
        for policy, point in marks.iterrows():
            handles[str(policy)] = axis.scatter(point[gini], point["gmv_rel"], color=colors[str(policy)], s=36,
                                                edgecolors="black", linewidths=0.5, zorder=3,
                                                marker="s" if policy == reference else "o")
            axis.annotate(str(policy), (point[gini], point["gmv_rel"]), textcoords="offset points", xytext=(4, 4),
                          fontsize=7)
        front = pareto_front(pd.concat(plotted, ignore_index=True), x=gini, y="gmv_rel")
        if not front.empty:
            # post-steps: the best GMV reachable without exceeding each Gini level
            handles["Pareto front"] = axis.step(front[gini], front["gmv_rel"], where="post", color="0.35",
                                                linestyle="--", linewidth=0.9, zorder=1)[0]
        axis.axhline(1.0, color="0.8", linewidth=0.6, zorder=0)
        _style(axis, str(scenario), xlabel=f"{gini} (lower is fairer)", ylabel=f"GMV relative to {reference}")
    _finish(figure, path, title="GMV vs exposure concentration (mean over seeds; front without oracle and random)",
            handles=handles)
    return path


def plot_all(*, rounds: pd.DataFrame, accounts: pd.DataFrame, runs: pd.DataFrame, sweep: pd.DataFrame, out: Path,
             burn_in: int, reference: str = "p0") -> dict[str, Path]:
    """Write every report plot into `out` (created if missing); return {file name: path}."""
    out.mkdir(parents=True, exist_ok=True)
    families = [] if sweep.empty or "family" not in sweep else _policies(sweep["family"])
    # one map for all plots, so a policy keeps its color even if the tables list policies in different orders
    colors = policy_colors([*_policies(rounds["policy"]), *_policies(runs["policy"]), *_policies(accounts["policy"]),
                            *families], reference=reference)
    paths = {
        "gini.png": plot_gini(rounds, out / "gini.png", burn_in=burn_in, colors=colors),
        "lorenz.png": plot_lorenz(accounts, out / "lorenz.png", colors=colors),
        "gmv.png": plot_gmv(rounds, out / "gmv.png", burn_in=burn_in, reference=reference, colors=colors),
    }
    for name, metric, title in SERIES:
        paths[name] = plot_series(rounds, out / name, metric=metric, title=title, burn_in=burn_in, colors=colors)
    paths["newcomer_survival.png"] = plot_newcomer_survival(runs, out / "newcomer_survival.png", colors=colors)
    paths["pareto.png"] = plot_pareto(runs, sweep, out / "pareto.png", reference=reference, colors=colors)
    return paths


def _require(frame: pd.DataFrame, columns: Iterable[str], name: str) -> None:
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ValueError(f"{name} is missing columns {missing}; it has {list(frame.columns)}. "
                         f"Build {name} with the loop's table writer, which emits every column the plots read.")


def _natural_key(label: object) -> tuple[tuple[int, int | str], ...]:
    # S2 before S10
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in re.findall(r"\d+|\D+", str(label)))


def _scenarios(frame: pd.DataFrame) -> list[Any]:
    scenarios = sorted(frame["scenario"].unique().tolist(), key=_natural_key)
    if not scenarios:
        raise ValueError("no rows to plot: the table has no scenario; pass the tables of a finished run.")
    return scenarios


def _policies(labels: pd.Series) -> list[str]:
    return [str(label) for label in dict.fromkeys(labels.tolist())]


def _complete(colors: Mapping[str, str] | None, policies: Sequence[str], *, reference: str = "p0") -> dict[str, str]:
    if colors is None:
        return policy_colors(policies, reference=reference)
    fill = policy_colors([*colors, *policies], reference=reference)
    return {**fill, **colors}


def _band(axis: Axes, frame: pd.DataFrame, *, x: str, y: str, color: str) -> None:
    stats = frame.groupby(x, sort=True)[y].agg(["mean", "min", "max"])  # pandas' reductions skip NaN
    axis.plot(stats.index, stats["mean"].to_numpy(dtype=float), color=color, linewidth=1.4)
    axis.fill_between(stats.index, stats["min"].to_numpy(dtype=float), stats["max"].to_numpy(dtype=float),
                      color=color, alpha=0.15, linewidth=0)


def _burn_in(axis: Axes, burn_in: int) -> None:
    if burn_in > 0:
        axis.axvspan(0, burn_in, color="0.9", zorder=0)
        axis.axvline(burn_in, color="0.5", linestyle="--", linewidth=0.8)


def _style(axis: Axes, title: str, *, xlabel: str = "", ylabel: str = "") -> None:
    axis.set_title(title, fontsize=9)
    axis.set_xlabel(xlabel, fontsize=8)
    axis.set_ylabel(ylabel, fontsize=8)
    axis.tick_params(labelsize=7)


def _panels(count: int) -> tuple[Figure, list[Axes]]:
    columns = min(3, count)
    rows = -(-count // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.6 * columns, 3.2 * rows + 0.6), squeeze=False,
                                layout="constrained")
    panels: list[Axes] = list(axes.ravel())
    for axis in panels[count:]:
        axis.set_visible(False)
    return figure, panels


def _lines(policies: Sequence[str], colors: Mapping[str, str]) -> dict[str, Artist]:
    return {policy: Line2D([], [], color=colors[policy], linewidth=1.4) for policy in policies}


def _finish(figure: Figure, path: Path, *, title: str, handles: Mapping[str, Artist]) -> None:
    if handles:
        figure.legend(list(handles.values()), list(handles), loc="outside lower center", fontsize=7, frameon=False,
                      ncols=min(len(handles), 6))
    figure.suptitle(title, fontsize=11)
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
