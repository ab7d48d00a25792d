"""What a converted net is checked against: pluggable references, each a small adapter.

A reference runs (or has run) the original Caffe model on given inputs and returns its blobs:

- `DumpReference(dir)`: a folder of `<blob>.npy` files ('/' in blob names written as '__'), the
  format of tests/golden/caffe/*/blobs/ and of `tools/dump_caffe_blobs.py`, which a Caffe user
  runs on their own machine. The dump fixes the inputs (its input blobs).
- `PycaffeReference(prototxt, caffemodel)`: BVLC Caffe's own Python module, when `import caffe`
  works (modelport never requires it).
- `OpenCVReference(prototxt, caffemodel)`: OpenCV 4.x's independent Caffe importer (cv2.dnn);
  see `modelport.verify.ref_opencv` for the layers it lacks or computes differently.
- `OnnxRuntimeReference(...)`: ONNX Runtime on an exported ONNX file (`modelport.verify.ref_onnx`).

Two shapes of answer exist. Caffe-style references hold each blob's *final* value (after any
in-place layers), plus the tops of Caffe's implicit Split layers: `ReferenceOutput.blobs`.
Layer-style references (cv2.dnn) give every layer's own outputs, in-place layers included:
`ReferenceOutput.layer_tops[(layer name, top index)]`.
"""

from __future__ import annotations

import importlib
import os
import pathlib
import pkgutil
from collections.abc import Mapping, Sequence

import numpy as np

from modelport.errors import ConfigError, FormatError
from modelport.ir import Net
from modelport.verify.reference_base import (
    Reference,
    ReferenceKind,
    ReferenceOutput,
    dump_name,
    load_npy,
    reference_kinds,
)

__all__ = [
    "DumpReference",
    "Reference",
    "ReferenceOutput",
    "dump_name",
    "load_npy",
    "reference_names",
    "resolve_reference",
]


class DumpReference(Reference):
    """Blobs saved by a real Caffe run: `<dir>/<blob>.npy` (or `<dir>/blobs/<blob>.npy`)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        root = pathlib.Path(directory)
        if not root.is_dir():
            raise FormatError(f"reference dump '{root}' is not a directory. Fix: pass the folder "
                              "written by tools/dump_caffe_blobs.py")
        folder = root / "blobs" if (root / "blobs").is_dir() else root
        files = sorted(folder.glob("*.npy"))
        if not files:
            raise FormatError(f"reference dump '{folder}' has no .npy files. Fix: pass the folder "
                              "written by tools/dump_caffe_blobs.py (<blob>.npy per blob)")
        self.directory = folder
        self.files = {p.stem.replace("__", "/"): p for p in files}
        self.name = f"Caffe blob dump {folder}"
        self._cache: dict[str, np.ndarray] = {}

    def _blob(self, name: str) -> np.ndarray:
        if name not in self._cache:
            self._cache[name] = load_npy(self.files[name], f"reference blob '{name}'")
        return self._cache[name]

    def fixed_inputs(self, input_names: Sequence[str]) -> dict[str, np.ndarray]:
        missing = [n for n in input_names if n not in self.files]
        if missing:
            raise ConfigError(f"reference dump '{self.directory}' has no input blob "
                              f"{', '.join(repr(m) for m in missing)}, so the inputs Caffe saw "
                              "are unknown. Fix: pass them with --input NAME=FILE.npy")
        return {n: self._blob(n) for n in input_names}

    def run(self, net: Net, inputs: Mapping[str, np.ndarray]) -> ReferenceOutput:
        return ReferenceOutput(blobs={n: self._blob(n) for n in self.files})


def _load_references() -> list[ReferenceKind]:
    """Import every reference module (`modelport.verify.ref_*`, each registers itself)."""
    package = __name__.rpartition(".")[0]
    here = [str(pathlib.Path(__file__).parent)]
    for info in sorted(pkgutil.iter_modules(here), key=lambda i: i.name):
        if info.name.startswith("ref_"):
            importlib.import_module(f"{package}.{info.name}")
    return reference_kinds()


def reference_names() -> tuple[str, ...]:
    """The registered reference names (CLI `--reference NAME`)."""
    return tuple(kind.name for kind in _load_references())


def resolve_reference(spec: str | Reference | None, prototxt: str | os.PathLike[str] | None = None,
                      caffemodel: str | os.PathLike[str] | None = None) -> Reference:
    """A Reference from a CLI/API spec: a dump directory, a file selecting a registered
    reference by suffix (.onnx), or a registered name or alias ('opencv' alias 'cv2',
    'pycaffe' alias 'caffe', 'onnxruntime' alias 'ort'). None means 'opencv'."""
    if isinstance(spec, Reference):
        return spec
    key = (spec or "opencv").strip()
    lowered = key.lower()
    kinds = _load_references()
    kind = next((k for k in kinds if lowered == k.name or lowered in k.aliases), None) or next(
        (k for k in kinds if k.suffix and lowered.endswith(k.suffix)), None)
    if kind is not None:
        if kind.needs_files and (prototxt is None or caffemodel is None):
            raise ConfigError(f"reference '{key}' runs the original files, so it needs the "
                              "prototxt and caffemodel paths. Fix: pass them, or build the "
                              "reference object yourself")
        return kind.make(key, prototxt, caffemodel)
    if os.path.isdir(key):
        return DumpReference(key)
    names = [k.name for k in kinds]
    files = "|".join(f"FILE{k.suffix}" for k in kinds if k.suffix)
    raise ConfigError(f"unknown reference '{key}': not a directory of blob dumps and not one of "
                      f"{', '.join(names)}. Fix: pass --reference DIR|{'|'.join(names)}"
                      f"{'|' + files if files else ''}")
