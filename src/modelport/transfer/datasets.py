"""Image-folder datasets for transfer experiments, and small real ones made from local packages.

An image-folder dataset has one sub-folder per class (`<root>/<class>/*.png`), or `train/` and
`test/` folders that each have one sub-folder per class. `image_folder_dataset` reads either;
without `train/`/`test/` it makes a stratified, seeded split.

`python -m modelport.transfer.datasets fashion-mnist DEST --train 200 --test 100` writes a
class-balanced subset of Fashion-MNIST (Debian package `dataset-fashion-mnist`, IDX files under
/usr/share/datasets/fashion-mnist) as PNGs in that layout; `digits` does the same with
scikit-learn's bundled 8x8 digits (no download at all).
"""

from __future__ import annotations

import argparse
import gzip
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from modelport.errors import ConfigError, FormatError
from modelport.transfer.features import IMAGE_EXTENSIONS, ImageList

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = ("t-shirt_top", "trouser", "pullover", "dress", "coat", "sandal",
                         "shirt", "sneaker", "bag", "ankle_boot")


@dataclass(frozen=True)
class Dataset:
    """Class names and the train / test image lists (labels index `classes`)."""

    classes: tuple[str, ...]
    train: ImageList
    test: ImageList
    root: str = ""


def _class_images(folder: str) -> dict[str, list[str]]:
    classes = sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)))
    out = {}
    for c in classes:
        files = []
        for sub, _dirs, names in os.walk(os.path.join(folder, c)):
            files += [os.path.join(sub, n) for n in names if n.lower().endswith(IMAGE_EXTENSIONS)]
        if files:
            out[c] = sorted(files)
    return out


def _balanced(per_class: Sequence[list[str]], limit: int | None) -> list[list[str]]:
    """Keep at most `limit` images in total, taken round-robin over the classes."""
    if limit is None:
        return [list(v) for v in per_class]
    kept: list[list[str]] = [[] for _ in per_class]
    total, rank = 0, 0
    while total < limit and any(rank < len(v) for v in per_class):
        for i, v in enumerate(per_class):
            if rank < len(v) and total < limit:
                kept[i].append(v[rank])
                total += 1
        rank += 1
    return kept


def _as_list(classes: Sequence[str], per_class: Sequence[list[str]]) -> ImageList:
    paths, labels = [], []
    for label, files in enumerate(per_class):
        paths += files
        labels += [label] * len(files)
    return ImageList(tuple(paths), tuple(labels))


def image_folder_dataset(root: str | os.PathLike[str], test_fraction: float = 0.3,
                         train_limit: int | None = None, test_limit: int | None = None,
                         seed: int = 0) -> Dataset:
    """Read a class-per-folder dataset; split it (stratified, seeded) unless it has train/test."""
    base = os.fspath(root)
    if not os.path.isdir(base):
        raise FormatError(f"{base}: no such dataset folder")
    split_dirs = [os.path.join(base, s) for s in ("train", "test")]
    rng = np.random.RandomState(seed)
    if all(os.path.isdir(d) for d in split_dirs):
        train, test = (_class_images(d) for d in split_dirs)
        classes = tuple(sorted(set(train) | set(test)))
        tr = [list(rng.permutation(train.get(c, []))) for c in classes]
        te = [list(rng.permutation(test.get(c, []))) for c in classes]
    else:
        per_class = _class_images(base)
        classes = tuple(per_class)
        if not 0.0 < test_fraction < 1.0:
            raise ConfigError(f"--test-fraction must be between 0 and 1, got {test_fraction}")
        tr, te = [], []
        for c in classes:
            files = list(rng.permutation(per_class[c]))
            k = max(1, int(round(len(files) * test_fraction))) if len(files) > 1 else 0
            te.append(files[:k])
            tr.append(files[k:])
    if len(classes) < 2:
        raise FormatError(f"{base}: found {len(classes)} class folder(s) with images; a "
                          "classification dataset needs at least 2. Fix: put each class's "
                          "images in its own sub-folder")
    tr, te = _balanced(tr, train_limit), _balanced(te, test_limit)
    for name, part in (("training", tr), ("test", te)):
        if not any(part):
            raise FormatError(f"{base}: the {name} split has no images")
    # Images within a split are ordered by class, then by the seeded shuffle.
    return Dataset(classes, _as_list(classes, tr), _as_list(classes, te), base)


