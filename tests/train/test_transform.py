"""Caffe's DataTransformer and pycaffe's caffe.io, against real Caffe outputs (golden/transform)
and a loop-for-loop transcription of data_transformer.cpp."""

from __future__ import annotations

import pathlib

import cv2
import numpy as np
import pytest

from modelport.errors import ConfigError, FormatError, ModelportError
from modelport.formats.caffe import caffe_pb2
from modelport.train.transform import (
    CropDraw,
    DataTransformer,
    Transformer,
    classifier_center_crop,
    decode_datum,
    load_image,
    preprocess_image,
    read_image,
    resize_image,
)

GOLDEN = pathlib.Path(__file__).resolve().parents[1] / "golden" / "transform"
IMAGES = GOLDEN / "images"
LIST = ["img_a.png", "img_b.png", "img_c.jpg", "img_d.png"]

# JPEG rows may differ by one grey level (before scaling) from Caffe's: libjpeg builds differ in
# their IDCT and chroma upsampling (README "JPEG caveat"). PNG decoding is exact everywhere.
JPEG_LEVELS = 1.0


def _assert_rows(ours: np.ndarray, ref: np.ndarray, names: list[str], scale: float) -> None:
    for i, name in enumerate(names):
        diff = float(np.abs(ours[i] - ref[i]).max())
        if name.endswith(".jpg"):
            assert diff <= JPEG_LEVELS * scale + 1e-6, f"{name}: {diff}"
        else:
            assert diff <= 1e-6 * float(np.abs(ref[i]).max()), f"{name}: {diff}"


# ------------------------------------------------------------------ golden: C++ layer path

def test_jpeg_decoder_matches_caffes_opencv() -> None:
    ref = np.load(GOLDEN / "lmdb_data" / "opencv_decoded_img_c_jpg.npy")
    ours = read_image(str(IMAGES / "img_c.jpg"))
    assert ours.shape == ref.shape
    assert int(np.abs(ours.astype(int) - ref.astype(int)).max()) <= JPEG_LEVELS


def test_preprocess_image_equals_imagedata_layer() -> None:
    ref = np.load(GOLDEN / "imagedata_test" / "data.npy")
    ours = np.concatenate([preprocess_image(IMAGES / n, (256, 256), 227, [104, 117, 123], 0.017)
                           for n in LIST])
    assert ours.shape == ref.shape == (4, 3, 227, 227) and ours.dtype == np.float32
    _assert_rows(ours, ref, LIST, 0.017)


def test_preprocess_image_mean_file_cropped_at_image_offset() -> None:
    case = GOLDEN / "imagedata_meanfile"
    ref = np.load(case / "data.npy")
    ours = np.concatenate([preprocess_image(IMAGES / n, mean=case / "mean.binaryproto",
                                            scale=0.017) for n in LIST[:2]])
    _assert_rows(ours, ref, LIST[:2], 0.017)


def test_preprocess_image_grayscale() -> None:
    ref = np.load(GOLDEN / "imagedata_gray" / "data.npy")
    ours = np.concatenate([preprocess_image(IMAGES / n, mean=[117], scale=0.017, is_color=False)
                           for n in LIST])
    assert ours.shape == (4, 1, 227, 227)
    _assert_rows(ours, ref, LIST, 0.017)


def test_grayscale_is_opencvs_own_not_cvtcolor() -> None:
    # Caffe reads is_color: false with IMREAD_GRAYSCALE; for the JPEG, libjpeg converts while
    # decoding, which differs from cvtColor of the colour read (README: up to 9 levels).
    gray = read_image(str(IMAGES / "img_c.jpg"), is_color=False)
    via_color = cv2.cvtColor(read_image(str(IMAGES / "img_c.jpg")), cv2.COLOR_BGR2GRAY)
    assert gray.ndim == 2 and not np.array_equal(gray, via_color)


def test_preprocess_image_channel_swap_reorders_after_mean() -> None:
    bgr = preprocess_image(IMAGES / "img_a.png", mean=[104, 117, 123], scale=0.017)
    rgb = preprocess_image(IMAGES / "img_a.png", mean=[104, 117, 123], scale=0.017,
                           channel_swap=(2, 1, 0))
    assert np.array_equal(rgb[0], bgr[0, ::-1])


# ------------------------------------------------------------------ golden: pycaffe path

