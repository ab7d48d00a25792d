"""Read and convert a VGG-16-sized caffemodel (138M parameters, ~553 MB) at 0.25x, 1x and 2x
its widths; compare with the memory bandwidth and with peers, all measured in the same run.

The caffemodels are generated with modelport's streaming writer (random weights, produced chunk
by chunk, so generating one never holds the whole model in memory). Each measurement then runs
in a fresh process so its peak RSS (resource.getrusage ru_maxrss: the mapped file's pages count
once touched) is its own; its seconds exclude its imports (shown apart):

    bandwidth           numpy copy of the file's size: warm (into memory already faulted in)
                        and into fresh pages; plus a write+fsync of that size to the disk
    modelport read      read_caffemodel: the wire scanner's zero-copy views of the mapped file
    modelport read+touch  the same, then every value read once (the pages really are read)
    modelport convert   modelport.convert.convert: read + build + model.py + model.safetensors,
                        output on the disk (fsync'd) and on tmpfs (/dev/shm: the converter
                        without the disk); the returned module owns its weights (one copy)
    modelport convert CLI  `modelport convert` (cli.main): the same, but the module is built
                        only to be written, its weights views of the mapped file (no copy)
    output write floor  the caffemodel's bytes write()n from its mapping into a new file beside
                        the output (disk / tmpfs): no parsing, hashing or fsync; the least any
                        converter that writes the weights pays (the output is as large)
    sha256 of the caffemodel  hashlib over the file (what recording its digest costs)
    protobuf parse      caffe_pb2.NetParameter().ParseFromString(file bytes) (the usual way)
    cv2.dnn read        cv2.dnn.readNetFromCaffe(prototxt, caffemodel) (OpenCV's C++ importer)
    ... (unpacked legacy)  read and protobuf on the smallest width rewritten with unpacked
                        `repeated float data` (a key byte per value: the reader's slower path)

Printed per width: seconds, MB/s, the ratio to the warm copy's MB/s, peak RSS (MB and x the
file), import seconds, CPU seconds (user + system, all threads: modelport hashes on worker
threads, so CPU > seconds on an idle machine) and the seconds spent in fsync; cv2.dnn's time
and CPU over modelport's; then ms/MB and RSS/file per width (flat = linear), issue 13's targets
as met / NOT met, and the load average (the machine is shared: with other work on both cores,
threads cannot run side by side).
Run: `python -m bench.convert_large [--scales 0.25,1,2] [--keep DIR]`.
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


def _width(n: int, width: float) -> int:
    return max(1, round(n * width))


def vgg16_prototxt(width: float = 1.0) -> str:
    """VGG-16's deploy net with every conv and fc6/fc7 width scaled by `width` (fc8 keeps its
    1000 classes): parameters grow as width^2."""
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
        cout = _width(cout, width)
        lines.append(f'layer {{ name: "{name}" type: "Convolution" bottom: "{bottom}" '
                     f'top: "{name}" convolution_param {{ num_output: {cout} pad: 1 '
                     "kernel_size: 3 } }")
        lines.append(f'layer {{ name: "relu{name[4:]}" type: "ReLU" bottom: "{name}" '
                     f'top: "{name}" }}')
        bottom = name
    for i, (name, n) in enumerate(FCS):
        n = _width(n, width) if i < 2 else n
        lines.append(f'layer {{ name: "{name}" type: "InnerProduct" bottom: "{bottom}" '
                     f'top: "{name}" inner_product_param {{ num_output: {n} }} }}')
        bottom = name
        if i < 2:
            lines.append(f'layer {{ name: "relu{name[2:]}" type: "ReLU" bottom: "{name}" '
                         f'top: "{name}" }}')
    lines.append(f'layer {{ name: "prob" type: "Softmax" bottom: "{bottom}" top: "prob" }}')
    return "\n".join(lines) + "\n"


def vgg16_shapes(width: float = 1.0) -> dict[str, list[tuple[int, ...]]]:
    """Each layer's blob shapes (weight, bias) in the net vgg16_prototxt(width) declares."""
    shapes: dict[str, list[tuple[int, ...]]] = {}
    cin, side = 3, 224
    for item in VGG16:
        if item == "M":
            side //= 2
            continue
        name, cout = item
        cout = _width(cout, width)
        shapes[name] = [(cout, cin, 3, 3), (cout,)]
        cin = cout
    k = cin * side * side
    for i, (name, n) in enumerate(FCS):
        n = _width(n, width) if i < 2 else n
        shapes[name] = [(n, k), (n,)]
        k = n
    return shapes


