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

import os
import pathlib
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from modelport.errors import ConfigError, FormatError
from modelport.ir import Net

if TYPE_CHECKING:
    from modelport.backends.torch_module import CaffeNet

__all__ = [
    "DumpReference",
    "Reference",
    "ReferenceOutput",
    "dump_name",
    "load_npy",
    "resolve_reference",
]


@dataclass
class ReferenceOutput:
    """Blobs computed by a reference (see the module docstring for the two kinds of keys)."""

    blobs: dict[str, np.ndarray] = field(default_factory=dict)
    layer_tops: dict[tuple[str, int], np.ndarray] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # layer name -> why not compared
    notes: list[str] = field(default_factory=list)


class Reference(ABC):
    """A source of reference blobs for a net."""

    #: Short description shown in reports, e.g. "OpenCV 4.14.0 dnn".
    name: str = "reference"

    def prepare(self, net: CaffeNet) -> None:  # noqa: B027 - an optional hook, not abstract
        """Called by verify() with the converted net before `run` (default: nothing)."""

    def fixed_inputs(self, input_names: Sequence[str]) -> dict[str, np.ndarray] | None:
        """The inputs this reference was computed on, when it cannot run on others (dumps)."""
        return None

    @abstractmethod
    def run(self, net: Net, inputs: Mapping[str, np.ndarray]) -> ReferenceOutput:
        """The reference's blobs for `net` (modelport's IR of the same prototxt) on `inputs`."""


def dump_name(blob: str) -> str:
    """The file stem of a blob in a dump: '/' (not allowed in file names) becomes '__'."""
    return blob.replace("/", "__")


def load_npy(path: str | os.PathLike[str], what: str = "array") -> np.ndarray:
    """np.load without unpickling (user files are never unpickled); numeric arrays only."""
    p = os.fspath(path)
    if not os.path.isfile(p):
        raise FormatError(f"{what} file '{p}' does not exist. Fix: check the path")
    with open(p, "rb") as fh:
        magic = fh.read(6)
    if magic != b"\x93NUMPY":  # np.load would call any other file "pickled data"
        raise FormatError(f"{what} file '{p}' is not a .npy file (no NumPy header). Fix: "
                          "write it with np.save")
    try:
        arr = np.load(p, allow_pickle=False)
    except ValueError as exc:
        raise FormatError(f"{what} file '{p}' holds Python objects, which modelport never "
                          f"unpickles ({str(exc).splitlines()[0]}). Fix: save a plain numeric "
                          "array with np.save") from None
    except (OSError, EOFError) as exc:
        raise FormatError(f"{what} file '{p}' is not a readable .npy file "
                          f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}). "
                          "Fix: write it with np.save") from None
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "biuf":
        raise FormatError(f"{what} file '{p}' holds dtype {getattr(arr, 'dtype', '?')}, "
                          "not numbers. Fix: save a numeric array")
    return arr


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


REFERENCE_NAMES = ("opencv", "pycaffe", "onnxruntime")


def resolve_reference(spec: str | Reference | None, prototxt: str | os.PathLike[str] | None = None,
                      caffemodel: str | os.PathLike[str] | None = None) -> Reference:
    """A Reference from a CLI/API spec: a dump directory, an .onnx file, or one of
    'opencv' (alias 'cv2'), 'pycaffe' (alias 'caffe'), 'onnxruntime' (alias 'ort').
    None means 'opencv'."""
    if isinstance(spec, Reference):
        return spec
    key = (spec or "opencv").strip()
    lowered = key.lower()
    if lowered in ("opencv", "cv2", "pycaffe", "caffe"):
        if prototxt is None or caffemodel is None:
            raise ConfigError(f"reference '{key}' runs the original files, so it needs the "
                              "prototxt and caffemodel paths. Fix: pass them, or build the "
                              "reference object yourself")
        if lowered in ("opencv", "cv2"):
            from modelport.verify.ref_opencv import OpenCVReference

            return OpenCVReference(prototxt, caffemodel)
        from modelport.verify.ref_pycaffe import PycaffeReference

        return PycaffeReference(prototxt, caffemodel)
    if lowered in ("onnxruntime", "ort") or lowered.endswith(".onnx"):
        from modelport.verify.ref_onnx import OnnxRuntimeReference

        return OnnxRuntimeReference(None if lowered in ("onnxruntime", "ort") else key)
    if os.path.isdir(key):
        return DumpReference(key)
    raise ConfigError(f"unknown reference '{key}': not a directory of blob dumps and not one of "
                      f"{', '.join(REFERENCE_NAMES)}. Fix: pass --reference DIR|opencv|pycaffe|"
                      "onnxruntime|FILE.onnx")
