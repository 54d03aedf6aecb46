"""MTL training throughput and 1,000-candidate inference latency per model, against the naive baseline.

    python benchmarks/mtl.py                # full run: 20-round S4 tiny data, 200 steps, 200 calls (about a minute)
    python benchmarks/mtl.py --quick        # 5 rounds, 10 steps, 20 calls: a smoke check (< 30 s)
    python -m benchmarks.mtl --threads 2    # the same as a module; --threads sets torch.set_num_threads

Data: impressions of one S4 `tiny` explore run (`outputs.impressions=all`), read with the `ecorank` schema,
standardized with FeatureStats.fit and encoded once. Two paths per model (SharedBottom, MMoE, PLE), built
from the same parameters (their predictions are checked to agree before anything is timed):

- ours: the encoded tensors shuffled once per epoch and sliced into batches, BatchedExperts (one batched
  matmul per layer for all experts), predictions as numpy (`.numpy()`);
- naive: `benchmarks/naive_mtl.py`: experts in a Python loop (`forward_loop`), a per-row Dataset with the
  default collate_fn, predictions gathered with `.tolist()`.

Training: AdamW, batch 512, one warm-up step, then 200 steps (10 with --quick); samples/s = steps * 512 / time.
Inference: 1,000 candidates in one call under torch.inference_mode, eval mode; median and p90 over
200 calls (20 with --quick) after 3 warm-up calls. Ours and naive alternate step by step and call by call, in this
one process, so drift on a noisy machine hits both and the ratios are comparable. A second table times
the experts alone: BatchedExperts.forward vs forward_loop, forward + backward, batch 512. The last line
is one JSON object with every figure.

Run it on an otherwise idle machine (the header prints the load average): with 2 vCPUs and 2 torch threads,
one other busy process makes every multi-threaded op wait for a descheduled thread, and on the development
machine that inflated times here by up to 60x (batched experts: 76 ms instead of 1.3 ms per step).
"""

from __future__ import annotations

import sys
from pathlib import Path

# As a script, this file's folder is sys.path[0] and this file (mtl.py) would shadow the `mtl` package:
# put the repository root first. Under `python -m benchmarks.mtl` the root is there already.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import json
import os
import platform
import time
from collections.abc import Callable, Iterator
from tempfile import TemporaryDirectory
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from benchmarks.naive_mtl import Row, naive_copy, naive_loader, naive_predict, naive_train_step
from benchmarks.table import print_table
from experiments.config import load_scenario
from experiments.simulator.runner import run_experiment
from mtl.data import EncodedBatch, FeatureStats, encode, read_table
from mtl.models import MultiTaskModel, build_model
from mtl.models.blocks import BatchedExperts
from mtl.schema import load_schema

MODEL_NAMES = ("shared_bottom", "mmoe", "ple")
BATCH_SIZE = 512
CANDIDATES = 1_000
EXPERT_COUNTS = (4, 8, 16)
EXPERT_HIDDEN = (64,)  # MMoE's and PLE's default expert_hidden
WARMUP_CALLS = 3


def make_data(*, rounds: int, seed: int) -> EncodedBatch:
    """Encoded impressions of one S4 tiny explore run of `rounds` rounds."""
    schema = load_schema("ecorank")
    config = load_scenario("S4", preset="tiny", overrides=["outputs.impressions=all", f"run.rounds={rounds}"])
    with TemporaryDirectory() as tmp:
        out = Path(tmp)
        run_experiment(config, policies=["explore"], seeds=[seed], out=out, quiet=True)
        table = read_table(out / "impressions.parquet", schema=schema)
    return encode(table, schema, FeatureStats.fit(table, schema))


def rows(data: EncodedBatch, index: torch.Tensor | slice) -> EncodedBatch:
    """The rows `index` (a permutation gathers, a slice gives views) of every tensor."""
    return EncodedBatch(dense=data.dense[index], categorical=data.categorical[index],
                        labels={k: v[index] for k, v in data.labels.items()},
                        masks={k: v[index] for k, v in data.masks.items()})


