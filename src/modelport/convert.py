"""`modelport.convert.convert(...)`: a Caffe model -> a folder PyTorch can use without modelport.

Output folder:

    model.safetensors   the state dict; keys are Caffe layer names (`conv1.weight`, buffers too)
    model.py            readable standalone PyTorch source (needs only torch; see codegen.py);
                        its `load()` checks that model.safetensors is the file it was written with
    conversion.json     layers (type, bottoms, tops, output shapes), inputs, outputs, sha256 of
                        the source files and of the files written, modelport version, layer
                        name -> module key map, and with `optimize=True` what was folded, fused or
                        dropped
    mean.npy            the mean file as a C x H x W float32 array (only with `mean=`)

Publishing is one atomic step. Each conversion is written whole into its own hidden folder
`out/.modelport/conv-XXXXXXXX/`; the names above in `out/` are symbolic links to
`.modelport/current/<name>`, and `.modelport/current` is a link to the conversion's folder.
Switching that one link (a rename) replaces all the files at once, so `out/` shows the old
conversion or the new one at every instant, a kill -9 included, never a mix. Other files in
`out/` are never touched. While a conversion runs it holds an flock on `out/.modelport/lock`:
a second conversion into the same folder fails with a ConfigError (or waits, `wait=True`).
Folders of killed runs are removed by the next conversion, and a failed conversion leaves the
folder as it was. A folder written by an earlier modelport (plain files) is taken over
without ever showing a mix: its files are linked into a generation first.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from modelport.atomic import (
    exclusive_lock,
    fsync_dir,
    link_or_copy,
    make_unique_dir,
    symlink_atomic,
    write_text,
    write_with,
)
from modelport.backends.codegen import (
    CodegenUnsupportedError,
    generate_source,
    unsupported_for_codegen,
)
from modelport.backends.torch_module import CaffeNet, build_module
from modelport.digest import BackgroundFileHash, sha256_file
from modelport.errors import ConfigError, FormatError
from modelport.formats.caffe.blobproto import read_mean
from modelport.formats.caffe.files import check_file
from modelport.formats.caffe.net_loader import load_net
from modelport.weights_file import write_safetensors

MODEL_FILE = "model.py"
WEIGHTS_FILE = "model.safetensors"
REPORT_FILE = "conversion.json"
MEAN_FILE = "mean.npy"
OUTPUT_FILES = (MODEL_FILE, WEIGHTS_FILE, REPORT_FILE, MEAN_FILE)
META_DIR = ".modelport"       # inside the output folder: the conversions and the lock
CURRENT_LINK = "current"      # META_DIR/current -> the published conversion's folder
LOCK_FILE = "lock"
GENERATION_PREFIX = "conv-"


@dataclass
class ConversionResult:
    """What `convert` produced: the folder, its files, and the live module it was made from."""

    out_dir: str
    files: dict[str, str]
    module: CaffeNet
    report: dict = field(default_factory=dict)


def _source_entry(path: str | os.PathLike[str], hashed: bool = True) -> dict:
    """conversion.json's record of a source file; without `hashed` its sha256 is left None,
    for `_fill_source_hashes` to fill in (same key order, so the same JSON bytes)."""
    p = os.fspath(path)
    return {"file": os.path.basename(p), "bytes": os.path.getsize(p),
            "sha256": sha256_file(p) if hashed else None}


def _fill_source_hashes(sources: dict[str, dict], hashes: Mapping[str, BackgroundFileHash],
                        ) -> None:
    """Wait for the background hashes of source files and put them into their entries."""
    for key, job in hashes.items():
        try:
            sources[key]["sha256"] = job.result()
        except OSError as exc:
            raise FormatError(f"cannot read '{job.path}': {exc.strerror or exc}. Fix: check "
                              "that the file is not being changed or removed") from None


def state_dict_for_saving(module: CaffeNet) -> dict[str, torch.Tensor]:
    """The module's state dict (parameters and persistent buffers, e.g. BatchNorm's statistics)
    as contiguous CPU tensors, for model.safetensors. Tensors sharing memory (shared Caffe
    params) are each written by value, so the generated model.py loads every key."""
    return {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}


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


def check_output_folder(path: str, option: str = "-o") -> None:
    """`-o` must be a folder convert can create: an existing file, a parent that is a file, or
    a parent that cannot be created (`/proc/x/y`, a read-only mount) is a one-line ConfigError
    before any weights are read. (The parents are created as convert would create them.)
    `option` is the flag the message tells the user to fix (`--keras` for a Keras export)."""
    out = os.path.abspath(path)
    if os.path.exists(out) and not os.path.isdir(out):
        raise ConfigError(f"output '{path}' exists and is not a folder. Fix: give a folder "
                          f"path with {option}")
    ancestor = os.path.dirname(out)
    while not os.path.exists(ancestor) and os.path.dirname(ancestor) != ancestor:
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        raise ConfigError(f"cannot create the output folder '{path}': '{ancestor}' is a file, "
                          f"not a folder. Fix: give a writable {option} folder")
    parent = os.path.dirname(out)
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the output folder '{path}': its parent '{parent}' "
                          f"cannot be created ({exc.strerror or exc}). Fix: give a writable "
                          f"{option} folder") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot create the output folder '{path}': '{parent}' is not "
                          f"writable. Fix: give a writable {option} folder")


def _prepare_out_dir(out_dir: str) -> str:
    check_output_folder(out_dir)
    return os.path.abspath(out_dir)


class OutputFolder:
    """The output folder of `convert` while a conversion runs (see the module docstring):
    holds its lock, stages a new conversion and publishes it in one rename. On an error
    inside the `with` block everything this conversion created is removed again."""

    def __init__(self, out: str, shown: str, wait: bool = False, option: str = "-o",
                 wait_option: str | None = "--wait") -> None:
        self.out = out
        self.shown = shown
        # the command-line options that named `out` and that make a run wait, for messages
        self.option = option
        self.wait_option = wait_option
        self.meta = os.path.join(out, META_DIR)
        self.wait = wait
        self.stage: str | None = None
        self._lock: contextlib.AbstractContextManager[None] | None = None
        self._created_out = False
        self._created_meta = False

    # -- lock and cleanup -------------------------------------------------------------------
    def __enter__(self) -> OutputFolder:
        for name in OUTPUT_FILES:
            p = os.path.join(self.out, name)
            if os.path.isdir(p) and not os.path.islink(p):
                raise ConfigError(f"'{p}' is a folder, where convert writes its {name}. Fix: "
                                  "remove or rename it, or give another "
                                  f"{self.option} folder")
        for _attempt in range(10):  # the folders may vanish under a failing concurrent run
            self._created_out = self._created_out or not os.path.isdir(self.out)
            self._created_meta = self._created_meta or not os.path.isdir(self.meta)
            try:
                os.makedirs(self.meta, exist_ok=True)
            except FileExistsError:
                raise ConfigError(f"'{self.meta}' exists and is not a folder. Fix: remove it "
                                  "(modelport keeps its conversions there)") from None
            except OSError as exc:
                raise ConfigError(f"cannot create the output folder '{self.shown}': "
                                  f"{exc.strerror or exc}. Fix: give a writable "
                                  f"{self.option} folder"
                                  ) from None
            lock = exclusive_lock(os.path.join(self.meta, LOCK_FILE),
                                  f"output folder '{self.shown}'", wait=self.wait,
                                  wait_option=self.wait_option)
            try:
                lock.__enter__()
            except ConfigError:
                if not os.path.isdir(self.meta):
                    continue
                raise
            self._lock = lock
            break
        else:
            raise ConfigError(f"cannot lock the output folder '{self.shown}'. Fix: retry")
        if self.current() is not None:
            # another run created the folders after this one looked and has published into
            # them since: they hold its conversion now, not this run's to remove on an error
            self._created_out = self._created_meta = False
        try:
            self._remove_stale()
        except BaseException:
            self._release()
            raise
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            if exc_type is not None:
                if self.stage is not None:
                    shutil.rmtree(self.stage, ignore_errors=True)
                if self._created_meta:
                    shutil.rmtree(self.meta, ignore_errors=True)
                if self._created_out:
                    with contextlib.suppress(OSError):
                        os.rmdir(self.out)
        finally:
            self._release()

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.__exit__(None, None, None)
            self._lock = None

    def current(self) -> str | None:
        """The folder name (in META_DIR) of the published conversion, if any."""
        link = os.path.join(self.meta, CURRENT_LINK)
        if not os.path.islink(link):
            return None
        target = os.readlink(link)
        ok = os.path.dirname(target) == "" and target.startswith(GENERATION_PREFIX)
        return target if ok and os.path.isdir(os.path.join(self.meta, target)) else None

    def _remove_stale(self) -> None:
        """Remove what killed runs left (we hold the lock, so nobody else is writing here):
        unpublished conversion folders, temporary links, and the `.partial` staging folders
        beside `out` that modelport versions before the lock used."""
        current = self.current()
        for name in os.listdir(self.meta):
            p = os.path.join(self.meta, name)
            if name.startswith(GENERATION_PREFIX) and name != current and not os.path.islink(p):
                shutil.rmtree(p, ignore_errors=True)
            elif name.startswith(f".{CURRENT_LINK}.") and name.endswith(".link"):
                os.unlink(p)
        for name in os.listdir(self.out):
            if name.endswith((".link", ".tmp")) and any(name.startswith(f".{n}.")
                                                         for n in OUTPUT_FILES):
                os.unlink(os.path.join(self.out, name))
        parent = os.path.dirname(self.out)
        legacy = f".{os.path.basename(self.out)}."
        for name in os.listdir(parent):
            p = os.path.join(parent, name)
            if name.startswith(legacy) and name.endswith(".partial") and os.path.isdir(p) \
                    and not os.path.islink(p):
                shutil.rmtree(p, ignore_errors=True)

    # -- staging and publishing -------------------------------------------------------------
    def new_stage(self) -> str:
        """An empty folder for the files of the new conversion."""
        self.stage = make_unique_dir(self.meta, GENERATION_PREFIX)
        return self.stage

    def _link_target(self, name: str) -> str:
        return f"{META_DIR}/{CURRENT_LINK}/{name}"

    def _is_ours(self, name: str) -> bool:
        p = os.path.join(self.out, name)
        return os.path.islink(p) and os.readlink(p) == self._link_target(name)

    def publish(self, names: Sequence[str]) -> None:
        """Make the staged conversion (files `names`) the folder's content in one step."""
        assert self.stage is not None
        stage = self.stage
        current = self.current()
        old = os.path.join(self.meta, current) if current else None
        if old is None:  # first conversion here, or a folder of plain files (older modelport)
            old = make_unique_dir(self.meta, GENERATION_PREFIX)
            try:
                symlink_atomic(os.path.basename(old), os.path.join(self.meta, CURRENT_LINK))
            except OSError:  # a filesystem without symbolic links
                shutil.rmtree(old, ignore_errors=True)
                self._publish_plain(names)
                return
        managed = set(names) | {n for n in OUTPUT_FILES if self._is_ours(n)}
        if MEAN_FILE not in managed and os.path.isfile(os.path.join(self.out, MEAN_FILE)) \
                and self._listed_mean():  # a plain mean.npy an earlier conversion wrote
            managed.add(MEAN_FILE)
        for name in sorted(managed):
            if self._is_ours(name):
                continue
            p = os.path.join(self.out, name)
            if os.path.exists(p):  # keep showing it while the name becomes a link
                link_or_copy(p, os.path.join(old, name))
            symlink_atomic(self._link_target(name), p)
        fsync_dir(old)
        fsync_dir(self.out)
        # The switch: one rename replaces every file at once.
        symlink_atomic(os.path.basename(stage), os.path.join(self.meta, CURRENT_LINK))
        fsync_dir(self.meta)
        self.stage = None
        for name in sorted(managed - set(names)):  # links the new conversion has no file for
            if self._is_ours(name):
                os.unlink(os.path.join(self.out, name))
        shutil.rmtree(old, ignore_errors=True)

    def _listed_mean(self) -> bool:
        """Whether the folder's (plain) conversion.json says it wrote mean.npy."""
        try:
            with open(os.path.join(self.out, REPORT_FILE), encoding="utf-8") as fh:
                report = json.load(fh)
        except (OSError, ValueError, RecursionError):
            return False
        files = report.get("files") if isinstance(report, dict) else None
        return isinstance(files, dict) and files.get("mean") == MEAN_FILE

    def _publish_plain(self, names: Sequence[str]) -> None:
        """Where symbolic links are impossible: replace the files one by one (each atomic,
        the set not)."""
        assert self.stage is not None
        for name in names:
            os.replace(os.path.join(self.stage, name), os.path.join(self.out, name))
        shutil.rmtree(self.stage, ignore_errors=True)
        self.stage = None


