"""The same ports against models real TensorFlow builds now (one subprocess per session, see
conftest.keras_cases), outputs compared with TF's under the project tolerance."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from port_cases import AMBIGUOUS, CASES, FORMATS, MobileNetTwin, file_source, port_and_verify

from modelport.tf import port_weights
from modelport.tf.verify_tf import verify_tf

pytestmark = pytest.mark.slow  # the one TensorFlow subprocess takes ~25 s


@pytest.mark.parametrize(("case", "fmt"),
                         [(c, f) for c in CASES for f in FORMATS if (c, f) not in AMBIGUOUS])
def test_live_case_ports_and_matches_tf(keras_cases: Path, case: str, fmt: str) -> None:
    report, parity = port_and_verify(keras_cases / case, fmt)
    assert report.ok and report.applied, str(report)
    assert parity.passed, parity.summary()


def test_same_pad_matches_tf_conv_and_max_pool(keras_cases: Path) -> None:
    """SamePad2d + a padding-0 conv / max pool equal tf.nn.conv2d / max_pool2d 'SAME' for
    every size, kernel (h != w), stride and dilation of the sweep."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from modelport.tf import SamePad2d
    from modelport.verify.tolerance import Tolerance

    tol = Tolerance()
    with np.load(keras_cases / "same_pad_sweep.npz", allow_pickle=False) as z:
        settings = z["settings"]
        assert len(settings) >= 60
        for i, (_n, k, s, d) in enumerate(settings):
            x = torch.from_numpy(z[f"x{i}"].transpose(0, 3, 1, 2).copy())
            w = torch.from_numpy(z[f"w{i}"].transpose(3, 2, 0, 1).copy())
            kernel = (int(k), int(k) % 3 + 1)
            y = F.conv2d(SamePad2d(kernel, int(s), int(d))(x), w, stride=int(s),
                         dilation=int(d)).numpy().transpose(0, 2, 3, 1)
            ref = z[f"y{i}"]
            assert y.shape == ref.shape, (i, settings[i])
            assert np.abs(y - ref).max() <= tol.allowed(ref), (i, settings[i])
            pooled = F.max_pool2d(SamePad2d(kernel, int(s), value=float("-inf"))(x), kernel,
                                  int(s)).numpy().transpose(0, 2, 3, 1)
            assert np.array_equal(pooled, z[f"p{i}"]), (i, settings[i])


@pytest.mark.parametrize("fmt", ["keras", "ckpt", "weights_h5"])
def test_keras_mobilenet_by_structure(keras_cases: Path, fmt: str) -> None:
    """Keras's own MobileNet (55 weighted layers) into a twin with other names: every variable
    placed by structure in model.layers order, logits within tolerance of TF's."""
    d = keras_cases / "mobilenet"
    twin = MobileNetTwin()
    report = port_weights(file_source(d, fmt), twin, sample_input=torch.zeros(1, 3, 64, 96))
    assert report.ok, str(report)
    assert len(report.ported) == 27 + 27 * 4 + 2  # bias-free kernels, BNs x 4, conv_preds
    assert all(r.rule.startswith("structure: model.layers order") for r in report.ported)
    # layer by layer: Keras layer names mapped to the twin's modules through the report
    parity = verify_tf(twin, d / "input.npy", d, names=report)
    assert parity.passed, parity.summary()
    assert len(parity.compared) == 55 + 1  # every weighted layer's output, then the logits
    assert parity.row("conv_dw_12").layer == "features.46" and not parity.notes[:-1]
