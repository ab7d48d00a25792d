"""Net surgery by Caffe layer name: cut, replace, freeze, lr_mult presets, export.

What Caffe users do by hand-editing a prototxt before `caffe train --weights=...`:

* `cut(net, after="fc7")` drops every layer after `fc7` in Caffe's layer order (in-place layers
  that follow it, such as `relu7`/`drop7`, are dropped too: cut after `drop7` to keep them).
* `replace(net, "fc8", num_output=31, filler=...)` gives a layer a new width and fresh weights
  drawn with Caffe's fillers (include/caffe/filler.hpp), as Caffe does for a layer that the
  pretrained caffemodel does not provide (a renamed fc8 in the fine-tuning recipes).
* `freeze(net, through="conv5")` sets `lr_mult: 0` on every blob of every layer up to and
  including `conv5` (Caffe then never updates them: SGDSolver scales each blob's step by
  base_lr * lr_mult, and weight decay is added to the diff before that scaling).
* `set_lr_mults(net, new_layers=...)` applies the fine-tuning convention of the Caffe model zoo
  and of the domain-adaptation papers: pretrained weights 1x, pretrained biases 2x (decay 0),
  new layers 10x weights / 20x biases.
* `export(net, "deploy.prototxt", "weights.caffemodel")` writes the edited net back.

Every function takes an IR `Net` and returns a new one (the IR is immutable); `Surgery` chains
them and remembers which layers are new. `param_groups(module)` turns the lr_mult/decay_mult of
a converted `CaffeNet` into torch optimizer parameter groups.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from modelport.atomic import write_bytes, write_text, write_with
from modelport.errors import ConfigError, LayerError
from modelport.formats.caffe import caffe_pb2
from modelport.ir import Blob, Layer, Net
from modelport.layers.params import blob_params, net_blob_params
from modelport.layers.registry import STATISTIC, facts, layer_types

FillerSpec = caffe_pb2.FillerParameter | Mapping[str, Any] | str | None

# ----------------------------------------------------------------------------- lookups

def layer_index(net: Net, name: str) -> int:
    """Position of layer `name` in Caffe's order; a ConfigError naming close matches if absent."""
    for i, layer in enumerate(net.layers):
        if layer.name == name:
            return i
    names = [lay.name for lay in net.layers]
    close = difflib.get_close_matches(name, names, n=3)
    hint = f"did you mean {', '.join(repr(c) for c in close)}?" if close else (
        "run `modelport inspect` to list the layer names")
    raise ConfigError(f"{net.source}: no layer named '{name}'. Fix: {hint}")


def blob_count(layer: Layer) -> int:
    """How many learnable blobs `layer` has: its stored blobs, else what its type declares
    (the blob roles registered with its converter)."""
    return len(blob_params(layer))


def is_bias_blob(layer: Layer, index: int) -> bool:
    """True for a bias blob (the blob the 2x lr convention targets), as its type declares."""
    params = blob_params(layer)
    return index < len(params) and params[index].is_bias


def param_mults(layer: Layer) -> list[tuple[float, float]]:
    """(lr_mult, decay_mult) of each blob, with Caffe's defaults for unlisted blobs (1, 1).

    Statistics blobs (BatchNorm's three) are never learned: Caffe's BatchNormLayer::LayerSetUp
    forces their lr_mult to 0 (batch_norm_layer.cpp); decay_mult stays as given.
    """
    return [(b.lr_mult, b.decay_mult) for b in blob_params(layer)]


def _with_param(layer: Layer, param: caffe_pb2.LayerParameter,
                blobs: tuple[Blob, ...] | None = None) -> Layer:
    return Layer(param.name, param.type, tuple(param.bottom), tuple(param.top), param,
                 layer.blobs if blobs is None else blobs)


def _set_mults(layer: Layer, mults: Sequence[tuple[float, float]]) -> Layer:
    """A copy of `layer` whose ParamSpecs carry `mults` (shared-param names are kept)."""
    param = caffe_pb2.LayerParameter()
    param.CopyFrom(layer.param)
    while len(param.param) < len(mults):
        param.param.add()
    for spec, (lr, decay) in zip(param.param, mults):
        spec.lr_mult = lr
        spec.decay_mult = decay
    return _with_param(layer, param)


