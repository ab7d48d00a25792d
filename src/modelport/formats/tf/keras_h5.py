"""Keras weights in HDF5: Keras 3's `.weights.h5` and the Keras 2 `.h5` layouts.

- **Keras 3** (`model.save_weights("m.weights.h5")`, and the `model.weights.h5` inside a
  `.keras`; keras `saving_lib.H5IOStore`): `saving_lib._save_state` walks the model and gives
  every object that owns state a group named after its class, not after the user's name:
  `layers/conv2d/vars/0`, `layers/conv2d_1/vars/0`, a nested model's layers under
  `layers/sequential/layers/...`, a layer's sub-objects under their attribute name
  (`layers/lstm/cell/vars/0`), the optimizer under `optimizer/`. `vars/<i>` is the i-th entry
  of the object's own variables in `layer.weights` order. Recent Keras 3 (3.15 does:
  `_save_state` passes `{"name": layer.name}` to `H5IOStore.make`) also writes the user's
  layer name as the `name` attribute of each `vars` group, and then a group for every layer,
  weightless ones too, so `index` is the position in model.layers; files without those
  attributes keep no user names and only weighted layers, so layers can only be matched by
  position (`names_from="positions"`, `index` None). Files written by Keras 2.13's `.keras`
  saving use `_layer_checkpoint_dependencies` where Keras 3 writes `layers`.
  h5py lists a group's members sorted by name (`batch_normalization` before `conv2d`, and
  `conv2d_10` before `conv2d_2`), which is not `model.layers` order; Keras writes the groups in
  `model.layers` order and the file keeps that creation order in each group's local heap
  (`h5_order`), which is where the order is read from. When that fails (a file rewritten by
  another tool) the layers of one class are put in the order of their counters
  (`conv2d`, `conv2d_1`, ..., `conv2d_10`) and a note says the order across classes is unknown.
- **Keras 2** (tf.keras `model.save("m.h5")` / `save_weights("m.h5")`, Keras 3's legacy
  `.h5` writer): the `layer_names` attribute lists every layer of `model.layers` in order
  (split into `layer_names0`, `layer_names1`, ... when over HDF5's 64 KB attribute limit); each
  layer's group has a `weight_names` attribute in `layer.weights` order (trainable first), the
  datasets stored under those names (`conv1/kernel:0`; Keras 3 drops the `:0`). A full model
  file nests all of it under `model_weights/` and keeps the model's JSON config in the
  `model_config` root attribute, which supplies class names and configs.

Layers of nested models are listed as their own layers, named by path (`block/blk_conv`), with
`index` the position of the outermost layer in `model.layers`. Optimizer state is not read.
"""

from __future__ import annotations

import contextlib
import io
import json
import mmap
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modelport.errors import FormatError
from modelport.formats.tf.h5_heaps import global_heap_problem
from modelport.formats.tf.h5_order import ByteReader, creation_order
from modelport.formats.tf.keras_layers import (
    MODEL_CLASSES,
    class_from_group,
    role_from_name,
    roles,
    split_group_key,
)
from modelport.formats.tf.source import KerasLayer, TFVariable, WeightSource
from modelport.limits import format_bytes, memory_limit
from modelport.optional import require

__all__ = ["H5Node", "check_sizes", "dataset_value", "entry_name", "is_keras_h5", "layer_configs",
           "load_config_json", "open_h5", "order_notes", "read_keras3_tree", "read_keras_h5"]

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_LAYER_LISTS = ("layers", "_layer_checkpoint_dependencies")
_NOT_MODEL_STATE = frozenset({"optimizer", "compile_metrics", "metrics", "loss", "metrics_names"})


def _h5py() -> Any:
    return require("h5py", "tf", "reading Keras .h5 weights")


