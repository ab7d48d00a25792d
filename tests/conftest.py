"""Shared pytest setup: make tests/ importable for golden_support."""

from __future__ import annotations

import os
import pathlib
import sys

# Keras reads KERAS_BACKEND at its first import (TensorFlow's backend by default when TF is
# installed): every test process runs Keras on torch unless a test chose otherwise (the
# TensorFlow-backend tests run Keras in a subprocess).
os.environ.setdefault("KERAS_BACKEND", "torch")

sys.path.insert(0, str(pathlib.Path(__file__).parent))
