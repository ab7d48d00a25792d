"""The transfer experiment of the Gated Transfer Network paper, on any Caffe backbone.

backbone (prototxt + caffemodel) + layers + image-folder dataset ->
extract each split's features once (resumable) -> z-score them with training statistics ->
train every head on the same features:

    Softmax <layer>              one per layer              (paper: "Softmax FC1/FC2")
    CNN-SVM <layer>              one per layer              (paper: "CNN-SVM", Razavian et al.)
    Softmax on average <layers>  equal-width layers only    (paper: "Simple Average FC1,FC2")
    Ensemble softmax <layers>    mean of the per-layer softmax probabilities
    Gated Transfer <layers>      GatedTransfer              (paper: "Gated Transfer")

-> `results.md` (the comparison table), `results.json` (everything, machine-readable) and the
gate heat maps `gates.png` / `gates_<layer>.png` (rows: test images grouped by class; columns:
feature dimensions; colour: the normalised gate, as the paper's Figures 9 and 10).
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from modelport.atomic import make_folder, write_text, write_with
from modelport.errors import ConfigError
from modelport.transfer import heads as H
from modelport.transfer.datasets import Dataset
from modelport.transfer.features import extract_from_files, load_features

ProgressFactory = Callable[[str], tuple[Callable[[int, int], None] | None, Callable[[], None]]]


@dataclass
class ExperimentConfig:
    """Everything that decides the numbers (recorded in results.json)."""

    layers: list[str]
    preprocess: dict[str, Any] = field(default_factory=dict)
    spatial: str = "flatten"
    batch_size: int = 32
    standardize: bool = True
    train: H.TrainConfig = field(default_factory=H.TrainConfig)
    svm_c: float = 1.0
    gtn_width: int | None = None


@dataclass
class HeadResult:
    """One head's outcome in a transfer experiment: its accuracies, training time and a note."""

    name: str
    kind: str
    layers: list[str]
    test_accuracy: float | None
    train_accuracy: float | None
    seconds: float
    note: str = ""


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def _heads(names: Sequence[str], widths: Sequence[int], cfg: ExperimentConfig,
           ) -> list[tuple[str, str, list[int], H.Head | None, str]]:
    """(display name, kind, layer indices, head or None, note) for every head to train."""
    n = len(names)
    every = list(range(n))
    joined = "+".join(names)
    out: list[tuple[str, str, list[int], H.Head | None, str]] = []
    for i, name in enumerate(names):
        out.append((f"Softmax {name}", "softmax", [i],
                    H.SoftmaxHead(f"Softmax {name}", layer=i, cfg=cfg.train), ""))
    if n >= 2:
        out.append((f"Ensemble softmax {joined}", "ensemble", every,
                    H.EnsembleHead("ensemble", layers=tuple(every), cfg=cfg.train), ""))
        if len(set(widths)) == 1:
            out.append((f"Softmax on average {joined}", "average", every,
                        H.AverageHead("average", layers=tuple(every), cfg=cfg.train), ""))
        else:
            out.append((f"Softmax on average {joined}", "average", every, None,
                        f"not run: the layers have different widths {list(widths)}"))
    for i, name in enumerate(names):
        out.append((f"CNN-SVM {name}", "svm", [i],
                    H.SVMHead(f"CNN-SVM {name}", layer=i, C=cfg.svm_c, seed=cfg.train.seed),
                    ""))
    out.append((f"Gated Transfer {joined}", "gated", every,
                H.GatedHead("gated", layers=tuple(every), width=cfg.gtn_width, cfg=cfg.train),
                ""))
    return out


def _save_png(fig: Any, path: str) -> None:
    def write(tmp: str) -> None:
        fig.savefig(tmp, format="png", dpi=110)

    write_with(path, write)


