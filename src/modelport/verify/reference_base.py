"""The `Reference` base, what a reference returns, and the registry of named references.

A reference module (`modelport.verify.ref_*`, one file per reference) defines its Reference
subclass and registers a factory under its CLI names:

    @register_reference("opencv", "cv2", needs_files=True)
    def _opencv(spec: str, prototxt: str | None, caffemodel: str | None) -> Reference:
        return OpenCVReference(prototxt, caffemodel)

`modelport.verify.references.resolve_reference` imports every `ref_*` module and looks names up
here, so a new reference is one new file.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from modelport.errors import FormatError
from modelport.ir import Net

if TYPE_CHECKING:
    from modelport.backends.torch_module import CaffeNet

__all__ = [
    "Reference",
    "ReferenceKind",
    "ReferenceOutput",
    "dump_name",
    "load_npy",
    "reference_kinds",
    "register_reference",
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


#: A factory (spec as given, prototxt, caffemodel) -> Reference.
ReferenceFactory = Callable[[str, "str | os.PathLike[str] | None", "str | os.PathLike[str] | None"],
                            Reference]


@dataclass(frozen=True)
class ReferenceKind:
    """A named reference: its CLI name and aliases, whether it runs the original prototxt +
    caffemodel, the file suffix that selects it (".onnx"), and its factory."""

    name: str
    aliases: tuple[str, ...]
    needs_files: bool
    suffix: str | None
    make: ReferenceFactory


_KINDS: dict[str, ReferenceKind] = {}


def register_reference(name: str, *aliases: str, needs_files: bool = False,
                       suffix: str | None = None) -> Callable[[ReferenceFactory], ReferenceFactory]:
    """Register `factory(spec, prototxt, caffemodel) -> Reference` under `name` (and aliases)."""

    def decorator(factory: ReferenceFactory) -> ReferenceFactory:
        _KINDS[name] = ReferenceKind(name, tuple(aliases), needs_files, suffix, factory)
        return factory

    return decorator


def reference_kinds() -> list[ReferenceKind]:
    """The registered references, in registration order."""
    return list(_KINDS.values())
