"""The Caffe schema under its old name: a re-export of `modelport.schema.caffe_pb2` (the same
classes and descriptor, registered once). New code imports `from modelport.schema import
caffe_pb2`."""

from modelport.schema.caffe_pb2 import *  # noqa: F403  (every message, enum and DESCRIPTOR)
