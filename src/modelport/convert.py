"""`modelport.convert.convert(...)`: a Caffe model -> a folder PyTorch can use without modelport.

Output folder (every file written whole or not at all):

    model.safetensors   the state dict; keys are Caffe layer names (`conv1.weight`, buffers too)
    model.py            readable standalone PyTorch source (needs only torch; see codegen.py)
    conversion.json     layers (type, bottoms, tops, output shapes), inputs, outputs, sha256 of
                        the source files, modelport version, layer name -> module key map, and
                        with `optimize=True` what was folded, fused or dropped
    mean.npy            the mean file as a C x H x W float32 array (only with `mean=`)

The files are first written into a hidden staging folder beside `out_dir`; only when all of them
are complete are they moved into place (the whole folder is renamed when `out_dir` did not exist,
otherwise each file is replaced atomically). On any error the staging folder is removed, so a
failed conversion leaves `out_dir` as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from modelport.atomic import write_text, write_with
from modelport.backends.codegen import generate_source
from modelport.backends.torch_module import CaffeNet, build_module
from modelport.errors import ConfigError, FormatError
from modelport.formats.caffe.blobproto import read_mean
from modelport.formats.caffe.files import check_file
from modelport.formats.caffe.net_loader import load_net

MODEL_FILE = "model.py"
WEIGHTS_FILE = "model.safetensors"
REPORT_FILE = "conversion.json"
MEAN_FILE = "mean.npy"


@dataclass
class ConversionResult:
    """What `convert` produced: the folder, its files, and the live module it was made from."""

    out_dir: str
    files: dict[str, str]
    module: CaffeNet
    report: dict = field(default_factory=dict)


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _source_entry(path: str | os.PathLike[str]) -> dict:
    p = os.fspath(path)
    return {"file": os.path.basename(p), "bytes": os.path.getsize(p), "sha256": sha256_file(p)}


def state_dict_for_saving(module: CaffeNet) -> dict[str, torch.Tensor]:
    """The module's state dict (parameters and persistent buffers, e.g. BatchNorm's statistics)
    as contiguous CPU tensors; a tensor sharing storage with an earlier one is copied
    (safetensors refuses aliases), the others are not (a VGG-16 is 550 MB per copy)."""
    state: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for k, v in module.state_dict().items():
        t = v.detach().to("cpu").contiguous()
        ptr = t.untyped_storage().data_ptr()
        if ptr in seen and t.numel():
            t = t.clone()
        seen.add(t.untyped_storage().data_ptr())
        state[k] = t
    return state


def conversion_report(module: CaffeNet, sources: Mapping[str, dict], phase: str,
                      input_shapes: Mapping[str, Sequence[int]] | None) -> dict:
    """The contents of conversion.json. A layer that inference optimisation folded into another
    or dropped has no module of its own (`"module": null`)."""
    from modelport import __version__

    net = module.net
    layers = []
    running = {key for _, key in module.run_order}
    keys = {name: key for name, key in module.layer_keys.items() if key in running}
    params_by_key: dict[str, int] = {}
    for name, p in module.named_parameters():
        params_by_key[name.split(".", 1)[0]] = params_by_key.get(name.split(".", 1)[0], 0) + \
            p.numel()
    repeated: dict[str, list[str]] = {}  # a name several layers share -> their module keys
    for layer, own in zip(net.layers, module.module_keys):
        key = own if own in running else None  # per layer: same-named layers differ
        if key is not None and key != keys.get(layer.name, key):
            repeated.setdefault(layer.name, [keys[layer.name]]).append(key)
        layers.append({
            "name": layer.name,
            "type": layer.type,
            "bottoms": list(layer.bottoms),
            "tops": list(layer.tops),
            "top_shapes": [list(module.blob_shapes.get(t, ())) for t in layer.tops],
            "module": key,
            "parameters": params_by_key.get(key, 0) if key else 0,
        })
    return {
        "modelport_version": __version__,
        "net": net.name,
        "phase": phase,
        "sources": dict(sources),
        "inputs": [{"name": n, "shape": list(module.blob_shapes[n])} for n in module.input_names],
        "input_shapes_given": {k: list(v) for k, v in (input_shapes or {}).items()},
        "outputs": [{"name": n, "shape": list(module.blob_shapes[n])}
                    for n in module.output_names],
        "layers": layers,
        "modules": dict(keys),
        **({"repeated_layer_names": repeated} if repeated else {}),
        "files": {"model": MODEL_FILE, "weights": WEIGHTS_FILE},
    }


def dump_json(obj: object) -> str:
    """JSON with one key per line but short lists (shapes, bottoms, tops) kept on one line."""
    text = json.dumps(obj, indent=1)

    def flat(m: re.Match[str]) -> str:
        items = [x.strip() for x in m.group(1).split(",\n")]
        return "[" + ", ".join(items) + "]"

    return re.sub(r"\[\n\s*([^\[\]{}]*?)\n\s*\]", flat, text) + "\n"


def load_generated(model_py: str | os.PathLike[str], name: str = "modelport_generated",
                   ) -> types.ModuleType:
    """Import a generated model.py in a fresh namespace (not via sys.modules)."""
    path = os.fspath(model_py)
    with open(path, encoding="utf-8") as fh:
        source = fh.read()
    module = types.ModuleType(name)
    module.__file__ = path
    exec(compile(source, path, "exec"), module.__dict__)  # noqa: S102 - our own generated file
    return module


def _check_generated(source: str, state: Mapping[str, torch.Tensor], where: str) -> None:
    """The generated Net must build and accept exactly the saved state dict."""
    namespace = types.ModuleType("modelport_check")
    namespace.__file__ = os.path.join(where, MODEL_FILE)
    exec(compile(source, namespace.__file__, "exec"), namespace.__dict__)  # noqa: S102
    with torch.device("meta"):  # names and shapes only: allocate nothing
        net = namespace.Net()
    expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    saved = {k: tuple(v.shape) for k, v in state.items()}
    if expected != saved:  # a codegen bug, not a user error: keep the details
        diff = sorted(set(expected.items()) ^ set(saved.items()))[:6]
        raise AssertionError(f"generated model.py does not match the state dict: {diff}")


def _prepare_out_dir(out_dir: str) -> str:
    out = os.path.abspath(out_dir)
    if os.path.exists(out) and not os.path.isdir(out):
        raise ConfigError(f"output '{out_dir}' exists and is not a folder. Fix: give a folder "
                          "path with -o")
    parent = os.path.dirname(out)
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the output folder's parent '{parent}': "
                          f"{exc.strerror}") from None
    return out


def _publish(staging: str, out: str, names: Sequence[str]) -> None:
    if not os.path.exists(out):
        os.rename(staging, out)
        return
    for name in names:
        os.replace(os.path.join(staging, name), os.path.join(out, name))
    shutil.rmtree(staging, ignore_errors=True)


def convert(prototxt: str | os.PathLike[str], caffemodel: str | os.PathLike[str] | None,
            out_dir: str | os.PathLike[str], *,
            input_shapes: Mapping[str, Sequence[int]] | None = None, phase: str = "test",
            mean: str | os.PathLike[str] | None = None, allow_missing_weights: bool = False,
            optimize: bool = False,
            progress: Callable[[int, int], None] | None = None) -> ConversionResult:
    """Convert a Caffe model into `out_dir` (model.safetensors, model.py, conversion.json[,
    mean.npy]).

    Args:
        prototxt: the net definition (deploy or train_val, V1 or V2).
        caffemodel: the weights (None only with allow_missing_weights).
        out_dir: the output folder (created; existing files of the same names are replaced).
        input_shapes: override or supply input shapes, e.g. {"data": (1, 3, 227, 227)}.
        phase: "test" or "train" (Caffe's include/exclude rules).
        mean: a .binaryproto mean file, saved as mean.npy.
        allow_missing_weights: initialise layers absent from the caffemodel with their fillers.
        optimize: write the inference-optimised net (see modelport.export.optimize: BatchNorm,
            Scale, Bias, Power folded into convolutions, ReLU fused, Dropout dropped); the
            folded layers' own blobs no longer exist in the generated model.
        progress: called with (bytes read, total bytes) while reading the caffemodel.

    Raises:
        ModelportError: unreadable input, unsupported layers (all listed at once), impossible
            shapes, weights that do not fit, or a layer type model.py cannot express.
    """
    if caffemodel is None and not allow_missing_weights:
        raise ConfigError("no weights file given. Fix: pass the .caffemodel, or "
                          "--allow-missing-weights to initialise the weights with the fillers")
    proto_path = check_file(prototxt, "net definition")
    weights_path = check_file(caffemodel, "weights file") if caffemodel is not None else None
    mean_path = check_file(mean, "mean file") if mean is not None else None
    out = _prepare_out_dir(os.fspath(out_dir))

    net = load_net(proto_path, weights_path, phase, progress=progress)
    module = build_module(net, input_shapes, allow_missing_weights)
    optimized = None
    if optimize:
        from modelport.export.optimize import OptimizeReport, optimize_for_inference

        optimized = OptimizeReport()
        module = optimize_for_inference(module, report=optimized, in_place=True,
                                        eager_kernels=False)
    mean_array = read_mean(mean_path) if mean_path else None
    source = generate_source(module, os.path.basename(proto_path))
    state = state_dict_for_saving(module)

    sources = {"prototxt": _source_entry(proto_path)}
    if weights_path:
        sources["caffemodel"] = _source_entry(weights_path)
    if mean_path:
        sources["mean"] = _source_entry(mean_path)
    report = conversion_report(module, sources, phase, input_shapes)
    if optimized is not None:
        report["optimized"] = optimized.as_dict()
    if mean_array is not None:
        report["files"]["mean"] = MEAN_FILE
        report["mean_shape"] = list(mean_array.shape)

    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.", suffix=".partial",
                               dir=os.path.dirname(out))
    try:
        _check_generated(source, state, staging)
        from safetensors.torch import save_file

        metadata = {"format": "pt", "source": "modelport", "net": net.name or ""}
        write_with(os.path.join(staging, WEIGHTS_FILE),
                   lambda tmp: save_file(state, tmp, metadata=metadata))
        write_text(os.path.join(staging, MODEL_FILE), source)
        names = [WEIGHTS_FILE, MODEL_FILE]
        if mean_array is not None:
            def save_mean(tmp: str) -> None:
                with open(tmp, "wb") as fh:
                    np.save(fh, np.ascontiguousarray(mean_array, dtype=np.float32),
                            allow_pickle=False)

            write_with(os.path.join(staging, MEAN_FILE), save_mean)
            names.append(MEAN_FILE)
        write_text(os.path.join(staging, REPORT_FILE), dump_json(report))
        names.append(REPORT_FILE)
        _publish(staging, out, names)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise FormatError(f"cannot write the output folder '{out_dir}': "
                          f"{exc.strerror or exc}") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    files = {n: os.path.join(out, n) for n in names}
    return ConversionResult(out, files, module, report)
