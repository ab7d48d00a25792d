"""Caffe's input preprocessing, reproduced value for value.

Two families, because Caffe itself has two:

* The C++ data layers (ImageData, Data) read images with OpenCV (`src/caffe/util/io.cpp`:
  `cv::imread` / `cv::imdecode`, then `cv::resize` with INTER_LINEAR) and pass them through
  `DataTransformer` (`src/caffe/data_transformer.cpp`): crop, mirror, mean, scale, in the stored
  channel order (BGR). `DataTransformer`, `read_image`, `decode_datum` and `preprocess_image`
  reproduce this path; on PNG input the output equals Caffe's bit for bit.
* pycaffe's `caffe.io` (`python/caffe/io.py`): `load_image` (scikit-image, RGB in [0, 1]),
  `resize_image` (scikit-image `resize`, not OpenCV) and `Transformer` (transpose, channel swap,
  raw_scale, mean, input_scale). `load_image`, `resize_image`, `classifier_center_crop` and
  `Transformer` reproduce it (up to scikit-image's float rounding, ~1e-5 after raw_scale 255).

Randomness (TRAIN crops, mirroring) comes from a numpy Generator the caller seeds. Caffe draws
from its own boost::mt19937 streams seeded per prefetch thread; those draws cannot be reproduced,
only their distribution: offsets uniform in [0, H - crop] and [0, W - crop], mirror with p = 1/2.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from modelport.errors import ConfigError, FormatError, LayerError, ModelportError
from modelport.formats.caffe import caffe_pb2

if TYPE_CHECKING:
    import numpy.typing as npt

__all__ = [
    "CropDraw",
    "DataTransformer",
    "Transformer",
    "classifier_center_crop",
    "decode_datum",
    "load_image",
    "parse_phase",
    "preprocess_image",
    "read_image",
    "resize_image",
    "resolve_path",
]


def parse_phase(phase: str | int) -> int:
    """caffe_pb2.TRAIN / TEST from "train"/"test" (any case) or the enum value itself."""
    if isinstance(phase, str):
        key = phase.strip().upper()
        if key not in ("TRAIN", "TEST"):
            raise ConfigError(f"unknown phase '{phase}'. Fix: use 'train' or 'test'")
        return caffe_pb2.TRAIN if key == "TRAIN" else caffe_pb2.TEST
    if phase not in (caffe_pb2.TRAIN, caffe_pb2.TEST):
        raise ConfigError(f"unknown phase {phase!r}. Fix: use 'train' or 'test'")
    return int(phase)


def resolve_path(path: str, base_dir: str | os.PathLike[str] | None) -> str:
    """A path from a prototxt or list file as Caffe opens it: relative to Caffe's working
    directory, which modelport takes to be `base_dir` (the current directory when None)."""
    if base_dir is None or os.path.isabs(path):
        return path
    return os.path.join(os.fspath(base_dir), path)


# --------------------------------------------------------------------------------------------
# Reading images the way Caffe's C++ layers do (src/caffe/util/io.cpp)
# --------------------------------------------------------------------------------------------

def _cv2():  # type: ignore[no-untyped-def]  # cv2 ships without usable stubs
    from modelport.optional import require

    return require("cv2", "data", "reading images")


def _need_skimage() -> None:
    from modelport.optional import require

    require("skimage", "data", "pycaffe-style preprocessing")


def read_image(path: str, is_color: bool = True, new_height: int = 0, new_width: int = 0,
               what: str = "image") -> np.ndarray:
    """Caffe's ReadImageToCVMat: `cv::imread(path, IMREAD_COLOR or IMREAD_GRAYSCALE)`, then
    `cv::resize` to new_width x new_height (INTER_LINEAR) when both are positive.

    Returns uint8 H x W x 3 (BGR) or H x W (gray). Grayscale goes through OpenCV's own
    conversion (for JPEG inside libjpeg), which differs from converting a colour read by up to
    9 grey levels, so it is never emulated with cvtColor. Like the OpenCV >= 3.1 that Caffe
    builds link today, a JPEG's EXIF orientation is applied (Caffe on OpenCV 2.4 ignored it).
    """
    cv2 = _cv2()
    if (new_height > 0) != (new_width > 0):
        raise ConfigError(f"{what}: new_height {new_height} and new_width {new_width} must be "
                          "set together (Caffe requires both or neither)")
    if not os.path.isfile(path):
        raise FormatError(f"{what} '{path}' does not exist")
    img = cv2.imread(path, cv2.IMREAD_COLOR if is_color else cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise FormatError(f"{what} '{path}': OpenCV cannot decode it. Fix: check that it is a "
                          "readable image (PNG, JPEG, BMP, ...)")
    if new_height > 0 and new_width > 0:
        try:
            img = cv2.resize(img, (int(new_width), int(new_height)),
                             interpolation=cv2.INTER_LINEAR)
        except cv2.error as exc:  # e.g. a size too large to allocate
            message = str(exc).strip().splitlines()[-1]
            raise ConfigError(f"{what} '{path}': OpenCV cannot resize it to {new_height}x"
                              f"{new_width} ({message}). Fix: use a smaller resize "
                              "(new_height/new_width, --resize)") from None
    return np.asarray(img)


def decode_datum(datum: caffe_pb2.Datum, force_color: bool = False, force_gray: bool = False,
                 what: str = "datum") -> np.ndarray:
    """An encoded Datum's image as Caffe decodes it (DecodeDatumToCVMat / ...Native):
    `cv::imdecode` with IMREAD_COLOR (force_color), IMREAD_GRAYSCALE (force_gray) or, with
    neither, IMREAD_UNCHANGED (the file's own channel count)."""
    cv2 = _cv2()
    if force_color and force_gray:
        raise ConfigError(f"{what}: cannot set both force_color and force_gray")
    flag = (cv2.IMREAD_COLOR if force_color else
            cv2.IMREAD_GRAYSCALE if force_gray else cv2.IMREAD_UNCHANGED)
    buf = np.frombuffer(datum.data, dtype=np.uint8)
    img = cv2.imdecode(buf, flag) if buf.size else None
    if img is None:
        raise FormatError(f"{what}: the encoded image ({buf.size} bytes) cannot be decoded by "
                          "OpenCV")
    if img.dtype != np.uint8:
        raise FormatError(f"{what}: decodes to {img.dtype} pixels; Caffe's transformer reads "
                          "8-bit images only. Fix: re-encode the images as 8-bit")
    return np.asarray(img)


def _image_chw(img: np.ndarray) -> np.ndarray:
    """OpenCV H x W (x C) pixels as C x H x W, channel order unchanged."""
    if img.ndim == 2:
        return img[None, :, :]
    return img.transpose(2, 0, 1)


# --------------------------------------------------------------------------------------------
# DataTransformer (src/caffe/data_transformer.cpp)
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CropDraw:
    """Where one item is cropped and whether it is mirrored."""

    h_off: int
    w_off: int
    mirror: bool


class DataTransformer:
    """Caffe's DataTransformer for one data layer's `transform_param`.

    For an item of C x H x W values (8-bit pixels or a Datum's float_data):
    crop `crop_size` x `crop_size` at (h_off, w_off) -- uniform random offsets
    `Rand(H - crop + 1)` at TRAIN, `(H - crop) / 2` at TEST --, then
    `out = (value - mean) * scale` in float32, where mean is the mean file's value at the same
    (uncropped) position or the channel's mean_value; then, when `mirror: true` and a fair coin
    says so, the width axis is reversed. Caffe draws the mirror coin in both phases (its code
    does not check the phase); prototxts normally set `mirror: false` for TEST.
    Channels stay in the stored order (BGR for images read by OpenCV).
    """

    def __init__(self, param: caffe_pb2.TransformationParameter, phase: str | int = "test",
                 base_dir: str | os.PathLike[str] | None = None,
                 layer: tuple[str, str] | None = None) -> None:
        self.param = param
        self.phase = parse_phase(phase)
        self.layer = layer
        self.scale = np.float32(param.scale)
        self.mirror = bool(param.mirror)
        self.crop_size = int(param.crop_size)
        self.force_color = bool(param.force_color)
        self.force_gray = bool(param.force_gray)
        if self.force_color and self.force_gray:
            raise self.error("transform_param sets both force_color and force_gray",
                             "keep one of them")
        if param.HasField("mean_file") and len(param.mean_value):
            raise self.error("transform_param gives both mean_file and mean_value",
                             "keep one of them (Caffe refuses both)")
        self.mean: np.ndarray | None = None
        self.mean_path: str | None = None
        if param.HasField("mean_file"):
            from modelport.formats.caffe.blobproto import read_mean

            self.mean_path = resolve_path(param.mean_file, base_dir)
            try:
                self.mean = read_mean(self.mean_path)
            except ModelportError as exc:
                raise self.error(f"cannot read mean_file: {exc}",
                                 "mean_file paths are relative to Caffe's working directory "
                                 "(base_dir)") from None
        self.mean_values = np.asarray(param.mean_value, dtype=np.float32)

    def error(self, what: str, fix: str | None = None) -> ModelportError:
        if self.layer is not None:
            return LayerError(self.layer[0], self.layer[1], what, fix)
        return ConfigError(what + (f". Fix: {fix}" if fix else ""))

    @property
    def needs_rand(self) -> bool:
        """Caffe's InitRand: a random stream is needed for mirror, or TRAIN-phase crops."""
        return self.mirror or (self.phase == caffe_pb2.TRAIN and self.crop_size > 0)

    def output_shape(self, channels: int, height: int, width: int) -> tuple[int, int, int]:
        """InferBlobShape for one item: C x crop x crop, or the item's own size."""
        if channels <= 0:
            raise self.error(f"an item has {channels} channels")
        if self.crop_size and (height < self.crop_size or width < self.crop_size):
            raise self.error(f"an item of {height}x{width} pixels is smaller than crop_size "
                             f"{self.crop_size}",
                             "lower crop_size or resize the images (new_height/new_width)")
        if self.crop_size:
            return (channels, self.crop_size, self.crop_size)
        return (channels, height, width)

    def draw(self, height: int, width: int, rng: np.random.Generator | None) -> CropDraw:
        """The crop offsets and mirror flag for an item of height x width, in Caffe's order of
        draws (mirror coin first, then h_off, then w_off)."""
        if self.needs_rand and rng is None:
            raise self.error("a random crop or mirror needs a random generator",
                             "pass rng=numpy.random.default_rng(seed)")
        do_mirror = bool(self.mirror and rng is not None and rng.integers(2))
        h_off = w_off = 0
        if self.crop_size:
            if self.phase == caffe_pb2.TRAIN:
                assert rng is not None
                h_off = int(rng.integers(height - self.crop_size + 1))
                w_off = int(rng.integers(width - self.crop_size + 1))
            else:
                h_off = (height - self.crop_size) // 2
                w_off = (width - self.crop_size) // 2
        return CropDraw(h_off, w_off, do_mirror)

    def transform_chw(self, values: np.ndarray, rng: np.random.Generator | None = None,
                      draw: CropDraw | None = None) -> np.ndarray:
        """Transform C x H x W values (uint8 or float32) into a float32 C x h x w array."""
        channels, height, width = (int(d) for d in values.shape)
        out_c, out_h, out_w = self.output_shape(channels, height, width)
        if draw is None:
            draw = self.draw(height, width, rng)
        crop = values[:, draw.h_off:draw.h_off + out_h, draw.w_off:draw.w_off + out_w]
        crop = crop.astype(np.float32)
        if self.mean is not None:
            if self.mean.shape != (channels, height, width):
                raise self.error(
                    f"mean_file '{self.mean_path}' is {'x'.join(map(str, self.mean.shape))} but "
                    f"an item is {channels}x{height}x{width}; Caffe subtracts the mean at the "
                    "item's uncropped size",
                    "resize the images to the mean's size (new_height/new_width or "
                    "convert_imageset --resize_*) or recompute the mean")
            mean = self.mean[:, draw.h_off:draw.h_off + out_h, draw.w_off:draw.w_off + out_w]
            out = (crop - mean) * self.scale
        elif self.mean_values.size:
            if self.mean_values.size not in (1, channels):
                raise self.error(f"{self.mean_values.size} mean_value entries for {channels} "
                                 "channels", "give one mean_value or one per channel")
            mv = np.broadcast_to(self.mean_values, (channels,))[:, None, None]
            out = (crop - mv) * self.scale
        else:
            out = crop * self.scale
        if draw.mirror:
            out = out[:, :, ::-1]
        return np.ascontiguousarray(out, dtype=np.float32)

    def transform_image(self, img: np.ndarray, rng: np.random.Generator | None = None,
                        draw: CropDraw | None = None) -> np.ndarray:
        """Transform an OpenCV image (uint8 H x W or H x W x C, as stored: BGR)."""
        if img.dtype != np.uint8:
            raise self.error(f"image pixels are {img.dtype}; Caffe's transformer reads 8-bit "
                             "images")
        return self.transform_chw(_image_chw(img), rng, draw)

    def datum_values(self, datum: caffe_pb2.Datum, what: str = "datum") -> np.ndarray:
        """A Datum's values as C x H x W: decoded pixels if encoded, else its uint8 `data`
        bytes or, when those are empty, its `float_data`."""
        if datum.encoded:
            img = decode_datum(datum, self.force_color, self.force_gray, what)
            return _image_chw(img)
        c, h, w = datum.channels, datum.height, datum.width
        n = c * h * w
        if len(datum.data):
            if len(datum.data) != n:
                raise FormatError(f"{what}: {len(datum.data)} data bytes for a {c}x{h}x{w} "
                                  "datum")
            return np.frombuffer(datum.data, dtype=np.uint8).reshape(c, h, w)
        if len(datum.float_data) != n or n == 0:
            raise FormatError(f"{what}: {len(datum.float_data)} float_data values for a "
                              f"{c}x{h}x{w} datum")
        return np.asarray(datum.float_data, dtype=np.float32).reshape(c, h, w)

    def transform_datum(self, datum: caffe_pb2.Datum, rng: np.random.Generator | None = None,
                        what: str = "datum") -> np.ndarray:
        """Transform a Datum (raw uint8, float_data, or encoded image bytes)."""
        return self.transform_chw(self.datum_values(datum, what), rng)


# --------------------------------------------------------------------------------------------
# One image for inference, ImageData-style (OpenCV)
# --------------------------------------------------------------------------------------------

def _load_mean_spec(mean: object, channels: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(mean image C x H x W, per-channel values) from preprocess_image's `mean` argument."""
    if mean is None:
        return None, None
    if isinstance(mean, (str, os.PathLike)):
        path = os.fspath(mean)
        if path.endswith(".npy"):
            if not os.path.isfile(path):
                raise FormatError(f"mean file '{path}' does not exist")
            arr = np.load(path, allow_pickle=False)
        else:
            from modelport.formats.caffe.blobproto import read_mean

            arr = read_mean(path)
        mean = arr
    arr = np.asarray(mean, dtype=np.float32)
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim <= 1:
        values = arr.reshape(-1)
        if values.size not in (1, channels):
            raise ConfigError(f"{values.size} mean values for {channels} channels. Fix: give one "
                              "value or one per channel (in the image's stored BGR order)")
        return None, np.broadcast_to(values, (channels,)).astype(np.float32)
    if arr.ndim != 3 or arr.shape[0] != channels:
        raise ConfigError(f"mean of shape {arr.shape} does not fit a {channels}-channel image. "
                          "Fix: give C x H x W, or one value per channel")
    return arr, None


def preprocess_image(path: str | os.PathLike[str], resize: tuple[int, int] | None = (256, 256),
                     crop: int | tuple[int, int] | None = 227, mean: object = None,
                     scale: float = 1.0, channel_swap: Sequence[int] | None = None,
                     is_color: bool = True) -> np.ndarray:
    """One image as Caffe's ImageData layer would feed it at TEST: a 1 x C x h x w float32 batch.

    `cv::imread` (BGR, or gray when `is_color` is False) -> `cv::resize` to `resize` = (height,
    width) with INTER_LINEAR (None keeps the size) -> center crop `crop` (an int or (h, w);
    offsets (H - h) // 2, (W - w) // 2; None keeps everything) -> `(pixel - mean) * scale` in
    float32 -> optional `channel_swap` (e.g. (2, 1, 0) for a net trained on RGB).

    `mean` is one value, one per channel (stored BGR order, like a prototxt's mean_value), a
    C x H x W array or a `.binaryproto` / `.npy` path. A mean of the resized size is cropped at
    the image's crop offset, as Caffe does with mean_file; a mean of the crop size is used as is.
    """
    p = os.fspath(path)
    rh, rw = resize if resize is not None else (0, 0)
    img = read_image(p, is_color, rh, rw)
    values = _image_chw(img)
    channels, height, width = values.shape
    if crop is None:
        ch, cw = height, width
    else:
        ch, cw = (crop, crop) if isinstance(crop, int) else (int(crop[0]), int(crop[1]))
    if ch > height or cw > width:
        raise ConfigError(f"image '{p}' is {height}x{width} after resizing, smaller than the "
                          f"{ch}x{cw} crop. Fix: resize to at least the crop size")
    h_off, w_off = (height - ch) // 2, (width - cw) // 2
    cropped = values[:, h_off:h_off + ch, w_off:w_off + cw].astype(np.float32)
    mean_img, mean_values = _load_mean_spec(mean, channels)
    s = np.float32(scale)
    if mean_img is not None:
        if mean_img.shape[1:] == (height, width):
            mean_img = mean_img[:, h_off:h_off + ch, w_off:w_off + cw]
        elif mean_img.shape[1:] != (ch, cw):
            raise ConfigError(f"mean of shape {mean_img.shape} fits neither the resized image "
                              f"({height}x{width}) nor the crop ({ch}x{cw}). Fix: resize to the "
                              "mean's size, or pass per-channel mean values")
        out = (cropped - mean_img) * s
    elif mean_values is not None:
        out = (cropped - mean_values[:, None, None]) * s
    else:
        out = cropped * s
    if channel_swap is not None:
        order = [int(i) for i in channel_swap]
        if sorted(order) != list(range(channels)):
            raise ConfigError(f"channel_swap {tuple(order)} is not a permutation of the "
                              f"{channels} channels")
        out = out[order]
    return np.ascontiguousarray(out[None], dtype=np.float32)


# --------------------------------------------------------------------------------------------
# pycaffe's caffe.io (python/caffe/io.py)
# --------------------------------------------------------------------------------------------

def load_image(filename: str | os.PathLike[str], color: bool = True) -> np.ndarray:
    """caffe.io.load_image: `skimage.io.imread` -> `img_as_float` -> float32 in [0, 1], RGB
    H x W x 3 (grayscale tiled to 3 channels when `color`), or H x W x 1 when not `color`;
    an alpha channel is dropped."""
    _need_skimage()
    import skimage.io
    from skimage.util import img_as_float

    path = os.fspath(filename)
    if not os.path.isfile(path):
        raise FormatError(f"image '{path}' does not exist")
    try:
        raw = skimage.io.imread(path, as_gray=not color)
    except (OSError, ValueError) as exc:
        raise FormatError(f"image '{path}' cannot be read: {exc}") from None
    img = img_as_float(raw).astype(np.float32)
    if img.ndim == 2:
        img = img[:, :, np.newaxis]
        if color:
            img = np.tile(img, (1, 1, 3))
    elif img.shape[2] == 4:
        img = img[:, :, :3]
    return img


def resize_image(im: np.ndarray, new_dims: Sequence[int], interp_order: int = 1) -> np.ndarray:
    """caffe.io.resize_image: for 1- or 3-channel H x W x K images, scikit-image
    `resize(order=interp_order, mode='constant')` (zero padding at the border; Gaussian
    anti-aliasing on downsampled axes) of the min/max-normalised image, scaled back; a constant
    image is returned filled; other channel counts go through `scipy.ndimage.zoom`."""
    new_h, new_w = int(new_dims[0]), int(new_dims[1])
    if im.shape[-1] in (1, 3):
        im_min, im_max = im.min(), im.max()
        if im_max > im_min:
            _need_skimage()
            from skimage.transform import resize

            im_std = (im - im_min) / (im_max - im_min)
            resized_std = resize(im_std, (new_h, new_w), order=interp_order, mode="constant")
            resized_im = resized_std * (im_max - im_min) + im_min
        else:
            ret = np.empty((new_h, new_w, im.shape[-1]), dtype=np.float32)
            ret.fill(im_min)
            return ret
    else:
        from modelport.optional import require

        zoom = require("scipy.ndimage", "data", "pycaffe-style resizing").zoom

        scale = tuple(np.array((new_h, new_w), dtype=float) / np.array(im.shape[:2]))
        resized_im = zoom(im, scale + (1,), order=interp_order)
    return np.asarray(resized_im).astype(np.float32)


def classifier_center_crop(im: np.ndarray, crop_dims: Sequence[int]) -> np.ndarray:
    """The center crop `caffe.Classifier.predict(oversample=False)` takes of an H x W x K image:
    bounds `H/2 -/+ crop/2` truncated to int (so 256 -> 227 gives rows 14:241)."""
    center = np.array(im.shape[:2]) / 2.0
    dims = np.array([int(d) for d in crop_dims])
    box = np.tile(center, (1, 2))[0] + np.concatenate([-dims / 2.0, dims / 2.0])
    b = box.astype(int)
    return im[b[0]:b[2], b[1]:b[3], :]


class Transformer:
    """caffe.io.Transformer: preprocess H x W x K arrays into a net input's K x H x W layout.

    `inputs` maps input blob names to their shapes (N, K, H, W). `preprocess` applies, in this
    order: float32 copy, resize_image to (H, W) when the size differs, transpose, channel swap,
    `*= raw_scale`, `-= mean`, `*= input_scale`. Unlike pycaffe it never modifies its argument.
    """

    def __init__(self, inputs: Mapping[str, Sequence[int]]) -> None:
        self.inputs = {k: tuple(int(d) for d in v) for k, v in inputs.items()}
        self.transpose: dict[str, tuple[int, ...]] = {}
        self.channel_swap: dict[str, tuple[int, ...]] = {}
        self.raw_scale: dict[str, float] = {}
        self.mean: dict[str, np.ndarray] = {}
        self.input_scale: dict[str, float] = {}

    def _check_input(self, in_: str) -> None:
        if in_ not in self.inputs:
            raise ConfigError(f"'{in_}' is not one of the net inputs: {sorted(self.inputs)}")

    def set_transpose(self, in_: str, order: Sequence[int]) -> None:
        """Axis order taking the H x W x K input to K x H x W, e.g. (2, 0, 1)."""
        self._check_input(in_)
        if len(order) != len(self.inputs[in_]) - 1:
            raise ConfigError("transpose order needs as many axes as the input minus the batch "
                              f"axis ({len(self.inputs[in_]) - 1}), got {tuple(order)}")
        self.transpose[in_] = tuple(int(i) for i in order)

    def set_channel_swap(self, in_: str, order: Sequence[int]) -> None:
        """Channel order applied after transpose, e.g. (2, 1, 0) for RGB -> BGR."""
        self._check_input(in_)
        if len(order) != self.inputs[in_][1]:
            raise ConfigError(f"channel swap {tuple(order)} needs one entry per input channel "
                              f"({self.inputs[in_][1]})")
        self.channel_swap[in_] = tuple(int(i) for i in order)

    def set_raw_scale(self, in_: str, scale: float) -> None:
        """Scale applied before mean subtraction (255 for [0, 1] images and ImageNet nets)."""
        self._check_input(in_)
        self.raw_scale[in_] = scale

    def set_mean(self, in_: str, mean: npt.ArrayLike) -> None:
        """Mean to subtract: one value per channel, or a K x H x W (or H x W) array."""
        self._check_input(in_)
        arr = np.asarray(mean)
        ms = arr.shape
        if arr.ndim == 1:
            if ms[0] != self.inputs[in_][1]:
                raise ConfigError(f"mean has {ms[0]} channels, the input has "
                                  f"{self.inputs[in_][1]}")
            arr = arr[:, np.newaxis, np.newaxis]
        else:
            if len(ms) == 2:
                ms = (1,) + ms
            if len(ms) != 3:
                raise ConfigError(f"mean shape {arr.shape} is invalid; give K, K x H x W or H x W")
            if ms != self.inputs[in_][1:]:
                raise ConfigError(f"mean shape {arr.shape} is incompatible with the input shape "
                                  f"{self.inputs[in_][1:]}")
        self.mean[in_] = arr

    def set_input_scale(self, in_: str, scale: float) -> None:
        """Scale applied after mean subtraction."""
        self._check_input(in_)
        self.input_scale[in_] = scale

    def preprocess(self, in_: str, data: np.ndarray) -> np.ndarray:
        """H' x W' x K array -> K x H x W float32 input for blob `in_`."""
        self._check_input(in_)
        caffe_in = np.array(data, dtype=np.float32, copy=True)
        in_dims = self.inputs[in_][2:]
        if caffe_in.shape[:2] != in_dims:
            caffe_in = resize_image(caffe_in, in_dims)
        if in_ in self.transpose:
            caffe_in = caffe_in.transpose(self.transpose[in_])
        if in_ in self.channel_swap:
            caffe_in = caffe_in[list(self.channel_swap[in_]), :, :]
        if in_ in self.raw_scale:
            caffe_in *= self.raw_scale[in_]
        if in_ in self.mean:
            caffe_in -= self.mean[in_]
        if in_ in self.input_scale:
            caffe_in *= self.input_scale[in_]
        return caffe_in

    def deprocess(self, in_: str, data: np.ndarray) -> np.ndarray:
        """Undo preprocess (except the resize): K x H x W -> H x W x K.

        Uses the true inverse of the channel swap and transpose; pycaffe re-applies the swap and
        composes the transpose with itself, which agrees only for self-inverse swaps such as
        (2, 1, 0) and 3-axis cyclic transposes such as (2, 0, 1)."""
        self._check_input(in_)
        decaf_in = np.array(data, copy=True).squeeze()
        if in_ in self.input_scale:
            decaf_in /= self.input_scale[in_]
        if in_ in self.mean:
            decaf_in += self.mean[in_]
        if in_ in self.raw_scale:
            decaf_in /= self.raw_scale[in_]
        if in_ in self.channel_swap:
            decaf_in = decaf_in[list(np.argsort(self.channel_swap[in_])), :, :]
        if in_ in self.transpose:
            decaf_in = decaf_in.transpose(list(np.argsort(self.transpose[in_])))
        return decaf_in
