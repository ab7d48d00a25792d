"""A ParityReport as one self-contained HTML page: verdict, first divergent layer, a plot of
error and allowed error per blob in network order (log scale, PNG embedded as base64), and the
full table. No external files, scripts or fonts."""

from __future__ import annotations

import base64
import html
import io
import math

from modelport.verify.render import fmt
from modelport.verify.report import BlobResult, ParityReport

__all__ = ["plot_png", "render_html"]

_CSS = """
body { font: 14px/1.4 -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 24px;
       color: #1d1d1f; }
h1 { font-size: 20px; margin: 0 0 8px; }
.badge { display: inline-block; padding: 2px 10px; border-radius: 4px; color: #fff;
         font-weight: 600; }
.pass { background: #1a7f37; } .fail { background: #cf222e; }
.box { border-left: 4px solid #cf222e; background: #fff5f5; padding: 8px 12px; margin: 12px 0; }
table { border-collapse: collapse; font: 12px/1.3 ui-monospace, Menlo, Consolas, monospace; }
th, td { border-bottom: 1px solid #ddd; padding: 3px 8px; text-align: right; }
th { background: #f6f8fa; position: sticky; top: 0; }
td.l, th.l { text-align: left; }
tr.bad td { background: #ffebe9; } tr.skip td { color: #8c959f; }
tr.first td { background: #ffcecb; font-weight: 600; }
img.plot { max-width: 100%; border: 1px solid #ddd; }
.dim { color: #57606a; }
"""


def _floor(values: list[float]) -> float:
    """Where exact matches (error 0) are drawn on the log axis: a decade below the smallest
    positive error or allowed value."""
    positive = [v for v in values if v > 0 and math.isfinite(v)]
    return 10.0 ** (math.floor(math.log10(min(positive))) - 1) if positive else 1e-12


