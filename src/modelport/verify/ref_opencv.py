"""OpenCV's dnn module as an independent reference (`cv2.dnn.readNetFromCaffe`, OpenCV 4.x only).

OpenCV has its own C++ reimplementation of Caffe's layers, so agreeing with it is evidence that
does not depend on pycaffe. We disable its layer fusion (`enableFusion(False)`), so every layer's
own output is exposed, in-place layers included (with fusion on, e.g. a ReLU is folded into the
convolution before it and the convolution's own output no longer exists), and ask for every
layer's outputs by name (`forwardAndRetrieve`).

OpenCV 4.x (measured against the real-Caffe goldens in tests/golden/caffe) lacks some Caffe layer
types and computes a few configurations differently. Such layers, and every layer depending on
their outputs, are cut out of the net handed to OpenCV and reported as skipped, never failed:
see `OPENCV_GAPS`. OpenCV 5 removed the Caffe importer altogether.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from google.protobuf import text_format

from modelport.errors import ConfigError, FormatError, ModelportError
from modelport.formats.caffe import caffe_pb2
from modelport.ir import INPUT_LAYER_TYPES, Layer, Net
from modelport.optional import require
from modelport.verify.reference_base import Reference, ReferenceOutput, register_reference

__all__ = ["OPENCV_GAPS", "OpenCVReference", "opencv_gap"]


def _missing(type_: str) -> Callable[[Layer], str | None]:
    return lambda layer: f"cv2.dnn has no Caffe '{type_}' layer"


def _ip_transpose(layer: Layer) -> str | None:
    if layer.param.inner_product_param.transpose:
        return "cv2.dnn ignores inner_product_param.transpose (uses the weight untransposed)"
    return None


def _lrn_k(layer: Layer) -> str | None:
    if layer.param.lrn_param.k != 1.0:
        return f"cv2.dnn ignores lrn_param.k ({layer.param.lrn_param.k:g}) and uses k = 1"
    return None


def _slice_equal(layer: Layer) -> str | None:
    if not layer.param.slice_param.slice_point:
        return "cv2.dnn fails on Slice without slice_point (equal split)"
    return None


def _log_params(layer: Layer) -> str | None:
    p = layer.param.log_param
    if p.base != -1.0 or p.scale != 1.0 or p.shift != 0.0:
        return "cv2.dnn ignores log_param (base, scale, shift) and computes ln(x)"
    return None


def _swish_beta(layer: Layer) -> str | None:
    if layer.param.swish_param.beta != 1.0:
        return f"cv2.dnn ignores swish_param.beta ({layer.param.swish_param.beta:g}) and uses 1"
    return None


# Caffe layer type -> rule giving why OpenCV cannot be used for that layer (None: it can).
# Measured with opencv-python-headless 4.14 on every golden case (tests/verify/test_opencv.py
# re-checks that OpenCV agrees with real Caffe on everything not listed here).
OPENCV_GAPS: dict[str, Callable[[Layer], str | None]] = {
    **{t: _missing(t) for t in (
        "ArgMax", "Bias", "Clip", "Embed", "Python", "Reduction", "Threshold", "Tile",
    )},
    "InnerProduct": _ip_transpose,
    "LRN": _lrn_k,
    "Log": _log_params,
    "Swish": _swish_beta,
    "Slice": _slice_equal,
}

_CANT_CREATE = re.compile(r"Can't create layer \"([^\"]*)\" of type \"([^\"]*)\"")


def opencv_gap(layer: Layer) -> str | None:
    """Why OpenCV cannot serve as the reference for this layer, or None."""
    rule = OPENCV_GAPS.get(layer.type)
    return rule(layer) if rule is not None else None


def _import_cv2() -> Any:
    cv2 = require("cv2", "images", "the OpenCV reference (--reference opencv)")
    if not hasattr(cv2, "dnn") or not hasattr(cv2.dnn, "readNetFromCaffe"):
        raise ConfigError(f"OpenCV {cv2.__version__} has no Caffe importer "
                          "(cv2.dnn.readNetFromCaffe was removed in OpenCV 5). Fix: pip install "
                          "'opencv-python-headless<5', or use --reference DIR|pycaffe")
    return cv2


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    return lines[-1] if lines else type(exc).__name__


class OpenCVReference(Reference):
    """cv2.dnn running the original prototxt + caffemodel (fusion off, every layer exposed)."""

    def __init__(self, prototxt: str | os.PathLike[str], caffemodel: str | os.PathLike[str],
                 gaps: Mapping[str, Callable[[Layer], str | None]] | None = None) -> None:
        self.gaps = dict(OPENCV_GAPS if gaps is None else gaps)
        self.prototxt = os.fspath(prototxt)
        self.caffemodel = os.fspath(caffemodel)
        for path, what in ((self.prototxt, "prototxt"), (self.caffemodel, "caffemodel")):
            if not os.path.isfile(path):
                raise FormatError(f"{what} '{path}' does not exist. Fix: check the path")
        cv2 = _import_cv2()
        self.name = f"OpenCV {cv2.__version__} dnn"

    def _net_text(self, net: Net, dropped: Mapping[str, str],
                  inputs: Mapping[str, np.ndarray]) -> bytes:
        """The net as cv2 should see it: the IR's (upgraded, phase-filtered) layers minus the
        dropped ones, with every input declared by an Input layer of the actual input shape."""
        param = caffe_pb2.NetParameter(name=net.name)
        for layer in net.layers:
            if layer.name in dropped:
                continue
            lp = param.layer.add()
            if layer.type in INPUT_LAYER_TYPES or layer.tops and all(
                    t in inputs for t in layer.tops) and not layer.bottoms:
                lp.name, lp.type = layer.name, "Input"
                lp.top.extend(layer.tops)
                for top in layer.tops:
                    lp.input_param.shape.add().dim.extend(int(d) for d in inputs[top].shape)
                continue
            lp.CopyFrom(layer.param)
            del lp.include[:]
            del lp.exclude[:]
            lp.ClearField("phase")
        return text_format.MessageToString(param).encode()

    def _plan(self, net: Net, inputs: Mapping[str, np.ndarray],
              extra: Mapping[str, str]) -> dict[str, str]:
        """Layers to cut (name -> reason): OpenCV gaps and everything downstream of them."""
        dropped: dict[str, str] = {}
        unavailable: dict[str, str] = {}  # blob -> the skipped layer that wrote it
        for layer in net.layers:
            if layer.type in INPUT_LAYER_TYPES or (not layer.bottoms and all(
                    t in inputs for t in layer.tops)):
                continue
            rule = self.gaps.get(layer.type)
            reason = extra.get(layer.name) or (rule(layer) if rule is not None else None)
            if reason is None:
                for b in layer.bottoms:
                    if b in unavailable:
                        reason = (f"its bottom '{b}' comes from '{unavailable[b]}', which "
                                  "cv2.dnn cannot run")
                        break
            if reason is not None:
                dropped[layer.name] = reason
                for t in layer.tops:
                    unavailable[t] = layer.name
        return dropped

    def run(self, net: Net, inputs: Mapping[str, np.ndarray]) -> ReferenceOutput:
        cv2 = _import_cv2()
        model = np.fromfile(self.caffemodel, np.uint8)
        extra: dict[str, str] = {}
        names = {layer.name: layer for layer in net.layers}
        for _ in range(len(net.layers) + 1):
            dropped = self._plan(net, inputs, extra)
            text = self._net_text(net, dropped, inputs)
            try:
                cvnet = cv2.dnn.readNetFromCaffe(np.frombuffer(text, np.uint8), model)
                break
            except cv2.error as exc:
                found = _CANT_CREATE.search(str(exc))
                if not found or found.group(1) not in names or found.group(1) in extra:
                    raise FormatError(f"cv2.dnn could not read {self.prototxt} + "
                                      f"{self.caffemodel}: {_first_line(exc)}. Fix: use "
                                      "--reference DIR (a Caffe blob dump) or pycaffe") from None
                extra[found.group(1)] = f"cv2.dnn has no Caffe '{found.group(2)}' layer"
        else:  # pragma: no cover - every retry drops one more layer, so this cannot loop
            raise AssertionError("unreachable")
        cvnet.enableFusion(False)
        cvnet.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        cvnet.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
        for name, value in inputs.items():
            cvnet.setInput(np.ascontiguousarray(value, dtype=np.float32), name)
        layer_names = [n for n in cvnet.getLayerNames() if n in names]
        out = ReferenceOutput(skipped=dict(dropped))
        if layer_names:
            try:
                results = cvnet.forwardAndRetrieve(layer_names)
            except cv2.error as exc:
                raise ModelportError(f"cv2.dnn failed to run {self.prototxt}: "
                                     f"{_first_line(exc)}. Fix: use --reference DIR (a Caffe "
                                     "blob dump) or pycaffe") from None
            for name, outs in zip(layer_names, results):
                for j, arr in enumerate(outs):
                    out.layer_tops[(name, j)] = np.array(arr, dtype=np.float32, copy=True)
        exposed = set(layer_names)
        for layer in net.layers:
            if (layer.name not in exposed and layer.name not in dropped and layer.bottoms
                    and layer.type not in INPUT_LAYER_TYPES):
                out.skipped[layer.name] = "cv2.dnn does not expose this layer's output"
        for name, value in inputs.items():
            out.blobs[name] = np.asarray(value, dtype=np.float32)
        out.notes.append(f"{self.name}: layer fusion disabled, so every layer's own output "
                         "(in-place layers included) is compared")
        if dropped:
            kinds = sorted({names[n].type for n in dropped})
            out.notes.append(f"cv2.dnn cannot serve as reference for {len(dropped)} layer(s) "
                             f"(types {', '.join(kinds)}); they are listed as skipped")
        return out


@register_reference("opencv", "cv2", needs_files=True)
def _opencv(spec: str, prototxt: str | os.PathLike[str] | None,
            caffemodel: str | os.PathLike[str] | None) -> Reference:
    """`--reference opencv`: cv2.dnn on the original prototxt + caffemodel."""
    assert prototxt is not None and caffemodel is not None
    return OpenCVReference(prototxt, caffemodel)
