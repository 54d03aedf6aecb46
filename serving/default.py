"""The embedded default: a model bundle and a traffic plan built from the simulator, cached on disk.

`ecorank serve` with no --bundle serves these, so a fresh machine has a working service without any data
of its own: a tiny S4 world (adaptive adversaries, every account type) is simulated under the
exploration policy, an MMoE is trained on its logged impressions, and a plan is solved over the accounts
it saw (merit: a lower confidence bound of each account's observed GMV + prosperity per impression;
clusters: the detector's operator clusters as logged). Everything is seeded, so
two builds give byte-identical weights (checked: model.pt equal; the bundle's version hash differs because
it covers the creation time). Built once per cache folder (`ECORANK_CACHE`, else ~/.cache/ecorank): `ecorank
serve` on a fresh cache was serving after 6.7 s on 2 cores, 2.4 s from the cache (2026-12-04).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from fairness.planner import PlanInputs, merit_lower_bound, plan_traffic, save_plan
from fairness.policy import FairnessPolicy

ROUNDS = 30
EPOCHS = 6
SEED = 0


def cache_dir() -> Path:
    return Path(os.environ.get("ECORANK_CACHE", Path.home() / ".cache" / "ecorank")) / "default"


def plan_inputs_from_impressions(impressions: pd.DataFrame, policy: FairnessPolicy, *,
                                 heads: Mapping[str, np.ndarray] | None = None, segment: str = "content") -> PlanInputs:
    """Per-account statistics of logged impressions -> planner inputs (one segment).

    The four heads per impression are the logged labels, or a model's predictions for the same rows when
    `heads` is given (the closed loop plans from its model). Merit is a lower confidence bound of each
    account's mean reward (GMV over its 99th percentile + prosperity); clusters are the detector's operator
    clusters (an undetected account is a cluster of its own), as a policy would see them.
    """
    values = heads if heads is not None else {h: impressions[h].to_numpy(np.float64)
                                               for h in ("gmv", "prosperity", "risk", "complaint")}
    gmv = np.asarray(values["gmv"], np.float64)
    reward = gmv / max(float(np.quantile(gmv, 0.99)), 1e-9) + np.asarray(values["prosperity"], np.float64)
    account = impressions["account"].to_numpy(np.int64)
    detected = impressions["operator_cluster"].to_numpy(np.int64)
    frame = pd.DataFrame({"account": account, "reward": reward, "reward_sq": reward**2,
                          "cluster": np.where(detected >= 0, detected, -1 - account),
                          "originality": impressions["originality"].to_numpy(np.float64),
                          "risk": np.asarray(values["risk"], np.float64),
                          "complaint": np.asarray(values["complaint"], np.float64),
                          "prosperity": np.asarray(values["prosperity"], np.float64),
                          "age": impressions["account_age"].to_numpy(np.float64)})
    stats = frame.groupby("account").agg(count=("reward", "size"), reward=("reward", "mean"),
                                         reward_sq=("reward_sq", "mean"), cluster=("cluster", "max"),
                                         originality=("originality", "mean"), risk=("risk", "mean"),
                                         complaint=("complaint", "mean"), prosperity=("prosperity", "mean"),
                                         age=("age", "min"))
    n = len(stats)
    variance = np.maximum(stats["reward_sq"].to_numpy() - stats["reward"].to_numpy() ** 2, 0.0)
    merit = merit_lower_bound(stats["reward"].to_numpy(), np.sqrt(variance / stats["count"].to_numpy()),
                              policy.planner.lcb_z)
    share = stats["count"].to_numpy() / stats["count"].sum()
    e = policy.eligibility
    return PlanInputs(
        creator=stats.index.to_numpy(np.int64), cluster=stats["cluster"].to_numpy(np.int64), merit=merit,
        original=((stats["originality"] >= 0.7) & (stats["risk"] <= e.max_risk)
                  & (stats["prosperity"] >= e.min_prosperity)).to_numpy(),
        newcomer=((stats["age"] < e.newcomer_rounds) & (stats["risk"] <= e.max_risk)).to_numpy(),
        segments=(segment,), supply=np.ones(1), pair_segment=np.zeros(n, np.int64),
        pair_creator=np.arange(n, dtype=np.int64),
        value=(stats["reward"] - stats["risk"] - stats["complaint"]).to_numpy(),
        demand=np.minimum(1.0, 3.0 * share), risk=stats["risk"].to_numpy(), complaint=stats["complaint"].to_numpy())


def build_default(out: Path, policy: FairnessPolicy, *, progress: bool = True) -> tuple[Path, Path]:
    """Simulate, train and plan into `out` (bundle/ and plans/v000001/); returns (bundle, plan) folders."""
    from experiments.config import load_scenario
    from experiments.simulator.runner import run_experiment
    from mtl.schema import load_schema
    from mtl.train import train_bundle
    from mtl.trainer import TrainConfig

    with tempfile.TemporaryDirectory() as tmp:
        sim = Path(tmp) / "sim"
        config = load_scenario("S4", preset="tiny", overrides=["outputs.impressions=all", f"run.rounds={ROUNDS}"])
        run_experiment(config, policies=["explore"], seeds=[SEED], out=sim, quiet=not progress)
        impressions = sim / "impressions.parquet"
        staging = Path(tmp) / "default"
        train_bundle(data=impressions, schema=load_schema("ecorank"), model_name="mmoe", out=staging / "bundle",
                     config=TrainConfig(epochs=EPOCHS, batch_size=256, patience=3, seed=SEED), progress=progress)
        shutil.rmtree(staging / "bundle" / "checkpoints", ignore_errors=True)
        inputs = plan_inputs_from_impressions(pq.read_table(impressions).to_pandas(), policy)
        save_plan(plan_traffic(inputs, policy, version=1), staging / "plans")
        if out.exists():
            shutil.rmtree(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staging), str(out))  # whole or nothing: a half-built default is never served
    return out / "bundle", out / "plans" / "v000001"


def default_paths(policy: FairnessPolicy, *, progress: bool = True) -> tuple[Path, Path]:
    """The cached default (built on first use)."""
    out = cache_dir()
    bundle, plan = out / "bundle", out / "plans" / "v000001"
    if (bundle / "bundle.json").is_file() and (plan / "manifest.json").is_file():
        return bundle, plan
    return build_default(out, policy, progress=progress)