@contextlib.contextmanager
def open_h5(path: Path, data: bytes | None = None,
            label: str | None = None) -> Iterator[tuple[Any, ByteReader]]:
    """Open `path` (or the bytes `data` that came from it) read-only with h5py, with a reader of
    its raw bytes for `h5_order`; every h5py failure, here or in the caller's block, becomes a
    one-line FormatError naming the file."""
    h5py = _h5py()
    where = label or str(path)
    try:
        if data is not None:
            handle: Any = io.BytesIO(data)

            def read(offset: int, length: int) -> bytes:
                return data[offset:offset + length]
        else:
            handle = open(path, "rb")  # noqa: SIM115 - closed below, after h5py

            def read(offset: int, length: int) -> bytes:
                handle.seek(offset)
                return bytes(handle.read(length))
    except OSError as exc:
        raise FormatError(f"{where}: cannot read the file ({exc.strerror or exc}).") from None
    try:
        _check_heaps(data, handle, where)
        try:
            h5 = h5py.File(handle, "r")
        except (OSError, ValueError, OverflowError) as exc:  # Overflow: h5py's file-object
            # driver, asked by libhdf5 for a read size past ssize_t (a damaged size field)
            raise FormatError(f"{where}: not a readable HDF5 file ({_h5_reason(exc)}).") from None
        try:
            yield h5, read
        except (OSError, KeyError, ValueError, RuntimeError, TypeError, OverflowError) as exc:
            raise FormatError(f"{where}: damaged HDF5 file ({_h5_reason(exc)}).") from None
        finally:
            with contextlib.suppress(Exception):
                h5.close()
    finally:
        handle.close()


def _check_heaps(data: bytes | None, handle: Any, where: str) -> None:
    """FormatError for a global heap libhdf5 would loop on (`h5_heaps`), before h5py reads."""
    if data is not None:
        problem = global_heap_problem(data)
    else:
        try:
            mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):  # an empty file: h5py says what is wrong
            return
        with mapped:
            problem = global_heap_problem(mapped)
    if problem is not None:
        raise FormatError(f"{where}: damaged HDF5 file ({problem}).")


def _h5_reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    m = re.search(r"\(([^()]*)\)\s*$", text)  # h5py: "Unable to open file (file signature ...)"
    return (m.group(1) if m else text)[:160]


def is_keras_h5(h5: Any) -> str | None:
    """Which Keras layout the open file has: "keras3", "keras2-model", "keras2-weights", None."""
    h5py = _h5py()
    if any(isinstance(h5.get(k), h5py.Group) for k in _LAYER_LISTS) or (
            isinstance(h5.get("vars"), h5py.Group)):
        return "keras3"
    if isinstance(h5.get("model_weights"), h5py.Group) and _has_list_attr(
            h5["model_weights"], "layer_names"):
        return "keras2-model"
    if _has_list_attr(h5, "layer_names"):
        return "keras2-weights"
    return None


def _has_list_attr(group: Any, name: str) -> bool:
    return name in group.attrs or f"{name}0" in group.attrs


# ------------------------------------------------------------------------------- reading values


def check_sizes(datasets: list[Any], where: str) -> None:
    """Refuse datasets whose declared bytes exceed the memory limit, before reading them."""
    total = sum(int(ds.size) * int(ds.dtype.itemsize) for ds in datasets)
    cap = memory_limit()
    if cap is not None and total > cap:
        raise FormatError(f"{where}: the weights declare {format_bytes(total)}, more than the "
                          f"memory limit of {format_bytes(cap)}. Fix: raise "
                          "MODELPORT_MEMORY_LIMIT if the file is genuine.")


def dataset_value(ds: Any) -> np.ndarray:
    """A dataset's array in its stored dtype (native byte order); Keras 3 marks bfloat16 with a
    `dtype` attribute on a 2-byte dataset (H5IOStore.__getitem__)."""
    _refuse_vlen(ds.id.get_type(), f"dataset {ds.name}")
    arr = np.asarray(ds[()])
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if attr(ds, "dtype") in ("bfloat16", b"bfloat16") and arr.dtype.itemsize == 2:
        ml_dtypes = require("ml_dtypes", "tf", "reading bfloat16 Keras weights")
        arr = arr.view(ml_dtypes.bfloat16)
    return arr


def _refuse_vlen(type_id: Any, what: str) -> None:
    """Keras stores strings (fixed or variable-length) and numbers, never variable-length
    sequences; libhdf5 1.14 crashes (SIGSEGV) reading a damaged sequence type, so such a type is
    refused (ValueError, inside open_h5) before any value is read."""
    if type_id.get_class() == _h5py().h5t.VLEN:
        # open_h5 makes it a FormatError naming the file
        raise ValueError(f"{what} has a variable-length sequence type, which Keras never writes")


def attr(obj: Any, name: str) -> Any:
    """obj.attrs.get(name), its type checked first (`_refuse_vlen`)."""
    if name not in obj.attrs:
        return None
    h5py = _h5py()
    _refuse_vlen(h5py.h5a.open(obj.id, name.encode()).get_type(),
                 f"attribute {name!r} of {obj.name}")
    return obj.attrs[name]


