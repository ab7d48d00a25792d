"""Inference latency of the Keras / TensorFlow exports (issue 12) against modelport's PyTorch
module, measured in one run on the same inputs and thread count.

Runners, for CaffeNet (golden recipe weights) and the real open_nsfw at batch 1 and 8:

    modelport PyTorch       the converted CaffeNet (torch.inference_mode), bench/inference.py's
                            "modelport eager" runner
    Keras (torch backend)   `modelport export --keras`'s model_keras.py + model.weights.h5,
                            KERAS_BACKEND=torch, in this process (NHWC input)
    TF SavedModel           `modelport export --saved-model` (checked against the PyTorch
                            module when written), its serving_default signature in a child
                            process with TensorFlow (this process runs Keras on torch)

The two in-process runners are interleaved (each repetition calls both, the figure is the
median); the SavedModel's child runs right after them on the same input, with the same
repetitions and threads. Ratios are to the PyTorch module; every runner's output is compared
with the PyTorch module's and with REAL Caffe's (golden files). No bar on speed.

Run: `python -m bench keras_latency` (part of `make bench`), or `python -m bench.keras_latency
[--nets caffenet] [--batches 1] [--repeats 5]`.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent

Runner = Callable[[np.ndarray], np.ndarray]
PYTORCH = "modelport PyTorch"
KERAS = "Keras (torch backend)"
SAVED_MODEL = "TF SavedModel"
PYTORCH_TF = "modelport PyTorch, in the TF process"


# ---------------------------------------------------------------------------------------------
# The TensorFlow child: the SavedModel's serving signature, interleaved with the PyTorch module
# (the same runner as in the parent) so that their ratio is measured at the same moments.

def _tf_child(spec_path: str) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import warnings

    warnings.simplefilter("ignore")
    with open(spec_path, encoding="utf-8") as fh:
        spec = json.load(fh)
    import tensorflow as tf
    import torch

    from modelport.caffe import load

    threads = int(spec["threads"])
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    torch.set_num_threads(threads)
    loaded = tf.saved_model.load(spec["saved_model"])
    signature = loaded.signatures["serving_default"]
    (key,) = signature.structured_input_signature[1]  # the bench nets have one input
    result: dict[str, Any] = {}
    for i, (batch, path, x_path) in enumerate(zip(spec["batches"], spec["inputs"],
                                                  spec["caffe_inputs"])):
        x_keras = tf.constant(np.load(path, allow_pickle=False))
        x = torch.from_numpy(np.load(x_path, allow_pickle=False))
        net = load(spec["prototxt"], spec["caffemodel"],
                   input_shapes={spec["input_name"]: (batch, *spec["input_shape"])})
        net.eval()

        def run_tf(x_keras: Any = x_keras) -> np.ndarray:
            outs = signature(**{key: x_keras})  # output_0, output_1, ... in model order
            return np.asarray(outs[f"output_{spec['output_index']}"])

        def run_torch(x: Any = x, net: Any = net) -> np.ndarray:
            with torch.inference_mode():
                return net.forward_blobs(x)[spec["output"]].numpy()

        times = _time_pairs({SAVED_MODEL: (run_tf, None), PYTORCH: (run_torch, None)},
                            int(spec["repeats"][i]), call=lambda run, _: run())
        np.save(os.path.join(spec["out"], f"tf_out_{i}.npy"), run_tf(), allow_pickle=False)
        result[str(i)] = times
    print(json.dumps(result))


def time_saved_model(spec: dict[str, Any], folder: str) -> tuple[list[dict[str, float]],
                                                                  list[np.ndarray]]:
    """{runner: median seconds} per batch of the SavedModel and of the PyTorch module in one
    TensorFlow child process, and the SavedModel's outputs (Keras layout)."""
    from modelport.export.keras_tf import worker_env

    spec_path = os.path.join(folder, "tf_child.json")
    with open(spec_path, "w", encoding="utf-8") as fh:
        json.dump(spec, fh)
    cmd = [sys.executable, "-m", "bench.keras_latency", "--tf-child", spec_path]
    res = subprocess.run(cmd, env=worker_env(), capture_output=True, text=True,
                         cwd=str(ROOT), timeout=1800)
    if res.returncode != 0:
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        raise RuntimeError(lines[-1] if lines else f"exit {res.returncode}")
    times = json.loads(res.stdout.strip().splitlines()[-1])
    n = len(spec["batches"])
    outs = [np.load(os.path.join(folder, f"tf_out_{i}.npy")) for i in range(n)]
    return [times[str(i)] for i in range(n)], outs


