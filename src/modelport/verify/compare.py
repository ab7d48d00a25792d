"""Blob-by-blob comparison of a converted net with a reference, and the first divergent layer.

Our side is computed layer by layer, keeping every layer's own outputs (in-place layers
overwrite a blob; we keep each value). Each reference value is matched to the value of ours that
it describes (see `modelport.verify.references`): a layer's own top, a blob's final value after
its in-place chain, or a Split top (Caffe's implicit `x_layer_0_split_1` blobs).

The first row out of tolerance, in network order, names the first divergent layer. To tell a
layer that is wrong from one that only passes on an error it received, that layer (or in-place
chain) is re-run on the *reference's* bottoms: what still differs is introduced by the layer,
the rest is inherited from its inputs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from modelport.backends.torch_module import CaffeNet
from modelport.errors import ConfigError
from modelport.ir import Layer
from modelport.verify.references import Reference, ReferenceOutput, resolve_reference
from modelport.verify.report import BlobResult, Divergence, ParityReport
from modelport.verify.tolerance import DEFAULT_REL, Tolerance, reference_scale

__all__ = ["compare_arrays", "random_inputs", "run_layers", "verify"]

# max_rel_diff measures |ours - ref| / |ref| per element, with |ref| floored at this fraction of
# the blob's scale max(1, max|ref|): a relative error for every element that is not tiny, and no
# division blow-up on the zeros ReLU and padding produce.
REL_FLOOR = 1e-3


@dataclass
class _Writer:
    layer: Layer
    top: int
    position: int  # -1 for net inputs, else index in CaffeNet.run_order


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    return np.array(t.detach().cpu().numpy(), copy=True)


def layer_ids(net: CaffeNet) -> dict[int, str]:
    """id(Layer) -> how run_layers names that layer's outputs: its Caffe name, or, for a layer
    whose name an earlier layer already has (Caffe allows that), its module key (`ip_1`)."""
    ids = {id(layer): layer.name for layer in net.source_layers}
    for layer, key in net.run_order:
        ids[id(layer)] = layer.name if net.layer_keys.get(layer.name) == key else key
    return ids


def run_layers(net: CaffeNet, inputs: Mapping[str, np.ndarray],
               ) -> dict[tuple[str, int], np.ndarray]:
    """Run `net` layer by layer on `inputs`; every layer's own outputs by (layer name, top)
    (a repeated layer name: the later layers by their module key, see layer_ids).

    Net inputs appear under (input layer name, top index)."""
    tops: dict[tuple[str, int], np.ndarray] = {}
    ids = layer_ids(net)

    def record(layer: Layer, j: int, t: torch.Tensor) -> None:
        tops[(ids.get(id(layer), layer.name), j)] = _to_numpy(t)

    feed = {name: torch.from_numpy(np.array(inputs[name], dtype=np.float32, copy=True))
            for name in net.input_names}
    with torch.no_grad():
        net.forward_blobs(on_top=record, **feed)  # type: ignore[arg-type]  # blob-name kwargs
    return tops


def _index_rows(net: CaffeNet) -> dict[str, int]:
    """Inputs read as table indices: input blob -> the smallest `embed_param.input_dim` of the
    Embed layers reading it (Caffe's Embed takes integers in [0, input_dim))."""
    rows: dict[str, int] = {}
    for layer in net.net.layers:
        if layer.type == "Embed" and layer.param.embed_param.input_dim > 0:
            for b in layer.bottoms:
                if b in net.input_names:
                    dim = int(layer.param.embed_param.input_dim)
                    rows[b] = min(rows.get(b, dim), dim)
    return rows


def random_inputs(net: CaffeNet, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded standard-normal inputs of the net's declared input shapes; an input an Embed
    layer reads gets seeded integers in [0, input_dim) instead."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    index_rows = _index_rows(net)
    for name in net.input_names:
        shape = net.blob_shapes[name]
        try:
            if name in index_rows:
                out[name] = rng.integers(0, index_rows[name], size=shape).astype(np.float32)
                continue
            out[name] = rng.standard_normal(shape).astype(np.float32)
        except MemoryError:
            gib = math.prod(shape) * 8 / 2**30
            raise ConfigError(f"a random input '{name}' of shape {shape} needs {gib:.1f} GiB, "
                              "more than this machine can allocate. Fix: give a smaller "
                              "--input-shape (or input arrays)") from None
    return out


def compare_arrays(row: BlobResult, ours: np.ndarray, ref: np.ndarray,
                   allowed: float | np.ndarray) -> BlobResult:
    """Fill `row`'s metrics for ours vs ref under `allowed` (scalar or per element)."""
    row.shape = tuple(int(d) for d in ours.shape)
    row.ref_shape = tuple(int(d) for d in ref.shape)
    row.size = int(ref.size)
    allowed_arr = np.asarray(allowed, np.float64)
    row.allowed = float(allowed_arr.max()) if allowed_arr.size else 0.0
    row.exact = bool(allowed_arr.size and float(allowed_arr.min()) == 0.0)
    if ours.shape != ref.shape:
        row.passed = False
        row.max_abs_diff = math.inf
        row.mismatched = row.size
        row.note = f"shape {row.shape} differs from the reference's {row.ref_shape}"
        return row
    if ref.size == 0:
        row.max_abs_diff, row.max_rel_diff, row.cosine = 0.0, 0.0, 1.0
        return row
    a = ours.astype(np.float64)
    b = ref.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(a - b)
    same = (a == b) | (np.isnan(a) & np.isnan(b))  # equal infinities, or NaN in both
    diff = np.where(same, 0.0, diff)
    bad = np.isnan(diff)
    worst = np.where(bad, np.inf, diff)
    idx = np.unravel_index(int(np.argmax(worst)), worst.shape)
    row.max_abs_diff = float(worst[idx])
    row.where = tuple(int(i) for i in idx)
    row.ours_at, row.ref_at = float(a[idx]), float(b[idx])
    over = bad | (diff > np.broadcast_to(allowed_arr, diff.shape))
    row.mismatched = int(over.sum())
    row.passed = row.mismatched == 0
    scale = reference_scale(b)
    with np.errstate(invalid="ignore"):
        rel = worst / np.maximum(np.abs(b), REL_FLOOR * scale)
    row.max_rel_diff = float(np.nanmax(rel)) if rel.size else 0.0
    if np.isfinite(a).all() and np.isfinite(b).all():
        na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
        if na == 0.0 and nb == 0.0:
            row.cosine = 1.0
        elif na == 0.0 or nb == 0.0:
            row.cosine = 0.0
        else:
            row.cosine = float(np.dot(a.ravel(), b.ravel()) / (na * nb))
    return row


def _classifier_agreement(row: BlobResult, ours: np.ndarray, ref: np.ndarray) -> None:
    """Top-1 / top-5 agreement for N x K class scores: the fraction of samples whose arg-max
    class agrees (K >= 2), and whose set of 5 best classes agrees (K > 5)."""
    if ours.shape != ref.shape or ref.ndim != 2 or ref.shape[1] < 2 or ref.shape[0] == 0:
        return
    if not (np.isfinite(ours).all() and np.isfinite(ref).all()):
        return
    row.top1 = float(np.mean(np.argmax(ours, 1) == np.argmax(ref, 1)))
    if ref.shape[1] <= 5:
        return  # the top-5 set is every class: nothing to compare
    k = 5
    ours_k = np.sort(np.argsort(-ours, axis=1, kind="stable")[:, :k], axis=1)
    ref_k = np.sort(np.argsort(-ref, axis=1, kind="stable")[:, :k], axis=1)
    row.top5 = float(np.mean(np.all(ours_k == ref_k, axis=1)))


class _Comparison:
    """The state of one verify() run: our values, the reference's, and the rows."""

    def __init__(self, net: CaffeNet, ours: dict[tuple[str, int], np.ndarray],
                 ref: ReferenceOutput, tolerance: Tolerance) -> None:
        self.net = net
        self.ours = ours
        self.ref = ref
        self.tol = tolerance
        self.writers: dict[str, list[_Writer]] = {}
        self.order: list[_Writer] = []
        for layer in net.source_layers:
            for j, top in enumerate(layer.tops):
                w = _Writer(layer, j, -1)
                self.writers.setdefault(top, []).append(w)
                self.order.append(w)
        for pos, (layer, _key) in enumerate(net.run_order):
            for j, top in enumerate(layer.tops):
                w = _Writer(layer, j, pos)
                self.writers.setdefault(top, []).append(w)
                self.order.append(w)
        self.rows: list[BlobResult] = []
        self.row_ref: dict[int, np.ndarray] = {}  # id(row) -> reference value
        self.row_writer: dict[int, _Writer] = {}  # id(row) -> the writer whose output it holds
        self.used_blobs: set[str] = set()
        self.ids = layer_ids(net)

    def _id_key(self, w: _Writer) -> tuple[str, int]:
        """(layer id, top) of writer w: run_layers' and CaffeNet.split_aliases' key."""
        return (self.ids.get(id(w.layer), w.layer.name), w.top)

    def _ours(self, w: _Writer) -> np.ndarray:
        """Our output of writer w (run_layers' key for its layer)."""
        return self.ours[self._id_key(w)]

    # -- matching reference values to ours ---------------------------------------------------
    def _chain_upto(self, w: _Writer) -> list[_Writer]:
        """The writers of w's blob up to and including w (the producer first)."""
        chain = []
        for other in self.writers[w.layer.tops[w.top]]:
            chain.append(other)
            if other is w:
                break
        return chain

    def ref_value_of(self, w: _Writer) -> np.ndarray | None:
        """The reference's value for the output of writer w, if it has one."""
        key = (w.layer.name, w.top)
        if key in self.ref.layer_tops:
            return self.ref.layer_tops[key]
        blob = w.layer.tops[w.top]
        if self.writers[blob][-1] is w and blob in self.ref.blobs:
            return self.ref.blobs[blob]
        for alias in self.net.split_aliases.get(self._id_key(w), ()):
            if alias in self.ref.blobs:
                return self.ref.blobs[alias]
        return None

    def _row(self, blob: str, chain: list[_Writer], kind: str) -> BlobResult:
        first = chain[0].layer
        return BlobResult(blob=blob, layer=first.name, type=first.type, kind=kind,
                          shape=tuple(self._ours(chain[-1]).shape),
                          chain=tuple(w.layer.name for w in chain) if len(chain) > 1 else ())

    def _compare(self, row: BlobResult, w: _Writer, ref: np.ndarray) -> None:
        ours = self._ours(w)
        ref = np.asarray(ref)
        if ours.shape != ref.shape and ours.size == ref.size and self.ref.layer_tops:
            ref = ref.reshape(ours.shape)  # cv2 reports some blobs without trailing 1 axes
        compare_arrays(row, ours, ref, self.tol.allowed_for(w.layer, w.top, ref))
        if w.layer.type == "Softmax" or w.layer.tops[w.top] in self.net.output_names:
            _classifier_agreement(row, ours, ref)
        self.row_ref[id(row)] = ref
        self.row_writer[id(row)] = w
        self.rows.append(row)

    def build_rows(self) -> None:
        sources = {layer.name for layer in self.net.source_layers}
        skipped_layers: set[str] = set()
        for w in self.order:
            name, blob = w.layer.name, w.layer.tops[w.top]
            kind = "input" if name in sources else "top"
            key = (name, w.top)
            is_last = self.writers[blob][-1] is w
            if key in self.ref.layer_tops:
                self._compare(self._row(blob, [w], kind), w, self.ref.layer_tops[key])
            elif is_last and blob in self.ref.blobs:
                chain = self.writers[blob]
                self.used_blobs.add(blob)
                self._compare(self._row(blob, chain, "input" if chain[0].layer.name in sources
                                        else kind), w, self.ref.blobs[blob])
            elif name in self.ref.skipped:
                if name not in skipped_layers:
                    skipped_layers.add(name)
                    row = self._row(blob, [w], kind)
                    row.compared, row.passed = False, True
                    row.skip_reason = self.ref.skipped[name]
                    self.rows.append(row)
            elif is_last:
                row = self._row(blob, self.writers[blob], kind)
                row.compared, row.passed = False, True
                row.skip_reason = "not in the reference"
                self.rows.append(row)
            for alias in self.net.split_aliases.get(self._id_key(w), ()):
                if alias in self.ref.blobs:
                    self.used_blobs.add(alias)
                    self._compare(self._row(alias, self._chain_upto(w), "split"), w,
                                  self.ref.blobs[alias])

    # -- attribution -------------------------------------------------------------------------
    def _writer_before(self, blob: str, position: int) -> _Writer | None:
        found = None
        for w in self.writers.get(blob, []):
            if w.position < position:
                found = w
        return found

    def attribute(self, row: BlobResult) -> Divergence:
        """Split row's error into what its layer (chain) introduces and what it inherits."""
        total = row.max_abs_diff
        names = row.chain or (row.layer,)
        div = Divergence(layer=row.layer, type=row.type, blob=row.blob, max_abs_diff=total,
                         allowed=row.allowed, introduced=None, inherited=None,
                         chain=row.chain)
        if row.kind == "split":
            original = next((r for r in self.rows if r.kind != "split" and r.compared
                             and self.row_writer.get(id(r)) is self.row_writer[id(row)]), None)
            if original is not None:
                div.introduced, div.inherited = 0.0, total
                div.verdict = (f"inherited: Caffe's Split copy of blob '{original.blob}' "
                               "(the same value)")
                return div
        sources = {layer.name for layer in self.net.source_layers}
        if all(n in sources for n in names):  # a net input
            div.introduced, div.inherited = total, 0.0
            div.verdict = ("introduced at the input: the net input itself differs from the "
                           "reference's; check the preprocessing (channel order BGR/RGB, mean, "
                           "scale, resize/crop)")
            return div
        # the row's own writers (a name may repeat: never look layers up by name here)
        last_w = self.row_writer[id(row)]
        writers = self._chain_upto(last_w) if row.chain else [last_w]
        chain = [w.layer for w in writers if w.layer.name not in sources]
        positions = {id(w.layer): w.position for w in writers}
        local: dict[str, np.ndarray] = {}
        bottom_err = 0.0
        bottoms_ok = True
        for layer in chain:
            args = []
            for b in layer.bottoms:
                if b in local:
                    args.append(local[b])
                    continue
                w = self._writer_before(b, positions[id(layer)])
                ref_b = self.ref_value_of(w) if w is not None else None
                if w is None or ref_b is None:
                    div.note = (f"the reference has no value for bottom '{b}' of layer "
                                f"'{layer.name}', so the error cannot be split into introduced "
                                "and inherited")
                    div.verdict = "introduced or inherited: cannot tell (see note)"
                    return div
                ours_b = self._ours(w)
                ref_b = np.asarray(ref_b, np.float32)
                if ref_b.shape != ours_b.shape and ref_b.size == ours_b.size:
                    ref_b = ref_b.reshape(ours_b.shape)
                if ref_b.shape != ours_b.shape:
                    bottoms_ok = False
                elif ref_b.size:
                    err = float(np.nanmax(np.abs(ours_b.astype(np.float64) - ref_b)))
                    bottom_err = max(bottom_err, err)
                    bottoms_ok = bottoms_ok and err <= self.tol.allowed(ref_b)
                args.append(ref_b)
            module = self.net.layer_module(layer)
            with torch.no_grad():
                try:
                    out = module(*[torch.from_numpy(np.ascontiguousarray(a)) for a in args])
                except Exception as exc:  # the layer cannot even run on the reference's shapes
                    div.note = (f"layer '{layer.name}' fails on the reference's bottoms "
                                f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})")
                    div.verdict = "introduced here: the layer is wrong for the reference's inputs"
                    div.introduced, div.inherited = None, None
                    div.bottoms_max_abs_diff = bottom_err
                    return div
            outs = list(out) if isinstance(out, tuple | list) else [out]
            for top, t in zip(layer.tops, outs):
                local[top] = _to_numpy(t)
        div.bottoms_max_abs_diff = bottom_err
        last = chain[-1]
        j = list(last.tops).index(row.blob) if row.blob in last.tops else 0
        rerun = local[last.tops[j]]
        probe = BlobResult(blob=row.blob, layer=row.layer, type=row.type, kind=row.kind,
                           shape=row.shape)
        compare_arrays(probe, rerun, self.row_ref[id(row)],
                       self.tol.allowed_for(last, j, self.row_ref[id(row)]))
        where = f"layer '{row.layer}'" + (f" (in place with {', '.join(row.chain[1:])})"
                                          if len(row.chain) > 1 else "")
        if probe.shape != probe.ref_shape:
            div.verdict = (f"introduced here: on the reference's own bottoms {where} gives shape "
                           f"{probe.shape}, the reference {probe.ref_shape}")
            div.note = "check output-size rules: pooling rounding (ceil), padding, stride"
            return div
        introduced = probe.max_abs_diff if probe.max_abs_diff is not None else math.inf
        div.introduced = introduced
        total_f = total if total is not None else math.inf
        div.inherited = max(0.0, total_f - introduced) if math.isfinite(total_f) else None
        if not probe.passed:
            div.verdict = (f"introduced here: on the reference's own bottoms {where} still "
                           f"differs by {introduced:.3g} (allowed {probe.allowed:.3g})")
        elif bottoms_ok:
            div.verdict = (f"inherited: on the reference's own bottoms {where} matches "
                           f"({introduced:.3g} <= {probe.allowed:.3g}); it amplifies the "
                           f"in-tolerance error of its bottoms ({bottom_err:.3g})")
        else:
            div.verdict = (f"inherited: on the reference's own bottoms {where} matches "
                           f"({introduced:.3g} <= {probe.allowed:.3g}); the error comes from its "
                           f"bottoms, which already differ (by up to {bottom_err:.3g})")
        if len(row.chain) > 1:
            div.note = ("the reference keeps only this blob's value after the in-place layers "
                        f"{', '.join(row.chain)}, so the error is located to that chain; the "
                        "producing layer is named")
        return div


def _check_inputs(net: CaffeNet, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    feed: dict[str, np.ndarray] = {}
    unknown = [k for k in inputs if k not in net.input_names]
    if unknown:
        raise ConfigError(f"input(s) {', '.join(unknown)} are not inputs of the net; its inputs "
                          f"are {', '.join(net.input_names)}")
    for name in net.input_names:
        if name not in inputs:
            raise ConfigError(f"no value for net input '{name}'. Fix: give every input "
                              f"({', '.join(net.input_names)})")
        arr = np.asarray(inputs[name])
        want = tuple(net.blob_shapes[name])
        if tuple(arr.shape) != want:
            raise ConfigError(f"input '{name}' has shape {tuple(arr.shape)} but the net was built "
                              f"for {want}. Fix: build it with input_shapes={{'{name}': "
                              f"{tuple(arr.shape)}}} (CLI: the shape is taken from the input)")
        if arr.dtype.kind not in "biuf":
            raise ConfigError(f"input '{name}' has dtype {arr.dtype}; numbers are needed")
        feed[name] = np.ascontiguousarray(arr, dtype=np.float32)
    return feed


def verify(net: CaffeNet, reference: Reference | str,
           inputs: Mapping[str, np.ndarray] | None = None, *,
           tolerance: Tolerance | float | None = None, seed: int = 0,
           input_sources: Mapping[str, str] | None = None) -> ParityReport:
    """Compare every blob of `net` with `reference`; name the first divergent layer.

    Args:
        net: a converted net (`modelport.caffe.load(...)`).
        reference: a Reference, a directory of blob dumps, or 'opencv'/'pycaffe'/... (those need
            the files: build `OpenCVReference(prototxt, caffemodel)` yourself).
        inputs: input blobs by name. Default: the dump's own inputs for a dump reference,
            else seeded standard-normal data of the declared shapes.
        tolerance: a Tolerance, or its `rel` (default 1e-4).

    Returns:
        A ParityReport; `report.passed` tells the verdict, `report.raise_for_failure()` raises
        ParityError.
    """
    ref = resolve_reference(reference)
    ref.prepare(net)
    tol = tolerance if isinstance(tolerance, Tolerance) else Tolerance(
        DEFAULT_REL if tolerance is None else float(tolerance))
    sources = dict(input_sources or {})
    if inputs is None:
        fixed = ref.fixed_inputs(net.input_names)
        if fixed is not None:
            inputs = fixed
            sources = {n: sources.get(n, "the reference's own input") for n in fixed}
        else:
            inputs = random_inputs(net, seed)
            index_rows = _index_rows(net)
            sources = {n: sources.get(n, f"random integers in [0, {index_rows[n]}) (Embed "
                                         f"indices), seed {seed}" if n in index_rows else
                                      f"random standard normal, seed {seed}") for n in inputs}
    else:
        sources = {n: sources.get(n, "given") for n in inputs}
    feed = _check_inputs(net, inputs)
    ours = run_layers(net, feed)
    ref_out = ref.run(net.net, feed)
    comparison = _Comparison(net, ours, ref_out, tol)
    comparison.build_rows()
    notes = list(ref_out.notes)
    unused = sorted(set(ref_out.blobs) - comparison.used_blobs - set(net.input_names))
    if unused:
        shown = ", ".join(unused[:8]) + (", ..." if len(unused) > 8 else "")
        notes.append(f"the reference has {len(unused)} blob(s) the converted net does not: "
                     f"{shown}")
    compared = [r for r in comparison.rows if r.compared]
    if not [r for r in compared if r.kind != "input"]:
        skipped = [r for r in comparison.rows if not r.compared]
        if not skipped or any(r.layer not in ref_out.skipped for r in skipped):
            raise ConfigError(f"{ref.name} provides none of the net's layer outputs, so "
                              "nothing can be compared. Fix: check that the reference belongs "
                              "to this net")
        # The reference cannot run any layer of this net (cv2.dnn lacks Embed, Tile, ...):
        # they are listed as skipped, never failed, and the report says nothing was checked.
        notes.append(f"nothing comparable: {ref.name} can run none of the net's "
                     f"{len(skipped)} layer output(s), all listed as skipped; only the inputs "
                     "were compared. For a real check use --reference DIR (a Caffe blob dump, "
                     "tools/dump_caffe_blobs.py) or --reference pycaffe")
    report = ParityReport(net=net.net.name or net.net.source, reference=ref.name, tolerance=tol,
                          rows=comparison.rows, inputs=sources, notes=notes)
    for row in comparison.rows:
        if row.compared and not row.passed:
            div = comparison.attribute(row)
            row.introduced, row.inherited, row.verdict = div.introduced, div.inherited, div.verdict
            if report.first_divergent is None:
                report.first_divergent = div
    return report