def _var_keys(group: Any) -> list[str]:
    """A `vars` group's members in Keras's order: by the integer of their names."""
    return sorted(group.keys(), key=lambda k: (0, int(k), "") if k.isdigit() else (1, 0, k))


# --------------------------------------------------------------------------------- Keras 3 tree


@dataclass
class H5Node:
    """One object of a Keras 3 weights file: its group name (`conv2d_1`), full path, the user
    name stored with it (None when the file keeps none), its variables (own `vars` first, then
    those of its sub-objects, as `saving_lib` visits them) and, for a nested model, its layers."""

    key: str
    path: str
    stored_name: str | None
    datasets: list[tuple[str, Any]] = field(default_factory=list)
    layers: list[H5Node] | None = None
    from_attribute: bool = False  # a subclassed model's layer stored under its attribute name

    def all_datasets(self) -> list[tuple[str, Any]]:
        out = list(self.datasets)
        for child in self.layers or []:
            out.extend(child.all_datasets())
        return out


@dataclass
class _Walk:
    read: ByteReader
    ordered: bool = True
    skipped: list[str] = field(default_factory=list)

    def members(self, group: Any) -> list[str]:
        order = creation_order(group, self.read)
        if order is not None:
            return order
        self.ordered = False

        def key(name: str) -> tuple[str, int, str]:
            stem, n = split_group_key(name)
            return stem, n, name
        return sorted(group.keys(), key=key)


def read_keras3_tree(h5: Any, read: ByteReader) -> tuple[H5Node, bool, list[str]]:
    """The root object of a Keras 3 weights file, whether the creation order was read (else the
    counters' order, see the module docstring), and the top-level groups left out (optimizer)."""
    walk = _Walk(read)
    root = _node(h5, "", "", walk, top=True)
    return root, walk.ordered, walk.skipped


def _node(group: Any, key: str, path: str, walk: _Walk, top: bool = False) -> H5Node:
    h5py = _h5py()
    stored = None
    node = H5Node(key, path, None)
    for name in walk.members(group):
        child = group[name]
        child_path = f"{path}/{name}" if path else name
        if not isinstance(child, h5py.Group):
            continue
        if name == "vars":
            raw = attr(child, "name")
            stored = raw.decode() if isinstance(raw, bytes) else raw
            node.datasets.extend((f"{child_path}/{k}", child[k]) for k in _var_keys(child)
                                 if isinstance(child[k], h5py.Dataset))
        elif name in _LAYER_LISTS:
            node.layers = (node.layers or []) + [
                _node(child[k], k, f"{child_path}/{k}", walk) for k in walk.members(child)
                if isinstance(child[k], h5py.Group)]
        elif top and name in _NOT_MODEL_STATE:
            walk.skipped.append(name)
        elif top:
            # a subclassed model's layers sit under their attribute names at the top
            sub = _node(child, name, child_path, walk)
            sub.from_attribute = True
            node.layers = (node.layers or []) + [sub]
        else:
            # a layer's sub-object (an RNN's cell, a custom layer's inner layer): its variables
            # are the layer's own, after the layer's `vars` (saving_lib visits it later)
            sub = _node(child, name, child_path, walk)
            node.datasets.extend(sub.all_datasets())
    node.stored_name = stored if isinstance(stored, str) else None
    return node


def _keras3_source(path: Path, h5: Any, read: ByteReader, label: str) -> WeightSource:
    root, ordered, skipped = read_keras3_tree(h5, read)
    if root.layers is None and not root.datasets:
        raise FormatError(f"{label}: a Keras 3 weights file without any layer (no layers/ "
                          "group with vars).")
    tops = root.layers or []
    check_sizes([ds for _, ds in root.all_datasets()], label)
    # Keras writes a group for every layer (weightless too) exactly when it writes names
    complete = bool(tops) and all(n.stored_name is not None and not n.from_attribute
                                  for n in tops)
    layers: list[KerasLayer] = []
    for position, top in enumerate(tops):
        for name, node in _leaves(top, None):
            variables = [TFVariable(p, dataset_value(ds)) for p, ds in node.datasets]
            if not variables:
                continue
            class_name = class_from_group(node.key)
            for var, role in zip(variables, roles(class_name, len(variables)), strict=True):
                var.layer, var.role = name, role
            layers.append(KerasLayer(name, class_name, {}, variables,
                                     position if complete else None))
    if root.datasets:
        variables = [TFVariable(p, dataset_value(ds), root.stored_name or "model") for p, ds in
                     root.datasets]
        layers.append(KerasLayer(root.stored_name or "model", "", {}, variables, None))
    named = all(n.stored_name is not None for n in tops)
    notes = order_notes(ordered, label) + subclassed_note(tops)
    if skipped:
        notes.append(f"not read: {', '.join(skipped)} (training state, not model weights)")
    return WeightSource(path, "keras3-weights-h5", _by_name(layers), layers,
                        names_from="h5 name attributes" if named else "positions", notes=notes)


