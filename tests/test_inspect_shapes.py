"""The torch-free inspect shortcut (modelport.inspect_shapes) gives exactly the rows of the full
inspect (which converts every layer with torch) on every golden net it handles, and hands
every other net to the full inspect."""

from __future__ import annotations

import pytest

from golden_support import CAFFE_CASES
from modelport.inspect import inspect_files
from modelport.inspect_shapes import format_shape, human, inspect_without_torch

NETS = sorted(CAFFE_CASES.glob("*/net.prototxt"))
FIELDS = ("name", "type", "bottoms", "tops", "top_shapes", "params", "macs", "problem",
          "no_converter", "weights_found")


@pytest.fixture(autouse=True)
def _full_inspect_runs_the_meta_forward(monkeypatch):
    """The full inspect (and CaffeNet) take conv/pool/... top shapes from this module too:
    switch that off here, so the rows are compared with torch's meta-tensor forward."""
    import modelport.inspect_shapes as shortcut

    real = shortcut.top_shapes
    monkeypatch.setattr(shortcut, "top_shapes", lambda layer, bottoms: None)
    monkeypatch.setattr(shortcut, "_real_top_shapes", real, raising=False)


def _same(fast, full) -> None:
    assert fast.name == full.name
    assert len(fast.layers) == len(full.layers)
    for a, b in zip(fast.layers, full.layers):
        for f in FIELDS:
            assert getattr(a, f) == getattr(b, f), (a.name, f, getattr(a, f), getattr(b, f))
    assert (fast.total_params, fast.total_macs) == (full.total_params, full.total_macs)
    assert not full.unsupported and not full.missing_weights


@pytest.mark.parametrize("path", NETS, ids=[p.parent.name for p in NETS])
def test_shortcut_rows_equal_the_full_inspect(path) -> None:
    fast = inspect_without_torch(path)
    if fast is None:
        pytest.skip("a layer the shortcut hands to the full inspect")
    _same(fast, inspect_files(path))


def test_the_shortcut_covers_the_usual_nets() -> None:
    handled = {p.parent.name for p in NETS if inspect_without_torch(p) is not None}
    assert {"caffenet", "conv_basic", "pool_max_ceil", "pool_ave_pad", "lrn_across"} <= handled


def test_vgg16_and_a_given_input_shape(tmp_path) -> None:
    from bench.convert_large import vgg16_prototxt

    proto = tmp_path / "vgg.prototxt"
    proto.write_text(vgg16_prototxt(0.25))
    fast = inspect_without_torch(proto, {"data": (2, 3, 224, 224)})
    assert fast is not None
    _same(fast, inspect_files(proto, input_shapes={"data": (2, 3, 224, 224)}))


def test_nets_it_does_not_handle_go_to_the_full_inspect(tmp_path) -> None:
    net = tmp_path / "n.prototxt"
    net.write_text('layer { name: "data" type: "Input" top: "data" input_param { shape { '
                   'dim: 1 dim: 3 dim: 5 dim: 7 } } }\n'
                   'layer { name: "p" type: "Pooling" bottom: "data" top: "p" pooling_param '
                   '{ pool: MAX kernel_size: 9 } }\n')  # kernel larger than the input
    assert inspect_without_torch(net) is None
    assert inspect_files(net).layers[1].problem  # the full inspect flags it
    assert inspect_without_torch(net, {"nope": (1, 3, 9, 9)}) is None  # its error names it


@pytest.mark.parametrize("path", NETS, ids=[p.parent.name for p in NETS])
def test_top_shapes_equal_the_meta_forward(path) -> None:
    """What CaffeNet's shape inference takes from top_shapes is what the module computes."""
    import modelport.inspect_shapes as shortcut
    from modelport.backends.torch_module import build_module
    from modelport.pipeline import load_net

    net = load_net(path, None, "test")
    try:
        module = build_module(net, allow_missing_weights=True)  # the meta forward everywhere
    except Exception as exc:  # noqa: BLE001 - a golden net needing weights or an input shape
        pytest.skip(f"not buildable without weights: {exc}")
    checked = 0
    for layer in net.layers:
        if not layer.bottoms or any(b not in module.blob_shapes for b in layer.bottoms):
            continue
        got = shortcut._real_top_shapes(layer, [module.blob_shapes[b] for b in layer.bottoms])
        if got is not None and not layer.in_place:
            assert got == [module.blob_shapes[t] for t in layer.tops], layer.name
            checked += 1
    if not checked:
        pytest.skip("no layer the shortcut handles")


def test_format_helpers() -> None:
    assert [format_shape(s) for s in (None, (), (1, 3, 224, 224))] == ["?", "scalar",
                                                                        "1x3x224x224"]
    assert [human(n) for n in (0, 999, 1000, 123456789, 7 * 10**9)] == [
        "0", "999", "1.00K", "123.46M", "7.00G"]
