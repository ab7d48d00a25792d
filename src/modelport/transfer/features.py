"""Extract features (named blobs) of a converted Caffe net for a list of images.

Images go through Caffe's TEST-phase data transform (data_transformer.cpp, as the ImageData layer
applies it; implemented by `modelport.train.transform.preprocess_image`): OpenCV decode (colour:
IMREAD_COLOR, which copies a grey image into B=G=R), resize to new_height x new_width with
INTER_LINEAR, centre crop to the net's input size at offset ((H - h) / 2, (W - w) / 2), subtract
the mean (a mean file cropped at the same offset, or one value per channel), multiply by scale.
Channels stay BGR unless asked otherwise.

Extraction is batched and resumable: every `chunk_size` images are written to
`<output>.parts/chunk_NNNNN.npz` atomically, with a manifest fingerprinting the inputs; a re-run
with the same inputs reuses the finished chunks. The result is one `.npz` holding one float32
array per requested blob (rows in image order), `paths` (fixed-width unicode, so
`np.load(..., allow_pickle=False)` works) and `labels` (int64) when the list gives them.

Each array is the zip member `<blob>.npy`, so `np.load(path)["fc7"]` (or `["pool5/7x7_s1"]`)
works. A blob name that is no safe member name (empty, NUL or other control characters, a
backslash, a leading `/`, a `.`/`..`/empty path segment) is stored as `__blob_<i>.npy`, and
`__blob_names__.npy` (UTF-8 JSON as uint8) maps those keys back; `load_features` undoes it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

from modelport.atomic import make_folder, write_text, write_with
from modelport.errors import ConfigError, FormatError
from modelport.ir import Net

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
# Members of the .npz beside the blobs; NAME_INDEX maps renamed members back to blob names.
NAME_INDEX = "__blob_names__"
RESERVED_KEYS = ("paths", "labels", NAME_INDEX)
SPATIAL_MODES = ("flatten", "avg", "max")


# ----------------------------------------------------------------------------- image lists

@dataclass(frozen=True)
class ImageList:
    """Image paths (absolute or relative to the working directory) and optional int labels."""

    paths: tuple[str, ...]
    labels: tuple[int, ...] | None = None


def read_image_list(source: str | os.PathLike[str], root: str | None = None) -> ImageList:
    """A folder (every image below it, sorted by relative path) or a list file.

    A list file has one image per line, optionally followed by an integer label after the last
    space (Caffe's ImageData format). Relative paths are joined to `root` (default: the list
    file's folder). Labels are kept only when every line has one.
    """
    src = os.fspath(source)
    if os.path.isdir(src):
        found = []
        for folder, _dirs, files in os.walk(src):
            for name in files:
                if name.lower().endswith(IMAGE_EXTENSIONS):
                    found.append(os.path.join(folder, name))
        found.sort(key=lambda p: os.path.relpath(p, src))
        if not found:
            raise FormatError(f"{src}: no images found (looked for "
                              f"{', '.join(IMAGE_EXTENSIONS)}). Fix: point --images at a "
                              "folder of images or a list file")
        return ImageList(tuple(found))
    if not os.path.isfile(src):
        raise FormatError(f"{src}: no such image folder or list file")
    if root is not None and not os.path.isdir(root):
        raise FormatError(f"--root '{root}' is not a folder. Fix: give the folder the list "
                          "file's relative paths start from")
    base = root if root is not None else os.path.dirname(os.path.abspath(src))
    paths: list[str] = []
    labels: list[int | None] = []
    try:
        with open(src, "rb") as fh:
            text = fh.read().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(f"{src}: not a text list file (byte {exc.start} is not UTF-8). Fix: "
                          "give --images a folder of images or a 'path [label]' list "
                          "file") from None
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        path, label = line, None
        head, sep, tail = line.rpartition(" ")
        if sep and tail.lstrip("-").isdigit():
            path, label = head.strip(), int(tail)
        if not path:
            raise FormatError(f"{src}:{lineno}: no image path on this line")
        paths.append(path if os.path.isabs(path) else os.path.join(base, path))
        labels.append(label)
    if not paths:
        raise FormatError(f"{src}: the list file names no images")
    have = [lab for lab in labels if lab is not None]
    return ImageList(tuple(paths), tuple(have) if len(have) == len(labels) else None)


# ----------------------------------------------------------------------------- preprocessing

@dataclass(frozen=True)
class Preprocess:
    """Caffe's TEST-phase ImageData transform for a net input of `size` = (height, width).

    resize: (new_height, new_width) before the centre crop; None resizes straight to `size`
        (Caffe: no crop when the resized image already has the input size).
    mean_values: one per channel (B, G, R), or one for all; mean_file: a .binaryproto (C x H x W
        at the resized size, cropped like the image). scale multiplies after the mean.
    color: False reads images as grey (IMREAD_GRAYSCALE), one channel.
    rgb: swap B and R after decoding (for nets trained on RGB input).
    """

    size: tuple[int, int]
    resize: tuple[int, int] | None = None
    mean_values: tuple[float, ...] = ()
    mean_file: str | None = None
    scale: float = 1.0
    color: bool = True
    rgb: bool = False
    def describe(self) -> dict[str, object]:
        return asdict(self)

    def __call__(self, path: str) -> np.ndarray:
        """The C x h x w float32 input for one image (modelport.train.transform's ImageData
        path: imread -> INTER_LINEAR resize -> centre crop -> (pixel - mean) * scale)."""
        from modelport.train.transform import preprocess_image

        mean: object = self.mean_file if self.mean_file is not None else (
            self.mean_values or None)
        batch = preprocess_image(path, resize=self.resize or self.size, crop=self.size,
                                 mean=mean, scale=self.scale,
                                 channel_swap=(2, 1, 0) if self.rgb and self.color else None,
                                 is_color=self.color)
        return np.ascontiguousarray(batch[0], dtype=np.float32)


# ----------------------------------------------------------------------------- the net side

def resolve_blobs(net: Net, names: Sequence[str]) -> list[str]:
    """Blob names for `names`: a blob name as is, a layer name as its first top."""
    blobs: set[str] = {t for lay in net.layers for t in lay.tops}
    out = []
    for name in names:
        if name in blobs:
            out.append(name)
            continue
        layer = next((lay for lay in net.layers if lay.name == name), None)
        if layer is not None and layer.tops:
            out.append(layer.tops[0])
            continue
        import difflib

        close = difflib.get_close_matches(name, sorted(blobs), n=3)
        hint = (f"did you mean {', '.join(repr(c) for c in close)}?" if close
                else "run `modelport inspect` to list the blob names")
        raise ConfigError(f"{net.source}: no blob or layer named '{name}'. Fix: {hint}")
    dupes = {b for b in out if out.count(b) > 1}
    if dupes:
        raise ConfigError(f"blob(s) {', '.join(sorted(dupes))} requested twice")
    for b in out:
        if b in RESERVED_KEYS:
            raise ConfigError(f"blob '{b}' clashes with the '{b}' entry of the features file")
    return out


def truncate_for(net: Net, blobs: Sequence[str]) -> Net:
    """`net` without the layers after the last one that writes a requested blob (in-place
    layers that modify it included): nothing the features need is lost, the rest is not run."""
    last = 0
    for i, layer in enumerate(net.layers):
        if any(t in blobs for t in layer.tops):
            last = i
    return Net(net.name, net.layers[: last + 1], net.source, net.phase, net.notes)


def reduce_spatial(x: torch.Tensor, mode: str) -> torch.Tensor:
    """(N, ...) -> (N, D): flatten (Caffe's extract_features), or a global avg/max over every
    axis after the channel axis."""
    if mode not in SPATIAL_MODES:
        raise ConfigError(f"spatial mode '{mode}' is not one of {', '.join(SPATIAL_MODES)}")
    if x.dim() <= 2:
        return x.reshape(x.shape[0], -1)
    if mode == "flatten":
        return x.reshape(x.shape[0], -1)
    flat = x.reshape(x.shape[0], x.shape[1], -1)
    return flat.mean(dim=2) if mode == "avg" else flat.amax(dim=2)


# ----------------------------------------------------------------------------- extraction

ProgressFn = Callable[[int, int], None]


def _fingerprint(payload: Mapping[str, object]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _file_id(path: str | None) -> object:
    if path is None:
        return None
    st = os.stat(path)
    return [os.path.abspath(path), st.st_size, st.st_mtime_ns]


def _safe_member(name: str) -> bool:
    """Whether `name` + ".npy" is a zip member name every unzip tool keeps inside its folder:
    printable, no backslash, not absolute, no empty, `.` or `..` path segment."""
    if not name or name.startswith("/") or "\\" in name:
        return False
    if not all(ch.isprintable() for ch in name):
        return False
    return all(part not in ("", ".", "..") for part in name.split("/"))


def _member_keys(names: Sequence[str]) -> dict[str, str]:
    """Blob name -> npz key: the name itself when safe, else `__blob_<i>` (unused by others)."""
    keys: dict[str, str] = {}
    used = {n for n in names if _safe_member(n)}
    i = 0
    for name in names:
        if _safe_member(name):
            keys[name] = name
            continue
        while f"__blob_{i}" in used:
            i += 1
        keys[name] = f"__blob_{i}"
        used.add(keys[name])
    return keys


def _save_npz(path: str, arrays: Mapping[str, np.ndarray]) -> None:
    """An .npz written member by member (as np.savez does: stored, zip64, no pickles). Not
    `np.savez(f, **arrays)`: blob names such as `file` or `allow_pickle` are its keywords."""
    keys = _member_keys(list(arrays))
    renamed = {key: name for name, key in keys.items() if key != name}

    def member(zf: zipfile.ZipFile, key: str, arr: np.ndarray) -> None:
        with zf.open(key + ".npy", "w", force_zip64=True) as fh:
            np.lib.format.write_array(fh, np.asanyarray(arr), allow_pickle=False)

    def write(tmp: str) -> None:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
            for name, arr in arrays.items():
                member(zf, keys[name], arr)
            if renamed:
                index = np.frombuffer(json.dumps(renamed).encode("utf-8"), dtype=np.uint8)
                member(zf, NAME_INDEX, index)

    write_with(path, write)


def _read_npz(path: str) -> dict[str, np.ndarray]:
    """Every array of an .npz by blob name (renamed members mapped back); never unpickles."""
    with np.load(path, allow_pickle=False) as data:
        out = {k: data[k] for k in data.files if k != NAME_INDEX}
        index = (json.loads(data[NAME_INDEX].tobytes().decode("utf-8"))
                 if NAME_INDEX in data.files else {})
    if not isinstance(index, dict):
        raise ValueError(f"{NAME_INDEX} is not a name map")
    return {index.get(k, k): v for k, v in out.items()}


def _load_chunk(path: str, blobs: Sequence[str], rows: int) -> dict[str, np.ndarray] | None:
    try:
        stored = _read_npz(path)
        out = {b: stored[b] for b in blobs}
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None
    if any(a.shape[0] != rows for a in out.values()):
        return None
    return out


@dataclass
class ExtractResult:
    """Where the features went and how much was computed vs. reused."""

    path: str
    blobs: list[str]
    shapes: dict[str, tuple[int, ...]]
    computed_chunks: int
    reused_chunks: int


def extract_features(module: torch.nn.Module, blobs: Sequence[str], images: ImageList,
                     output: str | os.PathLike[str], preprocess: Preprocess,
                     batch_size: int = 32, chunk_size: int = 256, spatial: str = "flatten",
                     fingerprint: Mapping[str, object] | None = None,
                     progress: ProgressFn | None = None, keep_parts: bool = False,
                     ) -> ExtractResult:
    """Run `module` (a CaffeNet) over `images` and write the requested blobs to `output`.

    `fingerprint` identifies the model (files, settings) for resuming; partial chunks made with
    a different fingerprint are discarded.
    """
    from modelport.backends.torch_module import CaffeNet

    if not isinstance(module, CaffeNet):
        raise ConfigError("extract_features needs a modelport CaffeNet")
    if len(module.input_names) != 1:
        raise ConfigError(f"the net has {len(module.input_names)} inputs "
                          f"({', '.join(module.input_names)}); feature extraction feeds one "
                          "image input")
    if batch_size < 1 or chunk_size < 1:
        raise ConfigError("--batch-size and the chunk size must be positive")
    if spatial not in SPATIAL_MODES:
        raise ConfigError(f"--spatial must be one of {', '.join(SPATIAL_MODES)}, got '{spatial}'")
    out_path = os.fspath(output)
    if os.path.isdir(out_path):
        raise ConfigError(f"output '{out_path}' is an existing folder. Fix: give a file path "
                          "such as features.npz")
    n = len(images.paths)
    chunk_size = max(chunk_size, batch_size)
    parts = out_path + ".parts"
    manifest_path = os.path.join(parts, "manifest.json")
    manifest = {
        "fingerprint": _fingerprint({
            "model": dict(fingerprint or {}), "blobs": list(blobs), "spatial": spatial,
            "preprocess": preprocess.describe(), "paths": list(images.paths),
            "chunk_size": chunk_size,
        }),
        "images": n, "chunk_size": chunk_size, "blobs": list(blobs),
    }
    if os.path.isdir(parts):
        try:
            with open(manifest_path, encoding="utf-8") as fh:
                same = json.load(fh).get("fingerprint") == manifest["fingerprint"]
        except (OSError, ValueError, RecursionError):
            same = False
        if not same:
            print(f"modelport: {parts}: partial results were made with other inputs; "
                  "starting over", file=sys.stderr)
            shutil.rmtree(parts)
    make_folder(parts, "partial-results folder")
    write_text(manifest_path, json.dumps(manifest, indent=1))
    try:
        return _extract_chunks(module, blobs, images, out_path, parts, preprocess, batch_size,
                               chunk_size, spatial, progress, keep_parts)
    except BaseException:
        # Nothing resumable was saved (e.g. an unreadable image in the first chunk): leave no
        # partial output behind.
        if os.path.isdir(parts) and not any(f.startswith("chunk_") for f in os.listdir(parts)):
            shutil.rmtree(parts, ignore_errors=True)
        raise


def _extract_chunks(module: torch.nn.Module, blobs: Sequence[str], images: ImageList,
                    out_path: str, parts: str, preprocess: Preprocess, batch_size: int,
                    chunk_size: int, spatial: str, progress: ProgressFn | None,
                    keep_parts: bool) -> ExtractResult:
    """The chunk loop of `extract_features`: compute or reuse each chunk, then merge them."""
    from modelport.backends.torch_module import CaffeNet

    assert isinstance(module, CaffeNet)
    n = len(images.paths)
    chunks: list[dict[str, np.ndarray]] = []
    computed = reused = 0
    done = 0
    if progress:
        progress(0, n)
    for ci, start in enumerate(range(0, n, chunk_size)):
        stop = min(n, start + chunk_size)
        chunk_file = os.path.join(parts, f"chunk_{ci:05d}.npz")
        chunk = _load_chunk(chunk_file, blobs, stop - start) if os.path.exists(chunk_file) \
            else None
        if chunk is not None:
            reused += 1
            done = stop
            if progress:
                progress(done, n)
        else:
            pieces: dict[str, list[np.ndarray]] = {b: [] for b in blobs}
            for b0 in range(start, stop, batch_size):
                b1 = min(stop, b0 + batch_size)
                x = torch.from_numpy(np.stack([preprocess(p) for p in images.paths[b0:b1]]))
                with torch.no_grad():
                    out = module.forward_blobs(x)  # the one input
                for b in blobs:
                    pieces[b].append(reduce_spatial(out[b], spatial).numpy()
                                     .astype(np.float32, copy=False))
                done = b1
                if progress:
                    progress(done, n)
            chunk = {b: np.concatenate(v) for b, v in pieces.items()}
            _save_npz(chunk_file, chunk)
            computed += 1
        chunks.append(chunk)
    arrays = {b: np.concatenate([c[b] for c in chunks]) for b in blobs}
    arrays["paths"] = np.asarray(images.paths, dtype=str)
    if images.labels is not None:
        arrays["labels"] = np.asarray(images.labels, dtype=np.int64)
    _save_npz(out_path, arrays)
    if not keep_parts:
        shutil.rmtree(parts, ignore_errors=True)
    return ExtractResult(out_path, list(blobs), {b: tuple(arrays[b].shape) for b in blobs},
                         computed, reused)


def load_features(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """A features `.npz` as a dict of arrays (never unpickles)."""
    p = os.fspath(path)
    try:
        return _read_npz(p)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise FormatError(f"{p}: not a features .npz file ({exc})") from None


def extract_from_files(prototxt: str, caffemodel: str | None, names: Sequence[str],
                       images: ImageList, output: str, preprocess_args: Mapping[str, object],
                       batch_size: int = 32, chunk_size: int = 256, spatial: str = "flatten",
                       progress: ProgressFn | None = None, keep_parts: bool = False,
                       ) -> ExtractResult:
    """Load the net, keep only what the requested blobs need, and extract them.

    `preprocess_args` are `Preprocess` fields except `size`, which is the net input's H x W.
    """
    from modelport.backends.torch_module import build_module
    from modelport.pipeline import load_net

    net = load_net(prototxt, caffemodel, "test")
    blobs = resolve_blobs(net, names)
    net = truncate_for(net, blobs)
    shapes = net.input_shapes()
    if len(shapes) != 1:
        raise ConfigError(f"{prototxt}: the net has {len(shapes)} inputs; feature extraction "
                          "feeds one image input")
    (input_name, shape), = shapes.items()
    if len(shape) != 4:
        raise ConfigError(f"{prototxt}: input '{input_name}' has shape {shape}; images need "
                          "an N x C x H x W input. Fix: declare a 4-axis input shape")
    module = build_module(net, {input_name: (batch_size, *shape[1:])})
    pre = Preprocess(size=(int(shape[2]), int(shape[3])), **preprocess_args)  # type: ignore[arg-type]
    channels = 3 if pre.color else 1
    if shape[1] != channels:
        raise ConfigError(f"{prototxt}: the net takes {shape[1]}-channel input but images are "
                          f"read with {channels} channel(s). Fix: "
                          f"{'add --gray' if shape[1] == 1 else 'drop --gray'}")
    fp = {"prototxt": _file_id(prototxt), "caffemodel": _file_id(caffemodel)}
    return extract_features(module, blobs, images, output, pre, batch_size, chunk_size,
                            spatial, fp, progress, keep_parts)
