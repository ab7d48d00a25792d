"""The nets of test_extra_emitters on the TensorFlow backend.

Keras reads KERAS_BACKEND once per process, so one subprocess with KERAS_BACKEND=tensorflow
runs every net through the export's self-check (each named Keras layer against the PyTorch
module, the project tolerance). TensorFlow traces the layers with a free (None) batch axis,
which the torch backend never shows: a layer that reads the batch size as a number fails here.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

HERE = pathlib.Path(__file__).parent

SCRIPT = """
import json, sys
from test_extra_emitters import NETS, checked
import keras
results = {"backend": keras.backend.backend()}
for name, (builder, must) in NETS.items():
    try:
        diffs = checked(*builder())
        missing = sorted(must - set(diffs))
        results[name] = {"ok": not missing, "worst": max(diffs.values()), "missing": missing}
    except Exception as exc:
        results[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
print("RESULTS " + json.dumps(results))
"""


@pytest.mark.slow
def test_nets_pass_the_self_check_on_tensorflow() -> None:
    pytest.importorskip("tensorflow", reason="tensorflow-cpu (extra 'tensorflow') is not "
                        "installed: the TensorFlow backend cannot be checked")
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3",
           "CUDA_VISIBLE_DEVICES": "",
           "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parents[1]),
                                          os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                          text=True, timeout=500)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULTS ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    results = json.loads(lines[-1][len("RESULTS "):])
    assert results.pop("backend") == "tensorflow"
    failed = {k: v for k, v in results.items() if not v["ok"]}
    assert not failed, failed
    assert set(results) >= {"ssd_head", "conv1d", "conv3d", "caffe_order"}