def subclassed_note(tops: list[H5Node]) -> list[str]:
    """saving_lib visits a subclassed model's attributes in sorted order before its `layers`
    list, so layers held in attributes come first, sorted by attribute name."""
    held = [n.key for n in tops if n.from_attribute]
    if not held:
        return []
    return [f"a subclassed model: {', '.join(held)} are stored under attribute names, in "
            "sorted order, not in model.layers order"]


def order_notes(ordered: bool, label: str) -> list[str]:
    """The WeightSource note saying where the layer order came from."""
    if ordered:
        return ["layer order: the creation order of the HDF5 groups (Keras writes them in "
                "model.layers order)"]
    return [f"{label}: the HDF5 groups' creation order is not readable; layers of one class "
            "are in the order of their counters, the order across classes is unknown"]


def _leaves(node: H5Node, outer: str | None) -> Iterator[tuple[str, H5Node]]:
    name = node.stored_name or node.key
    full = f"{outer}/{name}" if outer else name
    if node.layers is None:
        yield full, node
        return
    if node.datasets:
        yield full, H5Node(node.key, node.path, node.stored_name, node.datasets)
    for child in node.layers:
        yield from _leaves(child, full)


def _by_name(layers: list[KerasLayer]) -> dict[str, TFVariable]:
    return {v.name: v for layer in layers for v in layer.variables}


# --------------------------------------------------------------------------------- Keras 2 h5


def _list_attr(group: Any, name: str) -> list[str]:
    """Keras 2's `load_attributes_from_hdf5_group`: the list, or its `name0`, `name1` chunks."""
    if name in group.attrs:
        raw = list(np.atleast_1d(attr(group, name)))
    else:
        raw = []
        i = 0
        while f"{name}{i}" in group.attrs:
            raw.extend(np.atleast_1d(attr(group, f"{name}{i}")))
            i += 1
    return [r.decode("utf-8") if isinstance(r, bytes) else str(r) for r in raw]


def _model_config(h5: Any, label: str) -> dict[str, Any] | None:
    raw = attr(h5, "model_config")
    if raw is None:
        return None
    config = load_config_json(raw, f"{label}: the model_config attribute")
    return config if isinstance(config, dict) else None


# Keras configs nest a few levels per nested model; json's decoder (and the walks over the
# config) recurse once per level, so deeper documents are refused before they are walked.
MAX_CONFIG_DEPTH = 200


def load_config_json(raw: bytes | str, what: str) -> Any:
    """A Keras config document; FormatError naming `what` when it is not JSON or nests more
    than MAX_CONFIG_DEPTH levels."""
    deep = FormatError(f"{what} nests more than {MAX_CONFIG_DEPTH} levels of JSON (Keras "
                       "model configs nest a few levels per nested model).")
    try:
        config = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else str(raw))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(f"{what} is not JSON ({exc}).") from None
    except RecursionError:
        raise deep from None
    if _depth_over(config, MAX_CONFIG_DEPTH):
        raise deep
    return config


def _depth_over(doc: Any, limit: int) -> bool:
    """Whether lists / dicts in `doc` nest deeper than `limit` (iterative: no recursion)."""
    todo = [(doc, 1)]
    while todo:
        value, depth = todo.pop()
        if isinstance(value, dict | list):
            if depth > limit:
                return True
            todo.extend((v, depth + 1) for v in (value.values() if isinstance(value, dict)
                                                 else value))
    return False


def layer_configs(model: dict[str, Any]) -> list[dict[str, Any]]:
    """The layer entries of a Keras model config (Functional / Sequential, Keras 2 and 3; a
    Keras 2 Sequential's config may be the list itself)."""
    config = model.get("config")
    entries = config.get("layers") if isinstance(config, dict) else config
    return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []


