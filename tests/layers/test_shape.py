"""Blob plumbing (Concat, Slice, Split, Flatten, Reshape, Crop, Tile, Silence) against numpy
re-derivations of Caffe 1.0's Reshape/Forward_cpu rules.

The goldens (concat_slice, reshape_flatten_crop, tile_reduction_argmax) cover the common
parameters; these add the legacy concat_dim/slice_dim fields, negative axes, Reshape with
axis -1 / num_axes 0 and 0-copies after the start axis, Crop on axis 1 and with the default
offset, Tile on the first axis, Silence (no tops), and every error Caffe raises for them.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from modelport.backends.torch_module import build_module
from modelport.errors import ShapeError
from modelport.pipeline import parse_net

F32 = np.float32


def _module(layer: str, shapes: list[tuple[int, ...]], tops: int = 1):
    lines = []
    for i, shape in enumerate(shapes):
        dims = " ".join(f"dim: {d}" for d in shape)
        lines.append(f'layer {{ name: "in{i}" type: "Input" top: "in{i}" '
                     f'input_param {{ shape {{ {dims} }} }} }}')
    bottoms = " ".join(f'bottom: "in{i}"' for i in range(len(shapes)))
    top_names = " ".join(f'top: "t{j}"' for j in range(tops))
    lines.append(f'layer {{ name: "op" {bottoms} {top_names} {layer} }}')
    return build_module(parse_net("\n".join(lines)))


def _run(layer: str, arrays: list[np.ndarray], tops: int = 1) -> list[np.ndarray]:
    module = _module(layer, [a.shape for a in arrays], tops)
    with torch.no_grad():
        blobs = module.forward_blobs(*[torch.from_numpy(a) for a in arrays])
    out = [blobs[f"t{j}"].numpy() for j in range(tops)]
    for j, t in enumerate(out):  # the shape inference agrees with what forward produces
        assert module.blob_shapes[f"t{j}"] == t.shape
    return out


def _arange(*shape: int, start: int = 0) -> np.ndarray:
    return (np.arange(math.prod(shape), dtype=F32) + start).reshape(shape)


def _error(layer: str, shapes: list[tuple[int, ...]], match: str, tops: int = 1) -> None:
    type_ = layer.split('"')[1]
    with pytest.raises(ShapeError, match=rf"layer 'op' \(type {type_}\): .*{match}"):
        _module(layer, shapes, tops)


# Concat ---------------------------------------------------------------------------------------

def caffe_concat(arrays: list[np.ndarray], axis: int) -> np.ndarray:
    """concat_layer.cpp: for each of num_concats = count(0, axis) outer positions, copy each
    bottom's count(axis) block in bottom order."""
    outer = math.prod(arrays[0].shape[:axis])
    blocks = []
    for n in range(outer):
        for a in arrays:
            blocks.append(a.reshape(outer, -1)[n])
    shape = list(arrays[0].shape)
    shape[axis] = sum(a.shape[axis] for a in arrays)
    return np.concatenate(blocks).reshape(shape)


def test_concat_legacy_concat_dim_and_negative_axis() -> None:
    a, b, c = _arange(2, 3, 4, 5), _arange(2, 3, 2, 5, start=200), _arange(2, 3, 1, 5, start=500)
    (ours,) = _run('type: "Concat" concat_param { concat_dim: 2 }', [a, b, c])
    np.testing.assert_array_equal(ours, caffe_concat([a, b, c], 2))
    a2, b2 = _arange(2, 3, 4, 5), _arange(2, 3, 4, 2, start=300)
    (ours,) = _run('type: "Concat" concat_param { axis: -1 }', [a2, b2])
    np.testing.assert_array_equal(ours, caffe_concat([a2, b2], 3))
    (ours,) = _run('type: "Concat" concat_param { concat_dim: 0 }', [a2, a2])
    np.testing.assert_array_equal(ours, caffe_concat([a2, a2], 0))


def test_concat_single_bottom_is_identity() -> None:
    a = _arange(2, 3, 4, 5)
    np.testing.assert_array_equal(_run('type: "Concat"', [a])[0], a)


