"""Read and convert a VGG-16-sized caffemodel (138M parameters, ~553 MB); compare with peers.

The caffemodel is generated into a temporary folder with modelport's streaming writer (random
weights, produced chunk by chunk, so generating it never holds the whole model in memory). Each
measurement then runs in a fresh process so its peak RSS (resource.getrusage ru_maxrss) is its
own:

    modelport read      read_caffemodel (wire scanner over the memory-mapped file)
    modelport convert   modelport.convert.convert: read + build + model.py + model.safetensors
    protobuf parse      caffe_pb2.NetParameter().ParseFromString(file bytes) (the usual way)
    cv2.dnn read        cv2.dnn.readNetFromCaffe(prototxt, caffemodel) (OpenCV's C++ importer)

Printed: seconds, MB/s over the file size, peak RSS in MB and as a multiple of the file size,
and each peer's time relative to modelport read (ratio > 1: the peer is slower).
Run: `python -m bench.convert_large` or `python bench/convert_large.py [--keep DIR]`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time

VGG16 = [  # (name, out channels) per conv block; "M" = 2x2 max pool
    ("conv1_1", 64), ("conv1_2", 64), "M", ("conv2_1", 128), ("conv2_2", 128), "M",
    ("conv3_1", 256), ("conv3_2", 256), ("conv3_3", 256), "M",
    ("conv4_1", 512), ("conv4_2", 512), ("conv4_3", 512), "M",
    ("conv5_1", 512), ("conv5_2", 512), ("conv5_3", 512), "M",
]
FCS = [("fc6", 4096), ("fc7", 4096), ("fc8", 1000)]


def vgg16_prototxt() -> str:
    lines = ['name: "VGG_ILSVRC_16_layers"',
             'layer { name: "data" type: "Input" top: "data" '
             "input_param { shape { dim: 1 dim: 3 dim: 224 dim: 224 } } }"]
    bottom, pool = "data", 0
    for item in VGG16:
        if item == "M":
            pool += 1
            lines.append(f'layer {{ name: "pool{pool}" type: "Pooling" bottom: "{bottom}" '
                         f'top: "pool{pool}" pooling_param {{ pool: MAX kernel_size: 2 '
                         "stride: 2 } }")
            bottom = f"pool{pool}"
            continue
        name, cout = item
        lines.append(f'layer {{ name: "{name}" type: "Convolution" bottom: "{bottom}" '
                     f'top: "{name}" convolution_param {{ num_output: {cout} pad: 1 '
                     "kernel_size: 3 } }")
        lines.append(f'layer {{ name: "relu{name[4:]}" type: "ReLU" bottom: "{name}" '
                     f'top: "{name}" }}')
        bottom = name
    for i, (name, n) in enumerate(FCS):
        lines.append(f'layer {{ name: "{name}" type: "InnerProduct" bottom: "{bottom}" '
                     f'top: "{name}" inner_product_param {{ num_output: {n} }} }}')
        bottom = name
        if i < 2:
            lines.append(f'layer {{ name: "relu{name[2:]}" type: "ReLU" bottom: "{name}" '
                         f'top: "{name}" }}')
    lines.append(f'layer {{ name: "prob" type: "Softmax" bottom: "{bottom}" top: "prob" }}')
    return "\n".join(lines) + "\n"


def write_vgg16(folder: str) -> tuple[str, str, int]:
    """Write deploy.prototxt and a random-weight caffemodel; return paths and parameter count."""
    import numpy as np

    from modelport.formats.caffe.net_loader import read_net
    from modelport.formats.caffe.writer import StreamedBlob, write_caffemodel

    proto = os.path.join(folder, "deploy.prototxt")
    with open(proto, "w") as fh:
        fh.write(vgg16_prototxt())
    net = read_net(proto)
    shapes: dict[str, list[tuple[int, ...]]] = {}
    cin, side = 3, 224
    for item in VGG16:
        if item == "M":
            side //= 2
            continue
        name, cout = item
        shapes[name] = [(cout, cin, 3, 3), (cout,)]
        cin = cout
    k = cin * side * side
    for name, n in FCS:
        shapes[name] = [(n, k), (n,)]
        k = n

    def random_chunks(shape: tuple[int, ...], seed: int):
        def chunks():
            rng = np.random.default_rng(seed)
            total, step = math.prod(shape), 1 << 22
            scale = np.float32(math.sqrt(2.0 / max(1, math.prod(shape[1:]))))
            for start in range(0, total, step):
                yield rng.standard_normal(min(step, total - start), dtype=np.float32) * scale
        return chunks

    blobs = {name: [StreamedBlob(s, random_chunks(s, 1000 * i + j)) for j, s in enumerate(ss)]
             for i, (name, ss) in enumerate(shapes.items())}
    weights = os.path.join(folder, "vgg16.caffemodel")
    write_caffemodel(weights, net, blobs=blobs)
    params = sum(math.prod(s) for ss in shapes.values() for s in ss)
    return proto, weights, params


# ---- one measurement per process -------------------------------------------------------------

def _measure(kind: str, proto: str, weights: str, out: str) -> dict:
    start = time.perf_counter()
    if kind == "modelport read":
        from modelport.formats.caffe.caffemodel import read_caffemodel

        layers = read_caffemodel(weights)
        assert sum(b.data.size for la in layers for b in la.blobs) > 0
    elif kind == "modelport convert":
        from modelport.convert import convert

        convert(proto, weights, out)
    elif kind == "protobuf parse":
        from modelport.formats.caffe import caffe_pb2

        msg = caffe_pb2.NetParameter()
        with open(weights, "rb") as fh:
            msg.ParseFromString(fh.read())
        assert len(msg.layer) > 0
    elif kind == "cv2.dnn read":
        import cv2

        cv2.dnn.readNetFromCaffe(proto, weights)
    else:
        raise ValueError(kind)
    seconds = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"kind": kind, "seconds": seconds, "peak_rss_mb": peak_kb / 1024}


def _run_child(kind: str, proto: str, weights: str, out: str) -> dict | None:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", kind, proto, weights, out]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        print(f"  {kind}: failed ({last})")
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="VGG-16-sized caffemodel: read/convert vs peers")
    parser.add_argument("--child", nargs=4, metavar=("KIND", "PROTO", "WEIGHTS", "OUT"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep the files")
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_measure(*args.child)))
        return 0

    folder = args.keep or tempfile.mkdtemp(prefix="modelport-bench-")
    os.makedirs(folder, exist_ok=True)
    start = time.perf_counter()
    proto, weights, params = write_vgg16(folder)
    size_mb = os.path.getsize(weights) / 1e6
    print(f"VGG-16 caffemodel: {params:,} parameters, {size_mb:.1f} MB, written in "
          f"{time.perf_counter() - start:.1f} s by modelport's streaming writer ({folder})")
    results = {}
    for kind in ("modelport read", "modelport convert", "protobuf parse", "cv2.dnn read"):
        r = _run_child(kind, proto, weights, os.path.join(folder, "out"))
        if r is None:
            continue
        results[kind] = r
        print(f"  {kind:18s} {r['seconds']:7.2f} s  {size_mb / r['seconds']:8.1f} MB/s  "
              f"peak RSS {r['peak_rss_mb']:7.0f} MB ({r['peak_rss_mb'] / size_mb:4.2f}x file)")
    base = results.get("modelport read")
    if base:
        for kind in ("protobuf parse", "cv2.dnn read"):
            if kind in results:
                print(f"  ratio {kind} / modelport read: time "
                      f"{results[kind]['seconds'] / base['seconds']:.2f}x, peak RSS "
                      f"{results[kind]['peak_rss_mb'] / base['peak_rss_mb']:.2f}x")
    if not args.keep:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    if __package__ in (None, ""):
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.exit(main())