def _random_chunks(shape: tuple[int, ...], seed: int):
    """A StreamedBlob source: He-scaled normal values, 4M at a time (never the whole blob)."""
    import numpy as np

    def chunks():
        rng = np.random.default_rng(seed)
        total, step = math.prod(shape), 1 << 22
        scale = np.float32(math.sqrt(2.0 / max(1, math.prod(shape[1:]))))
        for start in range(0, total, step):
            yield rng.standard_normal(min(step, total - start), dtype=np.float32) * scale
    return chunks


def write_vgg16(folder: str, width: float = 1.0, name: str = "vgg16",
                ) -> tuple[str, str, int]:
    """Write deploy.prototxt and a random-weight caffemodel; return paths and parameter count."""
    from modelport.formats.caffe.net_loader import read_net
    from modelport.formats.caffe.writer import StreamedBlob, write_caffemodel

    proto = os.path.join(folder, f"{name}.prototxt")
    with open(proto, "w") as fh:
        fh.write(vgg16_prototxt(width))
    net = read_net(proto)
    shapes = vgg16_shapes(width)
    blobs = {layer: [StreamedBlob(s, _random_chunks(s, 1000 * i + j)) for j, s in enumerate(ss)]
             for i, (layer, ss) in enumerate(shapes.items())}
    weights = os.path.join(folder, f"{name}.caffemodel")
    write_caffemodel(weights, net, blobs=blobs)
    params = sum(math.prod(s) for ss in shapes.values() for s in ss)
    return proto, weights, params


def write_unpacked(weights: str, out: str) -> None:
    """Rewrite a caffemodel's blobs with legacy UNPACKED float data (a key byte before every
    value, as writers before protobuf's packed encoding stored `repeated float data`); layers
    keep only name, type and blobs (all a caffemodel reader needs). Streams one blob at a time."""
    import numpy as np

    from modelport.formats.caffe.caffemodel import read_caffemodel
    from modelport.formats.caffe.wire import encode_key, encode_varint

    def field(number: int, payload_len: int) -> bytes:
        return encode_key(number, 2) + encode_varint(payload_len)

    with open(out, "wb") as fh:
        for layer in read_caffemodel(weights):
            parts: list[tuple[bytes, np.ndarray | None]] = []
            for blob in layer.blobs:
                dims = b"".join(encode_varint(d) for d in blob.data.shape)
                shape = field(1, len(dims)) + dims  # BlobShape.dim, packed
                parts.append((field(7, len(shape)) + shape, blob.data.reshape(-1)))
            blob_lens = [len(sf) + 5 * arr.size for sf, arr in parts]
            name, type_ = layer.name.encode(), layer.type.encode()
            body_len = (len(field(1, len(name))) + len(name) + len(field(2, len(type_)))
                        + len(type_) + sum(len(field(7, n)) + n for n in blob_lens))
            fh.write(field(100, body_len) + field(1, len(name)) + name + field(2, len(type_))
                     + type_)
            for (shape_field, arr), n in zip(parts, blob_lens):
                fh.write(field(7, n) + shape_field)
                step = 1 << 22
                for i in range(0, arr.size, step):
                    chunk = np.ascontiguousarray(arr[i:i + step]).view(np.uint8).reshape(-1, 4)
                    rec = np.empty((chunk.shape[0], 5), dtype=np.uint8)
                    rec[:, 0] = (5 << 3) | 5  # data, fixed32
                    rec[:, 1:] = chunk
                    fh.write(rec.tobytes())


# ---- one measurement per process -------------------------------------------------------------

def _touch(layers) -> int:
    """Read every stored value once (an xor over the bits): the pages of the mapped file
    really are read, as a consumer of the arrays would."""
    import numpy as np

    acc = 0
    for la in layers:
        for b in la.blobs:
            if b.data.size:
                acc ^= int(np.bitwise_xor.reduce(b.data.reshape(-1).view(np.uint32)))
    return acc


_CPU_AT_START = [0.0]
_FSYNC = [0.0, 0]  # seconds spent in os.fsync, calls


def _started() -> float:
    """The clock's start, after the imports: wall seconds now (the CPU seconds so far are kept
    for `_cpu_since_start`)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    _CPU_AT_START[0] = r.ru_utime + r.ru_stime
    return time.perf_counter()


def _cpu_since_start() -> float:
    """CPU seconds (user + system, every thread) since `_started`."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime - _CPU_AT_START[0]


def _time_fsync() -> None:
    """Count the seconds spent in os.fsync (the atomic writes' durability, bound by the disk)."""
    real = os.fsync

    def timed(fd: int) -> None:
        t = time.perf_counter()
        try:
            real(fd)
        finally:
            _FSYNC[0] += time.perf_counter() - t
            _FSYNC[1] += 1
    os.fsync = timed


