"""The source side of a port: TF variables grouped into layers, each variable with its role.

Conventions (the built-in name rules):

- Keras: a layer's variables are `kernel`, `bias`, `gamma`, `beta`, `moving_mean`,
  `moving_variance`, `depthwise_kernel`, `pointwise_kernel`, `embeddings` (Keras 2 adds `:0`,
  TF2 object checkpoints wrap them as `_kernel/.ATTRIBUTES/VARIABLE_VALUE`).
- TF-slim: `weights`, `biases`, `depthwise_weights`, `pointwise_weights`, and a convolution's
  batch norm in its own scope `<conv>/BatchNorm/{beta,gamma,moving_mean,moving_variance}`.
- A Keras 3 `.weights.h5` keeps neither names nor roles (`layers/conv2d_1/vars/0`): roles then
  follow Keras's `layer.weights` order for the layer's class (kernel, bias; gamma, beta,
  moving_mean, moving_variance as `scale` / `center` allow; ...).

Optimizer slots, step counters and object-graph bookkeeping are ignored, each with its reason.
Explicit rules are a regex rename table applied in order (`re.sub`) to a variable's Keras-path
name (`layer/role`) or its stored name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelport.errors import ConfigError
from modelport.formats.tf.source import KerasLayer, TFVariable, WeightSource

__all__ = ["Rules", "SourceGroup", "clean_name", "group_source", "ignored_reason", "role_of_name"]

ROLE_ALIASES = {
    "kernel": "kernel", "bias": "bias", "gamma": "gamma", "beta": "beta",
    "moving_mean": "moving_mean", "moving_variance": "moving_variance",
    "depthwise_kernel": "depthwise_kernel", "pointwise_kernel": "pointwise_kernel",
    "embeddings": "embeddings", "alpha": "alpha",
    # TF-slim
    "weights": "kernel", "biases": "bias", "depthwise_weights": "depthwise_kernel",
    "pointwise_weights": "pointwise_kernel",
}

# Keras class -> the kind of torch unit it ports onto.
CLASS_KINDS = {
    "Conv1D": "conv", "Conv2D": "conv", "Conv3D": "conv", "Convolution2D": "conv",
    "DepthwiseConv1D": "depthwise", "DepthwiseConv2D": "depthwise",
    "SeparableConv1D": "separable", "SeparableConv2D": "separable",
    "Conv1DTranspose": "conv_transpose", "Conv2DTranspose": "conv_transpose",
    "Conv3DTranspose": "conv_transpose", "Deconvolution2D": "conv_transpose",
    "Dense": "dense", "BatchNormalization": "bn", "LayerNormalization": "layernorm",
    "Embedding": "embedding", "PReLU": "prelu",
}

_SLOT_SUFFIXES = ("/Momentum", "/Adam", "/Adam_1", "/RMSProp", "/RMSProp_1", "/Adagrad",
                  "/ExponentialMovingAverage", "/Ftrl", "/Ftrl_1")
_BOOKKEEPING = {"global_step", "save_counter/.ATTRIBUTES/VARIABLE_VALUE", "save_counter",
                "_CHECKPOINTABLE_OBJECT_GRAPH", "beta1_power", "beta2_power"}


def ignored_reason(name: str) -> str | None:
    """Why a stored variable is not a model weight, or None when it may be one."""
    if name in _BOOKKEEPING:
        return "checkpoint bookkeeping (step / save counter / object graph), not a weight"
    if ".OPTIMIZER_SLOT" in name or name.startswith(("optimizer/", "optimizer_state/")) or \
            name.endswith(_SLOT_SUFFIXES) or re.search(r"/(Adam|Momentum|RMSProp)(_\d+)?/", name):
        return "optimizer state, not a weight"
    if "seed_generator" in name:
        return "a random seed generator's state (Dropout and friends), not a weight"
    return None


def clean_name(name: str) -> str:
    """A stored name without `:0` and the TF2 object-checkpoint wrapping."""
    name = name.removesuffix("/.ATTRIBUTES/VARIABLE_VALUE")
    return re.sub(r":\d+$", "", name)


def role_of_name(name: str) -> str | None:
    """The role the last component of a (cleaned) name declares: Keras's or TF-slim's."""
    last = clean_name(name).rsplit("/", 1)[-1].lstrip("_")
    return ROLE_ALIASES.get(last)


@dataclass
class SourceGroup:
    """One source layer: a Keras layer or a TF-slim scope, its variables and their roles."""

    name: str
    class_name: str
    config: dict[str, Any]
    variables: list[TFVariable]
    roles: list[str | None]
    keras: bool  # a Keras layer (from the file's layers), not a scope of names
    index: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        """conv, depthwise, separable, conv_transpose, dense, bn, layernorm, embedding, or
        'conv?' (a kernel of rank >= 3 from a file that does not say which conv), '' unknown."""
        if self.class_name in CLASS_KINDS:
            return CLASS_KINDS[self.class_name]
        roles = set(r for r in self.roles if r)
        if "pointwise_kernel" in roles:
            return "separable"
        if "depthwise_kernel" in roles:
            return "depthwise"
        if roles & {"moving_mean", "moving_variance"}:
            return "bn"
        if roles & {"gamma", "beta"}:
            return "layernorm"
        if "embeddings" in roles:
            return "embedding"
        if "alpha" in roles:
            return "prelu"
        kernels = [v for v, r in zip(self.variables, self.roles) if r == "kernel"]
        if kernels:
            return "dense" if kernels[0].value.ndim == 2 else "conv?"
        return ""

    def by_role(self) -> dict[str, TFVariable]:
        return {r: v for v, r in zip(self.variables, self.roles) if r}

    @property
    def epsilon(self) -> float | None:
        eps = self.config.get("epsilon")
        return float(eps) if isinstance(eps, int | float) else None


def _positional_roles(layer: KerasLayer) -> list[str | None]:
    """Roles by position in Keras's `layer.weights` order for the layer's class."""
    kind = CLASS_KINDS.get(layer.class_name, "")
    n = len(layer.variables)
    cfg = layer.config
    if kind in ("conv", "depthwise", "conv_transpose", "dense"):
        order: list[str] = ["kernel", "bias"]
    elif kind == "separable":
        order = ["depthwise_kernel", "pointwise_kernel", "bias"]
    elif kind == "bn":
        order = (["gamma"] if cfg.get("scale", True) else []) + \
                (["beta"] if cfg.get("center", True) else []) + ["moving_mean", "moving_variance"]
        if not cfg and n == 3:
            return [None] * n  # center or scale off, the file does not say which
        if not cfg and n == 2:
            order = ["moving_mean", "moving_variance"]
    elif kind == "layernorm":
        order = (["gamma"] if cfg.get("scale", True) else []) + \
                (["beta"] if cfg.get("center", True) else [])
    elif kind == "embedding":
        order = ["embeddings"]
    elif kind == "prelu":
        order = ["alpha"]
    elif not layer.class_name:  # no class known: guess from ranks
        ranks = [v.value.ndim for v in layer.variables]
        if ranks in ([4, 4], [4, 4, 1]):
            order = ["depthwise_kernel", "pointwise_kernel", "bias"]
        elif ranks and ranks[0] >= 2 and all(r == 1 for r in ranks[1:]) and n <= 2:
            order = ["kernel", "bias"]
        elif ranks == [1, 1, 1, 1]:
            order = ["gamma", "beta", "moving_mean", "moving_variance"]
        elif ranks == [1, 1]:
            order = ["moving_mean", "moving_variance"]
        else:
            return [None] * n
    else:
        return [None] * n
    return [order[i] if i < len(order) else None for i in range(n)] if n <= len(order) \
        else [None] * n


def _layer_group(layer: KerasLayer) -> SourceGroup:
    named = [v.role or role_of_name(v.name) for v in layer.variables]
    roles = named if all(named) else _positional_roles(layer)
    class_name = layer.class_name
    return SourceGroup(layer.name, class_name, dict(layer.config), list(layer.variables), roles,
                       keras=True, index=layer.index)


def group_source(source: WeightSource) -> tuple[list[SourceGroup], list[tuple[TFVariable, str]]]:
    """(groups in source order, ignored variables with the reason)."""
    ignored: list[tuple[TFVariable, str]] = []
    groups: list[SourceGroup] = []
    in_layers: set[str] = set()
    for layer in source.layers or []:
        kept = []
        for v in layer.variables:
            in_layers.add(v.name)
            why = ignored_reason(v.name) or ignored_reason(f"{layer.name}/{v.role or ''}")
            if why is None and v.value.dtype.kind in "iub" and layer.class_name not in \
                    CLASS_KINDS:
                why = "an integer / bool state variable of a layer without weights to port"
            if why:
                ignored.append((v, why))
            else:
                kept.append(v)
        if kept:
            groups.append(_layer_group(KerasLayer(layer.name, layer.class_name, layer.config,
                                                  kept, layer.index)))
    scoped: dict[str, SourceGroup] = {}
    for name, v in source.variables.items():
        if name in in_layers:
            continue
        why = ignored_reason(name)
        if why:
            ignored.append((v, why))
            continue
        clean = clean_name(name)
        role = v.role or role_of_name(clean)
        scope = clean.rsplit("/", 1)[0] if role and "/" in clean else clean
        if not role:
            scope = clean  # a group of its own, no role: only a rule can place it
        g = scoped.get(scope)
        if g is None:
            g = scoped[scope] = SourceGroup(scope, "", {}, [], [], keras=False)
            groups.append(g)
        g.variables.append(v)
        g.roles.append(role)
    return groups, ignored


class Rules:
    """An explicit rename table: `{regex: replacement}` or `[(regex, replacement), ...]`,
    applied in order with `re.sub` to a name."""

    def __init__(self, mapping: Mapping[str, str] | Sequence[tuple[str, str]] | None) -> None:
        pairs = list(mapping.items()) if isinstance(mapping, Mapping) else list(mapping or [])
        self.rules: list[tuple[re.Pattern[str], str]] = []
        for pair in pairs:
            if not (isinstance(pair, tuple | list) and len(pair) == 2
                    and all(isinstance(x, str) for x in pair)):
                raise ConfigError(f"mapping rule {pair!r}: give (regex, replacement) strings")
            pattern, repl = pair
            try:
                self.rules.append((re.compile(pattern), repl))
            except re.error as exc:
                raise ConfigError(f"mapping rule {pattern!r} is not a valid regex ({exc}). "
                                  "Fix: escape '.', '[' and '(' meant literally") from None

    def __bool__(self) -> bool:
        return bool(self.rules)

    def rename(self, name: str) -> tuple[str, list[str]]:
        """(the renamed name, the rules that changed it)."""
        used = []
        for pattern, repl in self.rules:
            try:
                new = pattern.sub(repl, name)
            except (re.error, IndexError) as exc:
                raise ConfigError(f"mapping rule {pattern.pattern!r} -> {repl!r} fails on "
                                  f"'{name}' ({exc})") from None
            if new != name:
                used.append(pattern.pattern)
                name = new
        return name, used
