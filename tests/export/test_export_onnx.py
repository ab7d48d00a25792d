"""ONNX export of every golden case, run by ONNX Runtime and compared with REAL Caffe's blobs.

The exported file (not our module) is checked against tests/golden/caffe: the graph may use only
the default ONNX domain, and ONNX Runtime's outputs must match what Caffe 1.0 computed within the
project tolerance. Cases whose layers have no converter yet are skipped with the reason.
"""

from __future__ import annotations

import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from golden_support import assert_blob_close, caffe_cases
from modelport.backends.torch_module import build_module
from modelport.errors import ParityError, UnsupportedLayerError
from modelport.export.common import ExportError
from modelport.export.onnx import check_standard_domains, export_onnx

CASES = [c for c in caffe_cases() if c.name != "nsfw"]  # nsfw: test_export_nsfw (network)


def convert_or_skip(case):
    try:
        return build_module(case.net())
    except UnsupportedLayerError as exc:
        pytest.skip(f"not convertible yet: {exc}")


def run_onnx_file(path: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    feed = {i.name: inputs[i.name] for i in session.get_inputs()}
    return dict(zip(names, session.run(names, feed)))


def assert_default_domain(path: str) -> set[str]:
    model = onnx.load(path)
    onnx.checker.check_model(model)
    domains = {n.domain for n in model.graph.node}
    assert domains <= {"", "ai.onnx"}, f"non-standard ONNX domains {domains}"
    assert {imp.domain for imp in model.opset_import} <= {"", "ai.onnx"}
    assert len(model.functions) == 0
    return {n.op_type for n in model.graph.node}


def check_against_caffe(case, path: str, batch_of: int | None = None) -> None:
    ref = case.blobs()
    got = run_onnx_file(path, case.inputs())
    assert got, "the exported graph has no outputs"
    for name, value in got.items():
        assert_blob_close(name, value, ref[name])


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_onnx_export_matches_caffe(case, tmp_path) -> None:
    net = convert_or_skip(case)
    path = str(tmp_path / "model.onnx")
    _, report = export_onnx(net, path, inputs=case.inputs())
    assert os.path.exists(path)
    assert report.outputs == list(net.output_names)
    assert_default_domain(path)
    check_against_caffe(case, path)


# Nets where only the batch axis may vary; opset 17 exercises torch's TorchScript-based exporter.
DYNAMIC = ["pool_ave_pad", "pool_max_ceil", "conv_hw", "reshape_flatten_crop", "eltwise",
           "lrn_within", "batchnorm_scale"]


@pytest.mark.parametrize("opset", [17, 18])
@pytest.mark.parametrize("name", DYNAMIC)
def test_dynamic_batch_export_matches_caffe_at_other_batch(name, opset, tmp_path) -> None:
    case = next(c for c in CASES if c.name == name)
    net = convert_or_skip(case)
    path = str(tmp_path / "model.onnx")
    _, report = export_onnx(net, path, inputs=case.inputs(), opset=opset, dynamic_batch=True)
    assert len(report.checked_batches) == 2
    model = onnx.load(path)
    assert model.opset_import[0].version == opset
    for vi in model.graph.input:
        dims = vi.type.tensor_type.shape.dim
        assert dims[0].dim_param and not dims[0].HasField("dim_value"), "batch axis not symbolic"
        assert all(d.HasField("dim_value") for d in dims[1:]), "only the batch axis is dynamic"
    assert_default_domain(path)
    # Caffe's samples are independent: sample i of a batch of one equals row i of the golden.
    ref = case.blobs()
    inputs = case.inputs()
    for i in range(next(iter(inputs.values())).shape[0]):
        got = run_onnx_file(path, {k: v[i : i + 1] for k, v in inputs.items()})
        for out, value in got.items():
            assert_blob_close(f"{out}[{i}]", value, ref[out][i : i + 1])


def test_caffe_pooling_exports_as_pad_pool_div_with_constant_divisor(tmp_path) -> None:
    case = next(c for c in CASES if c.name == "pool_ave_pad")
    path = str(tmp_path / "pool.onnx")
    export_onnx(build_module(case.net()), path, inputs=case.inputs())
    ops = assert_default_domain(path)
    assert {"Pad", "AveragePool", "Div"} <= ops <= {"Pad", "AveragePool", "Div", "Slice",
                                                    "Constant", "Identity"}
    model = onnx.load(path)
    constants = {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    constants |= {t.name for t in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}

    def source(name: str) -> str:  # look through Identity (torch's clone of a constant)
        while name in producer and producer[name].op_type == "Identity":
            name = producer[name].input[0]
        return name

    for node in model.graph.node:  # Caffe's divisor table is a constant, not computed
        if node.op_type == "Div":
            assert source(node.input[1]) in constants, node
    pads = [n for n in model.graph.node if n.op_type == "AveragePool"]
    for node in pads:  # windows never reach implicit padding: Caffe's padding is explicit
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert not any(attrs.get("pads", [0])), attrs
        assert attrs.get("ceil_mode", 0) == 0


def test_mismatching_export_is_refused_and_nothing_written(tmp_path, monkeypatch) -> None:
    case = next(c for c in CASES if c.name == "conv_basic")
    net = build_module(case.net())
    import modelport.export.onnx as onnx_export

    real_build = onnx_export._build

    def corrupt(*args, **kwargs):
        model = real_build(*args, **kwargs)
        for init in model.graph.initializer:  # perturb one weight of the exported graph
            arr = onnx.numpy_helper.to_array(init).copy()
            if arr.ndim == 4:
                arr.flat[0] += 1.0
                init.CopyFrom(onnx.numpy_helper.from_array(arr, init.name))
        return model

    monkeypatch.setattr(onnx_export, "_build", corrupt)
    path = tmp_path / "model.onnx"
    path.write_bytes(b"previous")
    with pytest.raises(ParityError, match="first divergent output 'conv'"):
        export_onnx(net, str(path), inputs=case.inputs())
    assert path.read_bytes() == b"previous"
    assert sorted(os.listdir(tmp_path)) == ["model.onnx"]  # no temporary file left behind


def test_custom_domain_is_refused() -> None:
    from onnx import TensorProto, helper

    node = helper.make_node("CaffePool", ["x"], ["y"], domain="com.example")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1])], [helper.make_tensor_value_info("y", TensorProto.FLOAT,
                                                                      [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18),
                                                    helper.make_opsetid("com.example", 1)])
    with pytest.raises(ExportError, match="com.example::CaffePool"):
        check_standard_domains(model)


