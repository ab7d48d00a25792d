"""The ground floor: Caffe's schema (our `caffe.proto`, which declares Caffe's defaults, and its
generated `caffe_pb2`). Everything may import it; it imports nothing of modelport.

Regenerate with `python tools/gen_proto.py` (`--check` tells whether the committed module is
current).
"""

from modelport.schema import caffe_pb2

__all__ = ["caffe_pb2"]