def _measure(kind: str, proto: str, weights: str, out: str) -> dict:
    t0 = time.perf_counter()
    extra: dict = {}
    _time_fsync()
    if kind == "bandwidth":  # the physical limit: a numpy copy of the file's size
        import numpy as np

        n = os.path.getsize(weights)
        src = np.ones(n, dtype=np.uint8)  # touched: resident before the clock starts
        imported = _started()
        dst = src.copy()  # into fresh memory: page faults included, as any copy pays
        extra["fresh_copy_s"] = time.perf_counter() - imported
        t = time.perf_counter()
        np.copyto(dst, src)  # into memory already faulted in: the bus alone
        extra["warm_copy_s"] = time.perf_counter() - t
        t = time.perf_counter()
        with open(os.path.join(out, "disk.bin"), "wb") as fh:  # the output's disk
            fh.write(dst.data)
            fh.flush()
            extra["disk_write_s"] = time.perf_counter() - t  # into the page cache (throttled)
            os.fsync(fh.fileno())
        extra["disk_write_fsync_s"] = time.perf_counter() - t
        os.unlink(os.path.join(out, "disk.bin"))
        seconds = extra["warm_copy_s"]
    elif kind.startswith("output write floor"):  # what any converter that writes pays
        import mmap

        imported = _started()
        with open(weights, "rb") as src, open(os.path.join(out, "floor.bin"), "wb") as dst:
            view = memoryview(mmap.mmap(src.fileno(), 0, access=mmap.ACCESS_READ))
            for i in range(0, len(view), 4 << 20):  # the file's bytes, 4 MiB per write()
                dst.write(view[i:i + (4 << 20)])
        seconds = time.perf_counter() - imported
    elif kind == "sha256 of the caffemodel":  # what recording its digest costs
        import hashlib

        imported = _started()
        digest = hashlib.sha256()
        with open(weights, "rb", buffering=0) as fh:
            buf = memoryview(bytearray(1 << 20))
            while n := fh.readinto(buf):
                digest.update(buf[:n])
        seconds = time.perf_counter() - imported
    elif kind.startswith("modelport read"):
        from modelport.formats.caffe.caffemodel import read_caffemodel

        imported = _started()
        layers = read_caffemodel(weights)
        assert sum(b.data.size for la in layers for b in la.blobs) > 0
        if kind.endswith("+touch") or "unpacked" in kind:
            _touch(layers)
        seconds = time.perf_counter() - imported
    elif kind.startswith("modelport convert"):
        import torch  # noqa: F401  (import cost reported apart from the conversion)

        from modelport.convert import convert

        imported = _started()
        if "CLI" in kind:  # the command: weights written straight from the mapped file
            import contextlib
            import io

            from modelport.cli import main as cli

            with contextlib.redirect_stdout(io.StringIO()):
                assert cli(["convert", proto, weights, "-o", out]) == 0
        else:  # the Python API: the returned module owns its weights (one copy)
            convert(proto, weights, out)
        seconds = time.perf_counter() - imported
    elif kind.startswith("protobuf parse"):
        from modelport.formats.caffe import caffe_pb2

        imported = _started()
        msg = caffe_pb2.NetParameter()
        with open(weights, "rb") as fh:
            msg.ParseFromString(fh.read())
        assert len(msg.layer) > 0
        seconds = time.perf_counter() - imported
    elif kind == "cv2.dnn read":
        import cv2

        imported = _started()
        cv2.dnn.readNetFromCaffe(proto, weights)
        seconds = time.perf_counter() - imported
    else:
        raise ValueError(kind)
    cpu = _cpu_since_start()
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"kind": kind, "seconds": seconds, "import_s": imported - t0, "cpu_s": cpu,
            "fsync_s": _FSYNC[0], "fsyncs": _FSYNC[1], "peak_rss_mb": peak_kb * 1024 / 1e6,
            **extra}


def _run_child(kind: str, proto: str, weights: str, out: str) -> dict | None:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", kind, proto, weights, out]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        print(f"    {kind:28s} failed ({last[:100]})")
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


KINDS = ("bandwidth", "modelport read", "modelport read+touch", "modelport convert",
         "modelport convert (tmpfs out)", "modelport convert CLI", "modelport convert CLI (tmpfs)",
         "output write floor", "output write floor (tmpfs)", "sha256 of the caffemodel",
         "protobuf parse", "cv2.dnn read")


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} / {five:.1f} (1 / 5 min) on {os.cpu_count()} cores"


