#!/usr/bin/env python3
"""Dump every blob of a Caffe net after one forward pass, for `modelport verify --reference DIR`.

Run this where Caffe (pycaffe) is installed -- it needs only caffe and numpy, not modelport:

    python dump_caffe_blobs.py deploy.prototxt weights.caffemodel dump/ [--input data=x.npy]

It writes `dump/<blob>.npy` (float32) for every blob in `net.blobs` after `net.forward()`:
input blobs, every layer's tops (an in-place blob holds its final value, as in Caffe) and the
tops of the Split layers Caffe inserts (`x_layer_0_split_1`). A '/' in a blob name becomes '__'
in the file name. `dump/dump.json` records the Caffe version, the inputs and every blob's shape.

Inputs: `--input NAME=FILE.npy` per input blob (or `--input FILE.npy` for a single input; the
blob is reshaped to the array's shape), otherwise seeded standard-normal data of the declared
shapes (`numpy.random.default_rng(seed).standard_normal(shape)`, float32, in the order the net
lists its inputs -- the same data `modelport verify --seed` uses). To check preprocessing too,
save the batch your own caffe.io / Transformer code produces and pass it with --input.

Then, anywhere modelport is installed:

    modelport verify deploy.prototxt weights.caffemodel --reference dump/
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np


def _import_caffe() -> Any:
    try:
        import caffe  # imported lazily: modelport itself never needs Caffe
    except ImportError as exc:
        raise SystemExit(f"dump_caffe_blobs: cannot import caffe ({exc}). Run this script with "
                         "the Python that has pycaffe (PYTHONPATH=$CAFFE_ROOT/python).") from None
    return caffe


def _load_inputs(specs: Sequence[str], input_names: Sequence[str]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep:
            if len(input_names) != 1:
                raise SystemExit(f"dump_caffe_blobs: the net has inputs {list(input_names)}; "
                                 "use --input NAME=FILE.npy")
            name, path = input_names[0], spec
        if name not in input_names:
            raise SystemExit(f"dump_caffe_blobs: '{name}' is not a net input {list(input_names)}")
        out[name] = np.load(path, allow_pickle=False).astype(np.float32)
    return out


def dump(prototxt: str, caffemodel: str, out_dir: str, inputs: Sequence[str] = (),
         seed: int = 0, gpu: int | None = None) -> dict[str, Any]:
    """Run the net once and write the dump; returns what dump.json holds."""
    caffe = _import_caffe()
    if gpu is None:
        caffe.set_mode_cpu()
    else:
        caffe.set_device(gpu)
        caffe.set_mode_gpu()
    net = caffe.Net(prototxt, caffemodel, caffe.TEST)
    input_names = list(net.inputs)
    given = _load_inputs(inputs, input_names)
    rng = np.random.default_rng(seed)
    sources = {}
    for name in input_names:
        if name in given:
            value = given[name]
            sources[name] = "given"
        else:
            value = rng.standard_normal(tuple(net.blobs[name].data.shape)).astype(np.float32)
            sources[name] = f"random standard normal, seed {seed}"
        net.blobs[name].reshape(*value.shape)
        net.blobs[name].data[...] = value
    net.reshape()
    net.forward()
    os.makedirs(out_dir, exist_ok=True)
    shapes = {}
    for name, blob in net.blobs.items():
        data = np.array(blob.data, dtype=np.float32, copy=True)
        np.save(os.path.join(out_dir, name.replace("/", "__") + ".npy"), data)
        shapes[name] = list(data.shape)
    info = {"caffe": getattr(caffe, "__version__", "unknown"), "prototxt": prototxt,
            "caffemodel": caffemodel, "mode": "cpu" if gpu is None else f"gpu {gpu}",
            "inputs": sources, "blobs": shapes}
    with open(os.path.join(out_dir, "dump.json"), "w") as fh:
        json.dump(info, fh, indent=1)
    return info


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("prototxt")
    parser.add_argument("caffemodel")
    parser.add_argument("out_dir")
    parser.add_argument("--input", action="append", default=[], metavar="[NAME=]FILE.npy")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gpu", type=int, default=None, help="GPU id (default: CPU)")
    args = parser.parse_args(argv)
    info = dump(args.prototxt, args.caffemodel, args.out_dir, args.input, args.seed, args.gpu)
    print(f"wrote {len(info['blobs'])} blobs to {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
