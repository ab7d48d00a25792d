"""Inference latency of converted nets against peers, measured in one run on the same inputs
and thread count; conversion time and peak memory against caffe2onnx; achieved GFLOP/s against
a matmul roofline measured on the same machine.

Runners (each on the same input array, all with the same thread count):

    modelport eager       the converted CaffeNet (torch.inference_mode)
    modelport optimized   optimize: BatchNorm/Scale folded, ReLU fused, Dropout dropped
                          (+channels_last; +winograd: channels_last and Winograd 3x3 kernels)
    modelport torchscript the traced TorchScript file written by `modelport export`
    modelport compiled    torch.compile of the optimized net
    ORT (modelport onnx)  ONNX Runtime on `modelport export --onnx`
    OpenCV dnn            cv2.dnn.readNetFromCaffe on the same prototxt + caffemodel
    ORT (caffe2onnx)      ONNX Runtime on caffe2onnx's ONNX (a peer converter)
    onnx2torch(caffe2onnx) caffe2onnx's ONNX turned back into PyTorch by onnx2torch

Each repetition calls every runner once, in turn (so machine noise hits all of them alike);
the figure is the median. Every runner's output is compared with modelport eager and, where the
net has one, with REAL Caffe's output for the same input (max|diff| columns): a fast peer that
computes something else is reported as such. A peer that does not install or fails says so.

Results: bench/results/<date>.json and the tables in docs/performance.md.
Run: `python -m bench inference` (all of `make bench`), or `python -m bench.inference --quick`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
PEER_TIMEOUT = 900  # seconds for one peer conversion (caffe2onnx parses in pure Python)

Runner = Callable[[np.ndarray], np.ndarray]
# torch.compile is skipped where it does not finish in reasonable time on this machine (none
# now: VGG-16 took over 15 min while Caffe's MAX pooling always padded its bottom; since it pads
# only where Caffe's windows need it, 7 s to 5 min on 2 cores, varying from run to run).
NO_COMPILE: dict[str, str] = {}


# ---------------------------------------------------------------------------------------------
# Child processes: conversion time and peak RSS, each in a fresh interpreter.

def _child(kind: str, proto: str, weights: str, out: str) -> None:
    t0 = time.perf_counter()
    if kind == "modelport":
        import warnings

        warnings.simplefilter("ignore")
        from modelport.caffe import load
        from modelport.export.onnx import export_onnx

        net = load(proto, weights)
        t_load = time.perf_counter() - t0
        export_onnx(net, out)
        extra = {"load_seconds": t_load}
    elif kind == "caffe2onnx":
        from caffe2onnx.src.caffe2onnx import Caffe2Onnx
        from caffe2onnx.src.load_save_model import loadcaffemodel, saveonnxmodel

        graph, params = loadcaffemodel(proto, weights)
        model = Caffe2Onnx(graph, params, out).createOnnxModel()
        saveonnxmodel(model, out)
        extra = {}
    else:
        raise SystemExit(f"unknown child {kind}")
    seconds = time.perf_counter() - t0
    print(json.dumps({"seconds": seconds, "peak_rss_mb": _peak_rss_mb(), **extra}))


def _peak_rss_mb() -> float:
    """This process's own peak RSS: VmHWM (Linux) -- ru_maxrss would include the RSS the parent
    had when it forked this child."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def convert_in_child(kind: str, proto: str, weights: str, out: str) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "src"),
                                         env.get("PYTHONPATH", "")])
    if kind == "caffe2onnx":
        # caffe2onnx ships protobuf-3-era generated code; protobuf >= 4 refuses it unless the
        # pure-Python implementation is selected (its documented workaround).
        env["PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"] = "python"
    cmd = [sys.executable, "-m", "bench.inference", "--child", kind, proto, weights, out]
    try:
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=str(ROOT),
                             timeout=PEER_TIMEOUT)
    except subprocess.TimeoutExpired:
        return {"error": f"did not finish within {PEER_TIMEOUT} s"}
    if res.returncode != 0:
        lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
        return {"error": (lines[-1] if lines else f"exit {res.returncode}")[:300]}
    return json.loads(res.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
# Runners

def matmul_roofline(threads: int, repeats: int = 10, n: int = 2048) -> float:
    """GFLOP/s of an n x n float32 matmul (same thread count): the best of `repeats` for
    `torch.mm` and for oneDNN's matmul (the kernels torch's convolutions use), since a roofline
    is what the machine can reach, not what it reached under load or with a slower BLAS."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    kernels: list[Callable[[], Any]] = [lambda: torch.mm(a, b)]
    if torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise"):
        bt = b.t().contiguous()  # linear computes a @ W^T
        kernels.append(lambda: torch.ops.mkldnn._linear_pointwise(a, bt, None, "none", [], ""))
    best = float("inf")
    with torch.inference_mode():
        for kernel in kernels:
            kernel()
            for _ in range(repeats):
                t0 = time.perf_counter()
                kernel()
                best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def build_runners(net_info: Any, batch: int, folder: str, threads: int,
                  with_compile: bool, c2o_onnx: str | None, notes: dict) -> dict[str, Runner]:
    import torch

    from modelport.caffe import load
    from modelport.export.onnx import export_onnx
    from modelport.export.torchscript import export_torchscript
    from modelport.optimize.inference import optimize_for_inference

    runners: dict[str, Runner] = {}
    shape = (batch, *net_info.input_shape)
    net = load(net_info.prototxt, net_info.caffemodel,
               input_shapes={net_info.input_name: shape})
    net.eval()
    out_name = net_info.output

    def torch_runner(module: Any, channels_last: bool = False, blobs: bool = True) -> Runner:
        # blobs=False calls forward (a torch.compile wrapper forwards attribute access such as
        # forward_blobs to the uncompiled module).
        def run(x: np.ndarray) -> np.ndarray:
            t = torch.from_numpy(x)
            if channels_last:
                t = t.contiguous(memory_format=torch.channels_last)
            with torch.inference_mode():
                y = module.forward_blobs(t)[out_name] if blobs and hasattr(
                    module, "forward_blobs") else module(t)
            if isinstance(y, tuple | list):
                y = y[0]
            if isinstance(y, dict):
                y = y[out_name]
            return y.float().numpy()
        return run

    runners["modelport eager"] = torch_runner(net)
    opt = optimize_for_inference(net)
    runners["modelport optimized"] = torch_runner(opt)
    opt_cl = optimize_for_inference(net, channels_last=True)
    runners["modelport optimized+channels_last"] = torch_runner(opt_cl, channels_last=True)
    # + Winograd F(4x4, 3x3) where the first call per shape (a warm-up call) times it faster
    opt_wino = optimize_for_inference(net, channels_last=True, winograd=True)
    runners["modelport optimized+winograd"] = torch_runner(opt_wino, channels_last=True)

    sample = {net_info.input_name: np.zeros(shape, np.float32)}
    try:
        ts_path = os.path.join(folder, f"{net_info.name}_b{batch}.pt")
        export_torchscript(opt, ts_path, inputs=_example(net_info, batch), outputs=[out_name])
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scripted = torch.jit.load(ts_path)
            scripted = torch.jit.freeze(scripted.eval()) if hasattr(scripted, "eval") else scripted
        runners["modelport torchscript"] = torch_runner(scripted)
    except Exception as exc:  # report, keep measuring the others
        notes["modelport torchscript"] = f"failed: {_one_line(exc)}"
    if with_compile:
        try:
            class OutputBlob(torch.nn.Module):  # the compared blob, not the net's outputs
                def __init__(self, net: Any) -> None:
                    super().__init__()
                    self.net = net

                def forward(self, x: torch.Tensor) -> torch.Tensor:
                    return self.net.forward_blobs(x)[out_name]

            compiled = torch.compile(OutputBlob(opt))
            t0 = time.perf_counter()
            torch_runner(compiled, blobs=False)(sample[net_info.input_name])
            spent = time.perf_counter() - t0
            notes["modelport compiled"] = f"first call (compilation) {spent:.1f} s"
            runners["modelport compiled"] = torch_runner(compiled, blobs=False)
        except Exception as exc:
            notes["modelport compiled"] = f"failed: {_one_line(exc)}"

    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    try:
        onnx_path = os.path.join(folder, f"{net_info.name}_b{batch}.onnx")
        export_onnx(net, onnx_path, inputs=_example(net_info, batch), outputs=[out_name])
        sess = ort.InferenceSession(onnx_path, opts, providers=["CPUExecutionProvider"])
        runners["ORT (modelport onnx)"] = _ort_runner(sess)
    except Exception as exc:
        notes["ORT (modelport onnx)"] = f"failed: {_one_line(exc)}"

    try:
        import cv2

        cv2.setNumThreads(threads)
        cvnet = cv2.dnn.readNetFromCaffe(net_info.prototxt, net_info.caffemodel)
        cvnet.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)

        def run_cv(x: np.ndarray) -> np.ndarray:
            cvnet.setInput(x)
            return np.asarray(cvnet.forward(out_name))

        runners[f"OpenCV dnn {cv2.__version__}"] = run_cv
    except Exception as exc:
        notes["OpenCV dnn"] = f"failed: {_one_line(exc)}"

    if c2o_onnx:
        try:
            sess2 = ort.InferenceSession(c2o_onnx, opts, providers=["CPUExecutionProvider"])
            runners["ORT (caffe2onnx)"] = _ort_runner(sess2)
        except Exception as exc:
            notes["ORT (caffe2onnx)"] = f"failed: {_one_line(exc)}"
        try:
            import onnx
            from onnx2torch import convert as onnx2torch_convert

            fx = onnx2torch_convert(onnx.load(c2o_onnx)).eval()
            runners["onnx2torch (caffe2onnx)"] = torch_runner(fx)
        except Exception as exc:
            why = _one_line(exc)
            if "torchvision" in why:
                why += (" (onnx2torch imports torchvision; PyPI's torchvision wheel needs its "
                        "own torch build, so it is not installed beside the pinned CPU torch)")
            notes["onnx2torch (caffe2onnx)"] = f"failed: {why}"
    return runners


def _ort_runner(sess: Any) -> Runner:
    name = sess.get_inputs()[0].name
    out = sess.get_outputs()[0].name

    def run(x: np.ndarray) -> np.ndarray:
        return np.asarray(sess.run([out], {name: x})[0])

    return run


def _example(net_info: Any, batch: int) -> dict[str, np.ndarray]:
    from bench._models import batch_input

    return {net_info.input_name: batch_input(net_info, batch)[0]}


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def _max_diff(a: np.ndarray, b: np.ndarray | None) -> float | None:
    if b is None:
        return None
    a = np.asarray(a, np.float64).reshape(-1)
    b = np.asarray(b, np.float64).reshape(-1)
    if a.shape != b.shape:
        return float("inf")
    return float(np.max(np.abs(a - b)))


def time_runners(runners: dict[str, Runner], x: np.ndarray, repeats: int,
                 warmup: int = 2) -> dict[str, float]:
    """Median seconds per call; repetitions interleave the runners."""
    for run in runners.values():
        for _ in range(warmup):
            run(x)
    samples: dict[str, list[float]] = {k: [] for k in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            t0 = time.perf_counter()
            run(x)
            samples[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in samples.items()}


# ---------------------------------------------------------------------------------------------

def rebatch_onnx(path: str, batch: int, out: str) -> str:
    """A copy of caffe2onnx's batch-1 graph for `batch`: input/output dim 0 and the leading 1 of
    its Reshape shape constants set to `batch`. Its opset is declared as 11: caffe2onnx writes
    opset-11 operators (Dropout's ratio attribute, Pad's pads input) but lets onnx.helper stamp
    the newest opset/IR version, which ONNX Runtime rejects."""
    import onnx

    model = onnx.load(path)
    model.ir_version = 6
    del model.opset_import[:]
    model.opset_import.append(onnx.helper.make_opsetid("", 11))
    reshape_shapes = {n.input[1] for n in model.graph.node if n.op_type == "Reshape"}
    for init in model.graph.initializer:
        if init.name in reshape_shapes:
            arr = onnx.numpy_helper.to_array(init).copy()
            if arr.size and arr[0] == 1:
                arr[0] = batch
                init.CopyFrom(onnx.numpy_helper.from_array(arr, init.name))
    weights = {init.name for init in model.graph.initializer}
    for vi in (*model.graph.input, *model.graph.output):
        if vi.name in weights:  # caffe2onnx also lists every weight as a graph input
            continue
        dims = vi.type.tensor_type.shape.dim
        if dims:
            dims[0].dim_value = batch
    del model.graph.value_info[:]
    onnx.save(model, out)
    return out


def bench_net(name: str, batches: list[int], threads: int, repeats: int, with_compile: bool,
              with_peers: bool, root: str, roofline: float,
              large_peer_skip: dict[str, str]) -> dict:
    from bench._models import batch_input, flops, prepare

    from modelport.caffe import load

    folder = os.path.join(root, name)
    os.makedirs(folder, exist_ok=True)
    print(f"-- {name}: preparing files", flush=True)
    info = prepare(name, folder)
    result: dict[str, Any] = {"net": name, "caffemodel_mb": os.path.getsize(info.caffemodel) / 1e6,
                              "batches": {}, "conversion": {}, "notes": {}}
    print(f"-- {name}: conversion in fresh processes", flush=True)
    result["conversion"]["modelport (load + ONNX export + ORT check)"] = convert_in_child(
        "modelport", info.prototxt, info.caffemodel, os.path.join(folder, "conv_mp.onnx"))
    c2o: dict[int, str | None] = {b: None for b in batches}
    if with_peers and name in large_peer_skip:
        result["notes"]["caffe2onnx"] = large_peer_skip[name]
    elif with_peers:
        out = os.path.join(folder, "c2o.onnx")
        r = convert_in_child("caffe2onnx", info.prototxt, info.caffemodel, out)
        result["conversion"]["caffe2onnx (pure-Python protobuf)"] = r
        if "error" in r:
            result["notes"]["caffe2onnx"] = f"conversion failed: {r['error']}"
        else:
            for batch in batches:
                c2o[batch] = rebatch_onnx(out, batch, os.path.join(folder, f"c2o_b{batch}.onnx"))
            result["notes"]["caffe2onnx batch"] = (
                "caffe2onnx's graph is declared opset 11 / IR 6 (it writes opset-11 operators "
                "but stamps the newest opset, which ONNX Runtime rejects) and, as it fixes the "
                "batch from the prototxt (1), its input/output batch dim and Reshape shape "
                "constants are set to the batch; nothing else is changed (its weights stay "
                "graph inputs, which blocks ORT constant folding)")
    for batch in batches:
        print(f"-- {name}: batch {batch}", flush=True)
        notes: dict[str, str] = {}
        compile_here = with_compile and name not in NO_COMPILE
        if with_compile and not compile_here:
            notes["modelport compiled"] = NO_COMPILE[name]
        runners = build_runners(info, batch, folder, threads, compile_here, c2o[batch], notes)
        x, golden = batch_input(info, batch)
        reference = runners["modelport eager"](x)
        outputs = {k: run(x) for k, run in runners.items()}
        reps = max(3, repeats if batch == 1 else max(3, repeats // 2))
        times = time_runners(runners, x, reps)
        net = load(info.prototxt, info.caffemodel,
                   input_shapes={info.input_name: (batch, *info.input_shape)})
        gflop = flops(net) / 1e9
        base = times["modelport eager"]
        rows = {}
        for k, t in times.items():
            rows[k] = {
                "ms": t * 1e3,
                "speedup_vs_eager": base / t,
                "gflops": gflop / t,
                "roofline_fraction": gflop / t / roofline,
                "max_diff_vs_modelport": _max_diff(outputs[k], reference),
                "max_diff_vs_caffe": _max_diff(outputs[k], golden),
            }
        result["batches"][str(batch)] = {"gflop": gflop, "repeats": reps, "runners": rows,
                                         "notes": notes}
        for k, v in rows.items():
            caffe = v["max_diff_vs_caffe"]
            print(f"   {k:36s} {v['ms']:9.1f} ms  x{v['speedup_vs_eager']:5.2f} vs eager  "
                  f"{v['gflops']:6.1f} GFLOP/s ({100 * v['roofline_fraction']:4.1f}% of matmul)"
                  + (f"  max|diff| vs Caffe {caffe:.2g}" if caffe is not None else ""),
                  flush=True)
        for k, v in notes.items():
            print(f"   note: {k}: {v}", flush=True)
        print(f"   => {peer_verdict(rows)}", flush=True)
    return result


OPTIMIZED = "modelport optimized+winograd"  # the optimised modelport model the issue measures


def is_peer(runner: str) -> bool:
    """Other projects' ways to run a Caffe model (modelport's own ONNX on ORT is not a peer)."""
    return not runner.startswith("modelport") and runner != "ORT (modelport onnx)"


def peer_verdict(rows: dict[str, dict]) -> str:
    """One line: the optimised modelport model against the fastest peer, ratio <= 1 meaning
    at least as fast."""
    peers = {k: v["ms"] for k, v in rows.items() if is_peer(k)}
    if OPTIMIZED not in rows or not peers:
        return "no peer measured" if OPTIMIZED in rows else f"{OPTIMIZED} not measured"
    fastest = min(peers, key=lambda k: peers[k])
    ratio = rows[OPTIMIZED]["ms"] / peers[fastest]
    verdict = "at least as fast" if ratio <= 1.0 else "SLOWER than the fastest peer"
    return (f"{OPTIMIZED} {rows[OPTIMIZED]['ms']:.1f} ms vs fastest peer {fastest} "
            f"{peers[fastest]:.1f} ms: ratio {ratio:.2f} ({verdict})")


def write_markdown(results: dict, path: pathlib.Path) -> None:
    m = results["machine"]
    lines = [
        "# Performance",
        "",
        "Measured by `make bench` (`python -m bench`, entry `bench/inference.py`) in one run on "
        "one machine: every runner gets the same input array and the same thread count; each "
        "repetition calls every runner once in turn, and the figure is the median. "
        "No timing is asserted by any test.",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {results['threads']} thread(s) for every "
        f"runner; torch {m['torch']}, onnxruntime {m['onnxruntime']}, OpenCV {m['opencv']}. "
        f"Date: {results['date']}. 1-minute load average {results['load_average_before']:.1f} "
        f"before, {results['load_average_after']:.1f} after (a busy machine widens the spread; "
        "ratios measured in the same run stay comparable).",
        "",
        f"Matmul roofline (2048x2048 float32, best of 10 for `torch.mm` and oneDNN's matmul, "
        "same threads): "
        f"**{results['roofline_gflops']:.1f} GFLOP/s**. GFLOP/s below counts only convolution "
        "and inner-product multiply-adds (x2) of a direct convolution; figures above 100% mean the "
        "library used fewer multiplies (Winograd-style 3x3 kernels) or the roofline was measured "
        "on a busier moment.",
        "",
        "`max|diff|` columns: largest absolute difference of the output (softmax `prob`; the "
        "logits `fc8` for the VGG-16-sized net, whose random weights saturate the softmax) "
        "from modelport eager and from REAL Caffe's output on the same input (golden files; "
        "the VGG-16-sized net has no Caffe run, so no Caffe column).",
        "",
    ]
    for net in results["nets"]:
        lines.append(f"## {net['net']} ({net['caffemodel_mb']:.0f} MB caffemodel)")
        lines.append("")
        for batch, b in net["batches"].items():
            lines.append(f"Batch {batch} ({b['gflop']:.2f} GFLOP per call, median of "
                         f"{b['repeats']}):")
            lines.append("")
            lines.append("| runner | ms | speed vs eager | GFLOP/s | % of matmul | "
                         "max\\|diff\\| vs modelport | max\\|diff\\| vs Caffe |")
            lines.append("|---|---:|---:|---:|---:|---:|---:|")
            for k, v in b["runners"].items():
                def f(x: float | None) -> str:
                    return "-" if x is None else f"{x:.2g}"
                lines.append(f"| {k} | {v['ms']:.1f} | {v['speedup_vs_eager']:.2f}x | "
                             f"{v['gflops']:.1f} | {100 * v['roofline_fraction']:.0f}% | "
                             f"{f(v['max_diff_vs_modelport'])} | {f(v['max_diff_vs_caffe'])} |")
            lines.append(f"\n**{peer_verdict(b['runners'])}**")
            for k, v in b["notes"].items():
                lines.append(f"\n- {k}: {v}")
            lines.append("")
        conv = net["conversion"]
        if conv:
            lines.append("Conversion (fresh process each; peak RSS = the process's VmHWM):")
            lines.append("")
            lines.append("| converter | seconds | peak RSS MB |")
            lines.append("|---|---:|---:|")
            for k, v in conv.items():
                if "error" in v:
                    lines.append(f"| {k} | failed: {v['error']} | - |")
                else:
                    lines.append(f"| {k} | {v['seconds']:.1f} | {v['peak_rss_mb']:.0f} |")
            lines.append("")
        for k, v in net["notes"].items():
            lines.append(f"- {k}: {v}")
        lines.append("")
    lines.extend(results.get("footer", []))
    text = "\n".join(lines).rstrip() + "\n"
    from modelport.atomic import write_text

    write_text(path, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", nargs=4, metavar=("KIND", "PROTO", "WEIGHTS", "OUT"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--nets", default="caffenet,vgg16,nsfw")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--threads", type=int, default=0, help="default: all cores")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--quick", action="store_true",
                        help="CaffeNet only, 3 repeats, no torch.compile, no peers")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--no-peers", action="store_true", help="skip caffe2onnx conversions")
    parser.add_argument("--peers-on-vgg", action="store_true",
                        help="also convert the VGG-16-sized net with caffe2onnx (slow)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--render", metavar="RESULTS.json",
                        help="only rewrite docs/performance.md from a results file")
    args = parser.parse_args(argv if argv is not None else sys.argv[1:])
    if args.child:
        _child(*args.child)
        return 0
    if args.render:
        with open(args.render, encoding="utf-8") as fh:
            write_markdown(json.load(fh), ROOT / "docs" / "performance.md")
        return 0
    import torch

    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    nets = ["caffenet"] if args.quick else [n for n in args.nets.split(",") if n]
    batches = [int(b) for b in args.batches.split(",") if b]
    repeats = 3 if args.quick else args.repeats
    from bench._models import describe_machine

    roofline = matmul_roofline(threads)
    print(f"matmul roofline: {roofline:.1f} GFLOP/s with {threads} thread(s)", flush=True)
    results: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": describe_machine(), "threads": threads, "roofline_gflops": roofline,
        "nets": [], "load_average_before": os.getloadavg()[0],
    }
    with tempfile.TemporaryDirectory(prefix="modelport-bench-") as root:
        for name in nets:
            try:
                results["nets"].append(bench_net(
                    name, batches, threads, repeats,
                    with_compile=not (args.quick or args.no_compile),
                    with_peers=not (args.quick or args.no_peers), root=root,
                    roofline=roofline, large_peer_skip={} if args.peers_on_vgg else {
                        "vgg16": "caffe2onnx not run on the 553 MB VGG-16: it parses with "
                                 "pure-Python protobuf (CaffeNet, 244 MB: 5.4 min, 5.8 GB peak "
                                 "RSS on this machine); --peers-on-vgg runs it"}))
            except Exception as exc:  # one net failing must not lose the others' figures
                traceback.print_exc()
                results["nets"].append({"net": name, "error": _one_line(exc), "batches": {},
                                        "conversion": {}, "notes": {"error": _one_line(exc)},
                                        "caffemodel_mb": 0.0})
    results["load_average_after"] = os.getloadavg()[0]
    if not args.no_write:
        from bench._models import dump

        day = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
        out = HERE / "results" / f"{day}.json"
        out.parent.mkdir(exist_ok=True)
        from modelport.atomic import write_text

        write_text(out, dump(results))
        write_markdown(results, ROOT / "docs" / "performance.md")
        print(f"wrote {out} and docs/performance.md", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