def batches(data: EncodedBatch, *, batch_size: int, seed: int) -> Iterator[EncodedBatch]:
    """Endless full batches: each epoch gathers one shuffled copy of the rows, then slices it."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        shuffled = rows(data, torch.randperm(len(data), generator=generator))
        for start in range(0, len(data) - batch_size + 1, batch_size):
            yield rows(shuffled, slice(start, start + batch_size))


def cycle(loader: torch.utils.data.DataLoader[Row]) -> Iterator[Row]:
    """Endless collated batches; each pass over the loader reshuffles."""
    while True:
        yield from loader


def train_step(model: MultiTaskModel, batch: EncodedBatch, optimizer: torch.optim.Optimizer) -> float:
    _, loss = model(dense=batch.dense, categorical=batch.categorical, labels=batch.labels, masks=batch.masks)
    assert loss is not None  # labels were given
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.item())


def predict(model: MultiTaskModel, candidates: EncodedBatch) -> dict[str, NDArray[Any]]:
    with torch.inference_mode():
        predictions = model.predict(dense=candidates.dense, categorical=candidates.categorical)  # head -> (N,)
    return {name: values.numpy() for name, values in predictions.items()}


def alternate(calls: dict[str, Callable[[], object]], *, warmup: int, repeats: int) -> dict[str, NDArray[np.float64]]:
    """Seconds per call of each callable, run in turn (a, b, a, b, ...) after `warmup` untimed rounds."""
    for _ in range(warmup):
        for call in calls.values():
            call()
    seconds: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            started = time.perf_counter()
            call()
            seconds[name].append(time.perf_counter() - started)
    return {name: np.asarray(values) for name, values in seconds.items()}


def bench_model(name: str, data: EncodedBatch, *, steps: int, repeats: int, seed: int) -> dict[str, Any]:
    schema = load_schema("ecorank")
    torch.manual_seed(seed)
    ours = build_model(name, inputs=schema.input_spec(), heads=schema.heads)
    naive = naive_copy(ours)  # the same parameters, experts looped
    candidates = rows(data, slice(0, CANDIDATES))

    # Inference first, from identical parameters: the two paths must agree before their speed means anything.
    ours.eval()
    naive.eval()
    expected, received = predict(ours, candidates), naive_predict(naive, candidates, batch_size=CANDIDATES)
    max_abs_diff = max(float(np.max(np.abs(expected[h] - received[h]))) for h in expected)
    for head in expected:
        np.testing.assert_allclose(received[head], expected[head], rtol=1e-4, atol=1e-6,
                                   err_msg=f"{name}: naive and ours disagree on head {head!r}")
    infer = alternate({"ours": lambda: predict(ours, candidates),
                       "naive": lambda: naive_predict(naive, candidates, batch_size=CANDIDATES)},
                      warmup=WARMUP_CALLS, repeats=repeats)

    ours.train()
    naive.train()
    ours_optimizer = torch.optim.AdamW(ours.parameters(), lr=1e-3)
    naive_optimizer = torch.optim.AdamW(naive.parameters(), lr=1e-3)
    ours_batches = batches(data, batch_size=BATCH_SIZE, seed=seed)
    naive_batches = cycle(naive_loader(data, batch_size=BATCH_SIZE, shuffle=True, seed=seed))
    losses: dict[str, float] = {}

    def ours_step() -> None:
        losses["ours"] = train_step(ours, next(ours_batches), ours_optimizer)

    def naive_step() -> None:
        losses["naive"] = naive_train_step(naive, next(naive_batches), naive_optimizer)

    train = alternate({"ours": ours_step, "naive": naive_step}, warmup=1, repeats=steps)
    if not all(np.isfinite(v) for v in losses.values()):
        raise RuntimeError(f"{name}: non-finite training loss {losses}")

    samples_per_s = {path: steps * BATCH_SIZE / float(train[path].sum()) for path in train}
    p50 = {path: 1000 * float(np.percentile(infer[path], 50)) for path in infer}
    p90 = {path: 1000 * float(np.percentile(infer[path], 90)) for path in infer}
    return {
        "model": name,
        "params": sum(p.numel() for p in ours.parameters()),
        "train_ours_samples_per_s": round(samples_per_s["ours"]),
        "train_naive_samples_per_s": round(samples_per_s["naive"]),
        "train_speedup": round(samples_per_s["ours"] / samples_per_s["naive"], 2),
        "infer_ours_ms_p50": round(p50["ours"], 3),
        "infer_ours_ms_p90": round(p90["ours"], 3),
        "infer_naive_ms_p50": round(p50["naive"], 3),
        "infer_naive_ms_p90": round(p90["naive"], 3),
        "infer_ours_ms_mean": round(1000 * float(infer["ours"].mean()), 3),
        "infer_naive_ms_mean": round(1000 * float(infer["naive"].mean()), 3),
        "infer_speedup": round(p50["naive"] / p50["ours"], 2),
        "max_abs_diff": max_abs_diff,
        "final_loss_ours": round(losses["ours"], 4),
        "final_loss_naive": round(losses["naive"], 4),
    }


def bench_experts(n_experts: int, *, in_dim: int, repeats: int, seed: int) -> dict[str, Any]:
    """Forward + backward of E experts on one batch: one batched matmul per layer vs a loop over experts."""
    torch.manual_seed(seed)
    experts = BatchedExperts(n_experts=n_experts, in_dim=in_dim, hidden=EXPERT_HIDDEN, dropout=0.1)  # train mode
    x = torch.randn(BATCH_SIZE, in_dim)  # (B, D)

    def step(forward: Callable[[torch.Tensor], torch.Tensor]) -> None:
        experts.zero_grad(set_to_none=True)
        torch.autograd.backward(forward(x).sum())  # (B, E, H) -> (), then gradients of every parameter

    seconds = alternate({"batched": lambda: step(experts.forward), "loop": lambda: step(experts.forward_loop)},
                        warmup=WARMUP_CALLS, repeats=repeats)
    batched, loop = (1000 * float(np.median(seconds[k])) for k in ("batched", "loop"))
    return {"n_experts": n_experts, "batched_ms_p50": round(batched, 3), "loop_ms_p50": round(loop, 3),
            "speedup": round(loop / batched, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="5 rounds of data, 10 steps, 20 calls")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads < 1:
        parser.error(f"--threads: received {args.threads}; expected >= 1")
    torch.set_num_threads(args.threads)
    rounds, steps, repeats = (5, 10, 20) if args.quick else (20, 200, 200)

    load = os.getloadavg()[0]  # before this process adds its own
    data = make_data(rounds=rounds, seed=args.seed)
    width = load_schema("ecorank").input_spec().width
    print(f"torch threads: {torch.get_num_threads()}; data: {len(data)} impressions (S4 tiny, {rounds} rounds, "
          f"explore), input width {width}; train: batch {BATCH_SIZE}, {steps} steps; "
          f"infer: {CANDIDATES} candidates, {repeats} calls; 1-min load average at start {load:.2f}")
    print()

    results = [bench_model(name, data, steps=steps, repeats=repeats, seed=args.seed) for name in MODEL_NAMES]
    print_table(
        ["model", "train samples/s ours", "naive", "speed-up", "infer ms ours (p50/p90)", "naive", "speed-up"],
        [[r["model"], f"{r['train_ours_samples_per_s']:,}", f"{r['train_naive_samples_per_s']:,}",
          f"{r['train_speedup']:.2f}x", f"{r['infer_ours_ms_p50']:.2f} / {r['infer_ours_ms_p90']:.2f}",
          f"{r['infer_naive_ms_p50']:.2f} / {r['infer_naive_ms_p90']:.2f}", f"{r['infer_speedup']:.2f}x"]
         for r in results],
    )
    print(f"(ours and naive predictions agree from the same parameters: max |diff| "
          f"{max(r['max_abs_diff'] for r in results):.1e})")
    print()

    experts = [bench_experts(e, in_dim=width, repeats=repeats, seed=args.seed) for e in EXPERT_COUNTS]
    print(f"experts alone: forward + backward, batch {BATCH_SIZE}, D = {width}, hidden {EXPERT_HIDDEN}, median ms")
    print_table(["experts", "BatchedExperts.forward", "forward_loop", "speed-up"],
                [[str(r["n_experts"]), f"{r['batched_ms_p50']:.3f}", f"{r['loop_ms_p50']:.3f}",
                  f"{r['speedup']:.2f}x"] for r in experts])
    load_end = os.getloadavg()[0]
    print(f"1-min load average at the end {load_end:.2f} (this process counts about 1; well above 1 means contention)")

    print(json.dumps({"benchmark": "mtl", "quick": args.quick, "threads": torch.get_num_threads(),
                      "cpus": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version(),
                      "torch": torch.__version__, "load_average_1min": [round(load, 2), round(load_end, 2)],
                      "impressions": len(data), "rounds": rounds, "batch_size": BATCH_SIZE, "steps": steps,
                      "candidates": CANDIDATES, "repeats": repeats, "models": results, "experts": experts}))


if __name__ == "__main__":
    main()
