"""Regenerate the Python modules of the gRPC contract (proto/ecorank/v1/*.proto -> serving/generated/).

    python proto/generate.py            # write serving/generated/ecorank/v1/*_pb2*.py(i)
    python proto/generate.py --check    # exit 1 if the committed modules differ from what protoc makes

Compiled with `-I proto` so the modules mirror the proto package (ecorank/v1/). protoc writes
`from ecorank.v1 import traffic_pb2`; that import is rewritten to the package the modules live in
(serving.generated.ecorank.v1), so nothing needs a top-level `ecorank` module on the path.
Needs grpcio-tools (in the `test` extra); its version is pinned next to grpcio's in pyproject.toml
because generated code refuses an older grpcio at import time.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROTO_ROOT = ROOT / "proto"
OUT = ROOT / "serving" / "generated"
PACKAGE = "serving.generated"


def protos() -> list[Path]:
    return sorted(PROTO_ROOT.rglob("*.proto"))


def generate(out: Path) -> list[Path]:
    """Run protoc into `out`; returns the files written (relative to out), imports rewritten."""
    from grpc_tools import protoc  # type: ignore[import-untyped]

    include = Path(protoc.__file__).parent / "_proto"  # google/protobuf/*.proto shipped with grpcio-tools
    args = ["grpc_tools.protoc", f"-I{PROTO_ROOT}", f"-I{include}", f"--python_out={out}", f"--pyi_out={out}",
            f"--grpc_python_out={out}", *(str(p.relative_to(PROTO_ROOT)) for p in protos())]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed: {' '.join(args)}")
    written = []
    for path in sorted(out.rglob("*_pb2*.py*")):
        text = path.read_text()
        for proto in protos():
            module = ".".join(proto.relative_to(PROTO_ROOT).with_suffix("").parts)  # ecorank.v1.traffic
            parent, name = module.rsplit(".", 1)
            text = text.replace(f"from {parent} import {name}_pb2", f"from {PACKAGE}.{parent} import {name}_pb2")
        path.write_text(text)
        written.append(path.relative_to(out))
    for folder in {p.parent for p in out.rglob("*_pb2.py")} | {out}:  # packages, up to serving/generated
        while True:
            (folder / "__init__.py").touch()
            if folder == out:
                break
            folder = folder.parent
    return written


def drift() -> list[str]:
    """Files whose committed content differs from a fresh generation (or that are missing)."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        changed = []
        for rel in generate(fresh):
            committed = OUT / rel
            if not committed.is_file() or committed.read_bytes() != (fresh / rel).read_bytes():
                changed.append(str(Path("serving/generated") / rel))
        return changed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed modules are stale")
    args = parser.parse_args()
    if args.check:
        changed = drift()
        if changed:
            print("stale generated modules (run python proto/generate.py): " + ", ".join(changed), file=sys.stderr)
            sys.exit(1)
        print("generated modules match the protos")
        return
    for rel in generate(OUT):
        print(f"wrote serving/generated/{rel}")


if __name__ == "__main__":
    main()