def test_outputs_named_after_caffe_blobs_even_when_torch_names_collide(tmp_path) -> None:
    # activations has blobs named like torch's internal values (exp_2, ...): a naive rename
    # produced "Duplicate definition of name" graphs.
    case = next(c for c in CASES if c.name == "activations")
    net = convert_or_skip(case)
    path = str(tmp_path / "act.onnx")
    export_onnx(net, path, inputs=case.inputs())
    model = onnx.load(path)
    assert [o.name for o in model.graph.output] == list(net.output_names)
    assert [i.name for i in model.graph.input] == list(net.input_names)


@pytest.mark.slow
@pytest.mark.network
def test_export_nsfw_matches_caffe(tmp_path) -> None:
    from modelport.caffe import load
    from modelport.zoo import fetch_nsfw

    case = next(c for c in caffe_cases() if c.name == "nsfw")
    _, caffemodel = fetch_nsfw()
    net = load(case.prototxt, caffemodel)
    path = str(tmp_path / "nsfw.onnx")
    export_onnx(net, path, inputs=case.inputs(), outputs=["prob"])
    assert_default_domain(path)
    got = run_onnx_file(path, case.inputs())
    assert_blob_close("prob", got["prob"], case.blobs()["prob"])


def test_an_input_whose_last_axis_is_1_exports(tmp_path) -> None:
    # The self-check's second input is the first one reversed along its last axis; a size-1
    # axis made a negative-stride array that torch.from_numpy refused.
    from modelport.caffe import load

    proto = tmp_path / "net.prototxt"
    proto.write_text("""
name: "column"
layer { name: "data" type: "Input" top: "data"
  input_param { shape { dim: 2 dim: 3 dim: 4 dim: 1 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  inner_product_param { num_output: 2 weight_filler { type: "gaussian" std: 0.5 } } }
""")
    net = load(proto, None, allow_missing_weights=True)
    x = np.random.RandomState(0).randn(2, 3, 4, 1).astype(np.float32)
    model, _ = export_onnx(net, tmp_path / "column.onnx", inputs={"data": x})
    got = ort.InferenceSession(model.SerializeToString()).run(None, {"data": x})[0]
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    assert_blob_close("ip", got, want)
