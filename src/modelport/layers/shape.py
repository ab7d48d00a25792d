"""Blob plumbing: Concat, Slice, Split, Flatten, Reshape, Crop, Tile, Silence.

None of these does arithmetic; what matters is Caffe's rules for the top shapes (legacy
`concat_dim`/`slice_dim`, Reshape's 0 and -1 dims with axis/num_axes, Crop's per-axis offsets),
which the converters check against the bottom shapes with Caffe's error conditions.
"""

from __future__ import annotations

import math

import torch

from modelport.ir import Layer
from modelport.layers.base import CaffeModule, ConvertContext, Shape
from modelport.layers.registry import register_layer


def _legacy_axis(ctx: ConvertContext, has_axis: bool, axis: int, has_legacy: bool,
                 legacy: int, legacy_name: str) -> int:
    """Caffe's Concat/Slice axis: the legacy non-negative `*_dim` field or the `axis` field."""
    if has_axis and has_legacy:
        raise ctx.error(f"both axis and {legacy_name} are set", "give only axis")
    ndim = len(ctx.bottom_shapes[0])
    if has_legacy:
        if legacy >= ndim:
            raise ctx.error(f"{legacy_name} {legacy} is out of range for a {ndim}-axis bottom "
                            f"{ctx.bottom_shapes[0]}")
        return legacy
    return ctx.axis(axis)


class CaffeConcat(CaffeModule):
    """Join the bottoms along `axis`."""

    def __init__(self, axis: int) -> None:
        super().__init__()
        self.axis = axis

    def forward(self, *bottoms: torch.Tensor) -> torch.Tensor:
        if len(bottoms) == 1:
            return bottoms[0]
        return torch.cat(bottoms, dim=self.axis)

    def extra_repr(self) -> str:
        return f"axis={self.axis}"


@register_layer("Concat")
def convert_concat(layer: Layer, ctx: ConvertContext) -> CaffeModule:
    """Caffe Concat (layers/concat_layer.cpp): joins the bottoms along `axis` (default 1; the
    legacy `concat_dim` field, non-negative, is used when set); every bottom must have the same
    number of axes and the same size on every other axis."""
    if not layer.bottoms:
        raise ctx.error("takes at least 1 bottom blob, got 0")
    p = layer.param.concat_param
    axis = _legacy_axis(ctx, p.HasField("axis"), p.axis, p.HasField("concat_dim"),
                        p.concat_dim, "concat_dim")
    first = ctx.bottom_shapes[0]
    for name, shape in zip(layer.bottoms[1:], ctx.bottom_shapes[1:]):
        if len(shape) != len(first):
            raise ctx.error(f"bottom '{name}' has {len(shape)} axes {shape}, bottom "
                            f"'{layer.bottoms[0]}' has {len(first)} {first}; all bottoms must "
                            "have the same number of axes")
        if any(a != b for i, (a, b) in enumerate(zip(shape, first)) if i != axis):
            raise ctx.error(f"bottom '{name}' has shape {shape}, bottom '{layer.bottoms[0]}' "
                            f"has {first}; they may differ only on the concat axis {axis}")
    return CaffeConcat(axis)


class CaffeSlice(CaffeModule):
    """Cut the bottom along `axis` into consecutive pieces of the given sizes."""

    def __init__(self, axis: int, sizes: tuple[int, ...]) -> None:
        super().__init__()
        self.axis = axis
        self.sizes = sizes

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if len(self.sizes) == 1:
            return (x,)
        return tuple(torch.split(x, list(self.sizes), dim=self.axis))

    def extra_repr(self) -> str:
        return f"axis={self.axis}, sizes={self.sizes}"


