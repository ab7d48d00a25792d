"""Hostile names (issue 15): layer, blob, net and file names that are quotes, triple quotes,
backslashes, newlines, NUL, `../`, Python keywords or the names of generated / nn.Module
attributes go through convert (model.py built, loaded and run), export (ONNX, TorchScript),
features and the verify reports. Nothing they say may run (a canary file must never appear),
nothing is written outside the folders asked for, and the model either runs and equals the
live module or is refused with a ModelportError naming the layer."""

from __future__ import annotations

import json
import os
import pathlib
import zipfile

import numpy as np
import pytest
import torch

from hostile_support import code_payloads, quote
from modelport.backends.codegen import generate_source
from modelport.backends.torch_module import build_module
from modelport.convert import convert, load_generated
from modelport.errors import ModelportError
from modelport.formats.caffe.net_loader import parse_net

# Every attribute the generated Net or the live CaffeNet defines, and nn.Module's own.
ATTRIBUTE_NAMES = ["input_names", "output_names", "input_shapes", "forward", "forward_blobs",
                   "__init__", "training", "state_dict", "_modules", "load_state_dict", "net",
                   "run_order", "layer_keys", "blob_shapes", "phase", "split_aliases",
                   "source_layers", "layer_module", "__x", "__class__", "__dict__"]
KEYWORDS = ["class", "None", "lambda", "import", "self", "b", "torch", "F", "nn", "len",
            "getattr"]
ODD = ["[/x]", "[bold]b", "a,b;c", "x(y", "z]", 'dq"', "sq'", "back\\slash\\", "nl\nx",
       "cr\rx", "nul\x00x", "../escape", "../../escape2", "dir/sub", "sp ace", "a.b",
       "\u2028ls", "tab\tx", "allow_pickle", "file", "<script>alert(1)</script>",
       "$\\nosuchmacro{x}$", "é ü 名"]


def hostile_net(names: list[str], net_name: str, input_name: str = "data") -> str:
    """Input -> one 1x1 Convolution per name (layer and top both named `name`), each followed
    by an in-place ReLU whose layer name is `name` + ' relu'."""
    lines = [f"name: {quote(net_name)}",
             f"layer {{ name: {quote(input_name)} type: \"Input\" top: {quote(input_name)} "
             "input_param { shape { dim: 2 dim: 3 dim: 4 dim: 5 } } }"]
    prev = input_name
    for name in names:
        lines.append(
            f"layer {{ name: {quote(name)} type: \"Convolution\" bottom: {quote(prev)} "
            f"top: {quote(name)} convolution_param {{ num_output: 3 kernel_size: 1 "
            "weight_filler { type: \"gaussian\" std: 0.5 } "
            "bias_filler { type: \"constant\" value: 0.1 } } }")
        lines.append(f"layer {{ name: {quote(name + ' relu')} type: \"ReLU\" "
                     f"bottom: {quote(name)} top: {quote(name)} }}")
        prev = name
    return "\n".join(lines) + "\n"


def all_names(canary: pathlib.Path) -> list[str]:
    return code_payloads(canary) + ATTRIBUTE_NAMES + KEYWORDS + ODD


@pytest.fixture
def world(tmp_path):
    """A tmp folder with a canary path, and a record of what exists beside it."""
    work = tmp_path / "work"
    work.mkdir()
    canary = tmp_path / "canary"
    before = sorted(os.listdir(tmp_path.parent))
    yield work, canary
    assert not canary.exists(), "a name was executed as code"
    assert sorted(os.listdir(tmp_path.parent)) == before, "something was written outside"
    outside = [p for p in tmp_path.iterdir() if p.name not in ("work",)]
    assert not outside, f"written beside the work folder: {outside}"


def _write_hostile(work: pathlib.Path, canary: pathlib.Path, names=None,
                   input_name: str = "data") -> pathlib.Path:
    names = all_names(canary) if names is None else names
    file_name = 'evil"""\n' + "x'''\\" + ".prototxt"
    proto = work / file_name
    proto.write_text(hostile_net(names, code_payloads(canary)[0], input_name))
    return proto


