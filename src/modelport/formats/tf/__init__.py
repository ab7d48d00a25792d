"""Readers for TensorFlow checkpoints and Keras weight files (no torch, no TensorFlow).

Each reader returns a `WeightSource` (`source.py`); `modelport.tf` (ported weights, TF 'SAME'
padding) builds on them.
"""
