"""The Keras export's self-check must be able to fail: an emitter planted with a real-world
porting bug (LRN's alpha not divided by local_size; Keras's 'same' padding instead of Caffe's
symmetric pad) makes the export refuse with a ParityError naming that layer, and write
nothing."""

from __future__ import annotations

import os

import numpy as np
import pytest

from golden_support import caffe_cases
from modelport.backends.keras import emit_core
from modelport.backends.torch_module import build_module
from modelport.caffe import load
from modelport.errors import ParityError
from modelport.export.keras import export_keras

LRN_CASE = next(c for c in caffe_cases() if c.name == "lrn_across")

# Caffe: floor((12 + 2 - 3) / 2) + 1 = 6 rows (5 columns), one pad row above and one below.
# Keras's 'same' gives 6 x 5 too, but pads (6 - 1) * 2 + 3 - 12 = 1 row in all: 0 above, 1
# below. The same shape, other numbers: the trap a shape check cannot see.
PAD_TRAP = """
name: "pad_trap"
input: "data"
input_shape { dim: 2 dim: 3 dim: 12 dim: 10 }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 4 kernel_size: 3 stride: 2 pad: 1
    weight_filler { type: "gaussian" std: 1 } bias_filler { type: "constant" value: 0.1 } } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
"""


def test_lrn_alpha_not_divided_by_local_size_is_refused(tmp_path, monkeypatch) -> None:
    module = build_module(LRN_CASE.net())
    export_keras(module, tmp_path / "right", inputs=LRN_CASE.inputs())  # the unplanted emitter
    lrn_layers = [layer.name for layer, _ in module.run_order if layer.type == "LRN"]
    monkeypatch.setattr(emit_core, "lrn_alpha_over_n",
                        lambda m: float(m.alpha_over_n) * int(m.local_size))
    before = {f: (tmp_path / "right" / f).read_bytes()
              for f in ("model_keras.py", "model.weights.h5", "model.keras")}
    with pytest.raises(ParityError) as err:  # into the folder of the good export
        export_keras(module, tmp_path / "right", inputs=LRN_CASE.inputs())
    message = str(err.value)
    assert "(type LRN)" in message, message
    assert any(f"layer '{name}'" in message for name in lrn_layers), message
    assert "max|diff|" in message and "allowed" in message
    # the refused export left the earlier one as it was
    assert {f: (tmp_path / "right" / f).read_bytes() for f in before} == before
    meta = tmp_path / "right" / ".modelport"
    assert sorted(os.listdir(meta)) == sorted(["current", "lock", os.readlink(meta / "current")])


def test_same_padding_instead_of_caffe_pad_is_refused(tmp_path, monkeypatch) -> None:
    prototxt = tmp_path / "net.prototxt"
    prototxt.write_text(PAD_TRAP)
    module = load(prototxt, None, allow_missing_weights=True)
    x = np.random.RandomState(3).standard_normal((2, 3, 12, 10)).astype(np.float32)
    export_keras(module, tmp_path / "right", inputs={"data": x})
    monkeypatch.setattr(emit_core, "conv_padding", lambda ctx, var, pad: (var, "same"))
    with pytest.raises(ParityError) as err:
        export_keras(module, tmp_path / "wrong", inputs={"data": x})
    message = str(err.value)
    assert "first divergent layer 'conv' (type Convolution)" in message, message
    assert not (tmp_path / "wrong").exists() or not any((tmp_path / "wrong").iterdir())