def bench_scale(folder: str, width: float, unpacked: bool) -> dict[str, dict]:
    """Every measurement on the VGG-16 of this width; prints one table."""
    start = time.perf_counter()
    name = f"vgg16_w{width:g}"
    proto, weights, params = write_vgg16(folder, width, name)
    size = os.path.getsize(weights)
    size_mb = size / 1e6
    print(f"\nVGG-16 x{width:g} width: {params:,} parameters, {size_mb:.1f} MB caffemodel "
          f"(written in {time.perf_counter() - start:.1f} s); {_load()}")
    results: dict[str, dict] = {}
    tmpfs = "/dev/shm" if os.path.isdir("/dev/shm") else None
    for kind in KINDS:
        if "tmpfs" in kind and tmpfs is None:
            continue
        base = tempfile.mkdtemp(prefix="modelport-bench-", dir=tmpfs if "tmpfs" in kind
                                else folder)
        out = os.path.join(base, "out") if kind.startswith("modelport convert") else base
        try:
            r = _run_child(kind, proto, weights, out)
        finally:
            import shutil

            shutil.rmtree(base, ignore_errors=True)
        if r is not None:
            results[kind] = r
    if unpacked:
        legacy = os.path.join(folder, f"{name}_unpacked.caffemodel")
        write_unpacked(weights, legacy)
        for kind in ("modelport read (unpacked legacy)", "protobuf parse (unpacked legacy)"):
            r = _run_child(kind, proto, legacy, folder)
            if r is not None:
                r["file_mb"] = os.path.getsize(legacy) / 1e6
                results[kind] = r
        os.unlink(legacy)
    _print_table(results, size_mb)
    for r in results.values():
        r.setdefault("file_mb", size_mb)
    return results


def _print_table(results: dict[str, dict], size_mb: float) -> None:
    bw = results.get("bandwidth")
    warm = size_mb / bw["warm_copy_s"] if bw else None
    fresh = size_mb / bw["fresh_copy_s"] if bw else None
    if bw:
        print(f"    memory bandwidth: numpy copy of {size_mb:.0f} MB {warm:8.0f} MB/s warm, "
              f"{fresh:6.0f} MB/s into fresh pages (page faults); disk write+fsync "
              f"{size_mb / bw['disk_write_fsync_s']:5.0f} MB/s ({bw['disk_write_fsync_s']:.2f} s, "
              f"of which write() {bw['disk_write_s']:.2f} s, fsync "
              f"{bw['disk_write_fsync_s'] - bw['disk_write_s']:.2f} s)")
    print(f"    {'':34s} {'seconds':>8s} {'MB/s':>8s} {'x bandwidth':>11s} {'peak RSS':>9s} "
          f"{'x file':>7s} {'imports':>8s} {'CPU s':>6s} {'fsync s':>8s}")
    for kind, r in results.items():
        if kind == "bandwidth":
            continue
        mb = r.get("file_mb", size_mb)
        rate = mb / r["seconds"]
        ratio = f"{rate / warm:11.3f}" if warm else f"{'':11s}"
        fsync = f"{r['fsync_s']:8.2f}" if r.get("fsyncs") else f"{'':8s}"
        print(f"    {kind:34s} {r['seconds']:8.2f} {rate:8.0f} {ratio} "
              f"{r['peak_rss_mb']:7.0f}MB {r['peak_rss_mb'] / mb:6.2f}x {r['import_s']:7.2f}s "
              f"{r.get('cpu_s', 0):6.2f} {fsync}")
    cv = results.get("cv2.dnn read")
    if cv:
        for kind in ("modelport read+touch", "modelport convert", "modelport convert (tmpfs out)",
                     "modelport convert CLI", "modelport convert CLI (tmpfs)"):
            if kind in results:
                print(f"    cv2.dnn read / {kind}: {cv['seconds'] / results[kind]['seconds']:.2f}x "
                      f"the time, {cv['cpu_s'] / results[kind]['cpu_s']:.2f}x the CPU seconds")