def convert(prototxt: str | os.PathLike[str], caffemodel: str | os.PathLike[str] | None,
            out_dir: str | os.PathLike[str], *,
            input_shapes: Mapping[str, Sequence[int]] | None = None, phase: str = "test",
            mean: str | os.PathLike[str] | None = None, allow_missing_weights: bool = False,
            optimize: bool = False,
            progress: Callable[[int, int], None] | None = None,
            wait: bool = False) -> ConversionResult:
    """Convert a Caffe model into `out_dir` (model.safetensors, model.py, conversion.json[,
    mean.npy]).

    Args:
        prototxt: the net definition (deploy or train_val, V1 or V2).
        caffemodel: the weights (None only with allow_missing_weights).
        out_dir: the output folder (created; the files of an earlier conversion in it are
            replaced all at once, other files are kept).
        input_shapes: override or supply input shapes, e.g. {"data": (1, 3, 227, 227)}.
        phase: "test" or "train" (Caffe's include/exclude rules).
        mean: a .binaryproto mean file, saved as mean.npy.
        allow_missing_weights: initialise layers absent from the caffemodel with their fillers.
        optimize: write the inference-optimised net (see modelport.optimize: BatchNorm,
            Scale, Bias, Power folded into convolutions, ReLU fused, Dropout dropped); the
            folded layers' own blobs no longer exist in the generated model.
        progress: called with (bytes read, total bytes) while reading the caffemodel.
        wait: when another conversion is writing into `out_dir`, wait for it instead of
            failing.

    Raises:
        ModelportError: unreadable input, unsupported layers (all listed at once), impossible
            shapes, weights that do not fit, a layer type model.py cannot express, or another
            conversion writing into `out_dir` (without `wait`).
    """
    if caffemodel is None and not allow_missing_weights:
        raise ConfigError("no weights file given. Fix: pass the .caffemodel, or "
                          "--allow-missing-weights to initialise the weights with the fillers")
    proto_path = check_file(prototxt, "net definition")
    weights_path = check_file(caffemodel, "weights file") if caffemodel is not None else None
    mean_path = check_file(mean, "mean file") if mean is not None else None
    out = _prepare_out_dir(os.fspath(out_dir))
    # The caffemodel's sha256 (conversion.json) is computed on another core while the model is
    # read, built and written; only conversion.json, written last, waits for it.
    hashes = {"caffemodel": BackgroundFileHash(weights_path)} if weights_path else {}
    try:
        names, module, report = _convert_into(
            out, os.fspath(out_dir), proto_path, weights_path, mean_path, hashes,
            input_shapes=input_shapes, phase=phase, allow_missing_weights=allow_missing_weights,
            optimize=optimize, progress=progress, wait=wait)
    finally:
        for job in hashes.values():
            job.cancel()  # a no-op once it has finished; stops it after an error
    files = {n: os.path.join(out, n) for n in names}
    return ConversionResult(out, files, module, report)


