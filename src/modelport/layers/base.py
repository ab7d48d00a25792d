"""What every layer converter works with: the conversion context and the module base class."""

from __future__ import annotations

import contextlib
import contextvars
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from google.protobuf.message import Message
from torch import nn

from modelport import caffe_math
from modelport.errors import ShapeError, WeightError
from modelport.formats.caffe.mapped import mapping_of, owned_copy
from modelport.ir import Blob, Layer
from modelport.schema import caffe_pb2

Shape = tuple[int, ...]

_SHARE_WITH_FILE: contextvars.ContextVar[bool] = contextvars.ContextVar("share", default=False)


@contextlib.contextmanager
def weights_shared_with_file() -> Iterator[None]:
    """Inside: a module built from a memory-mapped caffemodel takes its weights as read-only
    views of the file (no copy at all), for a module built ONLY to be written out (the
    `modelport convert` command writes model.safetensors straight from the mapping). Such a
    module must never be trained, optimised in place or handed to a user: writing to its
    weights would write to read-only memory. Outside (the default), every module owns its
    weights."""
    token = _SHARE_WITH_FILE.set(True)
    try:
        yield
    finally:
        _SHARE_WITH_FILE.reset(token)


class CaffeModule(nn.Module):
    """A converted Caffe layer.

    `caffe_blob_names` lists, in Caffe's blob order, the parameter/buffer attribute holding each
    of the layer's blobs (so weights can be written back to a caffemodel and lr_mult/decay_mult
    applied per blob). forward takes the bottoms and returns one tensor or a tuple (one per top).
    """

    caffe_blob_names: tuple[str, ...] = ()

    def caffe_blobs(self) -> list[torch.Tensor]:
        return [getattr(self, name) for name in self.caffe_blob_names]

    def output_shapes(self, bottom_shapes: Sequence[Shape]) -> list[Shape] | None:
        """Top shapes for these bottom shapes, when a meta-tensor forward cannot tell them."""
        return None


@dataclass
class ConvertContext:
    """What a converter knows besides the layer: bottom shapes, phase and weight policy."""

    layer: Layer
    bottom_shapes: tuple[Shape, ...]
    phase: int = caffe_pb2.TEST
    allow_missing_weights: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def train(self) -> bool:
        return self.phase == caffe_pb2.TRAIN

    def error(self, what: str, fix: str | None = None) -> ShapeError:
        return ShapeError(self.layer.name, self.layer.type, what, fix)

    def axis(self, axis: int, ndim: int | None = None, what: str = "axis") -> int:
        """Caffe's Blob::CanonicalAxisIndex: allow negative axes, reject out-of-range ones."""
        n = len(self.bottom_shapes[0]) if ndim is None else ndim
        if not -n <= axis < n:
            raise self.error(f"{what} {axis} is out of range for a {n}-axis bottom "
                             f"{self.bottom_shapes[0]}")
        return axis % n

    def expect_bottoms(self, low: int, high: int | None = None) -> None:
        n = len(self.layer.bottoms)
        hi = low if high is None else high
        if not low <= n <= hi:
            want = str(low) if hi == low else f"{low} to {hi}"
            raise self.error(f"takes {want} bottom blobs, got {n}")

    def has_weights(self) -> bool:
        return bool(self.layer.blobs)

    def expect_blob_count(self, count: int) -> None:
        got = len(self.layer.blobs)
        if got and got != count:
            raise WeightError(self.layer.name, self.layer.type,
                              f"the weights file has {got} blobs for this layer, the net "
                              f"definition needs {count}",
                              "check that the prototxt matches the caffemodel")

    def blob(self, index: int, shape: Shape,
             filler: caffe_pb2.FillerParameter | None = None) -> torch.Tensor:
        """Blob `index` as a float32 tensor of `shape` (Caffe's shape check included).

        A legacy 4-D blob (num/channels/height/width only) is accepted when `shape`, padded
        with leading 1s to four axes, equals it (Caffe's Blob::ShapeEquals). A missing blob is an
        error unless weights may be missing, then it is filled with `filler` as Caffe would.
        """
        layer = self.layer
        if index >= len(layer.blobs):
            if layer.blobs:
                raise WeightError(layer.name, layer.type,
                                  f"the weights file has no blob {index} for this layer")
            if not self.allow_missing_weights:
                raise WeightError(
                    layer.name, layer.type, "has no weights in the weights file",
                    "check the caffemodel matches the prototxt, or allow missing weights "
                    "(--allow-missing-weights) to initialise them with the layer's fillers",
                )
            from modelport.fillers import fill

            return fill(filler if filler is not None else caffe_pb2.FillerParameter(), shape)
        stored: Blob = layer.blobs[index]
        data = stored.data
        if tuple(data.shape) != tuple(shape):
            legacy_ok = (
                stored.legacy_4d
                and len(shape) <= 4
                and tuple(data.shape) == (1,) * (4 - len(shape)) + tuple(shape)
            )
            if not legacy_ok:
                raise WeightError(
                    layer.name, layer.type,
                    f"blob {index} in the weights file has shape {tuple(data.shape)}, "
                    f"the net definition needs {tuple(shape)}",
                    "check that the prototxt matches the caffemodel (num_output, kernel, "
                    "input shape)",
                )
            data = data.reshape(shape)
        if _SHARE_WITH_FILE.get() and data.dtype == np.float32 and data.flags.c_contiguous \
                and mapping_of(data) is not None:
            with warnings.catch_warnings():  # read-only on purpose: see weights_shared_with_file
                warnings.simplefilter("ignore", UserWarning)
                return torch.from_numpy(data)
        # The one copy of the weights: IR blobs may be read-only views of the mapped file, and a
        # module owns its (writable) weights; the mapped pages are released as they are copied.
        return torch.from_numpy(owned_copy(data))


def spatial_params(p: caffe_pb2.ConvolutionParameter, num_spatial: int, ctx: ConvertContext,
                   ) -> tuple[Shape, Shape, Shape, Shape]:
    """Caffe's kernel/stride/pad/dilation fields as per-axis tuples (caffe_math.conv_geometry,
    refused as the layer's ShapeError)."""
    return caffe_math.conv_geometry(p, num_spatial, ctx.error)


def filler_or_constant(param: Message, field: str, value: float) -> caffe_pb2.FillerParameter:
    """The FillerParameter `param.<field>` when the prototxt sets it, else the layer type's
    default constant `value` (what its LayerSetUp fills a blob with when given no filler)."""
    given: caffe_pb2.FillerParameter = getattr(param, field)
    return given if param.HasField(field) else caffe_pb2.FillerParameter(type="constant",
                                                                          value=value)
