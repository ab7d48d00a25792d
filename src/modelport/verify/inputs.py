"""Inputs for a parity check: .npy batches, images preprocessed exactly as Caffe does, or
seeded random data.

Images go through `modelport.train.transform`, which reproduces Caffe's two pipelines:

* `style="caffe"` (default): the C++ ImageData/Data path -- OpenCV reads BGR 0-255, resizes
  (INTER_LINEAR) to `resize`, center-crops to the net's input size, then `(x - mean) * scale`;
  `channel_swap` reorders channels last (e.g. 2,1,0 for a net trained on RGB).
* `style="pycaffe"`: caffe.io -- scikit-image reads RGB in [0, 1], `resize_image` to `resize`,
  the Classifier's center crop, then Transformer: channel swap, `* raw_scale`, `- mean`,
  `* scale`. The classic ImageNet recipe is `--raw-scale 255 --channel-swap 2,1,0`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np

from modelport.errors import ConfigError
from modelport.verify.references import load_npy

__all__ = ["image_batch", "npy_inputs", "parse_ints", "parse_mean"]


def parse_ints(text: str, what: str) -> tuple[int, ...]:
    """'2,1,0' -> (2, 1, 0), with a clear error."""
    try:
        return tuple(int(v) for v in text.replace("x", ",").split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"{what} '{text}' is not a comma-separated list of integers") from None


def parse_mean(text: str | None) -> str | np.ndarray | None:
    """--mean: a file (.binaryproto or .npy) or comma-separated per-channel values (BGR order
    for the caffe style, the order after channel swap for pycaffe)."""
    if text is None:
        return None
    if os.path.exists(text) or text.endswith((".binaryproto", ".npy")):
        if not os.path.isfile(text):
            raise ConfigError(f"mean file '{text}' does not exist. Fix: check the path")
        return text
    try:
        return np.array([float(v) for v in text.split(",") if v.strip()], np.float32)
    except ValueError:
        raise ConfigError(f"--mean '{text}' is neither a file nor comma-separated numbers "
                          "(e.g. 104,117,123)") from None


def npy_inputs(specs: Sequence[str], input_names: Sequence[str]) -> dict[str, np.ndarray]:
    """--input values: 'FILE.npy' (the first input without a value) or 'NAME=FILE.npy'."""
    out: dict[str, np.ndarray] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep:
            path = spec
            free = [n for n in input_names if n not in out]
            if not free:
                raise ConfigError(f"--input {spec}: every net input already has a value")
            name = free[0]
        if name not in input_names:
            raise ConfigError(f"--input {spec}: '{name}' is not a net input; inputs are "
                              f"{', '.join(input_names)}")
        if name in out:
            raise ConfigError(f"--input gives '{name}' twice")
        arr = load_npy(path, f"input '{name}'")
        out[name] = np.ascontiguousarray(arr, dtype=np.float32)
    return out


def _load_mean_array(mean: str | np.ndarray) -> np.ndarray:
    """The mean as float32: a .npy (numbers only, never unpickled) or .binaryproto file read
    here, so both pipelines get a checked array and a one-line error for a bad file."""
    if isinstance(mean, np.ndarray):
        return mean
    if mean.endswith(".npy"):
        return load_npy(mean, "mean").astype(np.float32)
    from modelport.formats.caffe.blobproto import read_mean

    return read_mean(mean)


def image_batch(paths: Sequence[str], shape: Sequence[int], *, style: str = "caffe",
                resize: Sequence[int] | None = None, mean: str | np.ndarray | None = None,
                scale: float = 1.0, raw_scale: float | None = None,
                channel_swap: Sequence[int] | None = None) -> np.ndarray:
    """Images -> an N x C x H x W float32 batch for an input of `shape` (N is len(paths)).

    `resize` (height, width) defaults to the input's H x W (no crop then)."""
    if len(shape) != 4:
        raise ConfigError(f"images need a 4-D N x C x H x W input, the net's is {tuple(shape)}")
    channels, height, width = (int(d) for d in shape[1:])
    if channels not in (1, 3):
        raise ConfigError(f"images give 1 or 3 channels, the net input has {channels}")
    size = (int(resize[0]), int(resize[1])) if resize else (height, width)
    if len(size) != 2 or min(size) <= 0:
        raise ConfigError(f"--resize {tuple(size)} must be two positive sizes HEIGHT,WIDTH")
    from modelport.train import transform

    if mean is not None:
        mean = _load_mean_array(mean)
    out = []
    if style == "caffe":
        if raw_scale is not None:
            raise ConfigError("--raw-scale belongs to the pycaffe pipeline (images in [0, 1]); "
                              "Caffe's data layers read 0-255. Fix: add --preprocess pycaffe, "
                              "or drop --raw-scale")
        for p in paths:
            out.append(transform.preprocess_image(
                p, resize=size, crop=(height, width), mean=mean, scale=scale,
                channel_swap=channel_swap, is_color=channels == 3)[0])
    elif style == "pycaffe":
        t = transform.Transformer({"data": (1, channels, height, width)})
        t.set_transpose("data", (2, 0, 1))
        if channel_swap is not None:
            t.set_channel_swap("data", channel_swap)
        if raw_scale is not None:
            t.set_raw_scale("data", raw_scale)
        if mean is not None:
            t.set_mean("data", _load_mean_array(mean))
        if scale != 1.0:
            t.set_input_scale("data", scale)
        for p in paths:
            if not os.path.isfile(p):
                raise ConfigError(f"image '{p}' does not exist. Fix: check the path")
            im = transform.load_image(p, color=channels == 3)
            if im.shape[:2] != size:
                im = transform.resize_image(im, size)
            if size != (height, width):
                if size[0] < height or size[1] < width:
                    raise ConfigError(f"--resize {size} is smaller than the net input "
                                      f"{height}x{width}")
                im = transform.classifier_center_crop(im, (height, width))
            out.append(t.preprocess("data", im))
    else:
        raise ConfigError(f"unknown preprocessing '{style}'; use caffe or pycaffe")
    return np.ascontiguousarray(np.stack(out), dtype=np.float32)


def describe_images(paths: Sequence[str], options: Mapping[str, object]) -> str:
    """How an image batch was made, for the report."""
    given = ", ".join(f"{k}={v}" for k, v in options.items() if v not in (None, 1.0))
    return f"{len(paths)} image(s) ({', '.join(os.path.basename(p) for p in paths[:4])}" + (
        ", ..." if len(paths) > 4 else "") + ")" + (f", {given}" if given else "")
