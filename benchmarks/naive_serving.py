"""The naive serving baseline of benchmarks/serving.py: what a first version of the service would do.

One protobuf message per candidate with `repeated float` features (decoded in a Python loop), the model
called on a dict of columns, and a fresh cvxpy problem built and solved for every request (no DPP, no
reuse), on a plain synchronous grpc server. The messages are declared at run time from a descriptor, so
the baseline needs no protoc step:

    python benchmarks/naive_serving.py --bundle DIR --port 0     # prints {"event": "serving", "port": N}
"""

from __future__ import annotations

import sys
from pathlib import Path

# As a script, this file's folder is sys.path[0], and benchmarks/mtl.py (and serving.py) would shadow the
# `mtl` and `serving` packages: put the repository root first.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import json
import signal
import threading
from concurrent import futures
from typing import Any

import cvxpy as cp
import grpc
import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

METHOD = "/naive.Naive/Rank"


def messages() -> tuple[Any, Any, Any]:
    """(Candidate, NaiveRequest, NaiveResponse) message classes."""
    f = descriptor_pb2.FileDescriptorProto(name="naive.proto", package="naive", syntax="proto3")
    candidate = f.message_type.add(name="Candidate")
    for number, (name, kind) in enumerate([("item_id", "TYPE_INT64"), ("creator_id", "TYPE_INT64"),
                                           ("cluster_id", "TYPE_INT64"), ("original", "TYPE_BOOL")], start=1):
        candidate.field.add(name=name, number=number, type=getattr(descriptor_pb2.FieldDescriptorProto, kind))
    candidate.field.add(name="features", number=5, type=descriptor_pb2.FieldDescriptorProto.TYPE_FLOAT,
                        label=descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED)
    request = f.message_type.add(name="NaiveRequest")
    request.field.add(name="candidates", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
                      type_name=".naive.Candidate", label=descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED)
    response = f.message_type.add(name="NaiveResponse")
    response.field.add(name="weights", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_DOUBLE,
                       label=descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(f)
    return tuple(message_factory.GetMessageClass(pool.FindMessageTypeByName(f"naive.{name}"))
                 for name in ("Candidate", "NaiveRequest", "NaiveResponse"))


def naive_allocate(value: np.ndarray, creator: np.ndarray, cluster: np.ndarray, original: np.ndarray, *,
                   tau: float, item_cap: float, creator_cap: float, cluster_cap: float, floor: float) -> np.ndarray:
    """The allocation problem built from scratch with a Python loop per group, solved by Clarabel."""
    n = len(value)
    w = cp.Variable(n)
    constraints = [cp.sum(w) == 1, w >= 0, w <= item_cap]
    for ids, cap in ((creator, creator_cap), (cluster, cluster_cap)):
        for group in np.unique(ids):
            members = np.flatnonzero(ids == group)
            if len(members) * item_cap > cap:
                constraints.append(cp.sum(w[members]) <= cap)
    if original.any() and floor > 0:
        constraints.append(cp.sum(w[np.flatnonzero(original)]) >= min(floor, item_cap * int(original.sum())))
    cp.Problem(cp.Maximize(value @ w - tau / 2 * cp.sum_squares(w)), constraints).solve(solver=cp.CLARABEL)
    return np.clip(np.asarray(w.value, dtype=np.float64), 0.0, None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()

    from fairness.blend import BlendWeights, HeadPredictions, blend_terms
    from fairness.policy import load_policy
    from mtl.bundle import load_bundle

    bundle, policy = load_bundle(args.bundle), load_policy()
    names = [d.name for d in bundle.schema.dense]
    _, request_cls, response_cls = messages()
    a = policy.allocation

    def rank(request: Any, context: grpc.ServicerContext) -> Any:
        rows = list(request.candidates)
        features = np.array([list(c.features) for c in rows], dtype=np.float32)  # a Python loop per candidate
        predictions = bundle.predict({name: features[:, j] for j, name in enumerate(names)})
        heads = HeadPredictions(**{h: predictions[h] for h in ("gmv", "prosperity", "risk", "complaint")})
        terms = blend_terms(heads, BlendWeights.from_policy(policy), gmv_scale=policy.blend.gmv_scale)
        value = sum(terms.values())
        weights = naive_allocate(np.asarray(value), np.array([c.creator_id for c in rows]),
                                 np.array([c.cluster_id for c in rows]), np.array([c.original for c in rows]),
                                 tau=a.tau, item_cap=a.item_cap, creator_cap=a.creator_cap,
                                 cluster_cap=a.cluster_cap, floor=a.originals_floor)
        return response_cls(weights=weights.tolist())

    handler = grpc.method_handlers_generic_handler("naive.Naive", {"Rank": grpc.unary_unary_rpc_method_handler(
        rank, request_deserializer=request_cls.FromString, response_serializer=response_cls.SerializeToString)})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2),
                         options=[("grpc.max_receive_message_length", 64 << 20), ("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port(f"127.0.0.1:{args.port}")
    server.start()
    print(json.dumps({"event": "serving", "port": port}), flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    server.stop(1).wait()
    sys.exit(0)


if __name__ == "__main__":
    main()