def plot_gates(gates: np.ndarray, names: Sequence[str], labels: np.ndarray,
               classes: Sequence[str], out_dir: str) -> list[str]:
    """Heat maps of the normalised gates (N images x d dims per layer); returns the files."""
    from modelport.optional import require

    matplotlib = require("matplotlib", "transfer", "the gate heat maps")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = np.argsort(labels, kind="stable")
    g = gates[order]
    bounds = np.flatnonzero(np.diff(labels[order])) + 0.5
    files = []
    centre = 1.0 / gates.shape[1]
    spread = max(float(np.abs(gates - centre).max()), 1e-6)

    def draw(ax: Any, values: np.ndarray, title: str) -> Any:
        # Diverging around 1/n (the uniform gate): red leans on this layer, blue away from it.
        im = ax.imshow(values, aspect="auto", interpolation="nearest", cmap="coolwarm",
                       vmin=centre - spread, vmax=centre + spread)
        for b in bounds:
            ax.axhline(b, color="black", linewidth=0.5)
        ax.set_title(title)
        ax.set_xlabel("gate dimension")
        ax.set_ylabel("test image (grouped by class)")
        return im

    n = len(names)
    fig, axes = plt.subplots(1, n, figsize=(4.8 * n + 1.2, 4.5), squeeze=False,
                             layout="constrained")
    for i, name in enumerate(names):
        im = draw(axes[0][i], g[:, i, :], f"gates on {name}")
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.85, label="normalised gate r")
    path = os.path.join(out_dir, "gates.png")
    _save_png(fig, path)
    plt.close(fig)
    files.append(path)
    for i, name in enumerate(names):
        fig, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
        im = draw(ax, g[:, i, :], f"gates on {name} ({len(classes)} classes)")
        fig.colorbar(im, ax=ax, label="normalised gate r")
        path = os.path.join(out_dir, f"gates_{_safe(name)}.png")
        _save_png(fig, path)
        plt.close(fig)
        files.append(path)
    return files


def _markdown(summary: Mapping[str, Any], results: Sequence[HeadResult]) -> str:
    ds = summary["dataset"]
    lines = [
        f"# Transfer learning: {summary['backbone']['name']} on {ds['name']}",
        "",
        f"- backbone: `{summary['backbone']['prototxt']}` + `{summary['backbone']['caffemodel']}`",
        "- layers: " + ", ".join(f"`{n}` ({w}-d)" for n, w in
                                 zip(summary["layers"], summary["widths"])),
        f"- dataset: {len(ds['classes'])} classes, {ds['train']} training / {ds['test']} test "
        "images",
        f"- features: spatial `{summary['config']['spatial']}`, "
        f"{'z-scored with training statistics' if summary['config']['standardize'] else 'raw'}",
        f"- heads: Adam lr {summary['config']['train']['lr']}, weight decay "
        f"{summary['config']['train']['weight_decay']}, {summary['config']['train']['epochs']} "
        f"epochs, seed {summary['config']['train']['seed']}; LinearSVC C "
        f"{summary['config']['svm_c']}",
        "",
        "| head | layers | test accuracy | train accuracy |",
        "| --- | --- | ---: | ---: |",
    ]
    for r in results:
        te = f"{r.test_accuracy:.3f}" if r.test_accuracy is not None else "n/a"
        tr = f"{r.train_accuracy:.3f}" if r.train_accuracy is not None else "n/a"
        note = f" ({r.note})" if r.note else ""
        lines.append(f"| {r.name}{note} | {', '.join(r.layers)} | {te} | {tr} |")
    lines += ["", f"Feature extraction: {summary['timing']['extract_seconds']:.1f} s; heads: "
              f"{summary['timing']['heads_seconds']:.1f} s.", ""]
    return "\n".join(lines)


def _train_heads(blobs: Sequence[str], widths: Sequence[int], cfg: ExperimentConfig,
                 train: Sequence[np.ndarray], ytr: np.ndarray, test: Sequence[np.ndarray],
                 yte: np.ndarray, say: Callable[[str], None],
                 ) -> list[tuple[HeadResult, H.Head | None]]:
    out: list[tuple[HeadResult, H.Head | None]] = []
    for name, kind, idx, head, note in _heads(blobs, widths, cfg):
        used = [blobs[i] for i in idx]
        if head is None:
            out.append((HeadResult(name, kind, used, None, None, 0.0, note), None))
            continue
        say(f"training {name}")
        start = time.perf_counter()
        head.fit(train, ytr)
        seconds = time.perf_counter() - start
        out.append((HeadResult(name, kind, used, head.accuracy(test, yte),
                               head.accuracy(train, ytr), seconds, note), head))
    return out


def check_config(cfg: ExperimentConfig) -> None:
    """ConfigError for settings no head can train with, before any feature is extracted."""
    t = cfg.train
    bad = [(cfg.batch_size >= 1, f"--batch-size {cfg.batch_size} must be at least 1"),
           (t.epochs >= 1, f"--epochs {t.epochs} must be at least 1"),
           (t.lr > 0, f"--lr {t.lr} must be positive"),
           (t.weight_decay >= 0, f"--weight-decay {t.weight_decay} must not be negative"),
           (cfg.svm_c > 0, f"--svm-c {cfg.svm_c} must be positive"),
           (cfg.gtn_width is None or cfg.gtn_width >= 1,
            f"--gtn-width {cfg.gtn_width} must be at least 1")]
    for ok, what in bad:
        if not ok:  # also catches NaN
            raise ConfigError(f"{what}. Fix: pass a valid value (see modelport transfer --help)")


