"""Files a layer's parameters name, read by the loader so that converters do no I/O.

InfogainLoss (layers/infogain_loss_layer.cpp) reads its K x K matrix H from the BlobProto file
`infogain_loss_param.source` in LayerSetUp when H is not given as a third bottom; Caffe opens
the path as given (relative to the working directory). The loader puts that matrix into the
layer's own LayerParameter as its one `blobs` entry (the IR keeps learned weights in
`Layer.blobs`, so this never mixes with them; the writers drop LayerParameter.blobs).
"""

from __future__ import annotations

import numpy as np

from modelport.errors import ModelportError
from modelport.formats.caffe.blobproto import read_binaryproto
from modelport.schema import caffe_pb2

__all__ = ["read_layer_files"]


def read_layer_files(lp: caffe_pb2.LayerParameter) -> None:
    """Read the files `lp` names into `lp.blobs` (in place). A file that cannot be read is left
    unread: the converter reports it, and only if the layer is converted at all."""
    if lp.type == "InfogainLoss" and len(lp.bottom) < 3 and lp.infogain_loss_param.source:
        try:
            mat = read_binaryproto(lp.infogain_loss_param.source)
        except (ModelportError, OSError):
            return
        blob = lp.blobs.add()
        blob.shape.dim.extend(int(d) for d in mat.shape)
        blob.data.extend(np.asarray(mat, dtype=np.float32).reshape(-1).tolist())