def _targets(r: dict[str, dict]) -> None:
    """The acceptance figures of issue 13 (VGG-16, 1x width), from this run."""
    def line(ok: bool, text: str) -> None:
        print(f"  [{'met' if ok else 'NOT met'}] {text}")

    print("\nIssue 13 targets (VGG-16 x1, this run):")
    rd, cv = r.get("modelport read+touch"), r.get("cv2.dnn read")
    conv = r.get("modelport convert CLI") or r.get("modelport convert")
    api = r.get("modelport convert (tmpfs out)") or r.get("modelport convert")
    if rd:
        rate = rd["file_mb"] / rd["seconds"]
        line(rate >= 1000, f"read (every value touched) {rate:.0f} MB/s >= 1000 MB/s")
        line(rd["peak_rss_mb"] <= 1.1 * rd["file_mb"],
             f"read peak RSS {rd['peak_rss_mb'] / rd['file_mb']:.2f}x <= 1.1x the file")
    if conv:
        line(conv["seconds"] <= 3, f"{conv['kind']} {conv['seconds']:.2f} s <= 3 s (torch import, "
             f"{conv['import_s']:.2f} s, not counted)")
        line(conv["peak_rss_mb"] <= 1.5 * conv["file_mb"],
             f"convert peak RSS {conv['peak_rss_mb'] / conv['file_mb']:.2f}x <= 1.5x the file")
    if api:
        line(api["peak_rss_mb"] <= 1.5 * api["file_mb"],
             f"convert() API peak RSS {api['peak_rss_mb'] / api['file_mb']:.2f}x <= 1.5x the "
             "file (its module owns a copy)")
    if cv and rd:
        line(cv["seconds"] >= 3 * rd["seconds"],
             f"read {cv['seconds'] / rd['seconds']:.1f}x faster than cv2.dnn (>= 3x)")
    for kind, floor in (("modelport convert CLI", "output write floor"),
                        ("modelport convert CLI (tmpfs)", "output write floor (tmpfs)")):
        c, w = r.get(kind), r.get(floor)
        if cv and c:
            line(cv["seconds"] >= 3 * c["seconds"],
                 f"{kind} {cv['seconds'] / c['seconds']:.1f}x faster than cv2.dnn (>= 3x)"
                 + (f"; of its {c['seconds']:.2f} s, {c['fsync_s']:.2f} s in fsync"
                    if c.get("fsyncs") else ""))
            if w:  # the output is as large as the weights: writing it bounds any converter
                budget = cv["seconds"] / 3
                print(f"      3x cv2.dnn leaves {budget:.2f} s; a bare write() of the file's bytes "
                      f"to the same place took {w['seconds']:.2f} s in this run (no parsing, "
                      f"hashing or fsync): "
                      + ("reachable" if w["seconds"] < budget else
                         "out of reach for any converter that writes its weights")
                      + f"; convert CLI = {c['seconds'] / w['seconds']:.2f}x that floor")
                sha = r.get("sha256 of the caffemodel")
                if sha:  # conversion.json records the source's sha256, model.py the output's
                    work = w["seconds"] + 2 * sha["seconds"]
                    cores = os.cpu_count() or 1
                    print(f"      with the two sha256 modelport records (the caffemodel's, and "
                          f"model.safetensors' that model.py checks): {work:.2f} s of work, "
                          f">= {work / min(cores, 3):.2f} s on {cores} cores even fully parallel: "
                          + ("reachable" if work / min(cores, 3) < budget else "out of reach"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="VGG-16-sized caffemodel: read/convert vs peers")
    parser.add_argument("--child", nargs=4, metavar=("KIND", "PROTO", "WEIGHTS", "OUT"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep the files")
    parser.add_argument("--scales", default="0.25,1,2",
                        help="VGG-16 width multipliers to run (default 0.25,1,2)")
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_measure(*args.child)))
        return 0

    folder = args.keep or tempfile.mkdtemp(prefix="modelport-bench-")
    os.makedirs(folder, exist_ok=True)
    print(f"bench/convert_large: {_load()}; each figure from a fresh process; "
          "seconds exclude imports (shown apart); 'x bandwidth' = MB/s / warm numpy copy MB/s")
    widths = [float(w) for w in args.scales.split(",")]
    all_results = {}
    try:
        for width in widths:
            all_results[width] = bench_scale(folder, width, unpacked=width == min(widths))
            if not args.keep:
                for f in os.listdir(folder):
                    if f.startswith(f"vgg16_w{width:g}"):
                        os.unlink(os.path.join(folder, f))
    finally:
        if not args.keep:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
    if len(widths) > 1:
        print("\nScaling (per MB of caffemodel: flat = linear):")
        for kind in KINDS[1:]:
            cells = []
            for width, res in all_results.items():
                if kind in res:
                    r = res[kind]
                    cells.append(f"x{width:g}: {1000 * r['seconds'] / r['file_mb']:6.2f} ms/MB "
                                 f"{r['peak_rss_mb'] / r['file_mb']:5.2f}x RSS")
            print(f"  {kind:30s} " + " | ".join(cells))
    if 1.0 in all_results:
        _targets(all_results[1.0])
    print(f"\nend: {_load()}")
    return 0


if __name__ == "__main__":
    if __package__ in (None, ""):
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.exit(main())
