"""Hostile names through the Keras export: layer, blob and net names that are quotes, triple
quotes, backslashes, newlines, NUL, Python keywords or the names model_keras.py itself uses
make a model_keras.py that runs nothing but the net (a canary file never appears), whose Keras
layers carry the Caffe names ('/' as '__') and whose output equals the PyTorch module's."""

from __future__ import annotations

import ast
import os

import numpy as np
import torch
from keras_test_support import final_outputs, import_model_keras

from hostile_support import code_payloads, quote
from modelport.caffe import load
from modelport.export.keras import export_keras

KEYWORDS = ["class", "None", "lambda", "import", "keras", "np", "os", "build", "load", "model",
            "t_data", "INPUT_NAMES", "__file__"]
ODD = ['dq"', "sq'", "back\\slash\\", "nl\nx", "cr\rx", "nul\x00x", "dir/sub", "sp ace",
       "a.b", "\u2028ls", "tab\tx", "é ü 名", "dup", "dup"]


def hostile_net(names: list[str], net_name: str) -> str:
    """Input `data` -> per name a 1x1 Convolution (layer and top named `name`) and an in-place
    ReLU named `name` + ' relu'."""
    lines = [f"name: {quote(net_name)}",
             'layer { name: "data" type: "Input" top: "data" '
             "input_param { shape { dim: 2 dim: 3 dim: 4 dim: 5 } } }"]
    prev = "data"
    for i, name in enumerate(names):
        top = f"{name}#{i}"  # blob names unique (the layer names may repeat)
        lines.append(f"layer {{ name: {quote(name)} type: \"Convolution\" bottom: {quote(prev)} "
                     f"top: {quote(top)} convolution_param {{ num_output: 3 kernel_size: 1 "
                     "weight_filler { type: \"gaussian\" std: 0.5 } "
                     "bias_filler { type: \"constant\" value: 0.1 } } }")
        lines.append(f"layer {{ name: {quote(name + ' relu')} type: \"ReLU\" "
                     f"bottom: {quote(top)} top: {quote(top)} }}")
        prev = top
    return "\n".join(lines) + "\n"


def test_hostile_names_run_nothing_and_the_model_equals_torch(tmp_path) -> None:
    canary = tmp_path / "canary"
    names = code_payloads(canary) + KEYWORDS + ODD
    proto = tmp_path / "net.prototxt"
    proto.write_text(hostile_net(names, code_payloads(canary)[0]))
    module = load(proto, None, allow_missing_weights=True)
    out = tmp_path / "keras"
    x = np.random.RandomState(0).standard_normal((2, 3, 4, 5)).astype(np.float32)
    export_keras(module, out, inputs={"data": x})
    assert not canary.exists(), "a name was executed as code"
    text = (out / "model_keras.py").read_text()
    ast.parse(text)
    namespace = import_model_keras(out, "model_keras_hostile")
    model = namespace.load()
    assert not canary.exists(), "a name was executed as code"
    ours = final_outputs(namespace, model, {"data": x})
    with torch.no_grad():
        ref = module(torch.from_numpy(x)).numpy()
    (name,) = ours
    assert name == f"{names[-1]}#{len(names) - 1}"
    np.testing.assert_allclose(ours[name], ref, rtol=0, atol=1e-5)
    # Each Caffe layer is a Keras layer of its name ('/' as '__', '.' and NUL as '_'; a
    # repeated name gets _1).
    keras_names = {layer.name for layer in model.layers}
    for n in names:
        written = n.replace("/", "__").replace(".", "_").replace("\x00", "_")
        assert written in keras_names, repr(n)
        assert written + " relu" in keras_names, repr(n)
    assert "dup_1" in keras_names
    assert namespace.CAFFE_LAYER_NAMES["dir__sub"] == "dir/sub"
    assert namespace.CAFFE_LAYER_NAMES["a_b"] == "a.b"
    assert sorted(os.listdir(out)) == [".modelport", "model.keras", "model.weights.h5",
                                       "model_keras.py"]
    assert sorted(os.listdir(tmp_path)) == ["keras", "net.prototxt"]