def _replace_layers(net: Net, layers: Iterable[Layer]) -> Net:
    return Net(net.name, tuple(layers), net.source, net.phase, net.notes)


# ----------------------------------------------------------------------------- edits

def cut(net: Net, after: str) -> Net:
    """Drop every layer after `after` (in Caffe's layer order); `after` itself is kept."""
    i = layer_index(net, after)
    return _replace_layers(net, net.layers[: i + 1])


def freeze(net: Net, through: str) -> Net:
    """lr_mult 0 on every blob of every layer up to and including `through`.

    decay_mult is kept: with lr_mult 0 Caffe's update is zero whatever the decay.
    """
    last = layer_index(net, through)
    layers = []
    for i, layer in enumerate(net.layers):
        n = blob_count(layer)
        if i <= last and n:
            layer = _set_mults(layer, [(0.0, d) for _, d in param_mults(layer)])
        layers.append(layer)
    return _replace_layers(net, layers)


@dataclass(frozen=True)
class LrPreset:
    """lr_mult / decay_mult for pretrained and new layers (Caffe fine-tuning convention)."""

    weight: float = 1.0
    bias: float = 2.0
    new_weight: float = 10.0
    new_bias: float = 20.0
    weight_decay: float = 1.0
    bias_decay: float = 0.0


# The recipe of Caffe's finetune_flickr_style example and of the Office-31 baselines:
# 1x pretrained weights, 2x pretrained biases, 10x new weights, 20x new biases; biases decay 0.
FINETUNE = LrPreset()


def set_lr_mults(net: Net, new_layers: Iterable[str] = (), preset: LrPreset = FINETUNE,
                 keep_frozen: bool = True) -> Net:
    """Apply `preset` to every layer with learnable blobs.

    Layers in `new_layers` get the new-layer multipliers; others the pretrained ones. With
    `keep_frozen`, blobs already at lr_mult 0 (frozen) stay frozen. BatchNorm statistics are
    never learned and keep lr_mult 0.
    """
    new = set(new_layers)
    for name in new:
        layer_index(net, name)
    layers = []
    # A shared blob has its owner's lr_mult (a frozen owner keeps its sharers frozen); these
    # edits write every rate, so a sharer that disagrees is not refused here.
    for layer, blobs in net_blob_params(net.layers, check=False):
        current = [(b.lr_mult, b.decay_mult) for b in blobs]
        if not current or all(b.role == STATISTIC for b in blobs):
            layers.append(_set_mults(layer, current) if current else layer)
            continue
        mults = []
        for blob in blobs:
            lr, bias = blob.lr_mult, blob.is_bias
            if blob.role == STATISTIC:
                mults.append((0.0, blob.decay_mult))
            elif keep_frozen and lr == 0.0:
                mults.append((0.0, preset.bias_decay if bias else preset.weight_decay))
            elif layer.name in new:
                mults.append((preset.new_bias, preset.bias_decay) if bias
                             else (preset.new_weight, preset.weight_decay))
            else:
                mults.append((preset.bias, preset.bias_decay) if bias
                             else (preset.weight, preset.weight_decay))
        layers.append(_set_mults(layer, mults))
    return _replace_layers(net, layers)


def _num_output_types(sep: str = " or ") -> str:
    """The registered types with a num_output field ('Convolution or Deconvolution or ...')."""
    return sep.join(t for t in layer_types() if facts(t).num_output is not None)