@pytest.mark.parametrize("params,shapes,match", [
    ("concat_param { axis: 1 concat_dim: 1 }", [(2, 3), (2, 3)], "both axis and concat_dim"),
    ("concat_param { concat_dim: 4 }", [(2, 3, 4, 5)] * 2, "concat_dim 4 is out of range"),
    ("", [(2, 3, 4, 5), (2, 3, 5, 5)], r"may differ only on the concat axis 1"),
    ("", [(2, 3, 4, 5), (2, 3, 4)], "same number of axes"),
    ("concat_param { axis: -5 }", [(2, 3, 4, 5)] * 2, "axis -5 is out of range"),
])
def test_concat_errors(params, shapes, match) -> None:
    _error(f'type: "Concat" {params}', shapes, match)


# Slice ----------------------------------------------------------------------------------------

def caffe_slice(x: np.ndarray, axis: int, sizes: list[int]) -> list[np.ndarray]:
    """slice_layer.cpp: num_slices = count(0, axis) outer rows, each cut into size*inner runs."""
    outer, inner = math.prod(x.shape[:axis]), math.prod(x.shape[axis + 1:])
    rows = x.reshape(outer, -1)
    out, offset = [], 0
    for size in sizes:
        piece = rows[:, offset * inner:(offset + size) * inner]
        shape = list(x.shape)
        shape[axis] = size
        out.append(piece.reshape(shape))
        offset += size
    return out


def test_slice_legacy_slice_dim_with_points() -> None:
    x = _arange(2, 3, 4, 7)
    ours = _run('type: "Slice" slice_param { slice_dim: 3 slice_point: 2 slice_point: 3 }', [x],
                tops=3)
    for o, r in zip(ours, caffe_slice(x, 3, [2, 1, 4])):
        np.testing.assert_array_equal(o, r)


def test_slice_negative_axis_equal_split_and_single_top() -> None:
    x = _arange(2, 6, 4, 5)
    ours = _run('type: "Slice" slice_param { axis: -3 }', [x], tops=3)
    for o, r in zip(ours, caffe_slice(x, 1, [2, 2, 2])):
        np.testing.assert_array_equal(o, r)
    np.testing.assert_array_equal(_run('type: "Slice"', [x])[0], x)


@pytest.mark.parametrize("params,tops,match", [
    ("slice_param { axis: 1 slice_dim: 1 }", 2, "both axis and slice_dim"),
    ("slice_param { slice_point: 2 }", 3, "1 slice_point values for 3 tops"),
    ("slice_param { slice_point: 3 slice_point: 2 }", 3, "strictly increasing"),
    ("slice_param { slice_point: 0 }", 2, "strictly increasing"),
    ("slice_param { slice_point: 9 }", 2, "past the end of axis 1"),
    ("", 4, "4 tops do not evenly divide axis 1 of size 6"),
    ("slice_param { slice_dim: 4 }", 2, "slice_dim 4 is out of range"),
])
def test_slice_errors(params, tops, match) -> None:
    _error(f'type: "Slice" {params}', [(2, 6, 4, 5)], match, tops)


# Split / Silence -----------------------------------------------------------------------------

def test_explicit_split_copies_to_every_top() -> None:
    x = _arange(2, 3, 4, 5)
    for t in _run('type: "Split"', [x], tops=3):
        np.testing.assert_array_equal(t, x)


def test_silence_has_no_tops_and_silences_outputs() -> None:
    text = """
    layer { name: "a" type: "Input" top: "a" input_param { shape { dim: 2 dim: 3 } } }
    layer { name: "b" type: "Input" top: "b" input_param { shape { dim: 4 } } }
    layer { name: "r" type: "ReLU" bottom: "a" top: "r" }
    layer { name: "quiet" type: "Silence" bottom: "b" bottom: "a" }
    """
    net = build_module(parse_net(text))
    assert net.output_names == ["r"]
    x = torch.randn(2, 3)
    torch.testing.assert_close(net(x, torch.randn(4)), torch.relu(x))
    assert net.layer_module("quiet")(x) == ()


def test_silence_with_a_top_is_an_error() -> None:
    _error('type: "Silence"', [(2, 3)], "Silence has none")


# Flatten --------------------------------------------------------------------------------------

