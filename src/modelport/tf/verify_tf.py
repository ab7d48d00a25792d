"""Parity of a ported module against TensorFlow's own outputs, like `modelport verify`.

TF computes in NHWC: 4-D (and 3-D / 5-D) inputs and references are channels last and are moved
to channels first for the PyTorch module (`layout="nhwc"`, the default; `"nchw"` takes them as
they are). References are the module's outputs (`"output"`, or `"output:<i>"` for the i-th of a
tuple / list, `"output:<key>"` of a dict) and any submodule's output by its module path (a
forward hook keeps the last value it produced). Each is compared with verify's own
`compare_arrays` under the project tolerance (`verify/tolerance.py`, `max|diff| <= 1e-4 *
max(1, max|ref|)`), in execution order, and the rows form verify's `ParityReport`, so
`render_table`, `to_json` and `raise_for_failure` work unchanged. The first row out of
tolerance names the first divergent module; unlike Caffe's verify it is not re-run on the
reference's inputs (TF gives no per-module inputs), so introduced / inherited stay unknown.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from modelport.errors import ConfigError, FormatError
from modelport.tf.report import PortReport
from modelport.verify.compare import compare_arrays
from modelport.verify.report import BlobResult, Divergence, ParityReport
from modelport.verify.tolerance import DEFAULT_REL, Tolerance

__all__ = ["load_npy", "reference_dir", "to_torch_layout", "verify_tf"]

ArrayLike = np.ndarray | str | os.PathLike[str]


def load_npy(path: str | os.PathLike[str]) -> np.ndarray:
    """A `.npy` file, never unpickled; one-line FormatError when it cannot be read."""
    try:
        return np.asarray(np.load(path, allow_pickle=False))
    except FileNotFoundError:
        raise FormatError(f"{os.fspath(path)}: no such file") from None
    except (OSError, ValueError, EOFError) as exc:
        raise FormatError(f"{os.fspath(path)}: not a readable .npy array "
                          f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
                          ) from None


def _array(value: ArrayLike | torch.Tensor) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, str | os.PathLike):
        return load_npy(value)
    return np.asarray(value)


def to_torch_layout(arr: np.ndarray, layout: str) -> np.ndarray:
    """NHWC (channels last) -> NCHW for arrays of rank >= 3 when layout is "nhwc"."""
    if layout == "nhwc" and arr.ndim >= 3:
        return np.ascontiguousarray(np.moveaxis(arr, -1, 1))
    return arr


def reference_dir(folder: str | os.PathLike[str]) -> dict[str, Path]:
    """The references in a folder: `output.npy` (or `output_<i>.npy`), and `<module>.npy`
    files in it or in its `layers/` subfolder, keyed as `verify_tf` expects."""
    root = Path(folder)
    if not root.is_dir():
        raise FormatError(f"{root}: not a folder of .npy references")
    refs: dict[str, Path] = {}
    for p in sorted(root.glob("*.npy")) + sorted((root / "layers").glob("*.npy")):
        stem = p.stem
        if stem == "output":
            refs["output"] = p
        elif stem.startswith("output_") and stem[7:].isdigit():
            refs[f"output:{int(stem[7:])}"] = p
        elif p.parent.name == "layers" or not stem.startswith("input"):
            refs[stem] = p  # a module's output (input*.npy beside output.npy are the inputs)
    return refs


def _outputs(out: Any) -> dict[str, torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return {"output": out}
    if isinstance(out, Mapping):
        return {f"output:{k}": v for k, v in out.items() if isinstance(v, torch.Tensor)}
    if isinstance(out, tuple | list):
        return {f"output:{i}": v for i, v in enumerate(out) if isinstance(v, torch.Tensor)}
    raise ConfigError(f"the module returned a {type(out).__name__}, not tensors")


def verify_tf(module: nn.Module, inputs: ArrayLike | Sequence[ArrayLike] | torch.Tensor,
              references: Mapping[str, ArrayLike] | ArrayLike, *,
              tolerance: Tolerance | float | None = None, layout: str = "nhwc",
              names: Mapping[str, str] | PortReport | None = None, name: str | None = None,
              reference_name: str = "TensorFlow") -> ParityReport:
    """Run `module` on `inputs` and compare its outputs (and named submodules' outputs) with
    TF's reference arrays (see the module docstring). `references` is a dict key -> array or
    `.npy` path, one `.npy` / array (the output), or a folder (`reference_dir`). `names` maps
    reference keys (Keras layer names) to module paths: a dict, or the PortReport of the port
    (`report.layer_modules()`), so a twin with other names is still compared layer by layer."""
    if layout not in ("nhwc", "nchw"):
        raise ConfigError(f"layout {layout!r}: use 'nhwc' (TF's) or 'nchw'")
    tol = tolerance if isinstance(tolerance, Tolerance) else Tolerance(
        DEFAULT_REL if tolerance is None else float(tolerance))
    notes: list[str] = []
    if isinstance(references, Mapping):
        refs: dict[str, Any] = dict(references)
        label = reference_name
    elif isinstance(references, str | os.PathLike) and Path(references).is_dir():
        refs = dict(reference_dir(references))
        label = f"{reference_name} ({os.fspath(references)})"
    else:
        refs = {"output": references}
        label = reference_name
    if not refs:
        raise ConfigError("no reference arrays to compare with")
    raw_inputs: list[Any] = list(inputs) if isinstance(inputs, list | tuple) else [inputs]
    feed = [torch.from_numpy(np.ascontiguousarray(to_torch_layout(_array(x), layout),
                                                  dtype=np.float32)) for x in raw_inputs]
    lookup = names.layer_modules() if isinstance(names, PortReport) else dict(names or {})
    modules = dict(module.named_modules())
    renamed: dict[str, str] = {}  # module path -> reference key
    for key in list(refs):
        path = lookup.get(key)
        if path is not None and path != key and not key.startswith("output"):
            refs[path] = refs.pop(key)
            renamed[path] = key
    wanted = {k for k in refs if not k.startswith("output") and k != "output"}
    missing = sorted(wanted - set(modules))
    for k in missing:
        notes.append(f"reference '{k}' names no submodule of {type(module).__name__}; "
                     "not compared")
    captured: dict[str, torch.Tensor] = {}
    order: list[str] = []
    hooks = []
    for key in sorted(wanted - set(missing)):
        def hook(mod: nn.Module, args: Any, out: Any, key: str = key) -> None:
            if isinstance(out, torch.Tensor):
                if key in captured:
                    order.remove(key)
                captured[key] = out.detach()
                order.append(key)
        hooks.append(modules[key].register_forward_hook(hook))
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            outs = _outputs(module(*feed))
    finally:
        for h in hooks:
            h.remove()
        module.train(was_training)
    rows: list[BlobResult] = []
    for key in order + [k for k in outs if k in refs]:
        ours_t = captured[key] if key in captured else outs[key]
        ours = ours_t.float().cpu().numpy()
        ref = to_torch_layout(_array(refs[key]), layout).astype(np.float32, copy=False)
        mod = modules.get(key)
        row = BlobResult(blob=renamed.get(key, key), layer=key,
                         type=type(mod).__name__ if mod is not None else "output", kind="top",
                         shape=tuple(ours.shape))
        if ours.shape != ref.shape and ours.size == ref.size and ref.ndim != ours.ndim:
            ref = ref.reshape(ours.shape)
        compare_arrays(row, ours, ref, tol.allowed(ref))
        rows.append(row)
    for k in refs:
        if k.startswith("output") and k not in outs:
            raise ConfigError(f"reference '{k}': the module has no such output (it returns "
                              f"{', '.join(outs) or 'nothing'})")
    if layout == "nhwc":
        notes.append("inputs and references of rank >= 3 moved from channels last (NHWC) to "
                     "channels first (NCHW)")
    report = ParityReport(net=name or type(module).__name__, reference=label, tolerance=tol,
                          rows=rows, inputs={f"input:{i}": "given" for i in range(len(feed))},
                          notes=notes)
    for row in rows:
        if not row.passed:
            report.first_divergent = Divergence(
                layer=row.layer, type=row.type, blob=row.blob, max_abs_diff=row.max_abs_diff,
                allowed=row.allowed, introduced=None, inherited=None,
                verdict="the first output out of tolerance in execution order",
                note="TF gives no per-module inputs, so the error is not split into "
                     "introduced and inherited")
            break
    return report
