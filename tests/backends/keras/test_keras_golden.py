"""Every golden case of a real Caffe 1.0 (and the real open_nsfw), exported to Keras 3 and run on
the torch backend from the generated model_keras.py's own `load()`: the final outputs and every
blob that survives as a named Keras layer output match Caffe's blobs within the project
tolerance. A case whose layer types have no Keras emitter yet is skipped, naming the type;
the list is computed from the registry, so a newly registered emitter runs its cases."""

from __future__ import annotations

import ast
import json
import pathlib

import numpy as np
import pytest
from keras_test_support import final_outputs, import_model_keras, missing_keras_types, named_blobs

from golden_support import CAFFE_CASES, assert_blob_close, caffe_cases
from modelport.backends.torch_module import build_module
from modelport.export.keras import export_keras

SLOW = {"caffenet"}  # 60M parameters: the weights are written and read twice
CASES = [pytest.param(c, id=c.name, marks=[pytest.mark.slow] if c.name in SLOW else [])
         for c in caffe_cases() if c.name != "nsfw"]


@pytest.fixture(scope="module", params=CASES)
def exported(request, tmp_path_factory):
    """(case, model_keras namespace, loaded model, net) for one golden case, built once."""
    case = request.param
    module = build_module(case.net())
    missing = missing_keras_types(module)
    if missing:
        pytest.skip(f"type {missing[0]}: emitter not yet registered")
    out = tmp_path_factory.mktemp(case.name) / "keras"
    export_keras(module, out, inputs=case.inputs())
    namespace = import_model_keras(out, f"model_keras_{case.name}")
    return case, namespace, namespace.load(), module


def test_runs_on_the_torch_backend() -> None:
    import keras

    assert keras.backend.backend() == "torch"


def test_model_keras_is_standalone_keras(exported) -> None:
    """It imports keras and numpy only (and os, to find its weights), uses no backend's own
    module, and names each Keras layer after its Caffe layer."""
    case, namespace, model, module = exported
    tree = ast.parse(pathlib.Path(namespace.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import | ast.ImportFrom)
                for alias in (node.names if isinstance(node, ast.Import)
                              else [ast.alias(node.module or "")])}
    assert imported <= {"os", "keras", "numpy"}, imported
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    assert not names & {"tf", "tensorflow", "torch", "jax", "F", "nn"}, names
    layer_names = {layer.name for layer in model.layers}
    for layer, _ in module.run_order:
        assert layer.name.replace("/", "__") in layer_names, layer.name


def test_final_outputs_match_caffe(exported) -> None:
    case, namespace, model, module = exported
    ref = case.blobs()
    outs = final_outputs(namespace, model, case.inputs())
    assert list(outs) == list(module.output_names)
    for name, value in outs.items():
        assert_blob_close(name, value, ref[name])


def test_every_named_blob_matches_caffe(exported) -> None:
    case, namespace, model, module = exported
    ref = case.blobs()
    ours = named_blobs(namespace, model, case.inputs())
    produced = {t for layer, _ in module.run_order for t in layer.tops}
    # every blob a layer produces is a named Keras layer output; the rest of Caffe's blobs are
    # the inputs and the tops of Caffe's implicit Split layers
    assert produced <= set(ours), sorted(produced - set(ours))
    rest = set(ref) - produced - set(module.input_names)
    assert all("_split_" in name for name in rest), sorted(rest)
    compared = 0
    for name in sorted(produced & set(ref)):
        assert_blob_close(name, ours[name], ref[name])
        compared += 1
    assert compared == len(produced & set(ref)) > 0


@pytest.mark.network
@pytest.mark.slow
def test_open_nsfw_matches_caffe(tmp_path) -> None:
    from modelport.zoo import fetch_nsfw

    prototxt, caffemodel = fetch_nsfw()
    case = CAFFE_CASES / "nsfw"
    meta = json.loads((case / "case.json").read_text())
    x = np.load(case / "inputs" / "data.npy")
    # check=False: compared with Caffe itself below (the self-check's torch comparison of
    # all 228 layer outputs would double the minutes this test takes)
    export_keras(prototxt, tmp_path / "keras", weights=caffemodel, check=False,
                 input_shapes={"data": tuple(meta["inputs"]["data"])})
    namespace = import_model_keras(tmp_path / "keras", "model_keras_nsfw")
    model = namespace.load()
    ours = named_blobs(namespace, model, {"data": x})
    outs = final_outputs(namespace, model, {"data": x})
    saved = meta["blobs_saved"]
    compared = [n for n in saved if n in ours and n != "data"]
    assert "prob" in compared and len(compared) >= len(saved) - 1
    for name in compared:
        assert_blob_close(name, ours[name], np.load(case / "blobs" / f"{name}.npy"))
    prob = np.load(case / "blobs" / "prob.npy")
    assert_blob_close("prob", outs["prob"], prob)
    assert (outs["prob"].argmax(1) == prob.argmax(1)).all()