def caffe_flatten_shape(shape: tuple[int, ...], axis: int, end_axis: int) -> tuple[int, ...]:
    """flatten_layer.cpp Reshape: axes before start, count(start, end + 1), axes after end."""
    n = len(shape)
    start, end = axis % n, end_axis % n
    return shape[:start] + (math.prod(shape[start:end + 1]),) + shape[end + 1:]


@pytest.mark.parametrize("axis,end_axis", [(2, -2), (-3, -1), (0, 1), (3, 3), (2, 1)])
def test_flatten(axis, end_axis) -> None:
    x = _arange(2, 3, 4, 5)
    (ours,) = _run(f'type: "Flatten" flatten_param {{ axis: {axis} end_axis: {end_axis} }}',
                   [x])
    assert ours.shape == caffe_flatten_shape(x.shape, axis, end_axis)
    np.testing.assert_array_equal(ours.reshape(-1), x.reshape(-1))  # C order kept


def test_flatten_errors() -> None:
    _error('type: "Flatten" flatten_param { axis: 3 end_axis: 1 }', [(2, 3, 4, 5)],
           "comes before axis")
    _error('type: "Flatten" flatten_param { end_axis: 4 }', [(2, 3, 4, 5)],
           "end_axis 4 is out of range")


# Reshape --------------------------------------------------------------------------------------

def caffe_reshape_shape(bottom: tuple[int, ...], dims: list[int], axis: int,
                        num_axes: int) -> tuple[int, ...]:
    """reshape_layer.cpp LayerSetUp + Reshape, step by step (valid parameters only)."""
    copy_axes = [i for i, d in enumerate(dims) if d == 0]
    inferred = dims.index(-1) if -1 in dims else -1
    constant = math.prod(d for d in dims if d not in (0, -1))
    start = axis if axis >= 0 else len(bottom) + axis + 1
    end = len(bottom) if num_axes == -1 else start + num_axes
    top = list(bottom[:start]) + list(dims) + list(bottom[end:])
    for i in copy_axes:
        top[start + i] = bottom[start + i]
    if inferred >= 0:
        explicit = constant * math.prod(bottom[:start]) * math.prod(bottom[end:])
        for i in copy_axes:
            explicit *= top[start + i]
        top[start + inferred] = math.prod(bottom) // explicit
    return tuple(top)


@pytest.mark.parametrize("dims,axis,num_axes", [
    ([1, 1], -1, 0),        # append two axes after the last
    ([1], 0, 0),            # prepend one
    ([0, -1], 1, 2),        # keep C, merge H and W: the 0 copies bottom axis 1 (start + 0)
    ([-1, 0], 2, -1),       # 0 at position 1 after start 2 copies bottom axis 3
    ([-1, 1], -2, 1),       # axis -2 means start 3 (before the last axis): replace W only
    ([0, 0, -1, 1], 0, -1),
    ([6, 2, 10], 0, -1),
])
def test_reshape_rules(dims, axis, num_axes) -> None:
    x = _arange(2, 3, 4, 5)
    shape = " ".join(f"dim: {d}" for d in dims)
    (ours,) = _run(f'type: "Reshape" reshape_param {{ shape {{ {shape} }} axis: {axis} '
                   f'num_axes: {num_axes} }}', [x])
    assert ours.shape == caffe_reshape_shape(x.shape, dims, axis, num_axes)
    np.testing.assert_array_equal(ours.reshape(-1), x.reshape(-1))


@pytest.mark.parametrize("dims,extra,match", [
    ([-1, -1], "", "more than one -1"),
    ([0, 0, 0, 0, 0], "", "no axis 4 to copy"),
    ([7, -1], "", "not divisible"),
    ([2, 3, 4, 6], "", r"counts must match"),
    ([-2, 60], "", "negative dimension"),
    ([2], "axis: 5", "axis 5 is out of range"),
    ([2], "axis: -6", "axis -6 is out of range"),
    ([2], "axis: 3 num_axes: 2", "goes past"),
    ([2], "num_axes: -2", "num_axes is -2"),
])
def test_reshape_errors(dims, extra, match) -> None:
    shape = " ".join(f"dim: {d}" for d in dims)
    _error(f'type: "Reshape" reshape_param {{ shape {{ {shape} }} {extra} }}', [(2, 3, 4, 5)],
           match)


