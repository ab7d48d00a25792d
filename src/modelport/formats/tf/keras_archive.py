"""Keras `.keras` archives: a zip of `config.json`, `model.weights.h5` and `metadata.json`.

`model.save("m.keras")` (keras `saving_lib.save_model`) writes the model's serialized config
(`{"class_name": "Functional", "config": {"layers": [...]}}`, nested Functional / Sequential
configs inside) and the Keras 3 weights file (`keras_h5`). The weights file names layers after
their classes (`layers/conv2d_3`); `config.json` supplies the user names, class names and
configs. They are matched as Keras's own loader does (`saving_lib._load_state`): walking a
model's layers in config order, the k-th layer of class C owns the group
`to_snake_case(C)` + (`_k` when k > 0); a Sequential's layers exclude its InputLayer.

The archive is read in memory, never extracted: `config.json` and `model.weights.h5` are read
after their declared sizes are checked (`config.json` against `MAX_CONFIG_BYTES`, the weights
against `MODELPORT_MEMORY_LIMIT`; zipfile stops at the declared size and checks the CRC, so a
zip bomb fails there), and h5py opens the weights from a BytesIO.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path
from typing import Any

from modelport.errors import FormatError
from modelport.formats.tf.keras_h5 import (
    H5Node,
    check_sizes,
    dataset_value,
    entry_name,
    layer_configs,
    load_config_json,
    open_h5,
    order_notes,
    read_keras3_tree,
    subclassed_note,
)
from modelport.formats.tf.keras_layers import MODEL_CLASSES, class_from_group, roles, to_snake_case
from modelport.formats.tf.source import KerasLayer, TFVariable, WeightSource
from modelport.limits import format_bytes, memory_limit

__all__ = ["MAX_CONFIG_BYTES", "is_keras_archive", "read_keras_archive"]

CONFIG = "config.json"
WEIGHTS = "model.weights.h5"
# A config.json takes ~1 KB per layer; 64 MB is ~60,000 layers, far past any published model.
MAX_CONFIG_BYTES = 64 << 20
_WEIGHTED = frozenset({"Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose",
                       "Conv3DTranspose", "DepthwiseConv1D", "DepthwiseConv2D",
                       "SeparableConv1D", "SeparableConv2D", "Dense", "EinsumDense",
                       "BatchNormalization", "Embedding", "PReLU"})


def is_keras_archive(names: list[str]) -> bool:
    """Whether zip member `names` are a .keras archive's (config.json + weights)."""
    return CONFIG in names and (WEIGHTS in names or "model.weights.json" in names)


def _read_member(archive: zipfile.ZipFile, name: str, cap: int | None, label: str) -> bytes:
    info = archive.getinfo(name)
    if cap is not None and info.file_size > cap:
        raise FormatError(f"{label}: {name} declares {format_bytes(info.file_size)} "
                          f"uncompressed, more than the {format_bytes(cap)} allowed. Fix: "
                          "check the file; raise MODELPORT_MEMORY_LIMIT if it is genuine.")
    try:
        return archive.read(info)
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError) as exc:
        raise FormatError(f"{label}: {name} cannot be read from the zip ({exc}).") from None


def read_keras_archive(path: str | Path) -> WeightSource:
    """Read a `.keras` archive (module docstring) into a WeightSource named by config.json."""
    path = Path(path)
    label = str(path)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise FormatError(f"{label}: not a readable zip archive ({exc}).") from None
    with archive:
        names = archive.namelist()
        if "model.weights.json" in names and WEIGHTS not in names:
            raise FormatError(f"{label}: a .keras archive with sharded weights "
                              "(model.weights.json), which is not supported yet. Fix: save "
                              "without max_shard_size.")
        missing = [n for n in (CONFIG, WEIGHTS) if n not in names]
        if missing:
            raise FormatError(f"{label}: a zip but not a .keras archive (no "
                              f"{' and no '.join(missing)}).")
        raw_config = _read_member(archive, CONFIG, MAX_CONFIG_BYTES, label)
        weights = _read_member(archive, WEIGHTS, memory_limit(), label)
    config = load_config_json(raw_config, f"{label}: {CONFIG}")
    if not isinstance(config, dict) or not isinstance(config.get("config"), dict | list):
        raise FormatError(f"{label}: {CONFIG} is not a Keras model config (no class_name / "
                          "config).")
    where = f"{label}!{WEIGHTS}"
    with open_h5(path, weights, where) as (h5, read):
        root, ordered, skipped = read_keras3_tree(h5, read)
        check_sizes([ds for _, ds in root.all_datasets()], where)
        matcher = _Matcher(label)
        if layer_configs(config) or not root.layers:
            matcher.model(config, root, None, None)
        else:
            matcher.unconfigured(root, None, None)
            matcher.configured = False
            matcher.notes += subclassed_note(root.layers)
        layers = [KerasLayer(name, cls, cfg, [TFVariable(p, dataset_value(ds)) for p, ds in dsets],
                             index) for name, cls, cfg, dsets, index in matcher.found]
    for layer in layers:
        found = roles(layer.class_name, len(layer.variables), layer.config)
        for var, role in zip(layer.variables, found, strict=True):
            var.layer, var.role = layer.name, role
    notes = (["layer names, classes and order: config.json"] if matcher.configured else []
             ) + matcher.notes
    if not ordered:
        notes += order_notes(ordered, where)
    if skipped:
        notes.append(f"not read: {', '.join(skipped)} (training state, not model weights)")
    variables = {v.name: v for layer in layers for v in layer.variables}
    names_from = "config.json" if matcher.configured else "h5 name attributes"
    return WeightSource(path, "keras-archive", variables, layers, names_from=names_from,
                        notes=notes)


