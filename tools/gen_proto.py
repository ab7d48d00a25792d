"""Regenerate src/modelport/schema/caffe_pb2.py from caffe.proto, and the TensorFlow checkpoint
schema src/modelport/schema/tf/*_pb2.py from its .proto files.

Uses grpcio-tools' bundled protoc so the output does not depend on a system protoc.
`python tools/gen_proto.py --check` exits 1 when the committed file is out of date.
"""

from __future__ import annotations

import argparse
import importlib.resources
import pathlib
import sys
import tempfile

from grpc_tools import protoc

SRC = pathlib.Path(__file__).resolve().parents[1] / "src"
PROTO_DIR = SRC / "modelport" / "schema"
PROTO = PROTO_DIR / "caffe.proto"
GENERATED = PROTO_DIR / "caffe_pb2.py"
STUB = PROTO_DIR / "caffe_pb2.pyi"
TF_PROTO_DIR = PROTO_DIR / "tf"
TF_PROTOS = tuple(TF_PROTO_DIR / name for name in (
    "tensor_bundle.proto", "trackable_object_graph.proto", "checkpoint_state.proto"))
# google/protobuf/wrappers.proto (imported by trackable_object_graph.proto) ships with grpc_tools.
WELL_KNOWN = importlib.resources.files("grpc_tools") / "_proto"


def generate(out_dir: pathlib.Path) -> pathlib.Path:
    """Run protoc on caffe.proto into out_dir (module + type stub); return the module's path."""
    # The proto is compiled relative to src/ so its descriptor is registered as
    # "modelport/schema/caffe.proto" and cannot collide with a user's own caffe.proto.
    code = protoc.main(["protoc", f"-I{SRC}", f"--python_out={out_dir}",
                         f"--pyi_out={out_dir}", str(PROTO)])
    if code != 0:
        raise SystemExit(f"protoc failed with exit code {code}")
    return out_dir / "modelport" / "schema" / "caffe_pb2.py"


def generate_tf(out_dir: pathlib.Path) -> dict[pathlib.Path, bytes]:
    """Run protoc on the TF schema protos into out_dir; return {committed path: fresh bytes}."""
    code = protoc.main(["protoc", f"-I{SRC}", f"-I{WELL_KNOWN}", f"--python_out={out_dir}",
                        f"--pyi_out={out_dir}", *map(str, TF_PROTOS)])
    if code != 0:
        raise SystemExit(f"protoc failed with exit code {code}")
    fresh = {}
    for proto in TF_PROTOS:
        for suffix in (".py", ".pyi"):
            name = proto.stem + "_pb2" + suffix
            written = out_dir / "modelport" / "schema" / "tf" / name
            fresh[TF_PROTO_DIR / name] = written.read_bytes()
    return fresh


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="only compare, do not write")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        module = generate(pathlib.Path(tmp))
        fresh = {GENERATED: module.read_bytes(), STUB: module.with_suffix(".pyi").read_bytes()}
        fresh.update(generate_tf(pathlib.Path(tmp)))
    if args.check:
        stale = [p for p, data in fresh.items() if not p.exists() or p.read_bytes() != data]
        if stale:
            print(f"{', '.join(map(str, stale))} out of date: run python tools/gen_proto.py",
                  file=sys.stderr)
            return 1
        return 0
    for path, data in fresh.items():
        path.write_bytes(data)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
