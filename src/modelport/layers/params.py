"""The one reader of a layer's ParamSpecs (`param { lr_mult decay_mult name }`), as in Caffe.

Caffe (Net::AppendParam, net.cpp) walks the layers in order and each layer's blobs in blob
order. Blob i takes `lr_mult` and `decay_mult` from the layer's i-th ParamSpec (default 1 and
1 when the layer lists fewer). A blob whose role is a statistic (BatchNorm's sums, declared by
its type in the layer registry) is never learned: BatchNormLayer::LayerSetUp forces its lr_mult
to 0 and refuses any other value; decay_mult stays as given. A blob whose ParamSpec `name` was
already seen is *shared*: it is the owner's parameter (same values, the owner's rates); Caffe
refuses a shared blob that gives an lr_mult of its own different from the owner's.

`transfer.surgery` (freeze, lr presets) and `train.param_groups` (the solver's learnable
params) both read the rates here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from modelport.errors import ConfigError
from modelport.ir import Layer
from modelport.layers.registry import BIAS, STATISTIC, WEIGHT, blob_roles


@dataclass(frozen=True)
class BlobParam:
    """One blob's learning rates, as Caffe reads its ParamSpec."""

    index: int
    role: str  # registry.WEIGHT, BIAS or STATISTIC
    lr_mult: float  # what the solver uses (0 for a statistic)
    decay_mult: float
    share: str = ""  # the ParamSpec's name: blobs with one name are one parameter
    given_lr_mult: float | None = None  # the ParamSpec's lr_mult (default 1) when it has one
    lr_mult_set: bool = False  # the ParamSpec sets lr_mult explicitly

    @property
    def is_bias(self) -> bool:
        return self.role == BIAS

    @property
    def refused(self) -> bool:
        """A statistic blob whose ParamSpec asks for learning (Caffe's default 1 counts)."""
        return self.role == STATISTIC and self.given_lr_mult is not None \
            and self.given_lr_mult != 0


def blob_params(layer: Layer, count: int | None = None) -> list[BlobParam]:
    """The rates of `layer`'s blobs (its stored blobs, else those its type declares; `count`
    overrides how many), with Caffe's defaults and statistics at lr_mult 0. Not tied: a
    shared blob shows its own ParamSpec (see `net_blob_params`)."""
    roles = blob_roles(layer)
    n = len(roles) if count is None else count
    specs = layer.param.param
    out = []
    for i in range(n):
        spec = specs[i] if i < len(specs) else None
        role = roles[i] if i < len(roles) else WEIGHT
        given = float(spec.lr_mult) if spec is not None else None
        lr = 0.0 if role == STATISTIC else (given if given is not None else 1.0)
        decay = float(spec.decay_mult) if spec is not None else 1.0
        out.append(BlobParam(i, role, lr, decay, spec.name if spec is not None else "", given,
                             spec is not None and spec.HasField("lr_mult")))
    return out


class SharedParams:
    """Caffe's bookkeeping of named ParamSpecs: the first blob with a name owns it."""

    def __init__(self) -> None:
        self._owners: dict[str, tuple[Layer, BlobParam]] = {}

    def owner(self, layer: Layer, blob: BlobParam) -> tuple[Layer, BlobParam] | None:
        """The owner of `blob` when it is shared with an earlier blob, else None (a named blob
        becomes the owner of its name)."""
        if not blob.share:
            return None
        if blob.share in self._owners:
            return self._owners[blob.share]
        self._owners[blob.share] = (layer, blob)
        return None

    @staticmethod
    def check_rates(layer: Layer, blob: BlobParam, owner: tuple[Layer, BlobParam]) -> None:
        """Caffe's check that a shared blob does not set an lr_mult other than its owner's."""
        owner_layer, owner_blob = owner
        if blob.lr_mult_set and owner_blob.lr_mult != blob.lr_mult:
            raise ConfigError(
                f"layer '{layer.name}' (type {layer.type}): shared param '{blob.share}' "
                f"has lr_mult {blob.lr_mult}, its owner '{owner_layer.name}' has "
                f"{owner_blob.lr_mult}. Fix: give shared params the same lr_mult")


def net_blob_params(layers: Iterable[Layer], check: bool = True,
                    ) -> list[tuple[Layer, list[BlobParam]]]:
    """`blob_params` of every layer in order, a shared blob taking its owner's rates (with
    `check`, a shared blob setting another lr_mult is Caffe's error)."""
    shared = SharedParams()
    out = []
    for layer in layers:
        params = []
        for blob in blob_params(layer):
            owner = shared.owner(layer, blob)
            if owner is not None:
                if check:
                    shared.check_rates(layer, blob, owner)
                blob = replace(blob, lr_mult=owner[1].lr_mult, decay_mult=owner[1].decay_mult)
            params.append(blob)
        out.append((layer, params))
    return out
