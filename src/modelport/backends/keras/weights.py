"""Writing a Keras export's files into a staging folder: model_keras.py, model.weights.h5
(through Keras itself, `model.save_weights`) and model.keras (`model.save`, the full archive;
its custom layers are registered as `modelport>...` by model_keras.py).

The staging folder is private to one export (a fresh conversion folder of
modelport.convert.OutputFolder), so the files take their final names there and the whole set
is published in one step by the caller.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Iterator
from typing import Any

from modelport.atomic import fsync_dir, write_text
from modelport.backends.keras.source import WEIGHTS_FILE

__all__ = ["ARCHIVE_FILE", "KERAS_FILES", "SOURCE_FILE", "WEIGHTS_FILE", "write_keras_files"]

SOURCE_FILE = "model_keras.py"
ARCHIVE_FILE = "model.keras"
KERAS_FILES = (SOURCE_FILE, WEIGHTS_FILE, ARCHIVE_FILE)


def write_keras_files(stage: str, source: str, model: Any) -> list[str]:
    """Write the three files into `stage`; returns their names. Keras's own writers are used
    for the weights and the archive (Keras's quiet: its progress chatter is dropped)."""
    write_text(os.path.join(stage, SOURCE_FILE), source)
    with contextlib.redirect_stdout(io.StringIO()), _tensorflow_not_imported():
        model.save_weights(os.path.join(stage, WEIGHTS_FILE))
        model.save(os.path.join(stage, ARCHIVE_FILE))
    for name in (WEIGHTS_FILE, ARCHIVE_FILE):
        with open(os.path.join(stage, name), "rb") as fh:
            os.fsync(fh.fileno())
    fsync_dir(stage)
    return list(KERAS_FILES)


@contextlib.contextmanager
def _tensorflow_not_imported() -> Iterator[None]:
    """While Keras serialises a model: when TensorFlow has not been imported, tell Keras's lazy
    `tensorflow` module that it is unavailable, so that its `isinstance(obj, tf.TensorShape)`
    checks do not import TensorFlow (seconds) just to answer no: without TensorFlow imported no
    object can be a TensorFlow one. (Keras's private LazyModule state; if it is gone, Keras
    simply imports TensorFlow as before.)"""
    if "tensorflow" in sys.modules:
        yield
        return
    try:
        from keras.src.utils import module_utils

        lazy = module_utils.tensorflow
        before = lazy._available
    except (ImportError, AttributeError):
        yield
        return
    if before is not None:
        yield
        return
    lazy._available = False
    try:
        yield
    finally:
        lazy._available = None
