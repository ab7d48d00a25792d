"""`modelport tf ...`: TensorFlow / Keras weight files.

`modelport tf ls PATH` lists every variable of a TF checkpoint (a prefix, its `.index`, a
`checkpoint` state file or a folder holding one), a Keras `.h5` / `.weights.h5` or a `.keras`
archive: one line per variable, `name (DT_FLOAT) [3,3,3,32]` as TensorFlow's
inspect_checkpoint prints them, then the count and total size. A checkpoint is listed from its
`.index` alone (no value is read); `--verify` also reads every value and checks its crc32c.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

# numpy dtype name -> TensorFlow DataType name, for Keras files (read as numpy arrays).
_TF_NAMES = {
    "float32": "DT_FLOAT", "float64": "DT_DOUBLE", "float16": "DT_HALF", "bfloat16": "DT_BFLOAT16",
    "int8": "DT_INT8", "int16": "DT_INT16", "int32": "DT_INT32", "int64": "DT_INT64",
    "uint8": "DT_UINT8", "uint16": "DT_UINT16", "uint32": "DT_UINT32", "uint64": "DT_UINT64",
    "bool": "DT_BOOL", "complex64": "DT_COMPLEX64", "complex128": "DT_COMPLEX128",
    "object": "DT_STRING",
}


def add_parser(sub: Any) -> None:
    """Register `modelport tf` and its sub-commands (ls, port, verify)."""
    p = sub.add_parser("tf", help="TensorFlow checkpoints and Keras weight files",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    tf_sub = p.add_subparsers(dest="tf_command", metavar="TF_COMMAND")
    ls = tf_sub.add_parser("ls", help="list the variables of a checkpoint or Keras file",
                           description="One line per variable (name, dtype, shape), then the "
                                       "count and total size.")
    ls.add_argument("path", metavar="PATH",
                    help="checkpoint prefix, .index file, `checkpoint` file or its folder; "
                         "or a Keras .h5 / .weights.h5 / .keras file")
    ls.add_argument("--verify", action="store_true",
                    help="also read every value of a checkpoint and check its crc32c")
    ls.set_defaults(func=run_ls)
    from modelport.commands.tf_port import add_port_parsers  # port / verify: modelport.tf

    add_port_parsers(tf_sub)
    p.set_defaults(func=lambda args: _usage(p))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _printable(text: str) -> str:
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def _line(name: str, dtype: str, shape: tuple[int, ...] | list[int]) -> str:
    return f"{_printable(name)} ({dtype}) [{','.join(str(int(d)) for d in shape)}]"


def _is_keras_file(path: str) -> bool:
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        return False
    from modelport.formats.tf.open import sniff

    return sniff(p) is not None or p.name.lower().endswith((".keras", ".h5", ".hdf5"))


def run_ls(args: argparse.Namespace) -> int:
    """`modelport tf ls PATH`: one line per variable (as inspect_checkpoint), count, size."""
    from modelport.limits import format_bytes

    lines: list[str] = []
    unchecked: list[str] = []  # dtypes modelport cannot read (variant, resource, ...)
    total = 0
    if _is_keras_file(args.path):
        from modelport.formats.tf.open import open_weights

        source = open_weights(args.path)
        for var in source.variables.values():
            dtype = _TF_NAMES.get(str(var.value.dtype), str(var.value.dtype))
            lines.append(_line(var.name, dtype, var.shape))
            total += int(var.value.nbytes)
        count = len(source.variables)
    else:
        from modelport.formats.tf.checkpoint import open_checkpoint

        with open_checkpoint(args.path) as ckpt:
            for entry in ckpt.entries:
                lines.append(_line(entry.name, entry.dtype, entry.shape))
                total += entry.size
                if not args.verify:
                    continue
                if entry.numpy_dtype is None:
                    unchecked.append(entry.dtype)
                else:
                    ckpt.read(entry)
            count = len(ckpt.entries)
    out = sys.stdout
    for line in lines:
        print(line, file=out)
    plural = "s" if count != 1 else ""
    summary = f"{count} variable{plural}, {format_bytes(total)} ({total:,} bytes)"
    if args.verify:
        summary += ", every crc32c checked"
        if unchecked:
            summary += (f" except {len(unchecked)} variable{'s' if len(unchecked) != 1 else ''} "
                        f"modelport cannot read ({', '.join(sorted(set(unchecked)))})")
    print(summary, file=out)
    return 0