# ----------------------------------------------------------------------------- real data

def _read_idx(path: str) -> np.ndarray:
    """An IDX file (MNIST format; gzip allowed) as a numpy array."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise FormatError(f"{path}: cannot read ({exc})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise FormatError(f"{path}: not an unsigned-byte IDX file")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise FormatError(f"{path}: truncated IDX file")
    return body.reshape(dims)


def _pick(labels: np.ndarray, per_class: int, rng: np.random.RandomState) -> np.ndarray:
    picks = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        picks.append(rng.choice(idx, size=min(per_class, idx.size), replace=False))
    return np.concatenate(picks)


def _write_split(dest: str, split: str, images: np.ndarray, labels: np.ndarray,
                 classes: Sequence[str], idx: np.ndarray) -> None:
    from modelport.atomic import write_bytes
    from modelport.optional import require

    cv2 = require("cv2", "transfer", "writing the dataset's PNG files")

    for i in idx:
        folder = os.path.join(dest, split, classes[int(labels[i])])
        os.makedirs(folder, exist_ok=True)
        ok, png = cv2.imencode(".png", images[i])
        if not ok:
            raise FormatError(f"could not encode image {i} as PNG")
        write_bytes(os.path.join(folder, f"{int(i):05d}.png"), png.tobytes())


def fashion_mnist_folder(dest: str, train: int = 200, test: int = 100, seed: int = 0,
                         source: str = FASHION_MNIST_DIR) -> Dataset:
    """A class-balanced Fashion-MNIST subset (28x28 grey PNGs) as an image-folder dataset."""
    files = {k: os.path.join(source, f"{k}-ubyte.gz") for k in
             ("train-images-idx3", "train-labels-idx1", "t10k-images-idx3", "t10k-labels-idx1")}
    missing = [p for p in files.values() if not os.path.exists(p)]
    if missing:
        raise FormatError(f"{missing[0]}: not found. Fix: apt-get install dataset-fashion-mnist "
                          "(or use the 'digits' dataset)")
    rng = np.random.RandomState(seed)
    classes = FASHION_MNIST_CLASSES
    for split, key, count in (("train", "train", train), ("test", "t10k", test)):
        images = _read_idx(files[f"{key}-images-idx3"])
        labels = _read_idx(files[f"{key}-labels-idx1"])
        idx = _pick(labels, max(1, count // len(classes)), rng)
        _write_split(dest, split, images, labels, classes, idx)
    return image_folder_dataset(dest, seed=seed)


def digits_folder(dest: str, train: int = 200, test: int = 100, seed: int = 0) -> Dataset:
    """scikit-learn's bundled 8x8 digits (values 0-16 scaled to 0-255) as an image folder."""
    from modelport.optional import require

    load_digits = require("sklearn.datasets", "transfer", "the digits dataset").load_digits
    digits = load_digits()
    images = np.clip(digits.images * (255.0 / 16.0), 0, 255).round().astype(np.uint8)
    labels = digits.target.astype(np.int64)
    rng = np.random.RandomState(seed)
    classes = tuple(str(i) for i in range(10))
    order = rng.permutation(len(labels))
    half = len(order) // 2
    pools = {"train": order[:half], "test": order[half:]}
    for split, count in (("train", train), ("test", test)):
        pool = pools[split]
        idx = pool[_pick(labels[pool], max(1, count // len(classes)), rng)]
        _write_split(dest, split, images, labels, classes, idx)
    return image_folder_dataset(dest, seed=seed)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m modelport.transfer.datasets NAME DEST`: write a small real image-folder
    dataset."""
    p = argparse.ArgumentParser(prog="python -m modelport.transfer.datasets",
                                description="Write a small real image-folder dataset.")
    p.add_argument("name", choices=("fashion-mnist", "digits"))
    p.add_argument("dest")
    p.add_argument("--train", type=int, default=200, help="training images (class-balanced)")
    p.add_argument("--test", type=int, default=100, help="test images (class-balanced)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    make = fashion_mnist_folder if args.name == "fashion-mnist" else digits_folder
    ds = make(args.dest, args.train, args.test, args.seed)
    print(f"wrote {args.dest}: {len(ds.classes)} classes, {len(ds.train.paths)} train / "
          f"{len(ds.test.paths)} test images")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
