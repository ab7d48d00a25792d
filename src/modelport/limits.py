"""Stated limits on what a command reads and allocates, checked *before* the work starts.

* **Memory** (`MODELPORT_MEMORY_LIMIT`): the bytes a command may allocate for weights and
  blobs; default 80% of the physical RAM (or of the cgroup's memory.max when smaller). A size
  (`16G`, `500M`, `4GiB`, bytes), a percentage of RAM (`50%`) or `off`. Weights are counted
  layer by layer from their shapes as the net is built (a weight filler is refused before it
  allocates; stored weights are copied once); `verify` adds every blob x 2 (ours and the
  reference's) from the inferred shapes before running anything. `inspect` allocates no
  weights at all (shape-only conversion: parameters are counted from the shapes).
* **Text prototxt size** (`MODELPORT_MAX_PROTOTXT_MB`, default 8 MB) and **layer count**
  (`MODELPORT_MAX_LAYERS`, default 50,000): text is parsed at ~1-2 MB/s of CPU (protobuf's own
  parser, used outside Caffe's usual subset, at about half that), so these bound parsing and
  shape inference to seconds; Caffe's largest published nets are well under 1 MB and 2,000
  layers. Both are checked before parsing (file size, then one regex pass counting `layer {`
  blocks and the nesting depth, which is capped at 100: protobuf's parser recurses per level).
* **Tensor size**: a blob shape whose float32 byte count does not fit in int64 (torch's
  "Storage size calculation overflowed") is an error naming the blob.

No torch here: the readers use this module too.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import math
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

from modelport.errors import ConfigError, FormatError, ShapeError, layer_message

if TYPE_CHECKING:
    from modelport.ir import Layer

MEMORY_ENV = "MODELPORT_MEMORY_LIMIT"
DEFAULT_MEMORY_FRACTION = 0.8
PROTOTXT_MB_ENV = "MODELPORT_MAX_PROTOTXT_MB"
DEFAULT_PROTOTXT_MB = 8.0
LAYERS_ENV = "MODELPORT_MAX_LAYERS"
DEFAULT_MAX_LAYERS = 50_000
MAX_NESTING = 100  # Caffe's own nets nest messages fewer than 10 levels deep
FLOAT32_BYTES = 4
MAX_TENSOR_BYTES = 2**63 - 1  # torch computes a storage's byte size in int64

_UNITS = {"": 1, "B": 1, "K": 10**3, "KB": 10**3, "M": 10**6, "MB": 10**6, "G": 10**9,
          "GB": 10**9, "T": 10**12, "TB": 10**12, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30,
          "TIB": 2**40}


def format_bytes(n: int | float) -> str:
    """1536000000000 -> '1.54 TB' (decimal units, three significant digits)."""
    for unit, size in (("EB", 1e18), ("PB", 1e15), ("TB", 1e12), ("GB", 1e9), ("MB", 1e6),
                       ("KB", 1e3)):
        if n >= size:
            value = n / size
            digits = 0 if value >= 100 else 1 if value >= 10 else 2
            return f"{value:,.{digits}f} {unit}"
    return f"{int(n)} B"


def format_shape(shape: Sequence[int]) -> str:
    """A shape as Caffe prints it: `2x3x7x9`, `scalar` for no axes."""
    return "x".join(str(int(d)) for d in shape) or "scalar"


# ----------------------------------------------------------------------------------- memory


def physical_memory() -> int | None:
    """The machine's RAM in bytes (os.sysconf), or the cgroup's memory.max when smaller."""
    try:
        ram = int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as fh:
                value = fh.read().strip()
        except OSError:
            continue
        if value.isdigit() and 0 < int(value) < ram:
            ram = int(value)
    return ram if ram > 0 else None


def _parse_size(text: str, env: str) -> int:
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][0-9]+)?)\s*([A-Za-z]*)\s*", text)
    unit = m.group(2).upper() if m else ""
    if not m or unit not in _UNITS:
        raise ConfigError(f"{env}={text!r} is not a size. Fix: give bytes or a size such as "
                          "16G, 500M, 4GiB, a percentage of RAM such as 50%, or off")
    return int(float(m.group(1)) * _UNITS[unit])


def memory_limit() -> int | None:
    """The byte cap of `MODELPORT_MEMORY_LIMIT` (None: no cap: `off`, or RAM unknown)."""
    text = os.environ.get(MEMORY_ENV, "").strip()
    if text.lower() in ("off", "none", "unlimited"):
        return None
    if not text or text.endswith("%"):
        ram = physical_memory()
        fraction = DEFAULT_MEMORY_FRACTION
        if text:
            try:
                fraction = float(text[:-1]) / 100
            except ValueError:
                fraction = -1.0
            if not 0 < fraction:
                raise ConfigError(f"{MEMORY_ENV}={text!r} is not a positive percentage of RAM. "
                                  "Fix: give e.g. 50%, a size such as 16G, or off")
        return None if ram is None else int(ram * fraction)
    return _parse_size(text, MEMORY_ENV)


def _limit_text(limit: int) -> str:
    given = os.environ.get(MEMORY_ENV, "").strip()
    if given and not given.endswith("%"):
        return f"the memory limit of {format_bytes(limit)} ({MEMORY_ENV}={given})"
    ram = physical_memory() or 0
    share = given or f"{DEFAULT_MEMORY_FRACTION:.0%}"
    return f"the memory limit of {format_bytes(limit)} ({share} of {format_bytes(ram)} RAM)"


def _fix(first: str) -> str:
    return (f"{first}, or raise {MEMORY_ENV} (a size such as 64G, a percentage of RAM such as "
            "95%, or off)")


def shape_problem(shape: Sequence[int], itemsize: int = FLOAT32_BYTES) -> str | None:
    """Why no tensor can have `shape` (a negative dimension, or more bytes than int64 counts),
    or None."""
    dims = [int(d) for d in shape]
    if any(d < 0 for d in dims):
        return f"has shape {tuple(dims)}, with a negative dimension"
    count = math.prod(dims)
    if count * itemsize > MAX_TENSOR_BYTES:
        return (f"has shape {tuple(dims)}: {count:.3g} elements, more than any tensor can hold "
                f"(2^63 bytes)")
    return None


def check_blob_shape(layer: Layer, blob: str, shape: Sequence[int]) -> None:
    """ShapeError naming `layer` when blob `blob` of `shape` cannot exist as a tensor."""
    problem = shape_problem(shape)
    if problem is not None:
        raise ShapeError(layer.name, layer.type, f"blob '{blob}' {problem}",
                         "check the input shape (dim values) and this layer's parameters")


_BUDGET: contextvars.ContextVar[WeightBudget | None] = contextvars.ContextVar(
    "modelport_weight_budget", default=None)
_SHAPE_ONLY: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "modelport_shape_only", default=False)


class WeightBudget:
    """The bytes of weights a net build has allocated, against `memory_limit()`.

    `with budget.layer(layer): convert(...)` counts the layer's stored weights (one copy is
    made of them) and makes every weight filler called meanwhile reserve its blob first
    (`reserve_weights`), so an oversized blob is refused before it is allocated.
    """

    def __init__(self, limit: int | None = None) -> None:
        self.limit = memory_limit() if limit is None else limit
        self.used = 0
        self.current: Layer | None = None

    @contextlib.contextmanager
    def layer(self, layer: Layer) -> Iterator[None]:
        self.current = layer
        token = _BUDGET.set(self)
        try:
            stored = [tuple(b.data.shape) for b in layer.blobs]
            for shape in stored:
                self.reserve(shape)
            yield
        finally:
            _BUDGET.reset(token)
            self.current = None

    def reserve(self, shape: Sequence[int]) -> None:
        nbytes = math.prod(int(d) for d in shape) * FLOAT32_BYTES
        if self.limit is not None and self.used + nbytes > self.limit:
            what = f"a weight blob of shape {format_shape(shape)} needs {format_bytes(nbytes)}"
            if self.used:
                what += (f"; with the {format_bytes(self.used)} of weights before it the net "
                         f"needs {format_bytes(self.used + nbytes)}")
            what += f", over {_limit_text(self.limit)}"
            fix = _fix("check num_output, the kernel and the input shape")
            layer = self.current
            if layer is None:
                raise ConfigError(f"{what}. Fix: {fix}.")
            raise ConfigError(layer_message(layer.name, layer.type, what, fix))
        self.used += nbytes


def reserve_weights(shape: Sequence[int]) -> None:
    """Called by the weight fillers before they allocate a float32 blob of `shape`: refused
    (ConfigError naming the layer being built) when it would exceed the memory limit."""
    budget = _BUDGET.get()
    if budget is None:
        budget = WeightBudget()
    budget.reserve(shape)


@contextlib.contextmanager
def shape_only() -> Iterator[None]:
    """Within this block weight fillers return meta tensors (shape, no storage): converting a
    layer to learn its shapes and parameter count allocates nothing (used by inspect)."""
    token = _SHAPE_ONLY.set(True)
    try:
        yield
    finally:
        _SHAPE_ONLY.reset(token)


def shape_only_active() -> bool:
    """True inside `shape_only()`: fillers return meta tensors instead of allocating."""
    return _SHAPE_ONLY.get()


def check_blob_memory(tops: Iterable[tuple[Layer, str, Sequence[int]]], *, copies: int,
                      command: str, why: str = "", held: int = 0) -> None:
    """Refuse when `copies` x every top (float32), plus `held` bytes already allocated (the
    weights), exceeds the memory limit; the message names the layer with the largest top."""
    limit = memory_limit()
    if limit is None:
        return
    entries = list(tops)
    if not entries:
        return
    sizes = [math.prod(int(d) for d in shape) * FLOAT32_BYTES for _, _, shape in entries]
    total = held + copies * sum(sizes)
    if total <= limit:
        return
    i = max(range(len(sizes)), key=sizes.__getitem__)
    layer, blob, shape = entries[i]
    what = (f"its top '{blob}' of shape {format_shape(shape)} needs {format_bytes(sizes[i])}; "
            f"{command} keeps every blob {copies} times{f' ({why})' if why else ''}, "
            f"{format_bytes(total)} in all with the "
            f"weights, over {_limit_text(limit)}")
    raise ConfigError(layer_message(layer.name, layer.type, what,
                                    _fix("give a smaller --input-shape or input batch")))


# ------------------------------------------------------------------------- text prototxt


def _positive_setting(env: str, default: float) -> float:
    text = os.environ.get(env, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ConfigError(f"{env}={text!r} is not a positive number. Fix: give e.g. "
                          f"{env}={default:g}")
    return value


def max_prototxt_bytes() -> int:
    """`MODELPORT_MAX_PROTOTXT_MB` in bytes (default 8 MB)."""
    return int(_positive_setting(PROTOTXT_MB_ENV, DEFAULT_PROTOTXT_MB) * 1e6)


def max_layers() -> int:
    """`MODELPORT_MAX_LAYERS` (default 50,000)."""
    return int(_positive_setting(LAYERS_ENV, DEFAULT_MAX_LAYERS))


def _size_error(source: str, size: int, cap: int) -> FormatError:
    return FormatError(
        f"{source}: {size / 1e6:.2f} MB of text is over the {cap / 1e6:g} MB limit for a "
        f"prototxt (Caffe's largest nets are under 1 MB). Fix: "
        f"check this is the right file, or raise {PROTOTXT_MB_ENV} "
        f"(e.g. {PROTOTXT_MB_ENV}={max(2 * size / 1e6, 1):.0f})")


def check_text_file_size(path: str) -> None:
    """FormatError when the text file at `path` is over `max_prototxt_bytes()`."""
    cap = max_prototxt_bytes()
    try:
        size = os.path.getsize(path)
    except OSError:
        return  # the reader reports missing / unreadable files
    if size > cap:
        raise _size_error(path, size, cap)


# Strings and comments are skipped; `layer {` / `layers {` openers are counted. The string
# patterns are unrolled ("[^"\\\n]*(?:\\.[^"\\\n]*)*"): the form (?:[^"\\\n]|\\.)* keeps ~140
# bytes of backtracking state per character in Python's re (28 MB for a 200 KB literal).
_TEXT_TOKENS = re.compile(r""""[^"\\\n]*(?:\\.[^"\\\n]*)*"?"""
                          r"""|'[^'\\\n]*(?:\\.[^'\\\n]*)*'?|\#[^\n]*"""
                          r"""|(\blayers?\s*:?\s*)?([{<])|[}>]""")


_STRINGS_COMMENTS = re.compile(r""""[^"\\\n]*(?:\\.[^"\\\n]*)*"?"""
                               r"""|'[^'\\\n]*(?:\\.[^'\\\n]*)*'?|\#[^\n]*""")
_LAYER_OPENERS = re.compile(r"\blayers?\s*:?\s*[{<]")
_NOT_BRACES = re.compile(r"[^{}<>]+")
_STEP = {"{": 1, "<": 1, "}": -1, ">": -1}


def check_text(text: str, source: str) -> None:
    """Before protobuf parses `text`: its size, its nesting depth (protobuf recurses once per
    level, so 400 levels are a RecursionError) and its number of layer blocks, against the
    stated limits; FormatError naming the file (and the line for nesting).

    One pass at regex speed (strings and comments blanked, `layer {` openers counted, the depth
    as the running sum over the braces); only a file over a limit is scanned again token by
    token for the line to report."""
    cap = max_prototxt_bytes()
    if len(text) > cap:
        raise _size_error(source, len(text), cap)
    layer_cap = max_layers()
    bare = _STRINGS_COMMENTS.sub(" ", text)
    braces = _NOT_BRACES.sub("", bare)
    deepest = max(itertools.accumulate(map(_STEP.__getitem__, braces)), default=0)
    if deepest <= MAX_NESTING and len(_LAYER_OPENERS.findall(bare)) <= layer_cap:
        return
    _check_text_slowly(text, source, layer_cap)


def _check_text_slowly(text: str, source: str, layer_cap: int) -> None:
    depth = 0
    layers = 0
    for m in _TEXT_TOKENS.finditer(text):
        opener = m.group(2)
        if opener is None:
            if m.group(0) in "}>":
                depth = max(depth - 1, 0)
            continue
        depth += 1
        if m.group(1) is not None:
            layers += 1
            if layers > layer_cap:
                raise FormatError(
                    f"{source}: defines more than {layer_cap:,} layers, the limit. Fix: check "
                    f"this is the right file, or raise {LAYERS_ENV} "
                    f"(e.g. {LAYERS_ENV}={2 * layer_cap})")
        if depth > MAX_NESTING:
            line = text.count("\n", 0, m.start()) + 1
            col = m.start() - (text.rfind("\n", 0, m.start()) + 1) + 1
            raise FormatError(f"{source}:{line}:{col}: messages are nested more than "
                              f"{MAX_NESTING} levels deep (Caffe's nest fewer than 10). Fix: "
                              "check the braces")
