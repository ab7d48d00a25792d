"""Read a TensorFlow checkpoint of a few hundred MB: modelport's reader against TensorFlow's and
against the memory bandwidth, all measured in the same run.

The checkpoint (`--mb` MB of float32 in `--vars` variables, default 300 MB in 50, with
TF-slim-like names) is written by TensorFlow itself (`tf.raw_ops.SaveV2`, in a child process);
without TensorFlow the benchmark says so and stops (there is no peer to compare with). Every
measurement then runs in a fresh child process, so each peak RSS (/proc/self/status VmHWM) is
its own; seconds exclude the imports, and RSS is also shown as the growth over the RSS after
the imports (TensorFlow's own import is several hundred MB). The file is in the page cache
(just written): this measures the readers, not the disk.

    numpy copy          np.ndarray.copy of a buffer of the file's size: into fresh pages (what
                        any reader producing owned arrays pays) and warm (into faulted-in pages)
    modelport crc       read_checkpoint(prefix): views of the mapped shards, every crc32c
                        checked (each byte read once)
    modelport crc+copy  the same, then np.array(value) of each (owned, writable arrays, like TF's)
    modelport views     read_checkpoint(prefix, verify=False): no byte is read (lazy views)
    modelport touch     verify=False, then every value summed once (the pages really are read)
    tensorflow          tf.train.load_checkpoint(prefix).get_tensor(name) for every variable

Printed: seconds, MB/s, the ratio to numpy's warm copy (memory speed), peak RSS (MB, x file),
RSS growth (x the file); then modelport's speed over TensorFlow's, and the load average (the
machine is shared). Run: `python -m bench.tf_checkpoint_read [--mb 300] [--vars 50] [--keep D]`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap

_WRITE = """
import os, numpy as np
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import tensorflow as tf
prefix, total, count = {prefix!r}, {total}, {count}
rng = np.random.default_rng(0)
names, tensors = [], []
# Uneven sizes as in a real net: every fifth variable a small bias, the kernels growing.
kernels = [i for i in range(count) if i % 5]
weight = sum(2 * k + 1 for k in range(len(kernels)))
for i in range(count):
    if i % 5:
        n = max(total * (2 * kernels.index(i) + 1) // weight // 4, 4)
    else:
        n = 256
    kind = "weights" if i % 5 else "biases"
    names.append(f"InceptionV4/Mixed_{{i:02d}}/Conv2d_0a_3x3/{{kind}}")
    tensors.append(tf.constant(rng.standard_normal(n, dtype=np.float32)))
tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * count,
                  tensors=tensors)
"""

_CHILD = """
import os, sys, time, json
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
t0 = time.perf_counter()
{imports}
imported = time.perf_counter() - t0
base = status("VmRSS")
t1 = time.perf_counter()
{work}
seconds = time.perf_counter() - t1
print(json.dumps({{"seconds": seconds, "imports": imported, "base": base,
                  "peak": status("VmHWM")}}))
"""

READERS = {
    "numpy copy (fresh pages)": (
        "import numpy as np", "a = np.ones(SIZE, np.uint8)\n"
        "t1 = time.perf_counter()\nb = a.copy()"),
    "numpy copy (warm)": (
        "import numpy as np", "a = np.ones(SIZE, np.uint8)\n"
        "b = np.ones_like(a)\nt1 = time.perf_counter()\nb[:] = a"),
    "modelport crc": (
        "from modelport.formats.tf.checkpoint import read_checkpoint",
        "values = read_checkpoint(PREFIX)"),
    "modelport crc+copy": (
        "import numpy as np\nfrom modelport.formats.tf.checkpoint import read_checkpoint",
        "values = {k: np.array(v) for k, v in read_checkpoint(PREFIX).items()}"),
    "modelport views": (
        "from modelport.formats.tf.checkpoint import read_checkpoint",
        "values = read_checkpoint(PREFIX, verify=False)"),
    "modelport touch": (
        "from modelport.formats.tf.checkpoint import read_checkpoint",
        "values = read_checkpoint(PREFIX, verify=False)\n"
        "total = sum(float(v.sum(dtype='f8')) for v in values.values())"),
    "tensorflow": (
        "import tensorflow as tf",
        "reader = tf.train.load_checkpoint(PREFIX)\n"
        "values = {n: reader.get_tensor(n) for n, _ in tf.train.list_variables(PREFIX)}"),
}


def _run(code: str) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"),
         os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=1800, env=env)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def measure(name: str, prefix: str, size: int) -> dict[str, float]:
    imports, work = READERS[name]
    work = work.replace("PREFIX", repr(prefix)).replace("SIZE", str(size))
    if "t1 = time.perf_counter()" in work:  # the setup is not timed
        setup, timed = work.split("t1 = time.perf_counter()\n")
        imports = imports + "\n" + setup
        work = timed
    return _run(_CHILD.format(imports=imports, work=work))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=300, help="checkpoint size (default 300)")
    parser.add_argument("--vars", type=int, default=50, help="variables (default 50)")
    parser.add_argument("--keep", metavar="DIR", help="write the checkpoint here and keep it")
    args = parser.parse_args(argv)
    try:
        import importlib.util

        if importlib.util.find_spec("tensorflow") is None:
            raise ImportError
    except ImportError:
        print("skipped: TensorFlow is not installed (pip install 'modelport[tensorflow]'); "
              "it writes the checkpoint and is the peer measured")
        return 0
    folder = args.keep or tempfile.mkdtemp(prefix="tf_bench_")
    os.makedirs(folder, exist_ok=True)
    prefix = os.path.join(folder, "model.ckpt")
    try:
        _run(textwrap.dedent(_WRITE.format(prefix=prefix, total=int(args.mb * 1e6),
                                           count=args.vars)) + "\nprint('{}')")
        size = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder)
                   if ".data-" in f)
        print(f"checkpoint: {args.vars} float32 variables, {size / 1e6:.1f} MB "
              f"(written by TensorFlow's SaveV2), in the page cache")
        results = {name: measure(name, prefix, size) for name in READERS}
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    warm = size / results["numpy copy (warm)"]["seconds"]
    print(f"{'reader':<26} {'seconds':>8} {'MB/s':>8} {'x warm':>7} {'peak RSS':>9} "
          f"{'x file':>7} {'growth':>7} {'imports':>8}")
    for name, r in results.items():
        rate = size / r["seconds"]
        grow = (r["peak"] - r["base"]) / size
        print(f"{name:<26} {r['seconds']:8.3f} {rate / 1e6:8.0f} {rate / warm:7.2f} "
              f"{r['peak'] / 1e6:8.0f}M {r['peak'] / size:7.2f} {grow:7.2f} "
              f"{r['imports']:7.2f}s")
    tf_rate = size / results["tensorflow"]["seconds"]
    for name in ("modelport crc", "modelport crc+copy", "modelport touch"):
        rate = size / results[name]["seconds"]
        print(f"{name} / tensorflow: {rate / tf_rate:.2f}x the speed")
    print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
