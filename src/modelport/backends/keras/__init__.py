"""A converted Caffe net as Keras 3 source (model_keras.py), weights and a self-check.

`registry` holds the emitters (`@register_keras("<Caffe type>")`), `emit_core` the common
types' emitters, `runtime` the custom Keras layers copied into the generated file, `source`
writes model_keras.py, `weights` writes model.weights.h5 / model.keras, and `selfcheck`
compares every named Keras layer output with the PyTorch module's blobs.
`modelport.export.export_keras` is the entry point.
"""
