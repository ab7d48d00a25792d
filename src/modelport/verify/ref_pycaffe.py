"""BVLC Caffe's own Python module (pycaffe) as the reference, used only if `import caffe` works.

modelport never requires Caffe. Where it is installed, this runs the original prototxt and
caffemodel in Caffe itself (CPU mode) and returns `net.blobs` after `forward()`: every blob's
final value and the tops of Caffe's implicit Split layers -- the same content as a dump written
by `tools/dump_caffe_blobs.py`, which is the way to use Caffe on another machine.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from modelport.errors import ConfigError, FormatError, ModelportError
from modelport.formats.caffe import caffe_pb2
from modelport.ir import Net
from modelport.verify.reference_base import Reference, ReferenceOutput, register_reference

__all__ = ["PycaffeReference", "import_caffe"]


def import_caffe() -> Any:
    """`import caffe`, or a ConfigError saying how to get a reference without it."""
    try:
        import caffe  # type: ignore[import-not-found]  # optional, never a dependency
    except Exception as exc:  # a broken install raises more than ImportError
        raise ConfigError(f"pycaffe is not available (import caffe failed: {exc}). Fix: run "
                          "tools/dump_caffe_blobs.py on a machine with Caffe and pass the dump "
                          "directory as --reference, or use --reference opencv") from None
    return caffe


class PycaffeReference(Reference):
    """Caffe itself: `caffe.Net(prototxt, caffemodel, phase)` on the given inputs."""

    def __init__(self, prototxt: str | os.PathLike[str],
                 caffemodel: str | os.PathLike[str]) -> None:
        self.prototxt = os.fspath(prototxt)
        self.caffemodel = os.fspath(caffemodel)
        for path, what in ((self.prototxt, "prototxt"), (self.caffemodel, "caffemodel")):
            if not os.path.isfile(path):
                raise FormatError(f"{what} '{path}' does not exist. Fix: check the path")
        self.name = "pycaffe"

    def run(self, net: Net, inputs: Mapping[str, np.ndarray]) -> ReferenceOutput:
        caffe = import_caffe()
        caffe.set_mode_cpu()
        phase = caffe.TRAIN if net.phase == caffe_pb2.TRAIN else caffe.TEST
        try:
            cnet = caffe.Net(self.prototxt, self.caffemodel, phase)
            _feed(cnet, inputs)
            cnet.reshape()
            cnet.forward()
        except ModelportError:
            raise
        except Exception as exc:  # pycaffe raises assorted exceptions (or aborts in C++)
            raise ModelportError(f"pycaffe failed to run {self.prototxt}: {exc}") from None
        version = getattr(caffe, "__version__", "")
        self.name = f"pycaffe {version}".strip()
        blobs = {name: np.array(blob.data, dtype=np.float32, copy=True)
                 for name, blob in cnet.blobs.items()}
        return ReferenceOutput(blobs=blobs, notes=[f"{self.name}: Caffe's net.blobs after "
                                                   "forward() (in-place blobs: final values)"])


@register_reference("pycaffe", "caffe", needs_files=True)
def _pycaffe(spec: str, prototxt: str | os.PathLike[str] | None,
             caffemodel: str | os.PathLike[str] | None) -> Reference:
    """`--reference pycaffe`: BVLC Caffe itself on the original prototxt + caffemodel."""
    assert prototxt is not None and caffemodel is not None
    return PycaffeReference(prototxt, caffemodel)


def _feed(cnet: Any, inputs: Mapping[str, np.ndarray]) -> None:
    """Reshape pycaffe's input blobs to the inputs and copy them in (ConfigError for a name the
    net has no blob of)."""
    for name, value in inputs.items():
        if name not in cnet.blobs:
            raise ConfigError(f"pycaffe's net has no input blob '{name}'")
        cnet.blobs[name].reshape(*value.shape)
        cnet.blobs[name].data[...] = value
