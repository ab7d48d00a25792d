"""The layer registry: README agrees with it, every type has a parity case, user registration."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import torch

from golden_support import CAFFE_CASES
from modelport import register_layer
from modelport.backends.torch_module import build_module
from modelport.errors import ConfigError, UnsupportedLayerError
from modelport.layers.base import CaffeModule
from modelport.layers.registry import layer_types, lookup
from modelport.pipeline import parse_net

ROOT = pathlib.Path(__file__).resolve().parents[2]

# Types whose parity is checked outside the Caffe goldens, and the test file that does it
# (each against an independent reference: a transcription of Caffe's loops, cv2.dnn, or the
# training goldens). The test below checks the file exists and names the type.
PARITY_ELSEWHERE = {
    "SPP": "tests/layers/test_pooling.py",
    "Split": "tests/layers/test_shape.py",
    "Silence": "tests/layers/test_shape.py",
    "Permute": "tests/layers/test_ssd.py",
    "Normalize": "tests/layers/test_ssd.py",
    "PriorBox": "tests/layers/test_ssd.py",
    "DetectionOutput": "tests/layers/test_ssd.py",
    "MemoryData": "tests/formats/test_inputs.py",
    "DummyData": "tests/formats/test_inputs.py",
}


def _golden_types() -> set[str]:
    types: set[str] = set()
    for case in CAFFE_CASES.iterdir():
        meta = case / "case.json"
        if meta.exists():
            types.update(json.loads(meta.read_text()).get("layers", []))
    return types


@pytest.mark.parametrize("type_name", layer_types(role="inference") + layer_types(role="input"))
def test_every_registered_type_has_a_parity_case(type_name: str) -> None:
    if type_name in _golden_types():
        return
    where = PARITY_ELSEWHERE.get(type_name)
    assert where, (f"Caffe type {type_name} is registered but no golden case or parity test "
                   "covers it")
    path = ROOT / where
    assert path.exists() and type_name in path.read_text(), f"{where} does not test {type_name}"


def test_readme_layer_table_matches_registry() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "gen_layer_table.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_every_converter_documents_caffe_semantics() -> None:
    for type_name in layer_types():
        spec = lookup(type_name)
        assert spec is not None and len(spec.summary) > 30, f"{type_name}: docstring too thin"


def test_duplicate_registration_is_an_error() -> None:
    with pytest.raises(ConfigError, match="already registered"):
        register_layer("Convolution")(lambda layer, ctx: CaffeModule())


def test_user_registered_layer_converts() -> None:
    class Negate(CaffeModule):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return -x

    text = """
    layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 } } }
    layer { name: "neg" type: "MyForkNegate" bottom: "data" top: "neg" }
    """
    with pytest.raises(UnsupportedLayerError, match=r"layer 'neg' \(type MyForkNegate\)"):
        build_module(parse_net(text))

    @register_layer("MyForkNegate")
    def convert_my_fork_negate(layer, ctx):
        """A user's fork layer that negates its input, registered from user code."""
        return Negate()

    try:
        x = torch.from_numpy(np.arange(6, dtype=np.float32).reshape(2, 3))
        assert torch.equal(build_module(parse_net(text))(x), -x)
    finally:
        from modelport.layers import registry

        registry._REGISTRY.pop("MyForkNegate")


def test_unsupported_layers_are_all_listed_at_once() -> None:
    text = """
    layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 } } }
    layer { name: "prop" type: "Python" bottom: "data" top: "a"
            python_param { module: "rpn.proposal_layer" layer: "ProposalLayer" } }
    layer { name: "roi" type: "ROIPooling" bottom: "a" top: "b" }
    """
    with pytest.raises(UnsupportedLayerError) as info:
        build_module(parse_net(text))
    message = str(info.value)
    assert "2 layers" in message and "'prop' (type Python)" in message
    assert "'roi' (type ROIPooling)" in message and "register_layer" in message
    assert "\n" not in message
