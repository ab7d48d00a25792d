"""Caffe's weight fillers (include/caffe/filler.hpp), for blobs a weights file does not provide."""

from __future__ import annotations

import torch

from modelport.errors import ConfigError
from modelport.formats.caffe import caffe_pb2


def fill(filler: caffe_pb2.FillerParameter, shape: tuple[int, ...]) -> torch.Tensor:
    """A float32 tensor of `shape` initialised as Caffe's filler `filler.type` would."""
    if filler.type == "constant":
        return torch.full(shape, float(filler.value), dtype=torch.float32)
    raise ConfigError(f"filler type '{filler.type}' is not implemented yet")
