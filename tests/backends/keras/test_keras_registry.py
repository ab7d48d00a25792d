"""The Keras emitter registry's contract: one emitter per Caffe type, a `when=` form of a type
tried before the general one (newest first), a type without an emitter listed by name, and the
layout helpers' axis mapping (Caffe N x C x H x W <-> channels-last)."""

from __future__ import annotations

import numpy as np
import pytest

from modelport.backends.keras import registry
from modelport.backends.keras.registry import (
    CAFFE,
    CHANNELS_LAST,
    KerasTensor,
    NameAllocator,
    find_emitter,
    register_keras,
)
from modelport.caffe import load
from modelport.errors import UnsupportedLayerError
from modelport.export.keras import export_keras

NET = """
name: "two"
input: "data"
input_shape { dim: 1 dim: 2 dim: 3 dim: 4 }
layer { name: "r" type: "ReLU" bottom: "data" top: "r" }
layer { name: "s" type: "Sigmoid" bottom: "r" top: "s" }
"""


@pytest.fixture
def scratch_registry(monkeypatch):
    """The registry as it is, restored after the test."""
    registry.keras_types()  # the built-in emitters registered first
    monkeypatch.setattr(registry, "_EMITTERS",
                        {key: list(entries) for key, entries in registry._EMITTERS.items()})


def load_layer_stub():
    from modelport.ir import Layer
    from modelport.schema import caffe_pb2

    return Layer("x", "ReLU", ("a",), ("b",), caffe_pb2.LayerParameter())


def test_a_when_form_is_tried_first_and_falls_back(scratch_registry) -> None:
    general = find_emitter(load_layer_stub(), None)
    assert general is not None

    @register_keras("ReLU", when=lambda layer, m: getattr(m, "negative_slope", 0) == 0.5)
    def special(ctx):  # pragma: no cover - never called here
        raise AssertionError

    class Half:
        negative_slope = 0.5

    assert find_emitter(load_layer_stub(), Half()) is special
    assert find_emitter(load_layer_stub(), None) is general


def test_a_type_without_an_emitter_is_named(scratch_registry, tmp_path) -> None:
    del registry._EMITTERS["Sigmoid"]
    proto = tmp_path / "net.prototxt"
    proto.write_text(NET)
    with pytest.raises(UnsupportedLayerError) as err:
        export_keras(load(proto), tmp_path / "k")
    message = str(err.value)
    assert "1 layer in" in message and "layer 's' (type Sigmoid)" in message, message
    assert "register_keras" in message and "'r'" not in message
    assert not (tmp_path / "k").exists()


def test_layouts_map_caffe_axes() -> None:
    t = KerasTensor("t", (2, 3, 5, 7), CHANNELS_LAST)
    assert t.keras_shape == (2, 5, 7, 3)
    assert [t.keras_axis(a) for a in (0, 1, 2, 3, -3)] == [0, 3, 1, 2, 3]
    x = np.arange(2 * 3 * 5 * 7, dtype=np.float32).reshape(2, 3, 5, 7)
    np.testing.assert_array_equal(t.to_caffe(np.moveaxis(x, 1, -1)), x)
    assert KerasTensor("u", (2, 3), CHANNELS_LAST).layout == CAFFE  # one layout below 3 axes
    v = KerasTensor("v", (2, 3, 4, 5, 6), CHANNELS_LAST)
    assert v.keras_shape == (2, 4, 5, 6, 3) and v.keras_axis(1) == 4


def test_names_are_unique_and_safe() -> None:
    names = NameAllocator(("keras",))
    assert [names.keras(n) for n in ("a/b", "a__b", "x.y", "n\x00l", "")] == [
        "a__b", "a__b_1", "x_y", "n_l", "_"]
    assert names.var("keras") == "t_keras" and names.var("keras") == "t_keras_1"
    assert names.var("class") == "t_class_" and names.var("1x") == "t__1x"
    assert names.ident("conv 1") == "conv_1" and names.ident("conv 1") == "conv_1_1"