def filler_param(spec: FillerSpec) -> caffe_pb2.FillerParameter | None:
    """A FillerParameter from a message, a dict ({"type": "gaussian", "std": 0.01}) or a type
    name ("xavier"); None stays None."""
    if spec is None:
        return None
    if isinstance(spec, caffe_pb2.FillerParameter):
        return spec
    msg = caffe_pb2.FillerParameter()
    if isinstance(spec, str):
        msg.type = spec
        return msg
    for key, value in dict(spec).items():
        if key not in msg.DESCRIPTOR.fields_by_name:
            known = ", ".join(msg.DESCRIPTOR.fields_by_name)
            raise ConfigError(f"filler field '{key}' is not a Caffe FillerParameter field. "
                              f"Fix: use one of {known}")
        if key == "variance_norm" and isinstance(value, str):
            value = caffe_pb2.FillerParameter.VarianceNorm.Value(value.upper())
        setattr(msg, key, value)
    return msg


def blob_shapes(net: Net, input_shapes: Mapping[str, Sequence[int]] | None = None,
                upto: str | None = None) -> dict[str, tuple[int, ...]]:
    """Every blob's shape (Caffe's shape inference), for the net up to layer `upto`."""
    from modelport.backends.torch_module import CaffeNet

    prefix = cut(net, upto) if upto is not None else net
    module = CaffeNet(prefix, input_shapes, allow_missing_weights=True)
    return dict(module.blob_shapes)


def replace(net: Net, name: str, *, num_output: int | None = None, filler: FillerSpec = None,
            bias_filler: FillerSpec = None, rename: str | None = None,
            input_shapes: Mapping[str, Sequence[int]] | None = None, seed: int = 0) -> Net:
    """Re-initialise layer `name` (optionally with a new `num_output`) from Caffe fillers.

    The weights are drawn by the layer's own converter from `filler` / `bias_filler` (or the
    prototxt's weight_filler / bias_filler when not given; Caffe's default is constant 0) with
    torch's RNG seeded by `seed`. `rename` gives the layer a new name (its tops keep theirs).
    Layers that consume the layer's top must accept the new width: Softmax, Accuracy and losses
    do; a following InnerProduct keeps its stored weights and will then not fit.
    """
    from modelport.backends.torch_module import CaffeNet

    idx = layer_index(net, name)
    old = net.layers[idx]
    param = caffe_pb2.LayerParameter()
    param.CopyFrom(old.param)
    sub_name = facts(old.type).num_output
    if num_output is not None:
        if sub_name is None:
            raise LayerError(old.name, old.type, "has no num_output to change",
                             f"replace a layer of type {_num_output_types()}")
        if num_output <= 0:
            raise ConfigError(f"layer '{name}': num_output must be positive, got {num_output}")
        getattr(param, sub_name).num_output = num_output
    sub = getattr(param, sub_name) if sub_name else None
    wf, bf = filler_param(filler), filler_param(bias_filler)
    if sub is not None:
        if wf is not None:
            sub.weight_filler.CopyFrom(wf)
        if bf is not None and sub.DESCRIPTOR.fields_by_name.get("bias_filler") is not None:
            sub.bias_filler.CopyFrom(bf)
    elif wf is not None or bf is not None:
        raise LayerError(old.name, old.type, "fillers can only be given for layers with "
                         f"num_output ({_num_output_types(', ')})")
    if rename:
        if any(lay.name == rename for lay in net.layers if lay is not old):
            raise ConfigError(f"cannot rename '{name}' to '{rename}': a layer has that name")
        param.name = rename
    # Shapes of this layer's bottoms, from everything before it.
    shapes = blob_shapes(net, input_shapes, upto=net.layers[idx - 1].name) if idx else {}
    for b in old.bottoms:
        if b not in shapes:
            raise LayerError(old.name, old.type, f"bottom blob '{b}' is not produced before it")
    inputs = caffe_pb2.LayerParameter(name="__surgery_input__", type="Input",
                                      top=list(dict.fromkeys(old.bottoms)))
    for b in dict.fromkeys(old.bottoms):
        inputs.input_param.shape.add().dim.extend(shapes[b])
    fresh = caffe_pb2.LayerParameter()
    fresh.CopyFrom(param)
    mini = Net("surgery", (
        Layer(inputs.name, inputs.type, (), tuple(inputs.top), inputs),
        Layer(fresh.name, fresh.type, tuple(fresh.bottom), tuple(fresh.top), fresh),
    ), source=net.source, phase=net.phase)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = CaffeNet(mini, allow_missing_weights=True)
    converted = module.layer_module(fresh.name)
    blobs = tuple(Blob(t.detach().cpu().numpy().astype(np.float32, copy=True))
                  for t in converted.caffe_blobs())
    layers = list(net.layers)
    layers[idx] = Layer(param.name, param.type, tuple(param.bottom), tuple(param.top), param,
                        blobs)
    return _replace_layers(net, layers)