def _convert_into(out: str, shown: str, proto_path: str, weights_path: str | None,
                  mean_path: str | None, hashes: Mapping[str, BackgroundFileHash], *,
                  input_shapes: Mapping[str, Sequence[int]] | None, phase: str,
                  allow_missing_weights: bool, optimize: bool,
                  progress: Callable[[int, int], None] | None, wait: bool,
                  ) -> tuple[list[str], CaffeNet, dict]:
    """`convert`'s work inside the locked output folder: (file names, module, report)."""
    with OutputFolder(out, shown, wait=wait) as folder:
        net = load_net(proto_path, weights_path, phase, progress=progress)
        module = build_module(net, input_shapes, allow_missing_weights)
        optimized = None
        if optimize:
            from modelport.optimize.inference import OptimizeReport, optimize_for_inference

            optimized = OptimizeReport()
            module = optimize_for_inference(module, report=optimized, in_place=True,
                                            eager_kernels=False)
        mean_array = read_mean(mean_path) if mean_path else None
        problems = unsupported_for_codegen(module)
        if problems:  # before writing anything
            raise CodegenUnsupportedError(problems, os.path.basename(proto_path))
        state = state_dict_for_saving(module)

        sources = {"prototxt": _source_entry(proto_path)}
        if weights_path:
            sources["caffemodel"] = _source_entry(weights_path, hashed="caffemodel" not in hashes)
        if mean_path:
            sources["mean"] = _source_entry(mean_path)
        report = conversion_report(module, sources, phase, input_shapes)
        if optimized is not None:
            report["optimized"] = optimized.as_dict()
        if mean_array is not None:
            report["files"]["mean"] = MEAN_FILE
            report["mean_shape"] = list(mean_array.shape)
        try:
            names = _write_conversion(folder.new_stage(), net.name or "", module, state,
                                      os.path.basename(proto_path), mean_array, report,
                                      lambda: _fill_source_hashes(report["sources"], hashes))
            folder.publish(names)
        except OSError as exc:
            raise FormatError(f"cannot write the output folder '{shown}': "
                              f"{exc.strerror or exc}") from None
    return names, module, report


