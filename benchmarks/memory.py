"""What keeping freed memory (serving/memory.py) does to model latency: two processes, one setting each.

    python benchmarks/memory.py            # MMoE and PLE, 100 and 1,000 candidates x 64 features, 400 calls each
    python benchmarks/memory.py --quick    # MMoE, 1,000 candidates, 40 calls: a smoke check

The setting is process-wide, so each side is its own spawned process holding the same freshly initialised
model (default architecture, 64 dense features, seed 0, one torch thread). The parent asks them in turns
for blocks of 20 calls of `model(...)` under inference_mode, so a slow spell of the machine falls on both
sides alike; per-call wall time is measured inside the worker, along with the minor page faults the calls
took (`resource.getrusage`). The last line is one JSON object.
"""

from __future__ import annotations

import sys
from pathlib import Path

# As a script, this file's folder is sys.path[0], and benchmarks/mtl.py would shadow the `mtl` package
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import json
import multiprocessing as mp
import os
import platform
import time
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

BLOCK = 20
N_FEATURES = 64


def worker(keep: bool, model_name: str, connection: Connection) -> None:
    """Answer (n, calls) with (per-call ms, minor faults) until told None."""
    import resource

    import torch

    from mtl.models import build_model
    from mtl.spec import HeadSpec, InputSpec
    from serving.memory import keep_freed_memory

    if keep:
        assert keep_freed_memory()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    heads = (HeadSpec(name="gmv", kind="ziln", label="gmv"),
             *(HeadSpec(name=h, kind="binary", label=h) for h in ("prosperity", "risk", "complaint")))
    model = build_model(model_name, inputs=InputSpec(n_dense=N_FEATURES, categorical=()), heads=heads).eval()
    inputs = {n: (torch.randn(n, N_FEATURES, generator=torch.Generator().manual_seed(n)),
                  torch.zeros((n, 0), dtype=torch.int64))
              for n in (100, 1_000)}
    connection.send("ready")
    while (job := connection.recv()) is not None:
        n, calls = job
        dense, categorical = inputs[n]
        times = []
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        with torch.inference_mode():
            for _ in range(calls):
                started = time.perf_counter()
                model(dense=dense, categorical=categorical)
                times.append(1e3 * (time.perf_counter() - started))
        connection.send((times, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults))


def receive(connection: Connection, process: mp.process.BaseProcess) -> Any:
    """The worker's answer, or a clear error if it died instead of answering (its traceback is on stderr)."""
    while not connection.poll(1.0):
        if not process.is_alive():
            raise SystemExit(f"memory benchmark: worker {process.name} exited with code {process.exitcode}; "
                             "its traceback is above")
    return connection.recv()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    models, sizes, calls = (("mmoe",), (1_000,), 40) if args.quick else (("mmoe", "ple"), (100, 1_000), 400)
    ctx = mp.get_context("spawn")
    load_start = os.getloadavg()[0]
    rows: list[dict[str, Any]] = []
    for model_name in models:
        sides: dict[str, tuple[Any, Connection]] = {}
        for label, keep in (("default", False), ("kept", True)):
            parent, child = ctx.Pipe()
            process = ctx.Process(target=worker, args=(keep, model_name, child), daemon=True)
            process.start()
            assert receive(parent, process) == "ready"
            sides[label] = (process, parent)
        for n in sizes:
            for process, connection in sides.values():  # warm up
                connection.send((n, 5))
                receive(connection, process)
            times: dict[str, list[float]] = {label: [] for label in sides}
            faults = dict.fromkeys(sides, 0)
            for _ in range(calls // BLOCK):
                for label, (process, connection) in sides.items():
                    connection.send((n, BLOCK))
                    block, taken = receive(connection, process)
                    times[label] += block
                    faults[label] += taken
            d50, k50 = (float(np.percentile(times[s], 50)) for s in ("default", "kept"))
            d99, k99 = (float(np.percentile(times[s], 99)) for s in ("default", "kept"))
            rows.append({"model": model_name, "n": n, "calls": len(times["kept"]),
                         "default_p50_ms": round(d50, 3), "default_p99_ms": round(d99, 3),
                         "kept_p50_ms": round(k50, 3), "kept_p99_ms": round(k99, 3), "speedup_p50": round(d50 / k50, 2),
                         "default_faults_per_call": round(faults["default"] / len(times["default"]), 1),
                         "kept_faults_per_call": round(faults["kept"] / len(times["kept"]), 1)})
        for process, connection in sides.values():
            connection.send(None)
            process.join(timeout=30)
    header = ["model", "n", "default p50/p99 ms", "kept p50/p99 ms", "default / kept p50", "faults/call default",
              "faults/call kept"]
    lines = [[r["model"], f"{r['n']:,}", f"{r['default_p50_ms']:.2f} / {r['default_p99_ms']:.2f}",
              f"{r['kept_p50_ms']:.2f} / {r['kept_p99_ms']:.2f}", f"{r['speedup_p50']:.2f}x",
              f"{r['default_faults_per_call']:.0f}", f"{r['kept_faults_per_call']:.0f}"] for r in rows]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    print(f"model forward, {N_FEATURES} dense features, 1 torch thread, glibc defaults vs "
          f"serving.memory.keep_freed_memory; 1-min load average at start {load_start:.2f}")
    print("  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for line in lines:
        print("  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)))
    print(json.dumps({"benchmark": "memory", "quick": args.quick, "cpus": os.cpu_count(),
                      "machine": platform.machine(), "python": platform.python_version(),
                      "load_start": round(load_start, 2), "rows": rows}))


if __name__ == "__main__":
    main()