def sync_weights(net: Net, module: torch.nn.Module) -> Net:
    """The IR net with the (trained) weights of a converted `CaffeNet` copied back into it."""
    from modelport.backends.torch_module import CaffeNet

    if not isinstance(module, CaffeNet):
        raise ConfigError("sync_weights needs a modelport CaffeNet (from modelport.caffe.load)")
    layers = []
    for layer in net.layers:
        if module.key_of(layer) is not None:  # the layer's own module (names may repeat)
            tensors = module.layer_module(layer).caffe_blobs()
            if tensors:
                layer = layer.with_blobs(tuple(
                    Blob(t.detach().cpu().numpy().astype(np.float32, copy=True))
                    for t in tensors))
        layers.append(layer)
    return _replace_layers(net, layers)


# ----------------------------------------------------------------------------- torch side

def param_groups(module: torch.nn.Module, base_lr: float, weight_decay: float = 0.0,
                 ) -> list[dict[str, Any]]:
    """torch optimizer groups with Caffe's per-blob rates: lr = base_lr * lr_mult,
    weight_decay = weight_decay * decay_mult. Blobs with lr_mult 0 are left out and get
    `requires_grad = False` (frozen, as in Caffe)."""
    from modelport.backends.torch_module import CaffeNet

    if not isinstance(module, CaffeNet):
        raise ConfigError("param_groups needs a modelport CaffeNet (from modelport.caffe.load)")
    groups: dict[tuple[float, float], list[torch.Tensor]] = {}
    for layer, _key in module.run_order:
        sub = module.layer_module(layer)
        mults = param_mults(layer)
        for i, attr in enumerate(sub.caffe_blob_names):
            tensor = getattr(sub, attr)
            if not isinstance(tensor, torch.nn.Parameter):
                continue
            lr, decay = mults[i] if i < len(mults) else (1.0, 1.0)
            if lr == 0.0:
                tensor.requires_grad_(False)
                continue
            groups.setdefault((lr, decay), []).append(tensor)
    return [{"params": params, "lr": base_lr * lr, "weight_decay": weight_decay * decay,
             "lr_mult": lr, "decay_mult": decay} for (lr, decay), params in groups.items()]


# ----------------------------------------------------------------------------- export

def to_net_parameter(net: Net, with_blobs: bool) -> caffe_pb2.NetParameter:
    """The IR net as a V2 NetParameter (layers in order; blobs as BlobProto shape + data)."""
    msg = caffe_pb2.NetParameter(name=net.name)
    for layer in net.layers:
        lp = msg.layer.add()
        lp.CopyFrom(layer.param)
        del lp.blobs[:]
        if with_blobs:
            for blob in layer.blobs:
                bp = lp.blobs.add()
                bp.shape.dim.extend(int(d) for d in blob.data.shape)
                bp.data.extend(np.asarray(blob.data, dtype=np.float32).ravel().tolist())
    return msg


def prototxt_text(net: Net) -> str:
    """The net definition as prototxt text (the writer's `net_to_prototxt` when available)."""
    try:
        from modelport.formats.caffe.writer import net_to_prototxt
    except ImportError:
        from google.protobuf import text_format

        return text_format.MessageToString(to_net_parameter(net, with_blobs=False))
    return str(net_to_prototxt(net))


def _write_caffemodel(net: Net, path: str) -> None:
    try:
        from modelport.formats.caffe.writer import write_caffemodel
    except ImportError:
        write_bytes(path, to_net_parameter(net, with_blobs=True).SerializeToString())
        return
    write_caffemodel(path, net)


