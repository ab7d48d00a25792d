"""How `modelport inspect` scales with the number of layers (issue 15 item 7: it took ~5 ms a
layer, 8000 layers in 41 s).

Two generated nets per size, 1k / 4k / 8k layers, 8 x 16 x 16 blobs:

    repeated   ResNet-like: Convolution + BatchNorm + Scale + ReLU blocks of one shape (inspect
               converts each distinct layer once and reuses the result)
    distinct   every Convolution has its own num_output (no layer equals another: the worst
               case, one shape-only conversion per layer)

Printed per net, in CPU seconds of this process (the machine may be shared): parse (read_net:
text parser + upgrade + phase filter), inspect (inspect_net: shape inference, parameters, MACs),
the whole `modelport inspect` command run again (parse + inspect + printing the table; also its
wall-clock seconds), and the command's CPU milliseconds per layer; a linear cost keeps that
column flat as the size grows. One warm-up
inspect runs first (torch imports its meta kernels on first use, ~2-5 s once per process).
Run: `python -m bench.inspect_scaling [--sizes 1000,4000,8000]`.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time


def net_text(layers: int, distinct: bool) -> str:
    """A chain of `layers` layers after the Input (blocks of conv, bn, scale, relu)."""
    lines = ['name: "scaling"',
             'layer { name: "data" type: "Input" top: "data" '
             'input_param { shape { dim: 1 dim: 8 dim: 16 dim: 16 } } }']
    prev, channels = "data", 8
    kinds = ("conv", "bn", "scale", "relu")
    for i in range(layers):
        kind = kinds[i % 4]
        name = f"{kind}{i}"
        if kind == "conv":
            channels = 8 + (i // 4) % 997 if distinct else 8
            lines.append(f'layer {{ name: "{name}" type: "Convolution" bottom: "{prev}" '
                         f'top: "{name}" convolution_param {{ num_output: {channels} '
                         'kernel_size: 3 pad: 1 } }')
            prev = name
        elif kind == "bn":
            lines.append(f'layer {{ name: "{name}" type: "BatchNorm" bottom: "{prev}" '
                         f'top: "{prev}" batch_norm_param {{ use_global_stats: true }} }}')
        elif kind == "scale":
            lines.append(f'layer {{ name: "{name}" type: "Scale" bottom: "{prev}" '
                         f'top: "{prev}" scale_param {{ bias_term: true }} }}')
        else:
            lines.append(f'layer {{ name: "{name}" type: "ReLU" bottom: "{prev}" '
                         f'top: "{prev}" }}')
    return "\n".join(lines) + "\n"


def measure(path: str) -> tuple[float, float, float, float]:
    """(parse s, inspect s, whole `modelport inspect` command s, its CPU s), each in CPU time
    of this process but the third (wall clock): the machine may be shared."""
    from modelport.cli import main
    from modelport.inspect import inspect_net
    from modelport.pipeline import read_net

    t0 = time.process_time()
    net = read_net(path)
    t1 = time.process_time()
    info = inspect_net(net)
    t2 = time.process_time()
    assert not info.unsupported, info.unsupported[0].problem
    wall = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        main(["inspect", path])
    return t1 - t0, t2 - t1, time.perf_counter() - wall, time.process_time() - t2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,4000,8000",
                        help="layer counts (default %(default)s)")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        warm = os.path.join(tmp, "warm.prototxt")
        with open(warm, "w") as fh:
            fh.write(net_text(8, distinct=False))
        t = time.perf_counter()
        measure(warm)
        print(f"warm-up (first use of torch's meta kernels): {time.perf_counter() - t:.2f} s")
        print(f"{'net':>9} {'layers':>7} {'MB':>6} {'parse s':>8} {'inspect s':>10} "
              f"{'command s':>10} {'(wall s)':>9} {'ms/layer':>9}")
        for distinct in (False, True):
            for n in sizes:
                path = os.path.join(tmp, f"net{n}.prototxt")
                with open(path, "w") as fh:
                    fh.write(net_text(n, distinct))
                parse, inspect, wall, command = measure(path)
                kind = "distinct" if distinct else "repeated"
                print(f"{kind:>9} {n:>7} {os.path.getsize(path) / 1e6:>6.2f} {parse:>8.2f} "
                      f"{inspect:>10.2f} {command:>10.2f} {wall:>9.2f} {1e3 * command / n:>9.3f}",
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