def _label(name: str) -> str:
    """A layer or blob name for the plot: control characters (newline, NUL) shown escaped."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in name)


def _text(value: object) -> str:
    """User text for the page: HTML-escaped, control characters (NUL, ...) shown escaped."""
    return html.escape(_label(str(value)))


def plot_png(report: ParityReport) -> bytes | None:
    """PNG bytes of max|diff| and allowed per compared blob (log y), or None without matplotlib."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    rows = report.compared
    if not rows:
        return None
    n = len(rows)
    fig = Figure(figsize=(min(4.0 + 0.28 * n, 16.0), 5.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    xs = list(range(n))
    errors = [r.max_abs_diff if r.max_abs_diff is not None else math.inf for r in rows]
    finite = [e for e in errors if math.isfinite(e) and e > 0]
    top = max(finite + [r.allowed for r in rows] + [1.0]) * 10
    floor = _floor(finite + [r.allowed for r in rows])
    shown = [max(e, floor) if math.isfinite(e) else top for e in errors]
    allowed = [max(r.allowed, floor) for r in rows]
    ax.step(xs, allowed, where="mid", color="#8250df", linewidth=1.5, label="allowed")
    ax.plot(xs, shown, color="#57606a", linewidth=0.8, alpha=0.6)
    ok = [i for i, r in enumerate(rows) if r.passed]
    bad = [i for i, r in enumerate(rows) if not r.passed]
    ax.scatter([xs[i] for i in ok], [shown[i] for i in ok], color="#1a7f37", s=22, zorder=3,
               label="max|diff| within tolerance")
    ax.scatter([xs[i] for i in bad], [shown[i] for i in bad], color="#cf222e", s=30, zorder=3,
               marker="D", label="max|diff| out of tolerance (inf: shape differs)")
    d = report.first_divergent
    if d is not None:
        first = next((i for i, r in enumerate(rows) if r.blob == d.blob and not r.passed), None)
        if first is not None:
            ax.axvline(first, color="#cf222e", linestyle="--", linewidth=1)
            ax.annotate(f"first divergent: {_label(d.layer)}", (first, shown[first]),
                        textcoords="offset points", xytext=(6, 8), color="#cf222e", fontsize=9,
                        parse_math=False)
    ax.set_yscale("log")
    ax.set_ylim(floor / 3, top * 3)
    ax.set_xlim(-0.5, n - 0.5)
    ax.set_xticks(xs)
    step = max(1, math.ceil(n / 60))
    # Layer names are unique per row (blob names repeat along an in-place chain).
    labels = [_label(r.blob if r.kind == "split" else r.layer) for r in rows]
    # Names are plain text: no mathtext (`$...$` in a layer name would be parsed, or fail).
    ax.set_xticklabels([lab if i % step == 0 else "" for i, lab in enumerate(labels)],
                       rotation=90, fontsize=7, parse_math=False)
    ax.set_xlabel("layer output, in network order")
    ax.set_ylabel("max |ours - reference|")
    ax.set_title(f"Error per blob in network order ({report.tolerance.describe()}; "
                 f"0 drawn at {floor:g})", fontsize=10)
    ax.grid(True, which="major", axis="y", alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _row_html(i: int, row: BlobResult, first_blob: str | None) -> str:
    cls = "skip" if not row.compared else ("first" if row.blob == first_blob and not row.passed
                                           else ("" if row.passed else "bad"))
    e = _text
    if not row.compared:
        cells = ["-"] * 7 + ["skipped", e(row.skip_reason)]
    else:
        status = "ok" if row.passed else "DIFF"
        extra = []
        if row.top1 is not None:
            extra.append(f"top-1 {row.top1:.0%}" + ("" if row.top5 is None
                                                      else f", top-5 {row.top5:.0%}"))
        if row.note:
            extra.append(row.note)
        if row.verdict:
            extra.append(row.verdict)
        cells = [fmt(row.max_abs_diff),
                 "" if row.where is None or not row.max_abs_diff
                 else ",".join(str(w) for w in row.where),
                 fmt(row.max_rel_diff), "-" if row.cosine is None else f"{row.cosine:.6f}",
                 "0 (exact)" if row.exact and row.allowed == 0 else fmt(row.allowed),
                 f"{row.mismatched_fraction:.2%}", fmt(row.introduced), status,
                 e("; ".join(extra))]
    head = [str(i), e(row.blob), e(row.label), e(row.type),
            "&times;".join(str(d) for d in row.shape)]
    aligned = [f'<td class="l">{c}</td>' if k in (1, 2, 3, 4, 13) else f"<td>{c}</td>"
               for k, c in enumerate(head + cells)]
    return f'<tr class="{cls}">' + "".join(aligned) + "</tr>"


def render_html(report: ParityReport) -> str:
    """The whole page as a string (write it with modelport.atomic.write_text)."""
    e = _text
    passed = report.passed
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>modelport verify: {e(report.net)}</title>",
             f"<style>{_CSS}</style></head><body>",
             f"<h1>modelport verify: {e(report.net)} "
             f'<span class="badge {"pass" if passed else "fail"}">'
             f'{"PASSED" if passed else "FAILED"}</span></h1>',
             f"<p>{e(report.summary())}</p>",
             f'<p class="dim">Reference: {e(report.reference)}. Tolerance: '
             f"{e(report.tolerance.describe())}.</p>"]
    d = report.first_divergent
    if d is not None:
        parts.append(
            f'<div class="box"><b>First divergent layer: {e(d.layer)}</b> (type {e(d.type)}), '
            f"blob <code>{e(d.blob)}</code><br>max|diff| {fmt(d.max_abs_diff)} (allowed "
            f"{fmt(d.allowed)}); introduced by the layer {fmt(d.introduced)}, inherited from its "
            f"bottoms {fmt(d.inherited)}<br>{e(d.verdict)}"
            + (f"<br><span class='dim'>{e(d.note)}</span>" if d.note else "") + "</div>")
    png = plot_png(report)
    if png is not None:
        data = base64.b64encode(png).decode("ascii")
        parts.append(f'<p><img class="plot" alt="error per blob" '
                     f'src="data:image/png;base64,{data}"></p>')
    else:
        parts.append('<p class="dim">(plot omitted: matplotlib is not installed; '
                     "pip install 'modelport[report]')</p>")
    headers = ["#", "blob", "layer", "type", "shape", "max|diff|", "at", "max rel", "cosine",
               "allowed", "mismatched", "introduced", "", "note"]
    parts.append('<table id="blobs"><thead><tr>'
                 + "".join(f'<th class="l">{h}</th>' if k in (1, 2, 3, 4, 13) else f"<th>{h}</th>"
                           for k, h in enumerate(headers)) + "</tr></thead><tbody>")
    first_blob = d.blob if d is not None else None
    parts.extend(_row_html(i, r, first_blob) for i, r in enumerate(report.rows))
    parts.append("</tbody></table>")
    if report.inputs or report.notes:
        parts.append("<ul class='dim'>")
        parts.extend(f"<li>input <code>{e(k)}</code>: {e(v)}</li>"
                     for k, v in report.inputs.items())
        parts.extend(f"<li>{e(n)}</li>" for n in report.notes)
        parts.append("</ul>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