def _write_safetensors(net: Net, path: str,
                       input_shapes: Mapping[str, Sequence[int]] | None) -> None:
    """The converted module's state_dict (keys as `CaffeNet.state_dict()` names them)."""
    from safetensors.torch import save_file

    from modelport.backends.torch_module import CaffeNet

    module = CaffeNet(net, input_shapes)
    state = {k: v.detach().contiguous() for k, v in module.state_dict().items()}
    write_with(path, lambda tmp: save_file(state, tmp))


def export(net: Net, prototxt: str | os.PathLike[str] | None = None,
           weights: str | os.PathLike[str] | None = None,
           input_shapes: Mapping[str, Sequence[int]] | None = None) -> None:
    """Write the edited net: prototxt text and/or weights (.caffemodel, or .safetensors with the
    converted module's state_dict). Files are written atomically."""
    if prototxt is not None:
        write_text(prototxt, prototxt_text(net))
    if weights is not None:
        path = os.fspath(weights)
        if path.endswith(".safetensors"):
            _write_safetensors(net, path, input_shapes)
        elif path.endswith(".caffemodel"):
            _write_caffemodel(net, path)
        else:
            raise ConfigError(f"{path}: unknown weights format. Fix: name the file "
                              "*.caffemodel or *.safetensors")


# ----------------------------------------------------------------------------- fluent API

class Surgery:
    """Chainable edits on an IR net that remember which layers are new.

        s = Surgery.load("deploy.prototxt", "bvlc_reference_caffenet.caffemodel")
        s.replace("fc8", num_output=31, filler={"type": "gaussian", "std": 0.01})
        s.freeze(through="conv5").lr_preset()
        s.export("office.prototxt", "office.caffemodel")
        model = s.module()            # a CaffeNet; s.param_groups(model, base_lr=1e-3)
    """

    def __init__(self, net: Net, input_shapes: Mapping[str, Sequence[int]] | None = None
                 ) -> None:
        self.net = net
        self.input_shapes = dict(input_shapes or {})
        self.new_layers: list[str] = []

    @classmethod
    def load(cls, prototxt: str | os.PathLike[str],
             caffemodel: str | os.PathLike[str] | None = None, phase: str = "test",
             input_shapes: Mapping[str, Sequence[int]] | None = None) -> Surgery:
        from modelport.pipeline import load_net

        return cls(load_net(prototxt, caffemodel, phase), input_shapes)

    def cut(self, after: str) -> Surgery:
        self.net = cut(self.net, after)
        kept = {lay.name for lay in self.net.layers}
        self.new_layers = [n for n in self.new_layers if n in kept]
        return self

    def replace(self, name: str, **kwargs: Any) -> Surgery:
        kwargs.setdefault("input_shapes", self.input_shapes)
        self.net = replace(self.net, name, **kwargs)
        new_name = kwargs.get("rename") or name
        self.new_layers = [n for n in self.new_layers if n != name] + [new_name]
        return self

    def freeze(self, through: str) -> Surgery:
        self.net = freeze(self.net, through)
        return self

    def lr_preset(self, preset: LrPreset = FINETUNE) -> Surgery:
        self.net = set_lr_mults(self.net, self.new_layers, preset)
        return self

    def module(self) -> torch.nn.Module:
        from modelport.backends.torch_module import build_module

        return build_module(self.net, self.input_shapes)

    def param_groups(self, module: torch.nn.Module, base_lr: float,
                     weight_decay: float = 0.0) -> list[dict[str, Any]]:
        return param_groups(module, base_lr, weight_decay)

    def sync(self, module: torch.nn.Module) -> Surgery:
        self.net = sync_weights(self.net, module)
        return self

    def export(self, prototxt: str | os.PathLike[str] | None = None,
               weights: str | os.PathLike[str] | None = None) -> Surgery:
        export(self.net, prototxt, weights, self.input_shapes)
        return self
