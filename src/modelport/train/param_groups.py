"""Caffe's learnable parameters: which blobs the solver updates, in which order, at which rates.

Caffe (Net::AppendParam, net.cpp) walks the layers in order and each layer's blobs in blob
order. A blob whose ParamSpec `name` was already seen is *shared*: it joins its owner (same
tensor here, so gradients accumulate into one `.grad`) and is not listed again. Every other
blob is a learnable param with `lr_mult` and `decay_mult` from its ParamSpec (default 1 and 1).
BatchNorm's three statistics blobs (declared as statistics where BatchNorm is registered) are
learnable params whose lr_mult Caffe forces to 0 (BatchNormLayer::LayerSetUp); their
decay_mult stays as given (default 1), so weight decay still reaches their diff and the
adaptive solvers' history.

A blob with lr_mult 0 gets no gradient (Caffe sets param_propagate_down false): its diff is 0
before regularisation, and it is kept out of autograd here (requires_grad False).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from modelport.backends.torch_module import CaffeNet
from modelport.errors import LayerError
from modelport.layers.params import SharedParams, blob_params


@dataclass
class LearnableParam:
    """One entry of Caffe's `learnable_params()`."""

    index: int
    layer: str
    layer_type: str
    blob: int
    tensor: torch.Tensor
    lr_mult: float
    decay_mult: float

    @property
    def trainable(self) -> bool:
        """True when backprop reaches this blob (lr_mult != 0 and it is a parameter)."""
        return self.lr_mult != 0 and isinstance(self.tensor, nn.Parameter)


def _set_blob(module: nn.Module, attr: str, value: torch.Tensor) -> None:
    if attr in module._parameters:
        assert isinstance(value, nn.Parameter)
        module._parameters[attr] = value
    elif attr in module._buffers:
        module._buffers[attr] = value
    else:
        setattr(module, attr, value)


def learnable_params(net: CaffeNet) -> list[LearnableParam]:
    """Caffe's Net::learnable_params list for `net`, tying shared (named) ParamSpecs to their owner.

    The rates come from the one ParamSpec reader (`modelport.layers.params`): statistics blobs
    (as the layer registry declares them: BatchNorm's) at lr_mult 0, others as given or 1.
    """
    params: list[LearnableParam] = []
    shared = SharedParams()
    entries: dict[int, LearnableParam] = {}  # id(owner BlobParam) -> its entry
    for layer, _key in net.run_order:
        module = net.layer_module(layer)  # this layer's own module (names may repeat)
        names = module.caffe_blob_names
        for j, (attr, blob) in enumerate(zip(names, blob_params(layer, len(names)))):
            tensor = getattr(module, attr)
            if tensor is None:
                continue
            if blob.refused:
                raise LayerError(layer.name, layer.type,
                                 f"param {j} sets lr_mult {blob.given_lr_mult}; Caffe does not "
                                 "allow learning the batch-normalisation statistics",
                                 "remove lr_mult from the BatchNorm param entries (or set it "
                                 "to 0)")
            found = shared.owner(layer, blob)
            if found is not None:
                owner = entries[id(found[1])]
                if tuple(owner.tensor.shape) != tuple(tensor.shape):
                    raise LayerError(layer.name, layer.type,
                                     f"shares param '{blob.share}' of shape "
                                     f"{tuple(owner.tensor.shape)} but its blob {j} has shape "
                                     f"{tuple(tensor.shape)}",
                                     "shared params must have the same shape")
                shared.check_rates(layer, blob, found)
                _set_blob(module, attr, owner.tensor)
                continue
            entry = LearnableParam(len(params), layer.name, layer.type, j, tensor, blob.lr_mult,
                                   blob.decay_mult)
            params.append(entry)
            entries[id(blob)] = entry
    for p in params:
        if isinstance(p.tensor, nn.Parameter):
            p.tensor.requires_grad_(p.trainable)
    return params


def share_weights(source: CaffeNet, target: CaffeNet) -> list[str]:
    """Caffe's Net::ShareTrainedLayersWith: every layer of `target` with a layer of the same
    name in `source` uses the source's blobs (same tensors). Returns the shared layer names."""
    shared = []
    for layer, _key in target.run_order:
        if layer.name not in source.layer_keys or layer.name in shared:
            continue  # Caffe shares a name's blobs into the first layer of that name only
        src = source.layer_module(layer.name)
        dst = target.layer_module(layer)
        src_blobs = [getattr(src, a) for a in src.caffe_blob_names]
        if len(src_blobs) != len(dst.caffe_blob_names):
            raise LayerError(layer.name, layer.type,
                             f"has {len(dst.caffe_blob_names)} blobs in the test net and "
                             f"{len(src_blobs)} in the train net",
                             "the layers sharing a name must have the same parameters")
        for attr, blob in zip(dst.caffe_blob_names, src_blobs):
            mine = getattr(dst, attr)
            if mine is None or blob is None:
                continue
            if tuple(mine.shape) != tuple(blob.shape):
                raise LayerError(layer.name, layer.type,
                                 f"blob '{attr}' has shape {tuple(mine.shape)} in the test net "
                                 f"and {tuple(blob.shape)} in the train net",
                                 "the layers sharing a name must have the same shapes")
            _set_blob(dst, attr, blob)
        shared.append(layer.name)
    return shared


def sync_shared(source: CaffeNet, target: CaffeNet, names: list[str]) -> None:
    """Copy source blobs into target blobs that stopped being the same tensor (a layer that
    rebinds its buffers, e.g. in place of an in-place update): the test net must see the
    train net's current values."""
    with torch.no_grad():
        for name in names:
            src = source.layer_module(name)
            dst = target.layer_module(name)
            for a_src, a_dst in zip(src.caffe_blob_names, dst.caffe_blob_names):
                s, d = getattr(src, a_src), getattr(dst, a_dst)
                if s is None or d is None or s is d:
                    continue
                d.copy_(s)