def test_convert_with_hostile_names_runs_nothing_and_model_py_equals_live(world) -> None:
    work, canary = world
    names = all_names(canary)
    proto = _write_hostile(work, canary)
    result = convert(proto, None, work / "out", allow_missing_weights=True)
    assert not canary.exists()
    published = sorted(f for f in os.listdir(work / "out") if not f.startswith("."))
    assert published == ["conversion.json", "model.py", "model.safetensors"]
    generated = load_generated(work / "out" / "model.py").load()
    assert not canary.exists()
    x = torch.randn(2, 3, 4, 5)
    with torch.no_grad():
        ours = generated.forward_blobs(x)
        live = result.module.forward_blobs(x)
        assert torch.equal(generated(x), result.module(x))
    # Blobs keep their Caffe names; every one is the live module's, bit for bit.
    assert set(ours) == set(live) == {"data", *names}
    for name, t in live.items():
        assert torch.equal(ours[name], t), name
    assert tuple(generated.output_names) == (names[-1],)
    # conversion.json shows the Caffe names as they are.
    report = json.loads((work / "out" / "conversion.json").read_text())
    assert [lay["name"] for lay in report["layers"]] == ["data"] + [
        n for name in names for n in (name, name + " relu")]
    assert report["net"] == code_payloads(canary)[0]
    keys = [lay["module"] for lay in report["layers"][1:]]
    assert len(set(keys)) == len(keys), "two layers share a module key"
    # The state dict loads strictly into the generated Net (load() did) and matches the live one.
    assert set(generated.state_dict()) == set(result.module.state_dict())


def test_generated_source_has_no_raw_control_characters(world) -> None:
    work, canary = world
    net = parse_net(hostile_net(all_names(canary), "n\x00\"\"\"x"), 'f"""\n\x00.prototxt')
    module = build_module(net, allow_missing_weights=True)
    src = generate_source(module, 'f"""\n\x00.prototxt')
    compile(src, "model.py", "exec")
    for ch in src:
        assert ch == "\n" or ch.isprintable(), f"raw {ch!r} in the generated source"


def test_normal_names_keep_their_safetensors_keys(tmp_path) -> None:
    text = hostile_net(["conv1", "conv2_3x3"], "plain")
    net = parse_net(text, "plain.prototxt")
    module = build_module(net, allow_missing_weights=True)
    assert sorted(module.state_dict()) == ["conv1.bias", "conv1.weight", "conv2_3x3.bias",
                                           "conv2_3x3.weight"]


def test_generated_attribute_names_get_safe_keys_but_keep_caffe_names(tmp_path) -> None:
    net = parse_net(hostile_net(ATTRIBUTE_NAMES, "attrs"), "attrs.prototxt")
    module = build_module(net, allow_missing_weights=True)
    x = torch.randn(2, 3, 4, 5)
    blobs = module.forward_blobs(x)
    assert set(blobs) == {"data", *ATTRIBUTE_NAMES}
    for name in ATTRIBUTE_NAMES:
        key = module.layer_keys[name]
        assert module.layer_module(name) is module._modules[key]
    # nn.Module and CaffeNet keep working: nothing user-named shadows them.
    assert module.training is False and callable(module.forward)
    assert isinstance(module.output_names, list)
    src = generate_source(module, "attrs.prototxt")
    ns: dict = {"__file__": str(tmp_path / "model.py")}
    exec(compile(src, "model.py", "exec"), ns)
    gen = ns["Net"]()
    gen.load_state_dict(module.state_dict())
    gen.eval()
    assert isinstance(gen.input_shapes, dict) and gen.output_names == ("__dict__",)
    with torch.no_grad():
        assert torch.equal(gen(x), module(x))


@pytest.mark.parametrize("input_name", ["len", "getattr", "self", "b", "class", "a b", "__x"])
def test_input_names_that_shadow_what_the_generated_code_uses(input_name, tmp_path) -> None:
    net = parse_net(hostile_net(["conv"], "inputs", input_name), "inputs.prototxt")
    module = build_module(net, allow_missing_weights=True)
    src = generate_source(module, "inputs.prototxt")
    ns: dict = {"__file__": str(tmp_path / "model.py")}
    exec(compile(src, "model.py", "exec"), ns)
    gen = ns["Net"]()
    gen.load_state_dict(module.state_dict())
    gen.eval()
    x = torch.randn(2, 3, 4, 5)
    with torch.no_grad():
        assert torch.equal(gen(x), module(x))
        if input_name != "self":  # nn.Module.__call__'s own first parameter is `self`
            assert torch.equal(gen(**{input_name: x}), module(x))


