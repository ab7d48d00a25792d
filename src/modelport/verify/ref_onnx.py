"""ONNX Runtime as a reference: on an ONNX file, or on modelport's own ONNX export of the net.

Tensors are matched to Caffe blobs by name (modelport's exporter names graph inputs and outputs
after Caffe blobs; every blob requested is a graph output holding the blob's final value). An
ONNX file checks the exported graph, not Caffe's semantics: pair it with a Caffe-based reference
for those.

The hook `export_for_reference` uses `modelport.export` (built separately); until that exists it
raises ModelportError('ONNX export not available yet').
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.errors import ConfigError, FormatError, ModelportError
from modelport.ir import Net
from modelport.optional import require
from modelport.verify.reference_base import Reference, ReferenceOutput, register_reference

if TYPE_CHECKING:
    from modelport.backends.torch_module import CaffeNet

__all__ = ["OnnxRuntimeReference", "export_for_reference"]


def export_for_reference(net: CaffeNet, inputs: Mapping[str, np.ndarray]) -> bytes:
    """modelport's ONNX export of `net` with every blob as a graph output (the hook)."""
    try:
        from modelport.export import export_onnx
    except ImportError:
        raise ModelportError("ONNX export not available yet (modelport.export is missing). "
                             "Fix: pass an .onnx file as --reference, or use opencv/a dump"
                             ) from None
    blobs = [b for b in net.blob_shapes if b not in net.input_names]
    model, _report = export_onnx(net, None, inputs=dict(inputs), outputs=blobs)
    return bytes(model.SerializeToString())


def _all_outputs(model: Any) -> Any:
    """The model with every named node output added as a graph output (float32 assumed where
    shape inference does not know better)."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # inference is best effort; outputs without type info still run
        inferred = model
    known = {vi.name: vi for vi in list(inferred.graph.value_info) + list(inferred.graph.output)}
    present = {o.name for o in model.graph.output}
    for node in model.graph.node:
        for name in node.output:
            if name and name not in present:
                vi = known.get(name) or onnx.helper.make_tensor_value_info(
                    name, onnx.TensorProto.FLOAT, None)
                model.graph.output.append(vi)
                present.add(name)
    return model


class OnnxRuntimeReference(Reference):
    """ONNX Runtime on `onnx_path`, or (None) on modelport's own export of the checked net."""

    def __init__(self, onnx_path: str | os.PathLike[str] | None = None,
                 net: CaffeNet | None = None) -> None:
        self.onnx_path = os.fspath(onnx_path) if onnx_path is not None else None
        if self.onnx_path is not None and not os.path.isfile(self.onnx_path):
            raise FormatError(f"ONNX file '{self.onnx_path}' does not exist. Fix: check the path")
        self.net = net
        self.name = "ONNX Runtime" + (f" on {self.onnx_path}" if self.onnx_path else
                                      " on modelport's ONNX export")

    def prepare(self, net: CaffeNet) -> None:
        if self.onnx_path is None and self.net is None:
            self.net = net

    def bind(self, net: CaffeNet) -> OnnxRuntimeReference:
        """Attach the converted net whose export is run when no ONNX file was given."""
        self.net = net
        return self

    def run(self, net: Net, inputs: Mapping[str, np.ndarray]) -> ReferenceOutput:
        purpose = "the ONNX Runtime reference (--reference onnxruntime|FILE.onnx)"
        onnx = require("onnx", "export", purpose)
        ort = require("onnxruntime", "export", purpose)
        if self.onnx_path is not None:
            model = onnx.load(self.onnx_path)
        else:
            if self.net is None:
                raise ConfigError("the ONNX Runtime reference without an .onnx file exports the "
                                  "converted net; none is bound")
            model = onnx.load_from_string(export_for_reference(self.net, inputs))
        model = _all_outputs(model)
        try:
            session = ort.InferenceSession(model.SerializeToString(),
                                           providers=["CPUExecutionProvider"])
            wanted = [o.name for o in session.get_outputs()]
            feed = {i.name: np.ascontiguousarray(inputs[i.name], np.float32)
                    for i in session.get_inputs()}
            results = session.run(wanted, feed)
        except KeyError as exc:
            raise ConfigError(f"the ONNX graph's input {exc} is not a net input") from None
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelportError(f"ONNX Runtime failed: {str(exc).splitlines()[0]}") from None
        caffe_blobs = {t for layer in net.layers for t in layer.tops}
        out = ReferenceOutput(notes=[f"{self.name}: checks the ONNX graph, not Caffe semantics"])
        for name, value in zip(wanted, results):
            if name in caffe_blobs:
                out.blobs[name] = np.asarray(value)
        for name, value in inputs.items():
            out.blobs.setdefault(name, np.asarray(value, np.float32))
        return out


@register_reference("onnxruntime", "ort", suffix=".onnx")
def _onnxruntime(spec: str, prototxt: str | os.PathLike[str] | None,
                 caffemodel: str | os.PathLike[str] | None) -> Reference:
    """`--reference onnxruntime` (modelport's own export of the checked net) or FILE.onnx."""
    return OnnxRuntimeReference(None if spec.lower() in ("onnxruntime", "ort") else spec)