def test_pycaffe_resize_image() -> None:
    ref = np.load(GOLDEN / "pycaffe_transformer" / "resized_img_a.npy")
    ours = resize_image(load_image(IMAGES / "img_a.png"), (256, 256))
    assert ours.shape == (256, 256, 3) and ours.dtype == np.float32
    assert float(np.abs(ours - ref).max()) <= 1e-4


def test_pycaffe_transformer_preprocess() -> None:
    ref = np.load(GOLDEN / "pycaffe_transformer" / "preprocessed.npy")
    t = Transformer({"data": (3, 3, 227, 227)})
    t.set_transpose("data", (2, 0, 1))
    t.set_channel_swap("data", (2, 1, 0))
    t.set_raw_scale("data", 255)
    t.set_mean("data", np.array([104, 117, 123]))
    for i, name in enumerate(["img_a.png", "img_c.jpg", "img_d.png"]):
        img = resize_image(load_image(IMAGES / name), (256, 256))
        crop = classifier_center_crop(img, (227, 227))
        assert crop.shape == (227, 227, 3)
        out = t.preprocess("data", crop)
        assert out.shape == (3, 227, 227) and out.dtype == np.float32
        # README tolerance: scikit-image float rounding, amplified by raw_scale 255.
        assert float(np.abs(out - ref[i]).max()) <= 1e-3, name


def test_load_image_gray_is_tiled_or_kept() -> None:
    color = load_image(IMAGES / "img_d.png")
    gray = load_image(IMAGES / "img_d.png", color=False)
    assert color.shape == (150, 170, 3) and gray.shape == (150, 170, 1)
    assert np.array_equal(color[:, :, 1], gray[:, :, 0])
    assert 0.0 <= float(color.min()) and float(color.max()) <= 1.0


def test_transformer_order_raw_scale_mean_input_scale() -> None:
    # pycaffe order: transpose -> channel swap -> *raw_scale -> -mean -> *input_scale.
    x = np.arange(2 * 3 * 3, dtype=np.float32).reshape(2, 3, 3) / 20  # H x W x K
    t = Transformer({"d": (1, 3, 2, 3)})
    t.set_transpose("d", (2, 0, 1))
    t.set_channel_swap("d", (2, 0, 1))
    t.set_raw_scale("d", 10.0)
    t.set_mean("d", np.array([1.0, 2.0, 3.0]))
    t.set_input_scale("d", 0.5)
    out = t.preprocess("d", x)
    chw = x.transpose(2, 0, 1)[[2, 0, 1]]
    expected = (chw * 10.0 - np.array([1.0, 2.0, 3.0])[:, None, None]) * 0.5
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    assert np.array_equal(x, np.arange(18, dtype=np.float32).reshape(2, 3, 3) / 20)  # untouched
    np.testing.assert_allclose(t.deprocess("d", out), x, rtol=1e-5, atol=1e-6)


def test_transformer_errors() -> None:
    t = Transformer({"data": (1, 3, 4, 5)})
    with pytest.raises(ConfigError, match="not one of the net inputs"):
        t.set_raw_scale("img", 255)
    with pytest.raises(ConfigError, match="channel swap"):
        t.set_channel_swap("data", (1, 0))
    with pytest.raises(ConfigError, match="incompatible"):
        t.set_mean("data", np.zeros((3, 5, 4)))


# ------------------------------------------------------------------ DataTransformer semantics

def _caffe_reference(img: np.ndarray, crop: int, h_off: int, w_off: int, mirror: bool,
                     mean: np.ndarray | None, mean_values: list[float],
                     scale: float) -> np.ndarray:
    """DataTransformer::Transform(const cv::Mat&, Blob*) transcribed loop for loop."""
    img_h, img_w, channels = img.shape
    height = width = crop if crop else None
    if not crop:
        height, width = img_h, img_w
    assert height is not None and width is not None
    out = np.zeros(channels * height * width, dtype=np.float32)
    s = np.float32(scale)
    for h in range(height):
        for w in range(width):
            for c in range(channels):
                top_index = ((c * height + h) * width + (width - 1 - w) if mirror
                             else (c * height + h) * width + w)
                pixel = np.float32(img[h_off + h, w_off + w, c])
                if mean is not None:
                    mean_index = (c * img_h + h_off + h) * img_w + w_off + w
                    out[top_index] = (pixel - mean.reshape(-1)[mean_index]) * s
                elif mean_values:
                    out[top_index] = (pixel - np.float32(mean_values[c])) * s
                else:
                    out[top_index] = pixel * s
    return out.reshape(channels, height, width)


