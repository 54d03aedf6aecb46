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
import signal
import sys
from pathlib import Path

DEFAULT_GRACE_S = 10.0


def add_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    serve = commands.add_parser("serve", help="serve traffic weights over gRPC (ecorank.v1.TrafficRegulator)")
    serve.add_argument("--bundle", type=Path, default=None,
                       help="model bundle folder (default: the embedded default, built from the simulator)")
    serve.add_argument("--plan", type=Path, default=None, help="traffic plan folder (save_plan's v000NNN)")
    serve.add_argument("--policy", default="default", help="fairness policy: built-in name or .toml path")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0: every interface)")
    serve.add_argument("--port", type=int, default=50051)
    serve.add_argument("--threads", type=int, default=2, help="torch threads and model workers (cores owned)")
    serve.add_argument("--max-candidates", type=int, default=10_000)
    serve.add_argument("--max-concurrent", type=int, default=64, help="calls in flight before RESOURCE_EXHAUSTED")
    serve.add_argument("--grace", type=float, default=DEFAULT_GRACE_S, help="seconds to drain calls on SIGTERM")
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
    return _serve(args) if args.command == "serve" else _rank(args)


def _serve(args: argparse.Namespace) -> int:
    from fairness.planner import load_plan
    from fairness.policy import load_policy
    from mtl.bundle import load_bundle
    from serving.auth import Tokens
    from serving.core import Limits, RankingCore
    from serving.default import default_paths
    from serving.metrics import ServingMetrics
    from serving.server import ServerOptions, start_server

    policy = load_policy(args.policy)
    bundle_path, plan_path = args.bundle, args.plan
    if bundle_path is None:
        print("ecorank serve: no --bundle given; using the embedded default (built from the simulator on first "
              "start, then cached)", file=sys.stderr)
        bundle_path, default_plan = default_paths(policy, progress=True)
        plan_path = plan_path or default_plan
    core = RankingCore(load_bundle(bundle_path), policy, plan=load_plan(plan_path) if plan_path else None,
                       limits=Limits(max_candidates=args.max_candidates))
    metrics = ServingMetrics() if args.metrics_port is not None else None
    options = ServerOptions(host=args.host, port=args.port, model_threads=args.threads, metrics=metrics,
                            max_concurrent_rpcs=args.max_concurrent, tls_cert=args.tls_cert, tls_key=args.tls_key,
                            tokens=Tokens.load(admin_file=args.admin_token_file, data_file=args.data_token_file))

    async def main() -> None:
        running = await start_server(core, options)
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        metrics_port = metrics.serve_http(args.metrics_port, host=args.host) if metrics is not None else None
        state = core.state
        print(json.dumps({"event": "serving", "address": f"{args.host}:{running.port}", "metrics_port": metrics_port,
                          "model_version": state.bundle.version, "plan_version": state.plan_version,
                          "policy": policy.name}), flush=True)
        await stopping.wait()
        print(json.dumps({"event": "draining", "grace_s": args.grace}), flush=True)
        await running.stop(grace=args.grace)
        print(json.dumps({"event": "stopped"}), flush=True)

    asyncio.run(main())
    return 0


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