# ---------------------------------------------------------------------------------------------

def _max_diff(a: np.ndarray, b: np.ndarray | None) -> float | None:
    if b is None:
        return None
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.shape != b.shape:
        return float("inf")
    return float(np.max(np.abs(a - b)))


def bench_net(name: str, batches: list[int], threads: int, repeats: int, root: str
              ) -> list[dict[str, Any]]:
    """The rows of one net: its Keras export and SavedModel are written once (at batch 1,
    checked there) and run at every batch size (Keras inputs keep the batch axis free)."""
    import torch
    from bench._models import batch_input, prepare

    from modelport.caffe import load
    from modelport.convert import load_generated
    from modelport.export.keras import export_keras
    from modelport.export.keras_tf import export_tensorflow
    from modelport.export.keras_tf_worker import to_caffe, to_keras

    folder = os.path.join(root, name)
    os.makedirs(folder, exist_ok=True)
    print(f"-- {name}: preparing files", flush=True)
    info = prepare(name, folder)
    x1, _ = batch_input(info, 1)
    net1 = load(info.prototxt, info.caffemodel,
                input_shapes={info.input_name: (1, *info.input_shape)})
    keras_dir = os.path.join(folder, "keras")
    saved_model = os.path.join(folder, "saved_model")
    t0 = time.perf_counter()
    export_keras(net1, keras_dir, inputs={info.input_name: x1})
    t_keras = time.perf_counter() - t0
    t0 = time.perf_counter()
    export_tensorflow(net1, saved_model=saved_model, keras_dir=keras_dir,
                      inputs={info.input_name: x1})
    t_tf = time.perf_counter() - t0
    print(f"   export seconds (each checked): Keras {t_keras:.1f}, SavedModel {t_tf:.1f}",
          flush=True)
    generated = load_generated(os.path.join(keras_dir, "model_keras.py"), f"bench_keras_{name}")
    model = generated.load()
    in_layout = generated.INPUT_LAYOUTS[0]
    out_layout = generated.OUTPUT_LAYOUTS[list(generated.OUTPUT_NAMES).index(info.output)]
    out_index = list(generated.OUTPUT_NAMES).index(info.output)

    per_batch = []
    for batch in batches:
        net = load(info.prototxt, info.caffemodel,
                   input_shapes={info.input_name: (batch, *info.input_shape)})
        net.eval()
        x, golden = batch_input(info, batch)
        x_keras = to_keras(x, in_layout)

        def run_torch(a: np.ndarray, net: Any = net) -> np.ndarray:
            with torch.inference_mode():
                return net.forward_blobs(torch.from_numpy(a))[info.output].float().numpy()

        def run_keras(a: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                y = model(torch.from_numpy(a), training=False)
            y = y[out_index] if isinstance(y, list | tuple) else y
            return np.asarray(y.detach().cpu().numpy())

        reps = max(3, repeats if batch == 1 else repeats // 2)
        print(f"-- {name}: batch {batch}: timing ({reps} repetitions)", flush=True)
        times = _time_pairs({PYTORCH: (run_torch, x), KERAS: (run_keras, x_keras)}, reps)
        outputs = {PYTORCH: run_torch(x), KERAS: to_caffe(run_keras(x_keras), out_layout)}
        per_batch.append((batch, x_keras, golden, reps, times, outputs))
    spec: dict[str, Any] = {
        "saved_model": saved_model, "threads": threads, "out": folder, "output_index": out_index,
        "prototxt": info.prototxt, "caffemodel": info.caffemodel, "input_name": info.input_name,
        "input_shape": list(info.input_shape), "output": info.output, "batches": [],
        "inputs": [], "caffe_inputs": [], "repeats": []}
    for batch, x_keras, _, reps, _, _ in per_batch:
        spec["batches"].append(batch)
        spec["repeats"].append(reps)
        for key, arr in (("inputs", x_keras), ("caffe_inputs", batch_input(info, batch)[0])):
            path = os.path.join(folder, f"{key}_b{batch}.npy")
            np.save(path, arr, allow_pickle=False)
            spec[key].append(path)
    tf_ratio: dict[int, float] = {}
    try:  # one TensorFlow process for every batch, right after the in-process runners
        print(f"-- {name}: TF SavedModel vs modelport PyTorch in a TensorFlow process",
              flush=True)
        tf_times, tf_outs = time_saved_model(spec, folder)
        for (batch, _, _, _, times, outputs), pair, out in zip(per_batch, tf_times, tf_outs):
            times[PYTORCH_TF] = pair[PYTORCH]
            times[SAVED_MODEL] = pair[SAVED_MODEL]
            tf_ratio[batch] = pair[SAVED_MODEL] / pair[PYTORCH]
            outputs[PYTORCH_TF] = outputs[PYTORCH]  # the same module and input
            outputs[SAVED_MODEL] = to_caffe(out, out_layout)
    except Exception as exc:  # report, keep the other figures
        print(f"   TF SavedModel failed: {exc}", flush=True)
    rows: list[dict[str, Any]] = []
    for batch, _, golden, reps, times, outputs in per_batch:
        base = times[PYTORCH]
        for k, t in times.items():
            # the SavedModel's ratio is to the PyTorch module timed in its own process
            ratio = (tf_ratio[batch] if k == SAVED_MODEL else 1.0 if k == PYTORCH_TF
                     else t / base)
            rows.append({"net": name, "batch": batch, "runner": k, "ms": t * 1e3,
                         "ratio": ratio,
                         "max_diff_vs_pytorch": _max_diff(outputs[k], outputs[PYTORCH]),
                         "max_diff_vs_caffe": _max_diff(outputs[k], golden), "repeats": reps})
    return rows


def _time_pairs(runners: dict[str, tuple[Callable[..., Any], Any]], repeats: int,
                warmup: int = 2, call: Callable[[Callable[..., Any], Any], Any] | None = None
                ) -> dict[str, float]:
    """Median seconds per call; each repetition calls every runner once, in turn."""
    import statistics

    invoke = call or (lambda run, a: run(a))
    for run, a in runners.values():
        for _ in range(warmup):
            invoke(run, a)
    samples: dict[str, list[float]] = {k: [] for k in runners}
    for _ in range(repeats):
        for k, (run, a) in runners.items():
            t0 = time.perf_counter()
            invoke(run, a)
            samples[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in samples.items()}


def print_table(rows: list[dict[str, Any]], threads: int) -> None:
    def f(v: float | None) -> str:
        return "-" if v is None else f"{v:.2g}"

    print(f"\n| net | batch | runner | ms | ratio to {PYTORCH} | max\\|diff\\| vs PyTorch | "
          f"max\\|diff\\| vs Caffe |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['net']} | {r['batch']} | {r['runner']} | {r['ms']:.1f} | "
              f"{r['ratio']:.2f}x | {f(r['max_diff_vs_pytorch'])} | "
              f"{f(r['max_diff_vs_caffe'])} |")
    print(f"\n{threads} thread(s) each; medians. {KERAS} is interleaved with {PYTORCH} in this "
          f"process; {SAVED_MODEL} with the same PyTorch runner in a TensorFlow process (its ratio "
          f"is to that run). Load average {os.getloadavg()[0]:.1f}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tf-child", metavar="SPEC.json", help=argparse.SUPPRESS)
    parser.add_argument("--nets", default="caffenet,nsfw")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--threads", type=int, default=0, help="default: all cores")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv if argv is not None else sys.argv[1:])
    if args.tf_child:
        _tf_child(args.tf_child)
        return 0
    if "keras" in sys.modules and os.environ.get("KERAS_BACKEND") != "torch":
        raise SystemExit("keras is already imported on another backend; run this bench alone")
    os.environ["KERAS_BACKEND"] = "torch"  # before keras' first import (Keras on torch)
    import torch

    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="modelport-keras-bench-") as root:
        for name in [n for n in args.nets.split(",") if n]:
            rows += bench_net(name, [int(b) for b in args.batches.split(",") if b], threads,
                              args.repeats, root)
    print_table(rows, threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