# Crop -----------------------------------------------------------------------------------------

def caffe_crop(x: np.ndarray, ref_shape: tuple[int, ...], axis: int,
               offsets: list[int]) -> np.ndarray:
    """crop_layer.cpp: axes before `axis` keep their size; from `axis` on, size = reference,
    start = the single offset, or the per-axis one."""
    out = x
    for i in range(axis, x.ndim):
        off = 0 if not offsets else offsets[0] if len(offsets) == 1 else offsets[i - axis]
        out = np.take(out, range(off, off + ref_shape[i]), axis=i)
    return out


@pytest.mark.parametrize("params,axis,offsets", [
    ("crop_param { axis: 1 offset: 1 offset: 2 offset: 0 }", 1, [1, 2, 0]),
    ("crop_param { axis: -2 offset: 3 }", 2, [3]),
    ("", 2, []),
    ("crop_param { axis: 3 offset: 4 }", 3, [4]),
])
def test_crop(params, axis, offsets) -> None:
    x, ref = _arange(2, 5, 8, 9), np.zeros((1, 2, 4, 5), F32)
    (ours,) = _run(f'type: "Crop" {params}', [x, ref])
    expected = caffe_crop(x, ref.shape, axis, offsets)
    assert ours.shape == expected.shape
    np.testing.assert_array_equal(ours, expected)


@pytest.mark.parametrize("params,shapes,match", [
    ("crop_param { offset: 5 }", [(2, 3, 8, 9), (2, 3, 4, 5)],
     r"on axis 2 the bottom .* too small"),
    ("", [(2, 3, 3, 9), (2, 3, 4, 5)], r"on axis 2 .* too small"),
    ("crop_param { offset: 1 offset: 2 offset: 3 }", [(2, 3, 8, 9), (2, 3, 4, 5)],
     "3 offset values for the 2 axes"),
    ("", [(2, 3, 8, 9), (3, 4, 5)], "same number of axes"),
    ("crop_param { axis: 4 }", [(2, 3, 8, 9), (2, 3, 4, 5)], "axis 4 is out of range"),
])
def test_crop_errors(params, shapes, match) -> None:
    _error(f'type: "Crop" {params}', shapes, match)


# Tile -----------------------------------------------------------------------------------------

def caffe_tile(x: np.ndarray, axis: int, tiles: int) -> np.ndarray:
    """tile_layer.cpp: for each of outer = count(0, axis) rows, copy the count(axis) block
    `tiles` times."""
    axis %= x.ndim
    outer = math.prod(x.shape[:axis])
    rows = x.reshape(outer, -1)
    out = np.concatenate([np.concatenate([r] * tiles) for r in rows])
    shape = list(x.shape)
    shape[axis] *= tiles
    return out.reshape(shape)


@pytest.mark.parametrize("axis,tiles", [(0, 2), (-2, 3), (2, 1), (3, 4)])
def test_tile(axis, tiles) -> None:
    x = _arange(2, 3, 4, 5)
    (ours,) = _run(f'type: "Tile" tile_param {{ axis: {axis} tiles: {tiles} }}', [x])
    np.testing.assert_array_equal(ours, caffe_tile(x, axis, tiles))


def test_tile_errors() -> None:
    _error('type: "Tile"', [(2, 3)], "tiles is 0")
    _error('type: "Tile" tile_param { tiles: -2 }', [(2, 3)], "tiles is -2")
    _error('type: "Tile" tile_param { tiles: 2 axis: 2 }', [(2, 3)], "axis 2 is out of range")


def test_shape_modules_export() -> None:
    x = torch.from_numpy(_arange(2, 3, 4, 5))
    for layer, tops in (('type: "Reshape" reshape_param { shape { dim: 0 dim: -1 } }', 1),
                        ('type: "Flatten" flatten_param { axis: 2 }', 1),
                        ('type: "Slice" slice_param { axis: 3 slice_point: 2 }', 2),
                        ('type: "Tile" tile_param { axis: 2 tiles: 3 }', 1)):
        module = _module(layer, [tuple(x.shape)], tops).layer_module("op")
        exported = torch.export.export(module, (x,)).module()
        torch.testing.assert_close(exported(x * 2), module(x * 2))
