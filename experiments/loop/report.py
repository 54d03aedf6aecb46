"""The closed loop's report: headline table, goals checked against the measurements, tables and plots.

`report.md` is self-contained Markdown next to its PNGs (`plots/`): a headline table up front (ecorank
against P0 on every scenario, paired bootstrap 95% CIs), every goal of the experiment with the number
that decides it and whether it was met, the models' test metrics, one full table per scenario, the
plots, and how to regenerate it all.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from experiments.loop.config import REFERENCE, LoopConfig
from experiments.loop.evaluate import Evaluation
from experiments.simulator.measure import DIRECTION

ECORANK = "ecorank"
HEADLINE = (  # (metric, column title)
    ("gmv_rel", "GMV / P0"),
    ("gini_account", "Gini (accounts)"),
    ("gini_operator", "Gini (operators)"),
    ("original_share", "original share"),
    ("piracy_leakage", "piracy leakage"),
    ("sybil_share", "sybil share"),
    ("risk_share", "risk exposure"),
    ("complaints_per_1k", "complaints / 1k"),
    ("newcomer_survival", "newcomer survival"),
)


@dataclass(frozen=True)
class Goal:
    scenario: str
    statement: str
    measured: str
    met: bool | None  # None: could not be measured (e.g. the scenario or a policy was not run)


# ---------------------------------------------------------------- numbers


def cell(summary: pd.DataFrame, scenario: str, policy: str, metric: str) -> dict[str, float]:
    """mean, delta, ci_low, ci_high of one (scenario, policy, metric); NaNs when absent."""
    rows = summary.loc[(summary["scenario"] == scenario) & (summary["policy"] == policy)
                       & (summary["metric"] == metric)]
    if rows.empty:
        return dict.fromkeys(("mean", "delta", "ci_low", "ci_high"), math.nan)
    row = rows.iloc[0]
    return {key: float(row[key]) for key in ("mean", "delta", "ci_low", "ci_high")}


def overtaking_round(rounds: pd.DataFrame, scenario: str, policy: str = ECORANK) -> int | None:
    """The first round from which `policy`'s cumulative GMV (mean over seeds) stays at or above P0's to the end."""
    frame = rounds.loc[(rounds["scenario"] == scenario) & rounds["policy"].isin([policy, REFERENCE])]
    if frame.empty or policy not in set(frame["policy"]):
        return None
    frame = frame.sort_values("round")
    cumulative = frame.assign(cum=frame.groupby(["policy", "seed"])["gmv"].cumsum())
    mean = cumulative.groupby(["policy", "round"])["cum"].mean().unstack("policy")
    ahead = (mean[policy] >= mean[REFERENCE]).to_numpy()
    if not ahead[-1]:
        return None
    behind = np.flatnonzero(~ahead)
    return int(mean.index[behind[-1] + 1]) if len(behind) else int(mean.index[0])


def dominates(a: Mapping[str, float], b: Mapping[str, float], *, gini: str = "gini_account") -> bool:
    """a Pareto-dominates b on (GMV relative to P0: higher, Gini: lower): no worse on both, better on one."""
    return (a["gmv_rel"] >= b["gmv_rel"] and a[gini] <= b[gini]
            and (a["gmv_rel"] > b["gmv_rel"] or a[gini] < b[gini]))


def _means(runs: pd.DataFrame, scenario: str, policy: str) -> dict[str, float] | None:
    rows = runs.loc[(runs["scenario"] == scenario) & (runs["policy"] == policy)]
    if rows.empty:
        return None
    return {str(k): float(v) for k, v in rows.mean(numeric_only=True).items()}


def _sure(c: Mapping[str, float], sign: int) -> str:
    """Whether the CI of the difference excludes 0 in the stated direction."""
    if not (math.isfinite(c["ci_low"]) and math.isfinite(c["ci_high"])):
        return "no CI"
    sure = c["ci_high"] < 0 if sign < 0 else c["ci_low"] > 0
    return "CI excludes 0" if sure else "CI includes 0"


def check_goals(evaluation: Evaluation) -> list[Goal]:
    """Every goal of issue 6 / docs/experiments.md, decided by the point estimate, with its CI stated."""
    s, runs = evaluation.summary, evaluation.runs
    scenarios = set(runs["scenario"])
    goals: list[Goal] = []

    def delta(scenario: str, metric: str, policy: str = ECORANK) -> dict[str, float]:
        return cell(s, scenario, policy, metric)

    def fmt(c: Mapping[str, float]) -> str:
        return f"{c['delta']:+.3g} [{c['ci_low']:+.3g}, {c['ci_high']:+.3g}]"

    if "S1" in scenarios:
        gini, base, gmv = delta("S1", "gini_account"), cell(s, "S1", REFERENCE, "gini_account"), delta("S1", "gmv_rel")
        drop = -gini["delta"] / base["mean"] if base["mean"] else math.nan
        goals.append(Goal("S1", "exposure Gini (accounts) at least 20% below P0's",
                          f"{drop:.1%} below ({gini['mean']:.3f} vs {base['mean']:.3f}; {_sure(gini, -1)})",
                          bool(drop >= 0.20)))
        goals.append(Goal("S1", "GMV at least 97% of P0's", f"{gmv['mean']:.3f} of P0", bool(gmv["mean"] >= 0.97)))
        survival = delta("S1", "newcomer_survival")
        goals.append(Goal("S1", "newcomer survival up", f"{fmt(survival)} ({_sure(survival, +1)})",
                          bool(survival["delta"] > 0) if math.isfinite(survival["delta"]) else None))
    if "S2" in scenarios:
        share, leak = delta("S2", "original_share"), delta("S2", "piracy_leakage")
        goals.append(Goal("S2", "original exposure share up", f"{fmt(share)} ({_sure(share, +1)})",
                          bool(share["delta"] > 0)))
        goals.append(Goal("S2", "piracy leakage down", f"{fmt(leak)} ({_sure(leak, -1)})",
                          bool(leak["delta"] < 0) if math.isfinite(leak["delta"]) else None))
        over = overtaking_round(evaluation.rounds, "S2")
        goals.append(Goal("S2", "the round at which ecorank's cumulative GMV overtakes P0's (report it)",
                          f"round {over}" if over is not None else "does not overtake by the last round",
                          over is not None))
    if "S3" in scenarios:
        sybil, op_gini = delta("S3", "sybil_share"), delta("S3", "gini_operator")
        goals.append(Goal("S3", "cluster-aware ecorank lowers the sybil share", f"{fmt(sybil)} ({_sure(sybil, -1)})",
                          bool(sybil["delta"] < 0)))
        goals.append(Goal("S3", "ecorank lowers the operator-level Gini", f"{fmt(op_gini)} ({_sure(op_gini, -1)})",
                          bool(op_gini["delta"] < 0)))
        floors = delta("S3", "sybil_share", "floors")
        if math.isfinite(floors["mean"]):
            goals.append(Goal("S3", "per-account floors raise the sybil share", f"{fmt(floors)} ({_sure(floors, +1)})",
                              bool(floors["delta"] > 0)))
    if "S4" in scenarios:
        risk, complaints, gmv = delta("S4", "risk_share"), delta("S4", "complaints_per_1k"), delta("S4", "gmv_rel")
        goals.append(Goal("S4", "lower area under the risk curve (mean risk exposure share over rounds)",
                          f"{fmt(risk)} ({_sure(risk, -1)})", bool(risk["delta"] < 0)))
        goals.append(Goal("S4", "lower complaint rate (per 1,000 impressions)",
                          f"{fmt(complaints)} ({_sure(complaints, -1)})", bool(complaints["delta"] < 0)))
        goals.append(Goal("S4", "at bounded GMV cost (GMV relative to P0, reported)", f"{gmv['mean']:.3f} of P0",
                          bool(gmv["mean"] >= 0.9)))
    for scenario in ("S1", "S3"):
        mine = _means(runs, scenario, ECORANK)
        for other in ("fairco", "pmmf"):
            theirs = _means(runs, scenario, other)
            if mine is None or theirs is None:
                continue
            goals.append(Goal(scenario, f"ecorank Pareto-dominates {other} on (GMV, Gini)",
                              f"ecorank ({mine['gmv_rel']:.3f}, {mine['gini_account']:.3f}) vs {other} "
                              f"({theirs['gmv_rel']:.3f}, {theirs['gini_account']:.3f})", dominates(mine, theirs)))
            swept = sweep_dominating(evaluation, scenario, other)
            if swept is not None:
                goals.append(Goal(scenario, f"some swept ecorank strength Pareto-dominates {other} (same seeds)",
                                  swept[0], swept[1]))
    return goals


def sweep_dominating(evaluation: Evaluation, scenario: str, other: str) -> tuple[str, bool] | None:
    """Whether an ecorank point of the strength sweep dominates `other`'s default point on the sweep's seeds."""
    sweep, runs = evaluation.sweep, evaluation.runs
    if sweep.empty or not (sweep["family"] == ECORANK).any():
        return None
    mine = sweep.loc[(sweep["scenario"] == scenario) & (sweep["family"] == ECORANK)]
    if mine.empty:
        return None
    seeds = set(mine["seed"])
    theirs = runs.loc[(runs["scenario"] == scenario) & (runs["policy"] == other) & runs["seed"].isin(seeds)]
    if theirs.empty:
        return None
    point = {"gmv_rel": float(theirs["gmv_rel"].mean()), "gini_account": float(theirs["gini_account"].mean())}
    knob = str(mine["knob"].iloc[0])
    means = mine.groupby("value")[["gmv_rel", "gini_account"]].mean()
    winners = [f"{knob}={value:g} ({row['gmv_rel']:.3f}, {row['gini_account']:.3f})"
               for value, row in means.iterrows() if dominates({k: float(row[k]) for k in point}, point)]
    text = (f"{other} ({point['gmv_rel']:.3f}, {point['gini_account']:.3f}); dominated by "
            + (", ".join(winners) if winners else "none of " + ", ".join(f"{knob}={v:g}" for v in means.index)))
    return text, bool(winners)


# ---------------------------------------------------------------- rendering


def number(value: float) -> str:
    if not math.isfinite(value):
        return "n/a"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def headline_table(evaluation: Evaluation) -> str:
    """Markdown: one row per scenario, ecorank's mean and its difference from P0 [95% CI] per key metric."""
    header = "| scenario | " + " | ".join(title for _, title in HEADLINE) + " |"
    lines = [header, "|" + "---|" * (len(HEADLINE) + 1)]
    for scenario in sorted(set(evaluation.runs["scenario"])):
        cells = []
        for metric, _ in HEADLINE:
            c = cell(evaluation.summary, scenario, ECORANK, metric)
            text = number(c["mean"])
            if metric != "gmv_rel" and math.isfinite(c["ci_low"]):
                text += f" ({c['delta']:+.2g} [{c['ci_low']:+.2g}, {c['ci_high']:+.2g}])"
            elif metric == "gmv_rel" and math.isfinite(c["ci_low"]):
                text += f" [{1 + c['ci_low']:.3g}, {1 + c['ci_high']:.3g}]"
            cells.append(text)
        lines.append(f"| {scenario} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def headline_text(evaluation: Evaluation) -> str:
    """Plain-text version of the headline for the terminal: ecorank vs P0 per scenario."""
    rows = [["scenario", *[title for _, title in HEADLINE]]]
    for scenario in sorted(set(evaluation.runs["scenario"])):
        row = [scenario]
        for metric, _ in HEADLINE:
            ours = cell(evaluation.summary, scenario, ECORANK, metric)["mean"]
            p0 = cell(evaluation.summary, scenario, REFERENCE, metric)["mean"]
            row.append(number(ours) if metric == "gmv_rel" else f"{number(ours)} ({number(p0)})")
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    text = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    text.insert(1, "  ".join("-" * w for w in widths))
    return "ecorank (P0 in parentheses), mean over seeds\n" + "\n".join(text)


def scenario_table(evaluation: Evaluation, scenario: str) -> str:
    """Markdown: metrics as rows, policies as columns; each cell mean and, for non-reference, delta [CI]."""
    s = evaluation.summary.loc[evaluation.summary["scenario"] == scenario]
    policies = list(dict.fromkeys(s["policy"]))
    lines = ["| metric | " + " | ".join(f"{p} (ref)" if p == REFERENCE else p for p in policies) + " |",
             "|" + "---|" * (len(policies) + 1)]
    for metric in dict.fromkeys(s["metric"]):
        mark = DIRECTION.get(str(metric), "")
        cells = []
        for policy in policies:
            c = cell(s, scenario, policy, str(metric))
            text = number(c["mean"])
            if policy != REFERENCE and math.isfinite(c["ci_low"]):
                text += f" ({c['delta']:+.2g} [{c['ci_low']:+.2g}, {c['ci_high']:+.2g}])"
            cells.append(text)
        lines.append(f"| {metric} {f'({mark})' if mark else ''} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def goals_table(goals: Sequence[Goal]) -> str:
    lines = ["| scenario | goal | measured | met |", "|---|---|---|---|"]
    for g in goals:
        verdict = "n/a" if g.met is None else ("yes" if g.met else "**no**")
        lines.append(f"| {g.scenario} | {g.statement} | {g.measured} | {verdict} |")
    return "\n".join(lines)


def models_table(metrics: Mapping[str, Mapping[str, Any]]) -> str:
    lines = ["| model | GMV Spearman | GMV purchase AUC | prosperity AUC | risk AUC | complaint AUC |",
             "|---|---|---|---|---|---|"]
    wanted = (("gmv", "spearman"), ("gmv", "auc_purchase"), ("prosperity", "auc"), ("risk", "auc"),
              ("complaint", "auc"))
    for name, heads in metrics.items():
        values = [number(float(heads.get(head, {}).get(key, math.nan))) for head, key in wanted]
        lines.append(f"| {name} | " + " | ".join(values) + " |")
    return "\n".join(lines)


PLOTS = (  # (file, caption)
    ("gini.png", "Exposure Gini over rounds (window), accounts and operators"),
    ("lorenz.png", "Lorenz curves of cumulative exposure at the end, accounts and operators"),
    ("original_share.png", "Original exposure share over rounds"),
    ("gmv.png", "Cumulative GMV, and relative to P0 on the same seed"),
    ("complaint_rate.png", "Complaints per 1,000 impressions"),
    ("sybil_share.png", "Sybil share: exposure of operators holding two or more accounts"),
    ("piracy_leakage.png", "Piracy leakage: exposure of copies / (copies + their sources)"),
    ("risk_share.png", "Risk exposure share (the risk curve)"),
    ("newcomer_survival.png", "Newcomer survival"),
    ("pareto.png", "GMV relative to P0 against exposure Gini, across fairness strengths"),
)


def write_report(loop: LoopConfig, evaluation: Evaluation, goals: Sequence[Goal], *, manifest: Mapping[str, Any],
                 model_metrics: Mapping[str, Mapping[str, Any]], command: str) -> str:
    """The Markdown of report.md."""
    met = sum(1 for g in goals if g.met)
    measured = sum(1 for g in goals if g.met is not None)
    seeds = ", ".join(str(s) for s in loop.seeds)
    parts = [
        f"# ecorank closed loop: {loop.name}",
        "",
        f"{loop.description}".strip(),
        "",
        f"Preset `{loop.preset}`, scenarios {', '.join(loop.scenarios)}, {len(loop.seeds)} evaluation seeds "
        f"({seeds}), policies {', '.join(loop.policies)}. Models trained on {manifest['log_rows']:,} logged "
        f"impressions (exploration policy, logging seeds {loop.logging.seeds}); the learned policies rank with "
        f"`{loop.training.serve}`. git {manifest['git_sha'][:12]}, {manifest['finished']}, "
        f"{manifest['wall_seconds']:.0f} s. Regenerate: `{command}`.",
        "",
        "## Headline: ecorank against GMV-only ranking (P0)",
        "",
        "Mean over seeds; in parentheses the paired difference from P0 with its bootstrap 95% CI (GMV: the "
        "ratio to P0 and its CI).",
        "",
        headline_table(evaluation),
        "",
        f"## Goals: {met} of {measured} met",
        "",
        "Decided by the mean over seeds; the CI column says whether the 95% interval of the paired difference "
        "excludes zero. A missed goal is reported as missed.",
        "",
        goals_table(goals),
        "",
        "## Models",
        "",
        "Test split of the logged impressions (grouped by request).",
        "",
        models_table(model_metrics),
        "",
        "## Plots",
        "",
    ]
    for file, caption in PLOTS:
        parts += [f"### {caption}", "", f"![{caption}](plots/{file})", ""]
    parts += ["## Every metric, per scenario", "",
              "(+) higher is better, (-) lower is better. Cells: mean (difference from P0 [95% CI]).", ""]
    for scenario in sorted(set(evaluation.runs["scenario"])):
        parts += [f"### {scenario}", "", scenario_table(evaluation, scenario), ""]
    parts += ["## Files", "",
              "`manifest.json` (config, seeds, versions, git sha, timings), `config.toml` (the config as run), "
              "`runs.parquet`, `rounds.parquet`, `accounts.parquet` (final snapshots), `summary.csv`, "
              "`sweep.parquet`, `goals.csv`, `logs/` (impressions), `models/` (bundles), `plans/` (the traffic "
              "plan: `ecorank serve --bundle models/" + loop.training.serve + " --plan plans/v000001`).", ""]
    return "\n".join(parts)
