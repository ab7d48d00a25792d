"""`modelport transfer`: compare transfer-learning heads (softmax, average, ensemble, linear
SVM, Gated Transfer Network) on features of a Caffe backbone for an image-folder dataset."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from modelport.commands.features import (
    add_preprocess_args,
    layer_names,
    preprocess_kwargs,
    progress_bar,
)


def run(args: argparse.Namespace) -> int:
    """`modelport transfer`: train and compare the heads on the backbone's features, print
    results.md; exit status 0."""
    from modelport.transfer.datasets import image_folder_dataset
    from modelport.transfer.heads import TrainConfig
    from modelport.transfer.runner import ExperimentConfig, run_experiment

    dataset = image_folder_dataset(args.data, args.test_fraction, args.train, args.test,
                                   args.seed)
    cfg = ExperimentConfig(
        layers=layer_names(args.layers), preprocess=preprocess_kwargs(args),
        spatial=args.spatial, batch_size=args.batch_size, standardize=not args.raw_features,
        train=TrainConfig(epochs=args.epochs, lr=args.lr, weight_decay=args.weight_decay,
                          seed=args.seed),
        svm_c=args.svm_c, gtn_width=args.gtn_width)
    show = (not args.quiet and sys.stderr.isatty()) or args.progress

    def bars(description: str) -> Any:
        return progress_bar(description, show)

    def log(message: str) -> None:
        if not args.quiet:
            print(f"modelport: {message}", file=sys.stderr)

    summary = run_experiment(args.prototxt, args.caffemodel, dataset, args.output, cfg,
                             bars, log)
    if not args.quiet:
        with open(f"{args.output}/results.md", encoding="utf-8") as fh:
            print(fh.read())
        print(f"wrote {args.output}/results.md, results.json, "
              f"{', '.join(summary['gates']['files'])}")
    return 0


def add_parser(subparsers: Any) -> None:
    """Register `modelport transfer` and its options."""
    p = subparsers.add_parser(
        "transfer", help="compare transfer-learning heads (incl. Gated Transfer) on a backbone",
        description="Extract features of the given layers once, then train and compare: a "
                    "softmax per layer, a softmax on their average, an ensemble of the "
                    "per-layer softmaxes, a linear SVM per layer (CNN-SVM) and the Gated "
                    "Transfer Network. Writes results.md, results.json and gate heat maps.")
    p.add_argument("prototxt", help="backbone deploy prototxt")
    p.add_argument("caffemodel", help="backbone weights")
    p.add_argument("--layers", required=True, help="comma-separated blob names, e.g. fc6,fc7")
    p.add_argument("--data", required=True,
                   help="image folder: one sub-folder per class, or train/ and test/ folders "
                        "each with one sub-folder per class")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--train", type=int, help="use at most this many training images "
                                             "(class-balanced)")
    p.add_argument("--test", type=int, help="use at most this many test images")
    p.add_argument("--test-fraction", type=float, default=0.3,
                   help="test share when the folder has no train/test split (default 0.3)")
    p.add_argument("--seed", type=int, default=0, help="split, initialisation and SVM seed")
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass")
    p.add_argument("--spatial", choices=("flatten", "avg", "max"), default="flatten",
                   help="N x C x H x W blobs: flatten, or global avg/max pool to N x C")
    p.add_argument("--epochs", type=int, default=300, help="Adam epochs for the torch heads")
    p.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate")
    p.add_argument("--weight-decay", type=float, default=1e-3, help="L2 weight decay")
    p.add_argument("--svm-c", type=float, default=1.0, help="LinearSVC C")
    p.add_argument("--gtn-width", type=int,
                   help="gate width d when layer widths differ (default: the widest layer)")
    p.add_argument("--raw-features", action="store_true",
                   help="train on raw features (default: z-scored with training statistics)")
    p.add_argument("--progress", action="store_true",
                   help="show progress bars even when stderr is not a terminal")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing")
    add_preprocess_args(p)
    p.set_defaults(func=run)
