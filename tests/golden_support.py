"""Access to the golden fixtures produced by a real Caffe 1.0 (tests/golden, see its README).

These numbers come from Caffe, never from modelport: tests compare against them.
"""

from __future__ import annotations

import json
import pathlib
from dataclasses import dataclass

import numpy as np

from modelport.formats.caffe.caffemodel import StoredLayer
from modelport.ir import Blob, Net
from modelport.pipeline import attach_weights, load_net

GOLDEN = pathlib.Path(__file__).parent / "golden"
CAFFE_CASES = GOLDEN / "caffe"

# Allowed error: max|ours - ref| <= REL * max(1, max|ref|) (golden README, float32).
REL = 1e-4


def recipe_array(spec: dict) -> np.ndarray:
    """Rebuild one weight blob from weights.recipe.json exactly as the README defines it."""
    shape = spec["shape"]
    kind = spec["kind"]
    if kind == "randn":
        rs = np.random.RandomState(spec["seed"])
        return rs.randn(*shape).astype(np.float32) * np.float32(spec["scale"])
    if kind == "uniform":
        rs = np.random.RandomState(spec["seed"])
        return rs.uniform(spec["low"], spec["high"], size=shape).astype(np.float32)
    if kind == "const":
        return np.full(shape, spec["value"], np.float32)
    raise ValueError(f"unknown recipe kind {kind}")


@dataclass
class GoldenCase:
    name: str
    path: pathlib.Path
    meta: dict

    @property
    def prototxt(self) -> pathlib.Path:
        return self.path / "net.prototxt"

    @property
    def caffemodel(self) -> pathlib.Path | None:
        p = self.path / "weights.caffemodel"
        return p if p.exists() else None

    def net(self) -> Net:
        """The IR net with Caffe's weights (from the caffemodel, or rebuilt from the recipe)."""
        net = load_net(self.prototxt, self.caffemodel)
        recipe = self.path / "weights.recipe.json"
        if self.caffemodel is None and recipe.exists():
            specs = json.loads(recipe.read_text())
            stored = [StoredLayer(name, "", tuple(Blob(recipe_array(s)) for s in blob_specs))
                      for name, blob_specs in specs.items()]
            net = attach_weights(net, stored)
        return net

    def inputs(self) -> dict[str, np.ndarray]:
        return {p.stem: np.load(p) for p in sorted((self.path / "inputs").glob("*.npy"))}

    def blobs(self) -> dict[str, np.ndarray]:
        return {p.stem.replace("__", "/"): np.load(p)
                for p in sorted((self.path / "blobs").glob("*.npy"))}


def caffe_cases(with_net: bool = True) -> list[GoldenCase]:
    cases = []
    for d in sorted(CAFFE_CASES.iterdir()):
        if with_net and not (d / "net.prototxt").exists():
            continue
        cases.append(GoldenCase(d.name, d, json.loads((d / "case.json").read_text())))
    return cases


def assert_blob_close(name: str, ours: np.ndarray, ref: np.ndarray, rel: float = REL) -> None:
    """The project tolerance, with a message that gives the numbers."""
    assert ours.shape == ref.shape, f"blob '{name}': shape {ours.shape} != Caffe's {ref.shape}"
    if ref.size == 0:
        return
    # np.asarray: a 0-axis blob (Reduction to a scalar) would otherwise give a numpy scalar.
    diff = np.asarray(np.abs(ours.astype(np.float64) - ref.astype(np.float64)))
    both_nan = np.isnan(ours) & np.isnan(ref)
    diff[both_nan] = 0
    allowed = rel * max(1.0, float(np.nanmax(np.abs(ref))) if np.isfinite(ref).any() else 1.0)
    worst = float(np.nanmax(diff)) if diff.size else 0.0
    if not worst <= allowed or np.isnan(diff).any():
        idx = np.unravel_index(int(np.nanargmax(diff)), diff.shape)
        bad = int((diff > allowed).sum())
        raise AssertionError(
            f"blob '{name}': max|diff| {worst:.3g} at {idx} (ours {ours[idx]!r}, Caffe "
            f"{ref[idx]!r}) > allowed {allowed:.3g}; {bad}/{diff.size} elements differ"
        )
