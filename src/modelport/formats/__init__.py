"""Readers and writers for foreign model formats (Caffe now; TensorFlow later)."""