@register_layer("Slice")
def convert_slice(layer: Layer, ctx: ConvertContext) -> CaffeModule:
    """Caffe Slice (layers/slice_layer.cpp): cuts the bottom along `axis` (default 1; the legacy
    `slice_dim` when set) at the increasing `slice_point`s (one fewer than the tops), or, without
    slice points, into equal parts (the top count must divide the axis)."""
    ctx.expect_bottoms(1)
    p = layer.param.slice_param
    axis = _legacy_axis(ctx, p.HasField("axis"), p.axis, p.HasField("slice_dim"),
                        p.slice_dim, "slice_dim")
    shape = ctx.bottom_shapes[0]
    size = shape[axis]
    ntop = len(layer.tops)
    if ntop < 1:
        raise ctx.error("has no top blobs")
    points = [int(v) for v in p.slice_point]
    if points:
        if len(points) != ntop - 1:
            raise ctx.error(f"has {len(points)} slice_point values for {ntop} tops",
                            "give one slice_point fewer than the number of tops")
        if ntop > size:
            raise ctx.error(f"cannot cut axis {axis} of size {size} into {ntop} pieces")
        bounds = [0, *points]
        if any(b <= a for a, b in zip(bounds, bounds[1:])):
            raise ctx.error(f"slice_point {points} must be strictly increasing and positive")
        if points[-1] > size:
            raise ctx.error(f"slice_point {points[-1]} is past the end of axis {axis} "
                            f"(size {size}) of the bottom {shape}")
        sizes = tuple(b - a for a, b in zip(bounds, [*points, size]))
    else:
        if size % ntop:
            raise ctx.error(f"{ntop} tops do not evenly divide axis {axis} of size {size} "
                            f"(bottom {shape})", "give slice_point values")
        sizes = (size // ntop,) * ntop
    return CaffeSlice(axis, sizes)


class CaffeSplit(CaffeModule):
    """The bottom, once per top."""

    def __init__(self, count: int) -> None:
        super().__init__()
        self.count = count

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (x,) * self.count

    def extra_repr(self) -> str:
        return f"tops={self.count}"


@register_layer("Split")
def convert_split(layer: Layer, ctx: ConvertContext) -> CaffeModule:
    """Caffe Split (layers/split_layer.cpp): every top is a copy of the bottom (Caffe inserts
    these itself when one blob feeds several layers; explicit ones are converted here)."""
    ctx.expect_bottoms(1)
    if not layer.tops:
        raise ctx.error("has no top blobs")
    return CaffeSplit(len(layer.tops))


class CaffeFlatten(CaffeModule):
    """Merge axes start..end (inclusive) into one."""

    def __init__(self, start: int, end: int) -> None:
        super().__init__()
        self.start = start
        self.end = end

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        middle = math.prod(x.shape[self.start : self.end + 1]) if x.numel() == 0 else -1
        return x.reshape(tuple(x.shape[: self.start]) + (middle,)
                         + tuple(x.shape[self.end + 1 :]))

    def extra_repr(self) -> str:
        return f"axis={self.start}, end_axis={self.end}"


@register_layer("Flatten")
def convert_flatten(layer: Layer, ctx: ConvertContext) -> CaffeModule:
    """Caffe Flatten (layers/flatten_layer.cpp): merges the axes `axis` (default 1) through
    `end_axis` (default -1, the last) into one of their product size; the other axes stay."""
    ctx.expect_bottoms(1)
    p = layer.param.flatten_param
    start = ctx.axis(p.axis)
    end = ctx.axis(p.end_axis, what="end_axis")
    if end < start - 1:
        raise ctx.error(f"end_axis {p.end_axis} (axis {end}) comes before axis {p.axis} "
                        f"(axis {start}) of the bottom {ctx.bottom_shapes[0]}")
    return CaffeFlatten(start, end)


def reshape_top_shape(bottom: Shape, dims: tuple[int, ...], axis: int, num_axes: int,
                      ctx: ConvertContext) -> tuple[int, int, Shape]:
    """Caffe ReshapeLayer::Reshape's rules: (start axis, end axis, top shape).

    Axes [start, end) of the bottom are replaced by `dims`: 0 copies the bottom axis at the same
    position (counted from start), -1 (at most one) takes whatever size makes the counts match.
    A negative `axis` counts from the end, -1 meaning after the last axis; num_axes -1 means
    "through the last axis".
    """
    ndim = len(bottom)
    start = axis if axis >= 0 else ndim + axis + 1
    if not 0 <= start <= ndim:
        raise ctx.error(f"reshape_param.axis {axis} is out of range for a {ndim}-axis bottom "
                        f"{bottom}")
    if num_axes < -1:
        raise ctx.error(f"reshape_param.num_axes is {num_axes}; it must be >= 0, or -1 for all")
    end = ndim if num_axes == -1 else start + num_axes
    if end > ndim:
        raise ctx.error(f"axis {start} + num_axes {num_axes} goes past the {ndim} axes of the "
                        f"bottom {bottom}")
    if sum(1 for d in dims if d == -1) > 1:
        raise ctx.error(f"shape {list(dims)} has more than one -1",
                        "at most one dimension may be inferred")
    if any(d < -1 for d in dims):
        raise ctx.error(f"shape {list(dims)} has a negative dimension other than -1")
    top = list(bottom[:start]) + list(dims) + list(bottom[end:])
    for i, d in enumerate(dims):
        if d == 0:
            if start + i >= ndim:
                raise ctx.error(f"shape {list(dims)} has a 0 at position {i}, but the bottom "
                                f"{bottom} has no axis {start + i} to copy")
            top[start + i] = bottom[start + i]
    count = math.prod(bottom)
    if -1 in dims:
        inferred = dims.index(-1)
        explicit = math.prod(d for j, d in enumerate(top) if j != start + inferred)
        if explicit == 0 or count % explicit:
            raise ctx.error(f"the bottom {bottom} has {count} values, not divisible by the "
                            f"product {explicit} of the other dimensions of shape {list(dims)}")
        top[start + inferred] = count // explicit
    if math.prod(top) != count:
        raise ctx.error(f"shape {list(dims)} gives a top of {tuple(top)} ({math.prod(top)} "
                        f"values) for the bottom {bottom} ({count} values)",
                        "the counts must match")
    return start, end, tuple(top)


class CaffeReshape(CaffeModule):
    """Replace axes [start, end) with `dims` (0 copies the bottom axis, -1 is inferred)."""

    def __init__(self, start: int, end: int, dims: tuple[int, ...]) -> None:
        super().__init__()
        self.start = start
        self.end = end
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        middle = tuple(x.shape[self.start + i] if d == 0 else d for i, d in enumerate(self.dims))
        return x.reshape(tuple(x.shape[: self.start]) + middle + tuple(x.shape[self.end :]))

    def extra_repr(self) -> str:
        return f"axes=[{self.start}, {self.end}), dims={list(self.dims)}"


@register_layer("Reshape")
def convert_reshape(layer: Layer, ctx: ConvertContext) -> CaffeModule:
    """Caffe Reshape (layers/reshape_layer.cpp): replaces the bottom axes [axis, axis+num_axes)
    (default: all) with reshape_param.shape, where 0 copies the corresponding bottom axis and one
    -1 is inferred from the count; a negative axis counts from the end (-1: after the last)."""
    ctx.expect_bottoms(1)
    p = layer.param.reshape_param
    dims = tuple(int(d) for d in p.shape.dim)
    start, end, _ = reshape_top_shape(ctx.bottom_shapes[0], dims, p.axis, p.num_axes, ctx)
    return CaffeReshape(start, end, dims)


class CaffeCrop(CaffeModule):
    """Take from the first bottom, on every axis from `start` on, a window the size of the
    reference (second) bottom's axis, beginning at that axis's offset."""

    def __init__(self, start: int, offsets: tuple[int, ...]) -> None:
        super().__init__()
        self.start = start
        self.offsets = offsets

    def forward(self, x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        for i, offset in enumerate(self.offsets):
            axis = self.start + i
            x = x.narrow(axis, offset, reference.shape[axis])
        return x

    def extra_repr(self) -> str:
        return f"axis={self.start}, offsets={self.offsets}"


@register_layer("Crop")
def convert_crop(layer: Layer, ctx: ConvertContext) -> CaffeModule:
    """Caffe Crop (layers/crop_layer.cpp): crops the first bottom to the shape of the second on
    every axis from `axis` (default 2) on, starting at `offset` (none: 0; one value: for all
    those axes; else one per axis); earlier axes are kept whole."""
    ctx.expect_bottoms(2)
    p = layer.param.crop_param
    shape, ref = ctx.bottom_shapes
    if len(shape) != len(ref):
        raise ctx.error(f"the bottom {shape} and the reference {ref} must have the same number "
                        "of axes")
    start = ctx.axis(p.axis)
    n = len(shape) - start
    given = [int(v) for v in p.offset]
    if len(given) > 1 and len(given) != n:
        raise ctx.error(f"has {len(given)} offset values for the {n} axes from axis {start} "
                        f"of the bottom {shape}", "give one offset, or one per cropped axis")
    offsets = tuple(given) if len(given) > 1 else (given[0] if given else 0,) * n
    for i, offset in enumerate(offsets):
        axis = start + i
        if shape[axis] - offset < ref[axis]:
            raise ctx.error(f"on axis {axis} the bottom {shape} is too small to crop "
                            f"{ref[axis]} values from offset {offset} (reference {ref})",
                            "check the offsets and the input shape")
    return CaffeCrop(start, offsets)


class CaffeTile(CaffeModule):
    """Repeat the block of axes from `axis` on, `tiles` times along `axis`."""

    def __init__(self, axis: int, tiles: int) -> None:
        super().__init__()
        self.axis = axis
        self.tiles = tiles

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        repeats = [1] * x.dim()
        repeats[self.axis] = self.tiles
        return x.repeat(repeats)

    def extra_repr(self) -> str:
        return f"axis={self.axis}, tiles={self.tiles}"


@register_layer("Tile")
def convert_tile(layer: Layer, ctx: ConvertContext) -> CaffeModule:
    """Caffe Tile (layers/tile_layer.cpp): repeats the bottom `tiles` times along `axis`
    (default 1): for each position of the earlier axes, the whole block of the axes from `axis`
    on is copied `tiles` times; tiles must be positive."""
    ctx.expect_bottoms(1)
    p = layer.param.tile_param
    axis = ctx.axis(p.axis)
    if p.tiles < 1:
        raise ctx.error(f"tiles is {p.tiles}; it must be a positive number",
                        "set tile_param.tiles")
    return CaffeTile(axis, p.tiles)


class CaffeSilence(CaffeModule):
    """Consumes its bottoms and produces nothing."""

    def forward(self, *bottoms: torch.Tensor) -> tuple[()]:
        return ()


@register_layer("Silence")
def convert_silence(layer: Layer, ctx: ConvertContext) -> CaffeModule:
    """Caffe Silence (layers/silence_layer.cpp): takes any bottoms and has no tops (it only
    stops unused blobs from being reported as net outputs)."""
    if layer.tops:
        raise ctx.error(f"has {len(layer.tops)} tops; Silence has none")
    return CaffeSilence()
