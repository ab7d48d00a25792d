"""What Keras itself knows about its layer classes, for readers of files that keep little.

- `to_snake_case` is Keras 3's `keras.src.utils.naming.to_snake_case`, which names the groups
  of a `.weights.h5` (`Conv2D` -> `conv2d`, `ReLU` -> `re_lu`, `PReLU` -> `p_re_lu`), with
  `_1`, `_2`, ... appended per class in `model.layers` order (`saving_lib._get_unique_name`).
  `class_from_group` inverts it for the built-in classes (`conv2d_3` -> `Conv2D`).
- `roles(class_name, count, config)` names a layer's variables in `layer.weights` order, as
  each class's `build()` creates them: a conv / dense layer makes `kernel` then `bias` (when
  `use_bias`), BatchNormalization `gamma` (when `scale`), `beta` (when `center`),
  `moving_mean`, `moving_variance`. The kernel of DepthwiseConv2D is called `kernel` in
  Keras 3 and `depthwise_kernel` in Keras 2; its role is always `depthwise_kernel`, so one
  role means one layout, whichever Keras wrote the file.
- `role_from_name` reads a role from a stored variable name (`conv1/kernel:0`, `_kernel`).
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["KNOWN_CLASSES", "MODEL_CLASSES", "class_from_group", "role_from_name", "roles",
           "split_group_key", "to_snake_case"]

# Built-in Keras layer classes whose snake-case group names are recognised.
KNOWN_CLASSES = (
    "Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose",
    "DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv1D", "SeparableConv2D", "Dense",
    "EinsumDense", "BatchNormalization", "LayerNormalization", "GroupNormalization",
    "Embedding", "PReLU", "Normalization", "LSTM", "GRU", "SimpleRNN", "Bidirectional",
    "ConvLSTM2D", "MultiHeadAttention", "InputLayer", "ReLU", "LeakyReLU", "ELU", "Softmax",
    "Activation", "Flatten", "Reshape", "Dropout", "Add", "Concatenate", "Multiply",
    "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D", "GlobalMaxPooling2D",
    "ZeroPadding2D", "UpSampling2D", "Rescaling", "Sequential", "Functional", "Model",
)
MODEL_CLASSES = frozenset({"Sequential", "Functional", "Model"})

_KERNEL_BIAS = ("kernel", "bias")
_ROLE_ORDER: dict[str, tuple[str, ...]] = {
    **{c: _KERNEL_BIAS for c in ("Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose",
                                 "Conv2DTranspose", "Conv3DTranspose", "Dense", "EinsumDense")},
    "DepthwiseConv1D": ("depthwise_kernel", "bias"),
    "DepthwiseConv2D": ("depthwise_kernel", "bias"),
    "SeparableConv1D": ("depthwise_kernel", "pointwise_kernel", "bias"),
    "SeparableConv2D": ("depthwise_kernel", "pointwise_kernel", "bias"),
    "BatchNormalization": ("gamma", "beta", "moving_mean", "moving_variance"),
    "LayerNormalization": ("gamma", "beta"),
    "GroupNormalization": ("gamma", "beta"),
    "Embedding": ("embeddings",),
    "PReLU": ("alpha",),
    "Normalization": ("mean", "variance", "count"),
    **{c: ("kernel", "recurrent_kernel", "bias") for c in ("LSTM", "GRU", "SimpleRNN")},
}
# Which config flag switches each optional role off (Keras's defaults: on).
_OPTIONAL = {"bias": "use_bias", "gamma": "scale", "beta": "center"}


def to_snake_case(name: str) -> str:
    """Keras 3's naming.to_snake_case."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


_BY_SNAKE = {to_snake_case(c): c for c in KNOWN_CLASSES}


def split_group_key(key: str) -> tuple[str, int]:
    """`conv2d_3` -> ("conv2d", 3), `conv2d` -> ("conv2d", 0): the class stem and the counter
    `saving_lib._get_unique_name` appended (a stem that itself ends in `_<digits>` is read the
    same way; Keras's own stems never do)."""
    m = re.fullmatch(r"(.+?)_(\d+)", key)
    return (m.group(1), int(m.group(2))) if m else (key, 0)


def class_from_group(key: str) -> str:
    """The built-in class a Keras 3 group name stands for, or "" when it is not one."""
    if key in _BY_SNAKE:
        return _BY_SNAKE[key]
    return _BY_SNAKE.get(split_group_key(key)[0], "")


def roles(class_name: str, count: int, config: dict[str, Any] | None = None) -> list[str | None]:
    """The roles of a layer's `count` variables in `layer.weights` order (None where unknown).

    With the layer's config, optional variables it switched off are left out; without it, the
    count decides when it can (a Conv2D with one variable has no bias; a BatchNormalization
    with two kept only its moving statistics); otherwise the roles are None.
    """
    order = _ROLE_ORDER.get(class_name)
    if order is None:
        return [None] * count
    if config is not None:
        kept = [r for r in order if config.get(_OPTIONAL.get(r, ""), True) is not False]
        if len(kept) == count:
            return list(kept)
    if len(order) == count:
        return list(order)
    optional = [r for r in order if r in _OPTIONAL]
    required = [r for r in order if r not in _OPTIONAL]
    if count == len(required):
        return list(required)
    if len(optional) == 1 and count == len(order) - 1:
        return [r for r in order if r not in optional]
    return [None] * count


def role_from_name(name: str, class_name: str = "") -> str:
    """`conv1/kernel:0` -> `kernel`; Keras 3's private `_kernel` -> `kernel`; a
    DepthwiseConv2D's `kernel` -> `depthwise_kernel` (module docstring)."""
    last = name.rsplit("/", 1)[-1]
    last = re.sub(r":\d+$", "", last).lstrip("_")
    if last == "kernel" and class_name.startswith("DepthwiseConv"):
        return "depthwise_kernel"
    return last
