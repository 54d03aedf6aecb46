"""The committed protoc output matches the protos (regenerated with the pinned grpcio-tools)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_modules_match_the_protos() -> None:
    spec = importlib.util.spec_from_file_location("generate", ROOT / "proto" / "generate.py")
    assert spec is not None
    assert spec.loader is not None
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    assert generate.drift() == [], "run: python proto/generate.py"


def test_generated_imports_resolve_inside_the_package() -> None:
    from serving.generated.ecorank.v1 import traffic_pb2, traffic_pb2_grpc

    assert traffic_pb2.DESCRIPTOR.package == "ecorank.v1"
    assert hasattr(traffic_pb2_grpc, "TrafficRegulatorStub")