def _param(**kw: object) -> caffe_pb2.TransformationParameter:
    p = caffe_pb2.TransformationParameter()
    for k, v in kw.items():
        if k == "mean_value":
            p.mean_value.extend(v)  # type: ignore[arg-type]
        else:
            setattr(p, k, v)
    return p


@pytest.fixture
def image() -> np.ndarray:
    return np.random.default_rng(5).integers(0, 256, size=(9, 13, 3), dtype=np.uint8)


@pytest.mark.parametrize("draw", [CropDraw(0, 0, False), CropDraw(4, 7, False),
                                  CropDraw(2, 3, True), CropDraw(4, 0, True)])
def test_crop_mirror_mean_values_scale_match_caffe_loops(image: np.ndarray,
                                                         draw: CropDraw) -> None:
    tr = DataTransformer(_param(crop_size=5, mirror=True, mean_value=[10.5, 20, 30],
                                scale=0.0625), "train")
    ours = tr.transform_image(image, draw=draw)
    ref = _caffe_reference(image, 5, draw.h_off, draw.w_off, draw.mirror, None,
                           [10.5, 20, 30], 0.0625)
    assert np.array_equal(ours, ref)


def test_mean_file_subtracted_at_the_crop_offset(image: np.ndarray, tmp_path: pathlib.Path
                                                 ) -> None:
    mean = np.random.default_rng(1).uniform(0, 255, size=(1, 3, 9, 13)).astype(np.float32)
    blob = caffe_pb2.BlobProto(num=1, channels=3, height=9, width=13)
    blob.data.extend(mean.reshape(-1).tolist())
    (tmp_path / "mean.binaryproto").write_bytes(blob.SerializeToString())
    tr = DataTransformer(_param(crop_size=6, mean_file="mean.binaryproto", scale=0.017,
                                mirror=True), "train", base_dir=tmp_path)
    for draw in (CropDraw(3, 7, False), CropDraw(1, 2, True)):
        ours = tr.transform_image(image, draw=draw)
        ref = _caffe_reference(image, 6, draw.h_off, draw.w_off, draw.mirror, mean[0], [],
                               0.017)
        assert np.array_equal(ours, ref)
    with pytest.raises(ModelportError, match="uncropped size"):
        tr.transform_image(image[:8], draw=CropDraw(0, 0, False))


def test_test_phase_center_crop_and_no_rng_needed(image: np.ndarray) -> None:
    tr = DataTransformer(_param(crop_size=4), "test")
    assert not tr.needs_rand
    # (9 - 4) // 2 = 2, (13 - 4) // 2 = 4: integer division like Caffe.
    assert tr.draw(9, 13, None) == CropDraw(2, 4, False)
    ref = _caffe_reference(image, 4, 2, 4, False, None, [], 1.0)
    assert np.array_equal(tr.transform_image(image), ref)


def test_train_offsets_cover_every_position_uniformly() -> None:
    tr = DataTransformer(_param(crop_size=4), "train")
    rng = np.random.default_rng(0)
    draws = [tr.draw(7, 10, rng) for _ in range(6000)]
    hs = np.bincount([d.h_off for d in draws], minlength=4)
    ws = np.bincount([d.w_off for d in draws], minlength=7)
    assert len(hs) == 4 and len(ws) == 7  # offsets 0..H-crop inclusive (Rand(H - crop + 1))
    assert hs.min() > 0.8 * 6000 / 4 and ws.min() > 0.8 * 6000 / 7
    assert not any(d.mirror for d in draws)


def test_mirror_is_a_fair_coin_in_both_phases() -> None:
    # Caffe draws `mirror() && Rand(2)` without looking at the phase.
    for phase in ("train", "test"):
        tr = DataTransformer(_param(mirror=True), phase)
        rng = np.random.default_rng(3)
        flips = sum(tr.draw(5, 5, rng).mirror for _ in range(4000))
        assert 1800 < flips < 2200


def test_needs_rng_for_random_draws(image: np.ndarray) -> None:
    with pytest.raises(ConfigError, match="random generator"):
        DataTransformer(_param(crop_size=4), "train").transform_image(image)