def entry_name(entry: dict[str, Any]) -> str:
    """A Keras config entry's layer name (top level or in its config), or ""."""
    config = entry.get("config")
    name = entry.get("name") or (config.get("name") if isinstance(config, dict) else None)
    return str(name) if name is not None else ""


def _keras2_source(path: Path, h5: Any, kind: str, label: str) -> WeightSource:
    root = h5["model_weights"] if kind == "keras2-model" else h5
    prefix = "model_weights/" if kind == "keras2-model" else ""
    model = _model_config(h5, label)
    by_name = {entry_name(e): e for e in layer_configs(model)} if model else {}
    names = _list_attr(root, "layer_names")
    groups = []
    for name in names:
        group = root.get(name)
        if group is None:
            raise FormatError(f"{label}: layer_names lists '{name}' but the file has no group "
                              "of that name.")
        weight_names = _list_attr(group, "weight_names")
        h5py = _h5py()
        missing = [w for w in weight_names if not isinstance(group.get(w), h5py.Dataset)]
        if missing:
            raise FormatError(f"{label}: layer '{name}' lists weight '{missing[0]}' that the "
                              "file does not hold as a dataset.")
        groups.append((name, group, weight_names))
    check_sizes([g[w] for _, g, ws in groups for w in ws], label)
    layers: list[KerasLayer] = []
    for index, (name, group, weight_names) in enumerate(groups):
        entry = by_name.get(name)
        for leaf, entry_of, stored in _keras2_leaves(name, weight_names, entry):
            class_name = str(entry_of.get("class_name", "")) if entry_of else ""
            config = entry_of.get("config") if entry_of else None
            variables = [TFVariable(f"{prefix}{name}/{w}", dataset_value(group[w]), leaf,
                                    role_from_name(w, class_name)) for w in stored]
            layers.append(KerasLayer(leaf, class_name, config if isinstance(config, dict) else {},
                                     variables, index))
    notes = ["layer names and order: the layer_names attribute"]
    if model is not None:
        notes.append("class names and configs: the model_config attribute")
    return WeightSource(path, "keras2-h5", _by_name(layers), layers,
                        names_from="h5 layer_names", notes=notes)


def _keras2_leaves(layer: str, weight_names: list[str], entry: dict[str, Any] | None
                   ) -> list[tuple[str, dict[str, Any] | None, list[str]]]:
    """Split one layer group's weights into leaf layers: a nested model's weights are named
    `<inner layer>/<weight>` (tf.keras) or `<model>/<inner layer>/<weight>` (Keras 3)."""
    prefixes: dict[str, list[str]] = {}
    for w in weight_names:
        rel = re.sub(r":\d+$", "", w)
        if rel.startswith(layer + "/"):
            rel = rel[len(layer) + 1:]
        prefixes.setdefault(rel.rpartition("/")[0], []).append(w)
    nested = entry is not None and entry.get("class_name") in MODEL_CLASSES
    if not weight_names or (not nested and (entry is not None or len(prefixes) == 1)):
        return [(layer, entry, weight_names)] if weight_names else []
    inner = {entry_name(e): e for e in layer_configs(entry)} if entry else {}
    out = [(f"{layer}/{p}" if p else layer, inner.get(p.rsplit("/", 1)[-1]), ws)
           for p, ws in prefixes.items()]
    if inner:  # the nested config's layer order, which weight order only approximates
        rank = {n: i for i, n in enumerate(inner)}
        out.sort(key=lambda t: rank.get(t[0].rsplit("/", 1)[-1], len(rank)))
    return out


# ------------------------------------------------------------------------------------- entry


def read_keras_h5(path: str | Path, data: bytes | None = None,
                  label: str | None = None) -> WeightSource:
    """Read a Keras `.h5` / `.weights.h5` file (module docstring) into a WeightSource."""
    path = Path(path)
    where = label or str(path)
    with open_h5(path, data, where) as (h5, read):
        kind = is_keras_h5(h5)
        if kind is None:
            keys = ", ".join(sorted(h5.keys())[:5]) or "nothing"
            raise FormatError(f"{where}: an HDF5 file but not Keras weights (no layers/ or "
                              f"model_weights/ group, no layer_names attribute; it holds {keys}).")
        if kind == "keras3":
            return _keras3_source(path, h5, read, where)
        return _keras2_source(path, h5, kind, where)
