"""Caffe's ImageData layer (src/caffe/layers/image_data_layer.cpp) as an item source.

The `source` list holds one `path label` per line (split at the line's last space, the label
read with atoi); image `root_folder + path` is read with OpenCV (`is_color` -> IMREAD_COLOR or
IMREAD_GRAYSCALE), resized to new_height x new_width (INTER_LINEAR) when both are set, and
transformed by the layer's DataTransformer. Lines are used in order from `rand_skip`'s random
start (uniform in [0, rand_skip)), wrapping around at the end; with `shuffle` the order is
reshuffled at setup and after every pass. Shuffles and skips use the caller's seed, or Caffe's
own streams under Solver(rng="caffe") (modelport.train.caffe_replay).
"""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np

from modelport.errors import ModelportError
from modelport.ir import Layer
from modelport.train.data_source import (
    STREAM_SHUFFLE,
    STREAM_SKIP,
    ItemSource,
    read_list_lines,
    stream_rng,
)
from modelport.train.transform import DataTransformer, read_image, resolve_path

_ATOI = re.compile(r"\s*([+-]?\d+)")


def parse_image_list(lines: list[str], layer: Layer, source: str) -> list[tuple[str, int]]:
    """`path label` pairs as Caffe's ImageDataLayer reads them (split at the last space)."""
    pairs = []
    for number, line in enumerate(lines, 1):
        pos = line.rfind(" ")
        match = _ATOI.match(line[pos + 1:]) if pos >= 0 else None
        if pos <= 0 or match is None:
            if not line.strip():
                continue  # Caffe would fail later on an empty path; skip blank lines instead
            from modelport.errors import LayerError

            raise LayerError(layer.name, layer.type,
                             f"line {number} of '{source}' is not 'path label': {line[:80]!r}",
                             "write one image path and an integer label per line")
        pairs.append((line[:pos], int(match.group(1))))
    return pairs


class ImageDataSource(ItemSource):
    """Items of an ImageData layer: (transformed image, label)."""

    def __init__(self, layer: Layer, transformer: DataTransformer,
                 base_dir: str | os.PathLike[str] | None, seed: int) -> None:
        p = layer.param.image_data_param
        self.layer_name, self.layer_type = layer.name, layer.type
        self.tops = tuple(layer.tops)
        if len(self.tops) != 2:
            raise self.error(f"has {len(self.tops)} tops; ImageData produces exactly two "
                             "(data and label)", "list two tops")
        self.batch_size = int(p.batch_size)
        if self.batch_size <= 0:
            raise self.error("image_data_param.batch_size must be positive")
        if (p.new_height > 0) != (p.new_width > 0):
            raise self.error("new_height and new_width must be set together",
                             "set both (or neither)")
        self.new_height, self.new_width = int(p.new_height), int(p.new_width)
        self.is_color = bool(p.is_color)
        self.root_folder = p.root_folder
        self.base_dir = base_dir
        self.seed = seed
        self.shuffle = bool(p.shuffle)
        self.transformer = transformer
        self.source_path = resolve_path(p.source, base_dir)
        lines = read_list_lines(self.source_path, (layer.name, layer.type), "image list")
        self.lines = parse_image_list(lines, layer, self.source_path)
        if not self.lines:
            raise self.error(f"image list '{self.source_path}' is empty")
        self.skip = 0
        if p.rand_skip:
            self.skip = int(stream_rng(seed, STREAM_SKIP, 0).integers(p.rand_skip))
            if self.skip >= len(self.lines):
                raise self.error(f"rand_skip drew {self.skip} but the list has only "
                                 f"{len(self.lines)} images", "lower rand_skip")
        self._order_epoch = -1
        self._order = np.arange(len(self.lines))
        self._caffe_order: Any = None

    def use_caffe_order(self, order: Any) -> None:
        """Take the line order of every pass from Caffe's `prefetch_rng_` shuffles
        (modelport.train.caffe_replay.CaffeOrder), as Solver(rng="caffe") does."""
        self._caffe_order = order
        self._order_epoch = -1

    def __len__(self) -> int:
        return len(self.lines)

    def line_index(self, k: int) -> int:
        """Which list line stream item k reads."""
        epoch, i = divmod(self.skip + k, len(self.lines))
        if not self.shuffle:
            return i
        if epoch != self._order_epoch:
            if self._caffe_order is not None:
                self._order = self._caffe_order.order(epoch)
            else:
                self._order = stream_rng(self.seed, STREAM_SHUFFLE,
                                         epoch).permutation(len(self.lines))
            self._order_epoch = epoch
        return int(self._order[i])

    def describe(self, k: int) -> str:
        return f"image '{self.root_folder + self.lines[self.line_index(k)][0]}'"

    def item(self, k: int) -> tuple[np.ndarray, float]:
        index = self.line_index(k)
        rel, label = self.lines[index]
        path = resolve_path(self.root_folder + rel, self.base_dir)
        try:
            img = read_image(path, self.is_color, self.new_height, self.new_width)
            rng = self.transform_rng(k, self.seed, self.transformer.needs_rand)
            data = self.transformer.transform_image(img, rng)
        except ModelportError as exc:
            # keep the reader's own fix when it gave one (one "Fix:" per message)
            fix = None if "Fix:" in str(exc) else ("paths are root_folder + the listed path, "
                                                   "relative to Caffe's working directory "
                                                   "(base_dir)")
            raise self.error(f"line {index + 1} of '{self.source_path}': {exc}", fix) from None
        return data, float(label)
