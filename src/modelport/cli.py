"""The `modelport` command line: thin argparse subcommands over the public API.

Each subcommand lives in `modelport.commands.<name>` and provides `add_parser(subparsers)`
(which sets `func` on its parser). A ModelportError becomes one line on stderr and a non-zero
exit status (2 for bad input, 1 for a failed parity check); anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from modelport import __version__
from modelport.errors import ModelportError

# Subcommand modules, in the order `modelport --help` lists them.
COMMANDS = ("convert", "inspect", "verify", "export", "train", "features", "transfer", "tf")


def build_parser() -> argparse.ArgumentParser:
    """The `modelport` parser with one subcommand per module of COMMANDS that exists."""
    parser = argparse.ArgumentParser(
        prog="modelport",
        description="Convert Caffe models to PyTorch exactly, and prove it layer by layer.",
    )
    parser.add_argument("--version", action="version", version=f"modelport {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"modelport.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"modelport.commands.{name}":
                continue  # not built yet
            raise
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI on `argv` (default sys.argv[1:]); return the exit code. A ModelportError
    is printed as one `modelport: error:` line; any other exception keeps its traceback."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except ModelportError as exc:
        message = " ".join(str(exc).split("\n"))
        # names from a prototxt may hold control characters (CR, ESC, NUL): shown escaped
        message = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in message)
        print(f"modelport: error: {message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("modelport: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
