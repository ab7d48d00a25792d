"""A ParityReport as a terminal table (rich): one row per blob in network order, then the
verdict."""

from __future__ import annotations

import math

from rich.console import Console
from rich.table import Table
from rich.text import Text

from modelport.verify.report import BlobResult, ParityReport

__all__ = ["fmt", "render_table"]


def fmt(x: float | None, digits: int = 3) -> str:
    """A compact number: '-' for None, 'inf' for a shape mismatch, else %.{digits}g."""
    if x is None:
        return "-"
    if math.isinf(x):
        return "inf"
    if x == 0:
        return "0"
    return f"{x:.{digits}g}"


def _status(row: BlobResult) -> Text:
    if not row.compared:
        return Text("skipped", style="dim")
    return Text("ok", style="green") if row.passed else Text("DIFF", style="bold red")


def _extra(row: BlobResult) -> str:
    parts = []
    if row.top1 is not None:
        parts.append(f"top1 {row.top1:.0%}" + ("" if row.top5 is None
                                                else f" top5 {row.top5:.0%}"))
    if not row.compared:
        parts.append(row.skip_reason)
    elif not row.passed:
        if row.note:
            parts.append(row.note)
        if row.verdict:
            parts.append(row.verdict.split(":")[0])
    return "; ".join(parts)


def _name(text: str) -> str:
    """A layer or blob name for the terminal: control characters (newline, ESC, NUL) shown
    escaped, so a name cannot move the cursor or recolour the terminal."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def render_table(report: ParityReport, console: Console | None = None) -> None:
    """Print the report: the per-blob table, the first divergent layer, notes and verdict."""
    console = console or Console()
    table = Table(title=f"{report.net} vs {report.reference}", title_justify="left",
                  show_lines=False, header_style="bold")
    for name, justify in (("#", "right"), ("blob", "left"), ("layer", "left"), ("type", "left"),
                          ("shape", "left"), ("max|diff|", "right"), ("at", "left"),
                          ("rel", "right"), ("cos", "right"), ("allowed", "right"),
                          ("mism.", "right"), ("", "left"), ("note", "left")):
        table.add_column(name, justify=justify,  # type: ignore[arg-type]  # rich's Literal
                         overflow="fold")
    for i, row in enumerate(report.rows):
        style = "" if row.passed else "red"
        cos = "-" if row.cosine is None else f"{row.cosine:.6f}"
        table.add_row(
            # names as Text: a blob called "[/x]" is not rich markup (MarkupError)
            str(i), Text(_name(row.blob)), Text(_name(row.label)), Text(_name(row.type)),
            "x".join(str(d) for d in row.shape),
            fmt(row.max_abs_diff) if row.compared else "-",
            "" if row.where is None or not row.max_abs_diff
            else ",".join(str(i) for i in row.where),
            fmt(row.max_rel_diff), cos if row.compared else "-",
            ("0 (exact)" if row.exact and row.allowed == 0 else fmt(row.allowed))
            if row.compared else "-",
            f"{row.mismatched_fraction:.1%}" if row.compared else "-",
            _status(row), Text(_extra(row)), style=style)
    console.print(table)
    d = report.first_divergent
    if d is not None:
        console.print(Text(f"First divergent layer: '{_name(d.layer)}' (type {d.type}), "
                           f"blob '{_name(d.blob)}'", style="bold red"))
        console.print(f"  max|diff| {fmt(d.max_abs_diff)} (allowed {fmt(d.allowed)}); "
                      f"introduced by the layer {fmt(d.introduced)}, inherited from its bottoms "
                      f"{fmt(d.inherited)} (bottoms differ by {fmt(d.bottoms_max_abs_diff)})")
        console.print(f"  {d.verdict}", markup=False)
        if d.note:
            console.print(f"  note: {d.note}", markup=False)
    for name, source in report.inputs.items():
        console.print(f"input '{name}': {source}", markup=False, style="dim")
    for note in report.notes:
        console.print(f"note: {note}", markup=False, style="dim")
    verdict = "PASSED" if report.passed else "FAILED"
    if report.passed and all(r.kind == "input" for r in report.compared):
        verdict = "NOTHING COMPARED"  # every layer skipped by the reference (exit status 0)
    console.print(Text(f"{verdict}: {report.summary()}",
                       style="bold green" if report.passed else "bold red"))
