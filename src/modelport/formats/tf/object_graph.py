"""TF2 object-based checkpoints: recover Keras layers from the TrackableObjectGraph.

`tf.train.Checkpoint(model=model).write(prefix)` (and tf.keras's `model.save_weights` in the
TF format) stores, next to the variables, the `_CHECKPOINTABLE_OBJECT_GRAPH` string tensor: a
serialized `TrackableObjectGraph` (tensorflow/core/protobuf/trackable_object_graph.proto).
Node 0 is the root object; each node lists its children by local name (`node_id`s, so one
object reachable by two paths is one node) and its serialized tensors: a variable's node has
the attribute `VARIABLE_VALUE` with the variable's `full_name` (Keras's variable path,
`conv_a/kernel`) and the `checkpoint_key` of its value in the bundle. A checkpoint key is the
*shortest* path to the object (TF's breadth-first naming), so it does not say which layer owns
a variable: when the optimizer is saved too, a layer's kernel is stored as
`optimizer/_trainable_variables/0/.ATTRIBUTES/VARIABLE_VALUE`. Layers are therefore found by
walking the graph from the model, never by parsing keys.

- **Keras 3** models track their layers in `_operations`, children named `0`, `1`, ... by
  position in `model.layers` (TF lists them sorted as strings, `10` before `2`: they are
  ordered by the integer here); a Sequential keeps them in `_functional/_operations` (position
  0 is its InputLayer). Conv2D and Dense keep their kernel as `_kernel`.
- **Keras 2 / tf.keras** models track `layer-<i>` (position i in `model.layers`) and the same
  objects again as `layer_with_weights-<j>`.
- Anything else (a tf.Module, a subclassed model) is walked in the graph's child order.

A layer is an object with variables of its own; its name is its variables' Keras path without
the last component (`block/blk_conv`), else its path in the graph. Checkpoints keep no class
names or configs (`class_name` ""), and roles come from the variable names (`_kernel` ->
`kernel`; a Keras 3 DepthwiseConv2D's kernel stays `kernel`, the class being unknown).
Variables reachable only from the optimizer or the checkpoint itself (`save_counter`, slots,
iterations) are left out, and a note counts them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modelport.errors import FormatError
from modelport.formats.tf.keras_layers import role_from_name
from modelport.formats.tf.source import KerasLayer, TFVariable, WeightSource

__all__ = ["OBJECT_GRAPH_KEY", "parse_object_graph", "read_object_graph_source"]

OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
_SKIP = frozenset({"optimizer", "save_counter", "_compiled_trainable_state"})
# Keras 3 Layer attributes that hold no layer state (bookkeeping lists, call signature).
_KERAS_BOOKKEEPING = frozenset({"_inbound_nodes", "_outbound_nodes", "_losses",
                                "_losses_override", "call_signature_parameters",
                                "_call_has_context_arg"})
_KERAS2_LAYER = re.compile(r"layer-(\d+)")
_KERAS2_WEIGHTED = re.compile(r"layer_with_weights-(\d+)")
# Objects nest a few levels per nested model or wrapped layer; the walks recurse per level.
MAX_DEPTH = 200


def parse_object_graph(raw: Any, label: str) -> Any:
    """The TrackableObjectGraph message from the `_CHECKPOINTABLE_OBJECT_GRAPH` value (bytes,
    or a 0-d string array as a checkpoint reader returns it)."""
    from modelport.schema.tf import trackable_object_graph_pb2 as pb

    if isinstance(raw, np.ndarray):
        raw = raw.reshape(-1)[0] if raw.size == 1 else b""
    if isinstance(raw, str):
        raw = raw.encode("latin-1")
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise FormatError(f"{label}: {OBJECT_GRAPH_KEY} is not a string tensor.")
    graph = pb.TrackableObjectGraph()
    try:
        graph.ParseFromString(bytes(raw))
    except Exception as exc:  # protobuf's DecodeError (and its C++ twin) have no common base
        raise FormatError(f"{label}: {OBJECT_GRAPH_KEY} is not a TrackableObjectGraph "
                          f"({type(exc).__name__}).") from None
    if not graph.nodes:
        raise FormatError(f"{label}: {OBJECT_GRAPH_KEY} holds an empty object graph.")
    return graph


@dataclass
class _Walk:
    graph: Any
    entries: Mapping[str, np.ndarray]
    label: str
    visited: set[int] = field(default_factory=set)
    layers: list[KerasLayer] = field(default_factory=list)
    style: set[str] = field(default_factory=set)
    paths: list[str] = field(default_factory=list)  # each layer's path in the graph

    def node(self, node_id: int) -> Any:
        if not 0 <= node_id < len(self.graph.nodes):
            raise FormatError(f"{self.label}: the object graph refers to node {node_id} of "
                              f"{len(self.graph.nodes)}.")
        return self.graph.nodes[node_id]

    def variable_key(self, node_id: int) -> tuple[str, str] | None:
        for attr in self.node(node_id).attributes:
            if attr.name == "VARIABLE_VALUE":
                return attr.checkpoint_key, attr.full_name
        return None

    def ordered_children(self, node: Any) -> list[tuple[str, int, int | None]]:
        """(local name, node id, model.layers position) of the children to walk, in order."""
        kids = [(c.local_name, c.node_id) for c in node.children]
        names = dict(kids)
        keras2 = sorted((int(m.group(1)), n, i) for n, i in kids
                        if (m := _KERAS2_LAYER.fullmatch(n)))
        if keras2:
            self.style.add("keras2")
            ordered: list[tuple[str, int, int | None]] = [(n, i, pos) for pos, n, i in keras2]
            return ordered + [(n, i, None) for n, i in kids if not _KERAS2_LAYER.fullmatch(n)
                              and not _KERAS2_WEIGHTED.fullmatch(n)]
        if "_operations" in names or "_functional" in names:
            self.style.add("keras3")
        out: list[tuple[str, int, int | None]] = []
        for name, node_id in kids:
            if name in _KERAS_BOOKKEEPING or name in _SKIP:
                continue
            if name == "_operations":
                ops = self.node(node_id)
                numbered = sorted((int(c.local_name), c.node_id) for c in ops.children
                                   if c.local_name.isdigit())
                out.extend((f"_operations/{pos}", i, pos) for pos, i in numbered)
            else:
                out.append((name, node_id, None))
        return out

    def is_model(self, node: Any) -> bool:
        """A Keras model: it tracks its layers by position (`_operations`, a Sequential's
        `_functional`, tf.keras `layer-<i>`)."""
        return any(c.local_name in ("_operations", "_functional")
                   or _KERAS2_LAYER.fullmatch(c.local_name) for c in node.children)

    def walk(self, node_id: int, path: str, index: int | None, shift: int = 0,
             depth: int = 0) -> None:
        """Collect the layers under `node_id`; `index` is the outermost model.layers position
        (None above it); `shift` 1 inside a Sequential's `_functional`, whose position 0 is the
        InputLayer that `Sequential.layers` leaves out."""
        if node_id in self.visited:
            return
        self.check_depth(depth)
        self.visited.add(node_id)
        node = self.node(node_id)
        own: list[tuple[str, str, str, int]] = []  # (checkpoint key, full name, local, depth)
        subs = []
        for name, child, position in self.ordered_children(node):
            if self.is_variable(child):
                if child not in self.visited:
                    self.visited.add(child)
                    own.append((*self.variable(child), name, 1))
            else:
                subs.append((name, child, position))
        if own:
            self._layer(own, path, index)
        for name, child, position in subs:
            if name == "_functional":  # a Sequential's inner Functional: same layers
                start = len(self.layers)
                self.walk(child, path, index, shift=1, depth=depth + 1)
                if index is None:
                    self._strip_model_name(self.layers[start:])
                continue
            at = index if index is not None else position
            if at is not None and index is None:
                at -= shift
            child_path = f"{path}/{name}" if path else name
            if position is not None and not self.is_model(self.node(child)):
                self._entry(child, child_path, at, depth + 1)  # a model.layers entry
            else:
                self.walk(child, child_path, at, depth=depth + 1)

    def check_depth(self, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise FormatError(f"{self.label}: the object graph nests objects more than "
                              f"{MAX_DEPTH} levels deep (Keras models nest a few levels per "
                              "nested model).")

    def variable(self, node_id: int) -> tuple[str, str]:
        found = self.variable_key(node_id)
        if found is None:
            raise FormatError(f"{self.label}: object graph node {node_id} is not a variable.")
        return found

    def is_variable(self, node_id: int) -> bool:
        return self.variable_key(node_id) is not None and not self.node(node_id).children

    def _entry(self, node_id: int, path: str, index: int | None, outer: int = 0) -> None:
        """A layer of model.layers: every variable of its sub-objects is its own (an RNN's
        cell, a wrapper's inner layer), depth first in child order."""
        found: list[tuple[str, str, str, int]] = []

        def collect(nid: int, depth: int) -> None:
            self.check_depth(depth + outer)
            if nid in self.visited:
                return
            self.visited.add(nid)
            for name, child, _ in self.ordered_children(self.node(nid)):
                if self.is_variable(child):
                    if child not in self.visited:
                        self.visited.add(child)
                        key, full = self.variable(child)
                        found.append((key, full, name, depth))
                else:
                    collect(child, depth + 1)
        collect(node_id, 1)
        if found:
            self._layer(found, path, index)

    @staticmethod
    def _strip_model_name(layers: list[KerasLayer]) -> None:
        """A top-level Sequential builds its layers in its own name scope (`sequential/conv/
        kernel`) while `model.layers[i].name` is `conv`: drop the shared first component."""
        firsts = {layer.name.split("/", 1)[0] for layer in layers}
        if len(firsts) != 1 or not all("/" in layer.name for layer in layers):
            return
        for layer in layers:
            layer.name = layer.name.split("/", 1)[1]
            for var in layer.variables:
                var.layer = layer.name

    def _layer(self, found: list[tuple[str, str, str, int]], path: str,
               index: int | None) -> None:
        """One layer from its variables (key, Keras path, local name, depth below the layer).
        Its name is the Keras path of a variable without the `depth` last components (the
        shallowest variable's), else its path in the graph."""
        depth = min(d for *_, d in found)
        names = {full.rsplit("/", depth)[0] for _, full, _, d in found
                 if d == depth and full.count("/") >= depth}
        name = names.pop() if len(names) == 1 else path or "root"
        variables = []
        for key, _full, local, _ in found:
            if key not in self.entries:
                raise FormatError(f"{self.label}: the object graph names variable {key} "
                                  "that the checkpoint does not hold.")
            variables.append(TFVariable(key, self.entries[key], name, role_from_name(local)))
        self.layers.append(KerasLayer(name, "", {}, variables, index))
        self.paths.append(path or "root")


def _unique_names(layers: list[KerasLayer], paths: list[str], wrapped: bool) -> None:
    """Layers whose Keras paths collide (Keras 3 names a subclassed model's variables
    `<model>/kernel`) are named by their path in the graph (`zeta`; without the
    tf.train.Checkpoint keyword, `model/`, when the root is such a wrapper) instead."""
    if wrapped:
        paths = [p.split("/", 1)[1] if "/" in p else p for p in paths]
    counts: dict[str, int] = {}
    for layer in layers:
        counts[layer.name] = counts.get(layer.name, 0) + 1
    for layer, path in zip(layers, paths, strict=True):
        if counts[layer.name] > 1:
            layer.name = path
            for var in layer.variables:
                var.layer = path


def read_object_graph_source(path: str | Path, entries: Mapping[str, np.ndarray],
                             label: str | None = None) -> WeightSource:
    """The layers of a TF2 object-based checkpoint whose variables are `entries` (name ->
    value, as the bundle reader returns them, `_CHECKPOINTABLE_OBJECT_GRAPH` included)."""
    path = Path(path)
    where = label or str(path)
    if OBJECT_GRAPH_KEY not in entries:
        raise FormatError(f"{where}: not an object-based checkpoint (no {OBJECT_GRAPH_KEY}).")
    graph = parse_object_graph(entries[OBJECT_GRAPH_KEY], where)
    walk = _Walk(graph, entries, where)
    root = graph.nodes[0]
    skipped = [c for c in root.children if c.local_name in _SKIP]
    walk.visited.update(c.node_id for c in skipped)
    walk.walk(0, "", None)
    layers = walk.layers
    _unique_names(layers, walk.paths, wrapped=not walk.is_model(root))
    kept = {v.name for layer in layers for v in layer.variables}
    left = sorted(k for k in entries if k not in kept and k != OBJECT_GRAPH_KEY)
    notes = ["layer names: the variables' Keras paths in the object graph"]
    if "keras3" in walk.style:
        notes.append("layer order: Keras 3 _operations positions (by integer)")
    if "keras2" in walk.style:
        notes.append("layer order: tf.keras layer-<i> positions")
    if left:
        notes.append(f"not read: {len(left)} variables of the optimizer / the checkpoint "
                     f"itself (e.g. {left[0]})")
    variables = {v.name: v for layer in layers for v in layer.variables}
    return WeightSource(path, "tf2-object-checkpoint", variables, layers,
                        names_from="object graph", notes=notes)
