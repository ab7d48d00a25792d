"""`modelport features`: extract named blobs of a Caffe net for many images into one .npz."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from modelport.errors import ConfigError


def _ints(text: str, what: str, count: tuple[int, ...]) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise ConfigError(f"{what} '{text}' is not a list of integers") from None
    if len(values) not in count or any(v <= 0 for v in values):
        raise ConfigError(f"{what} '{text}': give {' or '.join(str(c) for c in count)} "
                          "positive integers")
    return values


def _floats(text: str, what: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"{what} '{text}' is not a comma-separated list of numbers") from None


def add_preprocess_args(p: argparse.ArgumentParser) -> None:
    """The Caffe transform flags (shared with `modelport transfer`)."""
    g = p.add_argument_group("preprocessing (Caffe's TEST-phase ImageData transform)")
    g.add_argument("--resize", metavar="H,W",
                   help="resize to new_height,new_width (one number: square) before the centre "
                        "crop to the net input; default: resize straight to the input size")
    g.add_argument("--mean", metavar="B,G,R",
                   help="per-channel mean values to subtract (Caffe's mean_value), "
                        "e.g. 104,117,123")
    g.add_argument("--mean-file", metavar="FILE.binaryproto",
                   help="mean image to subtract (cropped like the image)")
    g.add_argument("--scale", type=float, default=1.0,
                   help="multiply after subtracting the mean (default 1)")
    g.add_argument("--gray", action="store_true",
                   help="read images as one-channel grey (Caffe is_color: false)")
    g.add_argument("--rgb", action="store_true",
                   help="feed RGB instead of Caffe's BGR channel order")


def preprocess_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The Caffe transform flags as keyword arguments of the image preprocessing; ConfigError for a
    contradictory or malformed flag."""
    if args.mean and args.mean_file:
        raise ConfigError("give --mean or --mean-file, not both")
    resize = None
    if args.resize:
        r = _ints(args.resize, "--resize", (1, 2))
        resize = (r[0], r[0]) if len(r) == 1 else (r[0], r[1])
    return {
        "resize": resize,
        "mean_values": _floats(args.mean, "--mean") if args.mean else (),
        "mean_file": args.mean_file,
        "scale": float(args.scale),
        "color": not args.gray,
        "rgb": bool(args.rgb),
    }


def progress_bar(description: str, enabled: bool) -> tuple[Callable[[int, int], None] | None,
                                                         Callable[[], None]]:
    """A rich progress bar on stderr as a (update(done, total), close()) pair."""
    if not enabled:
        return None, lambda: None
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    bar = Progress(TextColumn(description), BarColumn(), MofNCompleteColumn(),
                   TimeRemainingColumn(), console=Console(stderr=True), transient=False)
    task = bar.add_task(description, total=None)
    bar.start()

    def update(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    return update, bar.stop


def layer_names(text: str) -> list[str]:
    """The comma-separated --layers value as a list of blob names (ConfigError when it names
    none)."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ConfigError("--layers names no blob. Fix: e.g. --layers fc6,fc7")
    return names


def run(args: argparse.Namespace) -> int:
    """`modelport features`: extract the requested blobs for every image into an .npz; exit status
    0."""
    from modelport.transfer.features import extract_from_files, read_image_list

    images = read_image_list(args.images, args.root)
    show = (not args.quiet and sys.stderr.isatty()) or args.progress
    update, close = progress_bar("features", show)
    try:
        result = extract_from_files(args.prototxt, args.caffemodel, layer_names(args.layers),
                                    images, args.output, preprocess_kwargs(args),
                                    args.batch_size, args.chunk_size, args.spatial, update,
                                    args.keep_parts)
    finally:
        close()
    if not args.quiet:
        shapes = ", ".join(f"{b} {'x'.join(str(d) for d in s)}" for b, s in result.shapes.items())
        resumed = f" ({result.reused_chunks} chunk(s) resumed)" if result.reused_chunks else ""
        print(f"wrote {result.path}: {len(images.paths)} images; {shapes}{resumed}")
    return 0


def add_parser(subparsers: Any) -> None:
    """Register `modelport features` and its options."""
    p = subparsers.add_parser(
        "features", help="extract features (named blobs) for a set of images into an .npz",
        description="Run a Caffe net over images (Caffe's TEST-phase preprocessing) and save the "
                    "requested blobs, one array per blob with rows in image order, plus the "
                    "image paths (and labels from a list file). Resumable: re-run the same "
                    "command after an interruption.")
    p.add_argument("prototxt", help="deploy prototxt")
    p.add_argument("caffemodel", help="weights")
    p.add_argument("--layers", required=True,
                   help="comma-separated blob (or layer) names, e.g. fc6,fc7")
    p.add_argument("--images", required=True,
                   help="a folder of images (searched recursively) or a list file "
                        "('path [label]' per line)")
    p.add_argument("--root", help="folder that relative paths in the list file are relative to "
                                  "(default: the list file's folder)")
    p.add_argument("-o", "--output", required=True, help="output .npz")
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass")
    p.add_argument("--chunk-size", type=int, default=512,
                   help="images per resumable partial file (default 512)")
    p.add_argument("--spatial", choices=("flatten", "avg", "max"), default="flatten",
                   help="N x C x H x W blobs: flatten (Caffe's extract_features) or global "
                        "avg/max pooling to N x C")
    p.add_argument("--keep-parts", action="store_true",
                   help="keep OUTPUT.parts/ (the partial chunks) after finishing")
    p.add_argument("--progress", action="store_true",
                   help="show the progress bar even when stderr is not a terminal")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no summary")
    add_preprocess_args(p)
    p.set_defaults(func=run)
