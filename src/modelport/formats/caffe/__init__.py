"""Caffe's file formats: prototxt, caffemodel (V0/V1/V2), binaryproto, solver. No torch here."""
