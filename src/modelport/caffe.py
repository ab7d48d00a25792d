"""Public entry points for Caffe models: `modelport.caffe.load(...)`, `read_mean(...)`."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np

from modelport.backends.torch_module import CaffeNet, build_module
from modelport.formats.caffe.blobproto import read_mean as _read_mean
from modelport.ir import Net
from modelport.pipeline import load_net

__all__ = ["CaffeNet", "load", "load_ir", "read_mean"]


def load_ir(prototxt: str | os.PathLike[str], caffemodel: str | os.PathLike[str] | None = None,
            phase: str = "test", level: int = 0, stages: Iterable[str] = (),
            progress: Callable[[int, int], None] | None = None) -> Net:
    """Read a Caffe net (and weights) into modelport's IR without building torch modules."""
    return load_net(prototxt, caffemodel, phase, level, stages, progress)


def load(prototxt: str | os.PathLike[str], caffemodel: str | os.PathLike[str] | None = None,
         phase: str = "test", input_shapes: Mapping[str, Sequence[int]] | None = None,
         level: int = 0, stages: Iterable[str] = (), allow_missing_weights: bool = False,
         progress: Callable[[int, int], None] | None = None) -> CaffeNet:
    """Convert a Caffe model into a `torch.nn.Module` that computes what Caffe computes.

    Args:
        prototxt: the net definition (deploy.prototxt or train_val.prototxt, V1 or V2).
        caffemodel: the weights; layers are matched by name, as Caffe does.
        phase: "test" or "train" (include/exclude rules are applied as Caffe's FilterNet).
        input_shapes: override or supply input blob shapes, e.g. {"data": (1, 3, 227, 227)}.
        allow_missing_weights: initialise layers absent from the caffemodel with their fillers.

    Raises:
        ModelportError: for unreadable files, unsupported layers, impossible shapes and
            weights that do not fit the net.
    """
    net = load_net(prototxt, caffemodel, phase, level, stages, progress)
    return build_module(net, input_shapes, allow_missing_weights)


def read_mean(path: str | os.PathLike[str]) -> np.ndarray:
    """A `.binaryproto` mean file as a C x H x W float32 array (channel order as stored: BGR)."""
    return _read_mean(os.fspath(path))
