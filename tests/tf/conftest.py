"""Session fixtures of the TF port tests: all Keras cases built by one TensorFlow subprocess."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

MAKER = Path(__file__).with_name("make_keras_case.py")


@pytest.fixture(scope="session")
def keras_cases(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with every case of make_keras_case.py, built now by real TensorFlow."""
    if importlib.util.find_spec("tensorflow") is None:
        pytest.skip("tensorflow is not installed (pip install 'modelport[tensorflow]'): the "
                    "live TF port tests need it; the fixture tests still run")
    out = tmp_path_factory.mktemp("keras_cases")
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3",
               CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, str(MAKER), str(out)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out