@pytest.mark.slow
def test_export_of_a_hostile_folder_runs_nothing(world) -> None:
    from modelport.cli import main

    work, canary = world
    names = all_names(canary)
    proto = _write_hostile(work, canary, names)
    convert(proto, None, work / "out", allow_missing_weights=True)
    onnx_path, ts_path, ep_path = work / "m.onnx", work / "m.pt", work / "m.pt2"
    code = main(["export", str(work / "out"), "--onnx", str(onnx_path), "--torchscript",
                 str(ts_path), "--exported-program", str(ep_path)])
    assert code == 0
    assert not canary.exists()
    # The live module from the prototxt, and torch's TorchScript-based ONNX exporter.
    from modelport.backends.torch_module import build_module as build
    from modelport.formats.caffe.net_loader import read_net
    from modelport.formats.caffe.writer import write_caffemodel

    weights = work / "w.caffemodel"
    write_caffemodel(weights, build(read_net(proto), allow_missing_weights=True))
    code = main(["export", str(proto), str(weights), "--onnx", str(work / "m17.onnx"),
                 "--opset", "17", "--exported-program", str(work / "live.pt2")])
    assert code == 0
    assert not canary.exists()
    assert torch.export.load(str(ep_path)).module() is not None
    import onnx

    model = onnx.load(str(onnx_path))
    assert [i.name for i in model.graph.input] == ["data"]
    assert [o.name for o in model.graph.output] == [names[-1]]
    loaded = torch.jit.load(str(ts_path))
    x = torch.randn(2, 3, 4, 5)
    generated = load_generated(work / "out" / "model.py").load()
    with torch.no_grad():
        out = loaded(x)
        out = out[0] if isinstance(out, tuple) else out
        assert torch.allclose(out, generated(x), rtol=0, atol=1e-5)
    assert sorted(os.listdir(work)) == sorted([proto.name, "out", "m.onnx", "m.pt", "m.pt2",
                                               "w.caffemodel", "m17.onnx", "live.pt2"])


def test_features_npz_round_trips_hostile_blob_names(world) -> None:
    import cv2

    from modelport.transfer import features as F

    work, canary = world
    names = ["allow_pickle", "file", "dir/sub", "../escape", "nul\x00x", "sp ace", "a.b",
             "fix_imports", "args", "kwds", "arr_0", "__index__.json", "manifest"]
    net = parse_net(hostile_net(names, "feat"), "feat.prototxt")
    module = build_module(net, allow_missing_weights=True)
    imgs = work / "imgs"
    imgs.mkdir()
    for i in range(3):
        cv2.imwrite(str(imgs / f"{i}.png"), np.full((4, 5, 3), 40 * i, np.uint8))
    images = F.read_image_list(imgs)
    out = work / "f.npz"
    result = F.extract_features(module, names, images, out, F.Preprocess(size=(4, 5)),
                                batch_size=2, chunk_size=2)
    assert result.blobs == names
    loaded = F.load_features(out)
    assert set(loaded) == {*names, "paths"}
    x = torch.from_numpy(np.stack([F.Preprocess(size=(4, 5))(p) for p in images.paths]))
    with torch.no_grad():
        live = module.forward_blobs(x)
    for name in names:
        ref = live[name].reshape(3, -1).numpy()  # batch 3 here, batches of 2 there
        np.testing.assert_allclose(loaded[name], ref, rtol=0, atol=1e-4 * max(1, np.abs(ref).max()))
    assert sorted(os.listdir(work)) == ["f.npz", "imgs"]
    with zipfile.ZipFile(out) as z:
        for member in z.namelist():
            assert ".." not in pathlib.PurePosixPath(member).parts and "\x00" not in member
            assert not member.startswith("/")


