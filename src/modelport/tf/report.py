"""What `port_weights` did: one row per TF variable and per PyTorch parameter / buffer.

Every source variable gets a row: `ported` (to which parameter, by which rule, with which
layout), `ignored` (optimizer slots, step counters: not model weights, said why), `leftover`
(nothing took it) or `mismatch` (its target's shape differs, both shapes shown). Every
parameter or buffer that got nothing is a `missing` row (with the reason), or `filled` when the
port sets it from the source's semantics (BatchNorm without `scale`: weight 1), or `kept` for
bookkeeping buffers TF has no counterpart of (`num_batches_tracked`). BatchNorm epsilon
differences are `eps` problems unless set (`set_eps=True`) or allowed; a Keras setting the
torch module does not share (strides, padding, output_padding, a BatchNorm axis: `settings`)
is a `setting` problem.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from modelport.errors import ModelportError

__all__ = ["PortError", "PortReport", "PortRow"]

PROBLEMS = ("leftover", "missing", "mismatch", "eps", "setting")


def _printable(text: str) -> str:
    r"""Control characters in names (a variable called "a\x1b[2J") shown escaped, so the table
    cannot move the cursor or recolour the terminal."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def _shape(shape: tuple[int, ...] | None) -> str:
    if shape is None:
        return ""
    return "x".join(str(d) for d in shape) if shape else "scalar"


@dataclass
class PortRow:
    """One variable or one parameter/buffer: what happened to it and why."""

    status: str  # ported, ignored, leftover, mismatch, missing, filled, kept, eps, setting
    variable: str = ""  # the TF variable's stored name ("" for a torch-only row)
    shape: tuple[int, ...] | None = None
    dtype: str = ""
    target: str = ""  # the state-dict key
    target_shape: tuple[int, ...] | None = None
    rule: str = ""  # how the pair was found: "rule ...", "name ...", "structure ..."
    layout: str = ""  # the layout conversion applied
    reason: str = ""
    layer: str = ""  # the source layer (Keras layer name or TF-slim scope) of the variable

    @property
    def problem(self) -> bool:
        return self.status in PROBLEMS

    def describe(self) -> str:
        """One clause for an error message."""
        if self.status == "leftover":
            return f"leftover variable '{self.variable}' ({_shape(self.shape)}): {self.reason}"
        if self.status == "missing":
            return f"parameter '{self.target}' ({_shape(self.target_shape)}) got nothing: " \
                   f"{self.reason}"
        if self.status == "mismatch":
            return (f"'{self.variable}' ({_shape(self.shape)}) -> '{self.target}' expects "
                    f"{_shape(self.target_shape)}: {self.reason}")
        if self.status == "setting":
            return self.reason
        if self.status == "eps":
            return f"'{self.target}': {self.reason.split('. Fix:')[0]}"
        return f"{self.variable or self.target}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "variable": self.variable,
                "shape": None if self.shape is None else list(self.shape), "dtype": self.dtype,
                "target": self.target,
                "target_shape": None if self.target_shape is None else list(self.target_shape),
                "rule": self.rule, "layout": self.layout, "reason": self.reason,
                "layer": self.layer}


@dataclass
class PortReport:
    """Every row of one port, the notes (order followed, flatten shapes, epsilon), and whether
    the module was written (`applied`)."""

    source: str
    module: str
    rows: list[PortRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    applied: bool = False

    def of(self, status: str) -> list[PortRow]:
        return [r for r in self.rows if r.status == status]

    @property
    def ported(self) -> list[PortRow]:
        return self.of("ported")

    @property
    def problems(self) -> list[PortRow]:
        return [r for r in self.rows if r.problem]

    @property
    def ok(self) -> bool:
        return not self.problems

    def row(self, name: str) -> PortRow:
        """The row of a TF variable or, failing that, of a parameter/buffer key."""
        for r in self.rows:
            if r.variable == name:
                return r
        for r in self.rows:
            if r.target == name:
                return r
        raise KeyError(name)

    def layer_modules(self) -> dict[str, str]:
        """Source layer -> the module path that computes its output (the last module its
        variables went to: a SeparableConv2D's pointwise conv), for layer-by-layer parity
        (`verify_tf(..., names=report)`)."""
        out: dict[str, str] = {}
        for r in self.ported:
            if r.layer and r.target:
                out[r.layer] = r.target.rpartition(".")[0]
        return out

    def summary(self) -> str:
        def n(count: int, what: str) -> str:
            return f"{count} {what}{'' if count == 1 else 's'}"

        text = (f"{n(len(self.ported), 'variable')} ported, "
                f"{n(len(self.of('filled')), 'parameter')} filled, "
                f"{n(len(self.of('ignored')), 'variable')} ignored")
        probs = self.problems
        if probs:
            text += f"; {len(probs)} problem{'s' if len(probs) != 1 else ''}"
        return text + ("" if self.applied else "; module NOT changed")

    def error_message(self, limit: int = 8) -> str:
        probs = self.problems
        shown = "; ".join(p.describe() for p in probs[:limit])
        more = f"; and {len(probs) - limit} more (see the report)" if len(probs) > limit else ""
        fixes = []
        if any(p.status != "eps" for p in probs):
            fixes.append("map them with mapping={regex: name} or fix the module's shapes")
        if any(p.status == "eps" for p in probs):
            fixes.append("build the BatchNorms with the source's eps, pass set_eps=True "
                         "(CLI --set-eps), or allow_eps_mismatch=True")
        return (f"porting {self.source} into {self.module}: {len(probs)} problem"
                f"{'s' if len(probs) != 1 else ''}: {shown}{more}. The module is unchanged. Fix: "
                f"{'; '.join(fixes)} (strict=False ports the rest)")

    def __str__(self) -> str:
        head = ("status", "variable", "shape", "parameter", "shape", "rule", "layout / reason")
        body = []
        for r in self.rows:
            extra = "; ".join(x for x in (r.layout, r.reason) if x)
            body.append(tuple(_printable(c) for c in (
                r.status if not r.problem else r.status.upper(), r.variable, _shape(r.shape),
                r.target, _shape(r.target_shape), r.rule, extra)))
        widths = [max(len(head[i]), *(len(b[i]) for b in body)) if body else len(head[i])
                  for i in range(len(head))]
        widths = [min(w, 60) for w in widths]

        def line(cells: tuple[str, ...]) -> str:
            return "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()

        out = [_printable(f"{self.source} -> {self.module}"), line(head),
               line(tuple("-" * w for w in widths))]
        out += [line(b) for b in body]
        out += [_printable(f"note: {n}") for n in self.notes]
        out.append(self.summary())
        return "\n".join(out)

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "module": self.module, "ok": self.ok,
                "applied": self.applied, "rows": [r.to_dict() for r in self.rows],
                "notes": list(self.notes), "summary": self.summary()}


class PortError(ModelportError):
    """strict porting found leftover, missing, mismatched or epsilon problems; `report` holds
    every row. The module was not changed."""

    def __init__(self, report: PortReport) -> None:
        self.report = report
        super().__init__(report.error_message())
