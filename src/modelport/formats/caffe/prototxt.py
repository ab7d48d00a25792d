"""Parse Caffe's text formats (deploy/train_val .prototxt, solver.prototxt) with protobuf.

Syntax errors are reported as `file:line:column: message`. Fields our schema does not know
(a fork's `interp_param`, say) are first tolerated so the net can be checked for unsupported
layer types, which gives a more useful error; see `ParsedText.unknown_field_error`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from google.protobuf import message as pb_message
from google.protobuf import text_format

from modelport.errors import FormatError
from modelport.formats.caffe import caffe_pb2
from modelport.formats.caffe.files import read_text

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
    """Parse `text` into `message`; raise FormatError with line and column on a syntax error."""
    try:
        text_format.Parse(text, message)
        return ParsedText(message)
    except text_format.ParseError as exc:
        strict_error = _describe(exc, source)
        if "has no field named" not in str(exc):
            raise FormatError(strict_error) from None
    message.Clear()
    try:
        text_format.Parse(text, message, allow_unknown_field=True)
    except text_format.ParseError as exc:
        raise FormatError(_describe(exc, source)) from None
    return ParsedText(message, unknown_field_error=strict_error)


def read_net_text(path: str) -> ParsedText:
    """Read a .prototxt net definition as a NetParameter (not yet upgraded)."""
    text = read_text(path, "net definition")
    return parse_text(text, caffe_pb2.NetParameter(), path)


def read_solver_text(path: str) -> caffe_pb2.SolverParameter:
    """Read a solver.prototxt as a SolverParameter; unknown fields are an error."""
    text = read_text(path, "solver definition")
    parsed = parse_text(text, caffe_pb2.SolverParameter(), path)
    if parsed.unknown_field_error:
        raise FormatError(parsed.unknown_field_error)
    msg = parsed.message
    assert isinstance(msg, caffe_pb2.SolverParameter)
    return msg
