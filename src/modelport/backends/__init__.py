"""Backends: the live torch module, generated source, and (later) ONNX."""
