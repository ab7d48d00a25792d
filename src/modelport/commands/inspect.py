"""`modelport inspect deploy.prototxt [weights]`: a table of layers, shapes, params and FLOPs."""

from __future__ import annotations

import argparse
from typing import Any

from modelport.commands.convert import add_shape_options, parse_input_shapes, read_progress

COLUMNS = (("layer", "left"), ("type", "left"), ("bottoms -> tops", "left"),
           ("output shape", "left"), ("params", "right"), ("MACs", "right"), ("note", "left"))
# rich's Table costs ~3-4 ms a row (8000 layers: ~30 s); longer tables print as plain columns.
PLAIN_TABLE_ROWS = 300


def _plain_table(title: str, rows: list[list[str]]) -> str:
    """`rows` as aligned text columns under a header (linear time, no markup)."""
    header = [name for name, _ in COLUMNS]
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        parts = [c.rjust(w) if justify == "right" else c.ljust(w)
                 for c, w, (_, justify) in zip(cells, widths, COLUMNS)]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([title, line(header), rule, *(line(r) for r in rows)])


def run(args: argparse.Namespace) -> int:
    """`modelport inspect`: print the per-layer table (torch-free for a plain net without weights);
    exit status 0."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from modelport.inspect_shapes import format_shape, human, inspect_without_torch

    shapes = parse_input_shapes(args.input_shape)
    # A plain net without weights: its rows without importing torch (seconds); any other net,
    # or a layer the shortcut does not handle, gets the full inspect.
    info: Any = None
    if args.caffemodel is None:
        info = inspect_without_torch(args.prototxt, shapes, args.phase)
    if info is None:
        from modelport.inspect import inspect_files

        with read_progress("reading weights") as progress:
            info = inspect_files(args.prototxt, args.caffemodel, shapes, args.phase, progress)
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)  # piped output: do not wrap the table to 80 columns
    rows = info.unsupported if args.unsupported else info.layers
    title = f"{info.name or args.prototxt}: {len(info.layers)} layers"
    if args.unsupported:
        title += f", {len(rows)} cannot be converted"
    missing = {id(row) for row in info.missing_weights}  # (a property: computed once)
    cells: list[tuple[list[str], str]] = []  # (plain cells, style of the note)
    for row in rows:
        flow = f"{', '.join(row.bottoms) or '-'} -> {', '.join(row.tops) or '-'}"
        shapes_text = ", ".join(format_shape(s) for s in row.top_shapes) or "-"
        label = "UNSUPPORTED" if row.no_converter else "ERROR"
        note, style = (f"{label}: {row.problem}", "red") if row.problem else ("", "")
        if id(row) in missing:
            note, style = "no weights in the caffemodel", "yellow"
        cells.append(([row.name, row.type, flow, shapes_text,
                       f"{row.params:,}" if row.params else "",
                       human(row.macs) if row.macs else "", note], style))
    if len(cells) <= PLAIN_TABLE_ROWS:
        table = Table(title=title, title_justify="left")
        for col, justify in COLUMNS:
            table.add_column(col, justify=justify)  # type: ignore[arg-type]
        for texts, style in cells:  # Text: names are never read as rich markup
            table.add_row(*[Text(t) for t in texts[:-1]], Text(texts[-1], style=style))
        console.print(table)
    else:
        print(_plain_table(title, [texts for texts, _ in cells]), flush=True)
    if not args.unsupported:
        console.print(f"total: {info.total_params:,} parameters (every weight blob, BatchNorm "
                      f"statistics included), {human(info.total_macs)} multiply-adds "
                      "(Convolution, Deconvolution, InnerProduct)")
    if info.missing_weights and not args.unsupported:
        console.print(f"[yellow]{len(info.missing_weights)} layer(s) have no weights in the "
                      "caffemodel (convert needs --allow-missing-weights)[/]")
    if info.unsupported:
        console.print(f"[yellow]{len(info.unsupported)} layer(s) cannot be converted yet[/]")
    elif args.unsupported:
        console.print("every layer can be converted")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `modelport inspect` and its options."""
    p = subparsers.add_parser(
        "inspect", help="list a Caffe net's layers, shapes, parameters and FLOPs",
        description="Show every layer of a Caffe net: type, bottoms -> tops, output shape, "
                    "parameter count and multiply-adds (Convolution, Deconvolution, "
                    "InnerProduct). Layers modelport cannot convert are flagged, not fatal.")
    p.add_argument("prototxt", help="net definition (.prototxt)")
    p.add_argument("caffemodel", nargs="?", help="weights (.caffemodel), optional")
    add_shape_options(p)
    p.add_argument("--unsupported", action="store_true",
                   help="list only the layers that cannot be converted")
    p.set_defaults(func=run)
