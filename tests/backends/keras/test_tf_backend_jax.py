"""The golden Caffe cases exported to Keras 3 (torch backend) and run on the **JAX backend** in a
child process (KERAS_BACKEND=jax), outputs and named blobs against Caffe's. Optional: jax is
not part of modelport's extras; without it every test here is skipped."""

from __future__ import annotations

import pytest
from keras_test_support import missing_keras_types

from golden_support import assert_blob_close, caffe_cases
from modelport.backends.torch_module import build_module
from modelport.export.keras import export_keras
from modelport.export.keras_tf import TensorFlowCase, run_tensorflow

pytestmark = pytest.mark.slow

# The small cases (CaffeNet and nsfw run on the TensorFlow backend: test_tf_backend*.py).
CASES = [c for c in caffe_cases() if c.name not in ("nsfw", "caffenet")]


@pytest.fixture(scope="module")
def jax_sweep(tmp_path_factory):
    pytest.importorskip("jax", reason="jax not installed")
    root = tmp_path_factory.mktemp("jax_backend")
    jobs, nets, skipped = [], {}, {}
    for case in CASES:
        net = build_module(case.net())
        missing = missing_keras_types(net)
        if missing:
            skipped[case.name] = f"type {missing[0]}: emitter not yet registered"
            continue
        export_keras(net, root / case.name, inputs=case.inputs())
        jobs.append(TensorFlowCase(case.name, str(root / case.name), case.inputs(), blobs=True))
        nets[case.name] = net
    results = run_tensorflow(jobs, root / "work", backend="jax")
    return {r.name: (r, nets[r.name]) for r in results}, skipped


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_jax_backend_matches_caffe(jax_sweep, case) -> None:
    done, skipped = jax_sweep
    if case.name in skipped:
        pytest.skip(skipped[case.name])
    result, net = done[case.name]
    assert result.error is None, result.error
    ref = case.blobs()
    for name, value in result.outputs.items():
        assert_blob_close(name, value, ref[name])
    produced = {t for layer, _ in net.run_order for t in layer.tops}
    compared = sorted(produced & set(ref) & set(result.blobs))
    assert compared
    for name in compared:
        assert_blob_close(name, result.blobs[name], ref[name])
