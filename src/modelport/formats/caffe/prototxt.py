"""Parse Caffe's text formats (deploy/train_val .prototxt, solver.prototxt) with protobuf.

Syntax errors are reported as `file:line:column: message`. Fields our schema does not know
(a fork's `interp_param`, say) are first tolerated so the net can be checked for unsupported
layer types, which gives a more useful error; see `ParsedText.unknown_field_error`.

Before parsing, the text is checked against the stated limits (`modelport.limits`: file size,
layer count, nesting depth), so a huge or hostile file is refused in one linear pass instead of
taking minutes in protobuf's pure-Python parser or overflowing its recursion.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from google.protobuf import message as pb_message
from google.protobuf import text_format

from modelport import limits
from modelport.errors import FormatError
from modelport.formats.caffe import caffe_pb2
from modelport.formats.caffe.files import check_file, read_text

M = TypeVar("M", bound=pb_message.Message)


@dataclass(frozen=True)
class ParsedText:
    """A parsed text message plus the strict parser's complaint about unknown fields, if any."""

    message: pb_message.Message
    unknown_field_error: str | None = None


def _describe(exc: text_format.ParseError, source: str) -> str:
    line, col = exc.GetLine(), exc.GetColumn()
    text = str(exc)
    # protobuf prefixes "line:col : "; keep only the message part.
    if line is not None and text.startswith(f"{line}:"):
        text = text.split(" : ", 1)[-1] if " : " in text else text
        return f"{source}:{line}:{col}: {text.replace('modelport.caffe.', '')}"
    return f"{source}: {text.replace('modelport.caffe.', '')}"


def parse_text(text: str, message: M, source: str) -> ParsedText:
    """Parse `text` into `message`; raise FormatError with line and column on a syntax error
    (and for text over the size, layer-count or nesting limits, before parsing)."""
    limits.check_text(text, source)
    try:
        text_format.Parse(text, message)
        return ParsedText(message)
    except text_format.ParseError as exc:
        strict_error = _describe(exc, source)
        if "has no field named" not in str(exc):
            raise FormatError(strict_error) from None
    except RecursionError:  # a backstop: check_text caps the nesting well below this
        raise FormatError(f"{source}: nested too deeply to parse. Fix: check the braces") from None
    message.Clear()
    try:
        text_format.Parse(text, message, allow_unknown_field=True)
    except text_format.ParseError as exc:
        raise FormatError(_describe(exc, source)) from None
    except RecursionError:
        raise FormatError(f"{source}: nested too deeply to parse. Fix: check the braces") from None
    return ParsedText(message, unknown_field_error=strict_error)


def _read_capped(path: str, what: str) -> str:
    """The file's text, refused before reading when it is over the prototxt size limit."""
    limits.check_text_file_size(check_file(path, what))
    return read_text(path, what)


def read_net_text(path: str) -> ParsedText:
    """Read a .prototxt net definition as a NetParameter (not yet upgraded)."""
    text = _read_capped(path, "net definition")
    return parse_text(text, caffe_pb2.NetParameter(), path)


def read_solver_text(path: str) -> caffe_pb2.SolverParameter:
    """Read a solver.prototxt as a SolverParameter; unknown fields are an error."""
    text = _read_capped(path, "solver definition")
    parsed = parse_text(text, caffe_pb2.SolverParameter(), path)
    if parsed.unknown_field_error:
        raise FormatError(parsed.unknown_field_error)
    msg = parsed.message
    assert isinstance(msg, caffe_pb2.SolverParameter)
    check_solver_paths(msg, path)
    return msg


# SolverParameter fields that name files (the nets, the snapshot prefix, initial weights).
SOLVER_PATH_FIELDS = ("net", "train_net", "test_net", "snapshot_prefix", "weights")


def check_solver_paths(param: caffe_pb2.SolverParameter, source: str = "solver") -> None:
    """FormatError for a path field holding a NUL byte: no file can have that name, and it
    would otherwise fail only when first opened (the first metrics row or snapshot)."""
    for field in SOLVER_PATH_FIELDS:
        value = getattr(param, field)
        values = [value] if isinstance(value, str) else list(value)
        if any("\0" in v for v in values):
            raise FormatError(f"{source}: {field} contains a NUL byte (\\0), which no file "
                              f"name can hold. Fix: correct {field}")
