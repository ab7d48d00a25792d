"""Bring old Caffe net definitions to the current (V2 `layer`) form, as Caffe's upgrade_proto.cpp.

- V1 nets (`layers { type: CONVOLUTION blobs_lr: 1 weight_decay: 1 }`) become `layer` entries
  with string types and `param { lr_mult decay_mult }`.
- Legacy input declarations (`input:` with `input_dim:` or `input_shape`) become one Input layer
  named "input", as UpgradeNetInput does.
- V0 nets (`layers { layer { ... } }`, before 2014) are rejected with the Caffe tool that
  upgrades them.
"""

from __future__ import annotations

from modelport.errors import FormatError
from modelport.formats.caffe import caffe_pb2

V1 = caffe_pb2.V1LayerParameter

# Caffe's UpgradeV1LayerType table.
V1_TYPE_NAMES: dict[int, str] = {
    V1.ABSVAL: "AbsVal", V1.ACCURACY: "Accuracy", V1.ARGMAX: "ArgMax", V1.BNLL: "BNLL",
    V1.CONCAT: "Concat", V1.CONTRASTIVE_LOSS: "ContrastiveLoss", V1.CONVOLUTION: "Convolution",
    V1.DECONVOLUTION: "Deconvolution", V1.DATA: "Data", V1.DROPOUT: "Dropout",
    V1.DUMMY_DATA: "DummyData", V1.EUCLIDEAN_LOSS: "EuclideanLoss", V1.ELTWISE: "Eltwise",
    V1.EXP: "Exp", V1.FLATTEN: "Flatten", V1.HDF5_DATA: "HDF5Data",
    V1.HDF5_OUTPUT: "HDF5Output", V1.HINGE_LOSS: "HingeLoss", V1.IM2COL: "Im2col",
    V1.IMAGE_DATA: "ImageData", V1.INFOGAIN_LOSS: "InfogainLoss",
    V1.INNER_PRODUCT: "InnerProduct", V1.LRN: "LRN", V1.MEMORY_DATA: "MemoryData",
    V1.MULTINOMIAL_LOGISTIC_LOSS: "MultinomialLogisticLoss", V1.MVN: "MVN",
    V1.POOLING: "Pooling", V1.POWER: "Power", V1.RELU: "ReLU", V1.SIGMOID: "Sigmoid",
    V1.SIGMOID_CROSS_ENTROPY_LOSS: "SigmoidCrossEntropyLoss", V1.SILENCE: "Silence",
    V1.SOFTMAX: "Softmax", V1.SOFTMAX_LOSS: "SoftmaxWithLoss", V1.SPLIT: "Split",
    V1.SLICE: "Slice", V1.TANH: "TanH", V1.WINDOW_DATA: "WindowData",
    V1.THRESHOLD: "Threshold",
}

# Layer-specific parameter messages that V1 and V2 share by name.
_SHARED_PARAM_FIELDS = tuple(
    f.name
    for f in V1.DESCRIPTOR.fields
    if f.name.endswith("_param") and f.name in caffe_pb2.LayerParameter.DESCRIPTOR.fields_by_name
)


def v1_type_name(type_value: int, layer_name: str) -> str:
    """The V2 type name of a V1 LayerType enum value (FormatError for a number Caffe does not
    define)."""
    if type_value not in V1_TYPE_NAMES:
        raise FormatError(f"layer '{layer_name}': unknown V1 layer type number {type_value}")
    return V1_TYPE_NAMES[type_value]


def upgrade_v1_layer(old: caffe_pb2.V1LayerParameter) -> caffe_pb2.LayerParameter:
    """Translate one V1LayerParameter into a LayerParameter (blobs are not copied)."""
    if old.HasField("layer"):
        raise FormatError(
            f"layer '{old.layer.name or old.name}': this is a V0 (pre-2014) net definition. "
            "Fix: upgrade it once with Caffe's tools/upgrade_net_proto_text and "
            "upgrade_net_proto_binary, then convert the upgraded files"
        )
    new = caffe_pb2.LayerParameter()
    new.name = old.name
    new.type = v1_type_name(old.type, old.name) if old.HasField("type") else ""
    new.bottom.extend(old.bottom)
    new.top.extend(old.top)
    new.loss_weight.extend(old.loss_weight)
    for rule in old.include:
        new.include.add().CopyFrom(rule)
    for rule in old.exclude:
        new.exclude.add().CopyFrom(rule)
    n_specs = max(len(old.blobs_lr), len(old.weight_decay), len(old.param),
                  len(old.blob_share_mode))
    for i in range(n_specs):
        spec = new.param.add()
        if i < len(old.param):
            spec.name = old.param[i]
        if i < len(old.blob_share_mode):
            spec.share_mode = old.blob_share_mode[i]  # type: ignore[assignment]  # same enum values
        if i < len(old.blobs_lr):
            spec.lr_mult = old.blobs_lr[i]
        if i < len(old.weight_decay):
            spec.decay_mult = old.weight_decay[i]
    for field_name in _SHARED_PARAM_FIELDS:
        if old.HasField(field_name):
            getattr(new, field_name).CopyFrom(getattr(old, field_name))
    return new


def upgrade_net(net: caffe_pb2.NetParameter, source: str) -> caffe_pb2.NetParameter:
    """Return a V2 NetParameter equivalent to `net` (which is left unchanged)."""
    if net.layer and net.layers:
        raise FormatError(
            f"{source}: uses both 'layer' (V2) and 'layers' (V1) entries. Fix: use one format"
        )
    out = caffe_pb2.NetParameter()
    out.CopyFrom(net)
    if net.layers:
        del out.layers[:]
        for old in net.layers:
            out.layer.add().CopyFrom(upgrade_v1_layer(old))
    if net.input:
        _upgrade_inputs(out, source)
    return out


def _upgrade_inputs(net: caffe_pb2.NetParameter, source: str) -> None:
    """Caffe's UpgradeNetInput: legacy `input` fields become a leading Input layer 'input'."""
    n = len(net.input)
    if net.input_shape:
        if len(net.input_shape) != n:
            raise FormatError(
                f"{source}: {n} inputs but {len(net.input_shape)} input_shape entries"
            )
        shapes = [list(s.dim) for s in net.input_shape]
    elif net.input_dim:
        if len(net.input_dim) != 4 * n:
            raise FormatError(
                f"{source}: {n} inputs need {4 * n} input_dim values, found {len(net.input_dim)}"
            )
        shapes = [list(net.input_dim[4 * i : 4 * i + 4]) for i in range(n)]
    else:
        shapes = []
    layer = caffe_pb2.LayerParameter(name="input", type="Input")
    layer.top.extend(net.input)
    for dims in shapes:
        layer.input_param.shape.add().dim.extend(dims)
    existing = list(net.layer)
    del net.layer[:]
    net.layer.add().CopyFrom(layer)
    for lay in existing:
        net.layer.add().CopyFrom(lay)
    del net.input[:]
    del net.input_dim[:]
    del net.input_shape[:]