def run_experiment(prototxt: str, caffemodel: str, dataset: Dataset, out_dir: str,
                   cfg: ExperimentConfig, progress: ProgressFactory | None = None,
                   log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the whole comparison; write results.md/.json, features and gate plots in out_dir."""
    if not cfg.layers:
        raise ConfigError("give at least one layer (e.g. --layers fc6,fc7)")
    check_config(cfg)
    make_folder(out_dir)
    say = log or (lambda _msg: None)
    t0 = time.perf_counter()
    feats: dict[str, dict[str, np.ndarray]] = {}
    for split, images in (("train", dataset.train), ("test", dataset.test)):
        say(f"extracting {split} features ({len(images.paths)} images)")
        update, close = progress(f"{split} features") if progress else (None, lambda: None)
        path = os.path.join(out_dir, f"features_{split}.npz")
        try:
            # The chunks are kept: a re-run (other head settings) reuses every feature.
            extract_from_files(prototxt, caffemodel, cfg.layers, images, path,
                               cfg.preprocess, cfg.batch_size, spatial=cfg.spatial,
                               progress=update, keep_parts=True)
        finally:
            close()
        feats[split] = load_features(path)
    extract_seconds = time.perf_counter() - t0
    blob_keys = [k for k in feats["train"] if k not in ("paths", "labels")]
    # The npz keeps the requested order only by name: recover it from the request.
    from modelport.pipeline import read_net
    from modelport.transfer.features import resolve_blobs

    blobs = resolve_blobs(read_net(prototxt), cfg.layers)
    assert sorted(blobs) == sorted(blob_keys)
    train = [feats["train"][b] for b in blobs]
    test = [feats["test"][b] for b in blobs]
    ytr, yte = feats["train"]["labels"], feats["test"]["labels"]
    if cfg.standardize:
        std = H.Standardizer.fit(train)
        train, test = std(train), std(test)
    widths = [int(f.shape[1]) for f in train]

    results: list[HeadResult] = []
    gated: H.GatedHead | None = None
    t1 = time.perf_counter()
    for result, head in _train_heads(blobs, widths, cfg, train, ytr, test, yte, say):
        results.append(result)
        if isinstance(head, H.GatedHead):
            gated = head
    heads_seconds = time.perf_counter() - t1

    gate_files: list[str] = []
    gate_stats: dict[str, Any] = {}
    if gated is not None:
        r = gated.gates(test)
        gate_files = plot_gates(r, blobs, yte, dataset.classes, out_dir)
        arrays = {"gates": r.astype(np.float32), "labels": yte,
                  "layers": np.asarray(blobs, dtype=str)}

        def save(tmp: str) -> None:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)  # type: ignore[arg-type]  # (see features._save_npz)

        write_with(os.path.join(out_dir, "gates_test.npz"), save)
        winner = r.argmax(axis=1)  # (N, d): which layer each dimension leans on, per image
        gate_stats = {
            "mean_gate": {b: float(r[:, i, :].mean()) for i, b in enumerate(blobs)},
            "share_of_dimensions_led": {b: float((winner == i).mean())
                                        for i, b in enumerate(blobs)},
            "min": float(r.min()), "max": float(r.max()),
        }
    summary: dict[str, Any] = {
        "backbone": {"name": os.path.splitext(os.path.basename(caffemodel))[0],
                     "prototxt": prototxt, "caffemodel": caffemodel},
        "dataset": {"name": os.path.basename(os.path.normpath(dataset.root)) or dataset.root,
                    "root": dataset.root, "classes": list(dataset.classes),
                    "train": len(dataset.train.paths), "test": len(dataset.test.paths)},
        "layers": blobs,
        "widths": widths,
        "config": {**asdict(cfg), "train": asdict(cfg.train)},
        "results": [asdict(r) for r in results],
        "gates": {"files": [os.path.basename(f) for f in gate_files], **gate_stats},
        "timing": {"extract_seconds": extract_seconds, "heads_seconds": heads_seconds},
        "environment": {"python": platform.python_version(), "machine": platform.machine()},
    }
    write_text(os.path.join(out_dir, "results.json"), json.dumps(summary, indent=1))
    write_text(os.path.join(out_dir, "results.md"), _markdown(summary, results))
    return summary