class _Matcher:
    """Walks config.json and the weights tree together (module docstring)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.found: list[tuple[str, str, dict[str, Any], list[tuple[str, Any]], int | None]] = []
        self.notes: list[str] = []
        self.configured = True  # False: the top model's config lists no layers (subclassed)

    def model(self, entry: dict[str, Any], node: H5Node, outer: str | None,
              index: int | None) -> None:
        entries = layer_configs(entry)
        if entry.get("class_name") == "Sequential":
            entries = [e for e in entries if e.get("class_name") != "InputLayer"]
        children = {c.key: c for c in node.layers or []}
        used: dict[str, int] = {}
        claimed: set[str] = set()
        if node.datasets:
            self.found.append((outer or entry_name(entry) or "model", str(entry.get(
                "class_name", "")), {}, node.datasets, index))
        for position, layer in enumerate(entries):
            class_name = str(layer.get("class_name", ""))
            stem = to_snake_case(class_name)
            key = stem if stem not in used else f"{stem}_{used[stem] + 1}"
            used[stem] = used.get(stem, -1) + 1
            name = entry_name(layer)
            full = f"{outer}/{name}" if outer else name
            at = position if index is None else index
            child = children.get(key)
            group = f"{node.path}/layers/{key}" if node.path else f"layers/{key}"
            if child is None:
                if class_name in _WEIGHTED or _has_weighted(layer):
                    raise FormatError(f"{self.label}: {CONFIG} names layer '{full}' "
                                      f"({class_name}) but {WEIGHTS} has no {group}.")
                continue
            claimed.add(key)
            if child.stored_name is not None and child.stored_name != name:
                raise FormatError(f"{self.label}: {CONFIG} names the layer at {group} "
                                  f"'{name}' but {WEIGHTS} calls it '{child.stored_name}'.")
            if class_name in MODEL_CLASSES or isinstance(_inner(layer).get("layers"), list):
                self.model(layer, child, full, at)
            elif child.layers is not None:
                self.unconfigured(child, full, at)
            elif child.datasets:
                config = _inner(layer)
                expected = roles(class_name, len(child.datasets), config)
                if class_name in _WEIGHTED and None in expected:
                    self.notes.append(f"layer '{full}' ({class_name}): {len(child.datasets)} "
                                      "variables, not what its config makes; roles unknown")
                self.found.append((full, class_name, config, child.datasets, at))
        extra = [k for k in children if k not in claimed and _weighted_node(children[k])]
        if extra:
            where = f"{node.path}/layers" if node.path else "layers"
            raise FormatError(f"{self.label}: {WEIGHTS} holds {where}/{extra[0]} that "
                              f"{CONFIG} does not name"
                              f"{f' (and {len(extra) - 1} more)' if len(extra) > 1 else ''}.")

    def unconfigured(self, node: H5Node, outer: str | None, index: int | None) -> None:
        """A model whose config does not list its layers (a subclassed model): the weights
        file's own names and order."""
        self.notes.append(f"{f'layer {outer!r}' if outer else 'the model'}: no layer list in "
                          "its config; its layers are named and ordered by the weights file")
        for child in node.layers or []:
            short = child.stored_name or child.key
            name = f"{outer}/{short}" if outer else short
            if child.layers is not None:
                self.unconfigured(child, name, index)
            elif child.datasets:
                self.found.append((name, class_from_group(child.key), {}, child.datasets, index))


def _inner(entry: dict[str, Any]) -> dict[str, Any]:
    config = entry.get("config")
    return config if isinstance(config, dict) else {}


def _has_weighted(entry: dict[str, Any]) -> bool:
    return any(str(e.get("class_name")) in _WEIGHTED or _has_weighted(e)
               for e in layer_configs(entry))


def _weighted_node(node: H5Node) -> bool:
    return bool(node.all_datasets())