def _write_conversion(stage: str, net_name: str, module: CaffeNet,
                      state: Mapping[str, torch.Tensor], source_name: str,
                      mean_array: np.ndarray | None, report: dict,
                      finish_report: Callable[[], None]) -> list[str]:
    """Write the files of one conversion into `stage`; conversion.json (with the sha256 of
    the others) last, after `finish_report()` (which completes `report`). Returns the file
    names."""
    weights = os.path.join(stage, WEIGHTS_FILE)
    metadata = {"format": "pt", "source": "modelport", "net": net_name}
    # straight from the parameters' storage; hashed while written (no second pass over it)
    digests = {WEIGHTS_FILE: write_safetensors(weights, state, metadata)}
    source = generate_source(module, source_name, weights_sha256=digests[WEIGHTS_FILE])
    _check_generated(source, state, stage)
    write_text(os.path.join(stage, MODEL_FILE), source)
    names = [WEIGHTS_FILE, MODEL_FILE]
    digests[MODEL_FILE] = hashlib.sha256(source.encode("utf-8")).hexdigest()
    if mean_array is not None:
        def save_mean(tmp: str) -> None:
            with open(tmp, "wb") as fh:
                np.save(fh, np.ascontiguousarray(mean_array, dtype=np.float32),
                        allow_pickle=False)

        write_with(os.path.join(stage, MEAN_FILE), save_mean)
        names.append(MEAN_FILE)
        digests[MEAN_FILE] = sha256_file(os.path.join(stage, MEAN_FILE))
    report["sha256"] = digests
    finish_report()
    write_text(os.path.join(stage, REPORT_FILE), dump_json(report))
    names.append(REPORT_FILE)
    return names
