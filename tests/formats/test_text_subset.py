"""The fast prototxt parser (formats/caffe/text_subset.py) gives protobuf's exact message on
every text it accepts, and hands everything else to protobuf (whose result or error then stands).
Compared against `text_format.Parse` on every prototxt in the tests and on tricky snippets."""

from __future__ import annotations

import pathlib

import pytest
from google.protobuf import text_format

from modelport.errors import FormatError
from modelport.formats.caffe import caffe_pb2
from modelport.formats.caffe.prototxt import parse_text
from modelport.formats.caffe.text_subset import parse_subset

TESTS = pathlib.Path(__file__).parents[1]
PROTOTXTS = sorted(p for p in TESTS.rglob("*.prototxt") if p.stat().st_size < 2_000_000)

NET = caffe_pb2.NetParameter
SOLVER = caffe_pb2.SolverParameter


def _protobuf(text: str, cls: type) -> object:
    """protobuf's message bytes, or the ParseError's text."""
    msg = cls()
    try:
        text_format.Parse(text, msg)
    except text_format.ParseError as exc:
        return f"error: {exc}"
    return msg.SerializeToString()


def _ours(text: str, cls: type) -> object:
    msg = cls()
    try:
        parsed = parse_text(text, msg, "x.prototxt")
    except FormatError as exc:
        return f"error: {exc}"
    if parsed.unknown_field_error:
        return f"error: {parsed.unknown_field_error}"
    return msg.SerializeToString()


@pytest.mark.parametrize("path", PROTOTXTS, ids=lambda p: str(p.relative_to(TESTS)))
def test_every_test_prototxt_parses_as_protobuf_does(path: pathlib.Path) -> None:
    text = path.read_text(errors="replace")
    cls = SOLVER if "solver" in path.name else NET
    expected = _protobuf(text, cls)
    fast = cls()
    if parse_subset(text, fast):
        assert fast.SerializeToString() == expected
    if isinstance(expected, bytes):
        assert parse_subset(text, cls()), "a valid Caffe prototxt left the fast path"


ACCEPTED = [
    'name: "a"  # comment\nlayer { name: "c" type: "Convolution" bottom: "x" top: "y" '
    "convolution_param { num_output: 4 kernel_size: 3 kernel_size: 5 pad: 0 } }",
    "layer: { name: 'single' loss_weight: 1e-4 loss_weight: .5 loss_weight: -2. loss_weight: 3 }",
    "layer { name: \"n\u00e9\" phase: TRAIN include { phase: TEST } propagate_down: true "
    "propagate_down: f propagate_down: 1 propagate_down: False }",
    "layer { name: \"a\"; type: \"b\", } , layer { name: \"c\" };",
    "input_dim: -0 input_dim: 2147483647 force_backward: t",
    "layer { pooling_param { pool: AVE round_mode: FLOOR } }",
    "",
]

FALLBACK = [
    "input_dim: 010",  # octal in protobuf
    "input_dim: 0x10",
    "input_dim: 2147483648",  # out of int32 range
    "layer { convolution_param { num_output: -1 } }",  # uint32
    "layer { convolution_param { kernel_size: 3pad: 1 } }",  # one token for protobuf
    'name: "a" "b"',  # adjacent strings concatenate
    'name: "a\\tb"',  # escapes
    'name: "a" name: "b"',  # a singular field twice
    "state { phase: TEST } state { level: 1 }",  # a singular message twice
    "layer { loss_weight: inf }",
    "layer { loss_weight: 1.0f }",
    "input_dim: [1, 2]",
    "layer < name: \"x\" >",
    "layer { name: \"x\" ",  # unclosed
    "}",
    "layer { phase: 1 }",  # an enum by number
    "layer { phase: NOPE }",
    "unknown_field: 3",
    "layer { name: 3 }",
    "force_backward: yes",
    "input_dim 3",
    "layer { name: \"x\" } }",
]


@pytest.mark.parametrize("text", ACCEPTED)
def test_subset_texts_take_the_fast_path_and_equal_protobuf(text: str) -> None:
    fast = NET()
    assert parse_subset(text, fast)
    assert fast.SerializeToString() == _protobuf(text, NET)


@pytest.mark.parametrize("text", FALLBACK)
def test_other_texts_fall_back_to_protobuf(text: str) -> None:
    assert not parse_subset(text, NET())
    expected = _protobuf(text, NET)
    got = _ours(text, NET)
    if isinstance(expected, bytes):
        assert got == expected
    else:
        assert isinstance(got, str) and got.startswith("error: x.prototxt")
