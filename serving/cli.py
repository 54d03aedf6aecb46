"""`ecorank serve` and `ecorank rank`: the service and a client for a Parquet file of candidates.

    ecorank serve                                  # the embedded default (built on first start, cached)
    ecorank serve --bundle bundles/mmoe --plan plans/v000007 --port 50051
    ecorank rank --data candidates.parquet --server 127.0.0.1:50051 --out weights.parquet

SIGTERM or Ctrl-C: health turns NOT_SERVING, in-flight calls drain for --grace seconds, then the server
stops. Only argparse is imported at module level: `ecorank --help` stays fast.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from serving.core import RankingCore

DEFAULT_GRACE_S = 10.0


def add_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    serve = commands.add_parser("serve", help="serve traffic weights over gRPC (ecorank.v1.TrafficRegulator)")
    serve.add_argument("--bundle", type=Path, default=None,
                       help="model bundle folder (default: the embedded default, built from the simulator)")
    serve.add_argument("--plan", type=Path, default=None, help="traffic plan folder (save_plan's v000NNN)")
    serve.add_argument("--policy", default="default", help="fairness policy: built-in name or .toml path")
    serve.add_argument("--surface-policy", action="append", default=[], metavar="SURFACE=POLICY",
                       help="serve SURFACE with its own fairness policy (built-in name or .toml path); repeatable. "
                            "Other surfaces get --policy")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0: every interface)")
    serve.add_argument("--port", type=int, default=50051)
    serve.add_argument("--threads", type=int, default=2, help="torch threads and model workers (cores owned)")
    serve.add_argument("--max-candidates", type=int, default=10_000)
    serve.add_argument("--max-concurrent", type=int, default=64, help="calls in flight before RESOURCE_EXHAUSTED")
    serve.add_argument("--grace", type=float, default=DEFAULT_GRACE_S, help="seconds to drain calls on SIGTERM")
    serve.add_argument("--workers", type=int, default=1,
                       help="server processes sharing --port through SO_REUSEPORT (each with --threads threads)")
    serve.add_argument("--watch", type=float, default=0.0, metavar="SECONDS",
                       help="every SECONDS, reload a newer plan version in --plan's folder or a re-exported "
                            "--bundle (default: off; reload by RPC)")
    serve.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"),
                       help="JSON log line per call on stderr at info (default: %(default)s)")
    serve.add_argument("--admin-token-file", type=Path, default=None,
                       help="file holding the admin token (else ECORANK_ADMIN_TOKEN); without one, Reload is refused")
    serve.add_argument("--data-token-file", type=Path, default=None,
                       help="file holding the token Rank needs (else ECORANK_DATA_TOKEN; unset: open)")
    serve.add_argument("--metrics-port", type=int, default=None,
                       help="serve Prometheus /metrics on this port (e.g. 9464; default: off)")
    serve.add_argument("--tls-cert", type=Path, default=None, help="PEM certificate chain: serve TLS")
    serve.add_argument("--tls-key", type=Path, default=None, help="PEM private key of --tls-cert")
    rank = commands.add_parser("rank", help="rank a Parquet file of one request's candidates through a server")
    rank.add_argument("--data", type=Path, required=True,
                      help="Parquet with item_id, creator_id, cluster_id, original and the model's features")
    rank.add_argument("--server", default="127.0.0.1:50051")
    rank.add_argument("--surface", default="content")
    rank.add_argument("--out", type=Path, default=None, help="write weight, rank and predictions as Parquet")
    rank.add_argument("--explain", action="store_true")
    rank.add_argument("--tls-ca", type=Path, default=None, help="PEM root certificate: connect with TLS")
    rank.add_argument("--token-file", type=Path, default=None, help="file holding the data token (else "
                                                                     "ECORANK_DATA_TOKEN)")


def run(args: argparse.Namespace) -> int:
    if args.command == "rank":
        return _rank(args)
    try:
        args.surface_policies = [_surface_policy(value) for value in args.surface_policy]
    except ValueError as err:
        print(f"ecorank serve: error: {err}", file=sys.stderr)
        return 2
    if args.workers < 1:
        print(f"ecorank serve: error: --workers must be at least 1; received {args.workers}", file=sys.stderr)
        return 2
    if args.workers == 1:
        return _serve(args)
    if args.port == 0:
        print("ecorank serve: error: --workers > 1 needs a fixed --port (the workers share it through "
              "SO_REUSEPORT); received --port 0", file=sys.stderr)
        return 2
    return _serve_workers(args)


def _surface_policy(value: str) -> tuple[str, str]:
    surface, sep, policy = value.partition("=")
    if not sep or not surface.strip() or not policy.strip():
        raise ValueError(f"--surface-policy: received {value!r}; expected SURFACE=POLICY, e.g. shelf=shelf.toml")
    return surface.strip(), policy.strip()


def _serve_workers(args: argparse.Namespace) -> int:
    """N spawned server processes on one port; SIGTERM / Ctrl-C here is passed on to each, then awaited.

    Spawned, not forked: gRPC and torch thread pools must not be inherited across fork. The default
    bundle and plan are built here first, so the workers never race to build the cache.
    """
    import multiprocessing as mp

    from fairness.policy import load_policy
    from serving.default import default_paths

    if args.bundle is None:
        args.bundle, default_plan = default_paths(load_policy(args.policy), progress=True)
        args.plan = args.plan or default_plan
    ctx = mp.get_context("spawn")
    workers = [ctx.Process(target=_worker, args=(args, index), name=f"ecorank-serve-{index}")
               for index in range(args.workers)]
    for worker in workers:
        worker.start()

    def forward(signum: int, _frame: object) -> None:
        for worker in workers:
            if worker.pid is not None and worker.is_alive():
                os.kill(worker.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = []
    for worker in workers:
        worker.join()
        codes.append(worker.exitcode)
    return 0 if all(code == 0 for code in codes) else 1


def _worker(args: argparse.Namespace, index: int) -> None:
    args.worker_index = index
    sys.exit(_serve(args, reuse_port=True))


def _serve(args: argparse.Namespace, *, reuse_port: bool = False) -> int:
    import logging

    from fairness.planner import PlanError, load_plan
    from fairness.policy import load_policy
    from mtl.bundle import BundleError, load_bundle
    from serving.auth import Tokens
    from serving.core import Limits, RankingCore, ReloadError
    from serving.default import default_paths
    from serving.memory import keep_freed_memory
    from serving.metrics import ServingMetrics
    from serving.server import ServerOptions, start_server

    keep_freed_memory()  # the model's activations reuse heap pages instead of faulting in new ones each call
    policy = load_policy(args.policy)
    surface_policies = {surface: load_policy(name) for surface, name in args.surface_policies}
    bundle_path, plan_path = args.bundle, args.plan
    if bundle_path is None:
        print("ecorank serve: no --bundle given; using the embedded default (built from the simulator on first "
              "start, then cached)", file=sys.stderr)
        bundle_path, default_plan = default_paths(policy, progress=True)
        plan_path = plan_path or default_plan
    try:
        core = RankingCore(load_bundle(bundle_path), policy, plan=load_plan(plan_path) if plan_path else None,
                           limits=Limits(max_candidates=args.max_candidates), surface_policies=surface_policies)
    except (BundleError, PlanError, ReloadError) as err:  # a wrong path or a bundle the service cannot serve
        print(f"ecorank serve: error: {err}", file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level.upper(), format="%(message)s", stream=sys.stderr)
    metrics = ServingMetrics() if args.metrics_port is not None else None
    options = ServerOptions(host=args.host, port=args.port, model_threads=args.threads, metrics=metrics,
                            reuse_port=reuse_port,
                            max_concurrent_rpcs=args.max_concurrent, tls_cert=args.tls_cert, tls_key=args.tls_key,
                            tokens=Tokens.load(admin_file=args.admin_token_file, data_file=args.data_token_file))

    async def main() -> None:
        running = await start_server(core, options)
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        worker = getattr(args, "worker_index", 0)
        metrics_port = (metrics.serve_http(args.metrics_port + worker, host=args.host)  # one port per worker
                        if metrics is not None else None)
        state = core.state
        print(json.dumps({"event": "serving", "address": f"{args.host}:{running.port}", "metrics_port": metrics_port,
                          "pid": os.getpid(), "worker": worker,
                          "model_version": state.bundle.version, "plan_version": state.plan_version,
                          "policy": policy.name}), flush=True)
        watching = asyncio.create_task(_watch(core, bundle_path, plan_path, args.watch)) if args.watch > 0 else None
        await stopping.wait()
        if watching is not None:
            watching.cancel()
        print(json.dumps({"event": "draining", "grace_s": args.grace}), flush=True)
        await running.stop(grace=args.grace)
        print(json.dumps({"event": "stopped"}), flush=True)

    asyncio.run(main())
    return 0


async def _watch(core: RankingCore, bundle: Path | None, plan: Path | None, every: float) -> None:
    from serving.watch import Watcher

    watcher = Watcher(core, plans=plan.parent if plan is not None else None, bundle=bundle)
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(every)
        for detail in await loop.run_in_executor(None, watcher.check):
            print(json.dumps({"event": "watch", "detail": detail, "plan_version": core.state.plan_version,
                              "model_version": core.state.bundle.version}), flush=True)


def _rank(args: argparse.Namespace) -> int:
    import grpc
    import pandas as pd

    from serving.auth import Tokens
    from serving.client import TrafficClient, describe_error

    frame = pd.read_parquet(args.data)
    token = Tokens.load(data_file=args.token_file).data
    ca = args.tls_ca.read_bytes() if args.tls_ca is not None else None
    with TrafficClient(args.server, timeout=60, token=token, root_certificates=ca) as client:
        try:
            result = client.rank(frame, surface=args.surface, explain=args.explain, request_id=args.data.name)
        except grpc.RpcError as err:
            print(f"ecorank rank: {describe_error(err)}", file=sys.stderr)
            return 2
        except ValueError as err:
            print(f"ecorank rank: error: {err}", file=sys.stderr)
            return 2
    table = result.to_frame()
    table.insert(0, "item_id", frame["item_id"].to_numpy())
    if args.out is not None:
        table.to_parquet(args.out, index=False)
    print(json.dumps({"candidates": len(table), "model_version": result.model_version,
                      "plan_version": result.plan_version, "degraded": result.degraded,
                      "top": table.sort_values("rank").head(5)[["item_id", "weight"]].to_dict("records")}))
    return 0