def test_single_mean_value_is_replicated(image: np.ndarray) -> None:
    one = DataTransformer(_param(mean_value=[100])).transform_image(image)
    three = DataTransformer(_param(mean_value=[100, 100, 100])).transform_image(image)
    assert np.array_equal(one, three)


@pytest.mark.parametrize("kw, match", [
    ({"mean_value": [1, 2]}, "2 mean_value entries for 3 channels"),
    ({"crop_size": 10}, "smaller than crop_size 10"),
])
def test_transform_errors(image: np.ndarray, kw: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        DataTransformer(_param(**kw)).transform_image(image)


def test_parameter_conflicts_are_errors(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ConfigError, match="both mean_file and mean_value"):
        DataTransformer(_param(mean_file="m.binaryproto", mean_value=[1]))
    with pytest.raises(ConfigError, match="force_color and force_gray"):
        DataTransformer(_param(force_color=True, force_gray=True))
    with pytest.raises(ConfigError, match="cannot read mean_file"):
        DataTransformer(_param(mean_file="missing.binaryproto"), base_dir=tmp_path)


def test_datum_raw_float_and_encoded(image: np.ndarray) -> None:
    chw = image.transpose(2, 0, 1)
    raw = caffe_pb2.Datum(channels=3, height=9, width=13, data=chw.tobytes(), label=4)
    floats = caffe_pb2.Datum(channels=3, height=9, width=13)
    floats.float_data.extend((chw.astype(np.float32) + 0.25).reshape(-1).tolist())
    ok, png = cv2.imencode(".png", image)
    assert ok
    enc = caffe_pb2.Datum(data=png.tobytes(), encoded=True)
    tr = DataTransformer(_param(crop_size=5, mean_value=[1, 2, 3]))
    ref = _caffe_reference(image, 5, 2, 4, False, None, [1, 2, 3], 1.0)
    assert np.array_equal(tr.transform_datum(raw), ref)
    assert np.array_equal(tr.transform_datum(enc), ref)
    assert np.array_equal(tr.transform_datum(floats), ref + np.float32(0.25))
    gray = DataTransformer(_param(force_gray=True)).transform_datum(enc)
    assert gray.shape == (1, 9, 13)
    assert np.array_equal(gray[0], cv2.imdecode(png, cv2.IMREAD_GRAYSCALE).astype(np.float32))


def test_bad_datums_are_format_errors() -> None:
    with pytest.raises(FormatError, match="data bytes"):
        DataTransformer(_param()).transform_datum(
            caffe_pb2.Datum(channels=3, height=2, width=2, data=b"\0" * 5))
    with pytest.raises(FormatError, match="cannot be decoded"):
        decode_datum(caffe_pb2.Datum(data=b"not an image", encoded=True))


def test_read_image_errors(tmp_path: pathlib.Path) -> None:
    with pytest.raises(FormatError, match="does not exist"):
        read_image(str(tmp_path / "nope.png"))
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"garbage")
    with pytest.raises(FormatError, match="cannot decode"):
        read_image(str(junk))
    with pytest.raises(ConfigError, match="set together"):
        read_image(str(IMAGES / "img_a.png"), new_height=10)


def test_preprocess_image_errors(tmp_path: pathlib.Path) -> None:
    path = IMAGES / "img_a.png"
    with pytest.raises(ConfigError, match="smaller than the 300x300 crop"):
        preprocess_image(path, crop=300)
    with pytest.raises(ConfigError, match="fits neither"):
        preprocess_image(path, mean=np.zeros((3, 100, 100), dtype=np.float32))
    with pytest.raises(ConfigError, match="2 mean values for 3 channels"):
        preprocess_image(path, mean=[1, 2])
    with pytest.raises(ConfigError, match="not a permutation"):
        preprocess_image(path, channel_swap=(0, 0, 1))
    crop_mean = np.full((3, 227, 227), 7, dtype=np.float32)
    np.save(tmp_path / "m.npy", crop_mean)
    a = preprocess_image(path, mean=tmp_path / "m.npy")
    b = preprocess_image(path, mean=[7])
    assert np.array_equal(a, b)
    whole = preprocess_image(path, resize=None, crop=None)
    assert whole.shape == (1, 3, 200, 300)