@pytest.mark.slow  # matplotlib lays out the long tick labels for seconds
def test_verify_reports_escape_hostile_names(world) -> None:
    from modelport.verify import Reference, ReferenceOutput, verify
    from modelport.verify.html import render_html

    work, canary = world
    names = code_payloads(canary) + ODD + ["input_shapes", "class"]  # fewer rows: a quicker plot
    net = parse_net(hostile_net(names, "<b>net</b>"), "v.prototxt")
    module = build_module(net, allow_missing_weights=True)

    class Live(Reference):
        name = "the live module <i>"

        def run(self, ir, inputs):
            x = torch.from_numpy(inputs["data"])
            with torch.no_grad():
                blobs = {k: v.numpy().copy() for k, v in module.forward_blobs(x).items()}
            blobs[names[3]] += 1.0  # one hostile layer diverges
            return ReferenceOutput(blobs=blobs)

    report = verify(module, Live())
    assert not report.passed
    assert report.first_divergent is not None and report.first_divergent.layer == names[3]
    page = render_html(report)
    assert "<script>" not in page and "<b>net</b>" not in page and "<i>" not in page
    assert "\x00" not in page
    import io

    from rich.console import Console

    from modelport.verify.render import render_table

    out = io.StringIO()
    render_table(report, Console(file=out, width=400))  # names are not rich markup
    assert "[/x]" in out.getvalue() and "[bold]b" in out.getvalue()
    data = json.loads(report.to_json())
    assert {b["blob"] for b in data["blobs"]} >= set(names)
    assert data["first_divergent"]["layer"] == names[3]


def test_refused_names_are_modelport_errors(tmp_path) -> None:
    """A blob name Caffe itself cannot hold (empty) is refused, naming the layer."""
    text = ('layer { name: "in" type: "Input" top: "data" '
            "input_param { shape { dim: 1 dim: 3 dim: 2 dim: 2 } } }\n"
            'layer { name: "odd" type: "ReLU" bottom: "data" top: "" }\n')
    try:
        module = build_module(parse_net(text, "e.prototxt"), allow_missing_weights=True)
    except ModelportError as exc:
        assert "odd" in str(exc)
        return
    src = generate_source(module, "e.prototxt")
    ns: dict = {"__file__": str(tmp_path / "model.py")}
    exec(compile(src, "model.py", "exec"), ns)
    x = torch.randn(1, 3, 2, 2)
    assert torch.equal(ns["Net"]()(x), module(x))


def test_a_torchscript_archive_that_does_not_load_back_is_an_export_error(monkeypatch) -> None:
    from modelport.export.common import ExportError
    from modelport.export.torchscript import export_torchscript

    net = parse_net(hostile_net(["conv"], "ts"), "ts.prototxt")
    module = build_module(net, allow_missing_weights=True)

    def refuse(*args, **kwargs):  # what torch.jit.load raised for non-ASCII submodule names
        raise RuntimeError("\n ill formed octal specifier:\n  File \"code/__torch__.py\"")

    monkeypatch.setattr(torch.jit, "load", refuse)
    with pytest.raises(ExportError, match="does not load back"):
        export_torchscript(module, None)


def test_cli_errors_stay_one_line_with_control_characters_in_names(tmp_path, capsys) -> None:
    from modelport.cli import main

    proto = tmp_path / "n.prototxt"
    proto.write_text('layer { name: "in" type: "Input" top: "x" '
                     "input_param { shape { dim: 1 dim: 2 } } }\n"
                     'layer { name: "a\\rb\\033[2J\\000" type: "ReLU" bottom: "x" top: "y" }\n'
                     'layer { name: "c\\nd" type: "ReLU" bottom: "x" top: "y" }\n')
    code = main(["convert", str(proto), "-o", str(tmp_path / "out"),
                 "--allow-missing-weights"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "produced by multiple sources" in err
    assert all(ch.isprintable() for ch in err.rstrip("\n"))


def test_cli_convert_prints_blob_names_as_text(tmp_path, capsys) -> None:
    from modelport.cli import main

    proto = tmp_path / "n.prototxt"
    proto.write_text(hostile_net(["[/x]", "[bold]y"], "[/n]", input_name="[red]in"))
    code = main(["convert", str(proto), "-o", str(tmp_path / "out"), "--allow-missing-weights"])
    out = capsys.readouterr().out
    assert code == 0
    assert "[red]in" in out and "[bold]y" in out and "[/n]" in out
