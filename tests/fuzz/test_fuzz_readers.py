"""Bounded fuzzing of every Caffe reader in the normal suite (fixed seeds: deterministic).

For any input bytes a reader returns or raises a ModelportError; nothing else escapes, and its
peak Python heap stays within MEMORY_RATIO x the input size + MEMORY_SLACK. Two drivers:
fixed-seed structure-aware mutations of the golden files (fuzz_support), and hypothesis
(derandomized, no example database) generating raw bytes, protobuf field trees and prototxt
token streams. `make fuzz` (tools/fuzz.py) runs the same property over >= 100k inputs.
Time per input is not asserted here (no timing asserts under load); tools/fuzz.py checks it.
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Iterator

import pytest
from fuzz_support import (
    FIXED32,
    FIXED64,
    HOSTILE_STRINGS,
    HUGE_NUMBERS,
    INTERESTING_INTS,
    KNOWN_NUMBERS,
    LEN,
    TARGETS,
    VARINT,
    Outcome,
    PbField,
    field_names,
    known_open,
    measuring,
    run_one,
    serialize_pb,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# Inputs per reader for the seeded mutation loop; about 2-6 s per reader on a loaded machine.
MUTATIONS_PER_READER = 250
SEEDS = {name: 1000 + i for i, name in enumerate(sorted(TARGETS))}

HYPOTHESIS = settings(max_examples=60, derandomize=True, database=None, deadline=None,
                      suppress_health_check=list(HealthCheck), print_blob=True)


@pytest.fixture(scope="module")
def workdir() -> Iterator[str]:
    # /dev/shm when there is one: each input is written to a file (the readers take paths and
    # memory-map them), and a tmpfs write is ~100x cheaper than one on a loaded disk.
    base = "/dev/shm" if _writable("/dev/shm") else None
    with tempfile.TemporaryDirectory(prefix="modelport-fuzz-", dir=base) as d:
        yield d


def _writable(path: str) -> bool:
    import os

    return os.path.isdir(path) and os.access(path, os.W_OK)


def _check(target: str, data: bytes, outcome: Outcome) -> str | None:
    """None when the property holds; else what went wrong (known-open crashes pass)."""
    if outcome.kind == "crash" and known_open(target, outcome) is None:
        return f"{target}: {outcome.detail} on input {data[:200]!r}"
    if not outcome.memory_ok:
        return (f"{target}: peak heap {outcome.peak} bytes for a {outcome.size}-byte input "
                f"{data[:200]!r}")
    return None


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_mutated_golden_files(target: str, workdir: str) -> None:
    t = TARGETS[target]
    rng = random.Random(SEEDS[target])
    kinds: dict[str, int] = {}
    problems: list[str] = []
    with measuring():
        for _ in range(MUTATIONS_PER_READER):
            data = t.generate(rng)
            outcome = run_one(t, data, workdir)
            kinds[outcome.kind] = kinds.get(outcome.kind, 0) + 1
            problem = _check(target, data, outcome)
            if problem:
                problems.append(problem)
    assert not problems, f"{len(problems)} bad inputs, first: {problems[0]}"
    # The mutations must reach both outcomes, or the loop is testing nothing.
    assert kinds.get("error", 0) > 0 and kinds.get("ok", 0) + kinds.get("error", 0) > 0.8 * sum(
        kinds.values()), kinds


def _run(target: str, data: bytes, workdir: str) -> None:
    with measuring():
        outcome = run_one(TARGETS[target], data, workdir)
    problem = _check(target, data, outcome)
    assert problem is None, problem


# --- hypothesis: raw bytes ---------------------------------------------------------------

@pytest.mark.parametrize("target", ["caffemodel_v2", "binaryproto", "solverstate", "prototxt"])
@HYPOTHESIS
@given(data=st.binary(max_size=512))
def test_any_bytes(target: str, data: bytes, workdir: str) -> None:
    _run(target, data, workdir)


# --- hypothesis: protobuf field trees -----------------------------------------------------

_varints = st.one_of(st.sampled_from(INTERESTING_INTS).map(lambda v: v & ((1 << 64) - 1)),
                     st.integers(0, (1 << 64) - 1))
_leaf = st.one_of(
    st.builds(PbField, st.sampled_from(KNOWN_NUMBERS), st.just(VARINT), _varints),
    st.builds(PbField, st.sampled_from(KNOWN_NUMBERS), st.just(LEN), st.binary(max_size=64)),
    st.builds(PbField, st.sampled_from(KNOWN_NUMBERS), st.just(FIXED32),
              st.binary(min_size=4, max_size=4)),
    st.builds(PbField, st.sampled_from(KNOWN_NUMBERS), st.just(FIXED64),
              st.binary(min_size=8, max_size=8)),
)
_fields = st.recursive(
    st.lists(_leaf, max_size=6),
    lambda children: st.lists(st.one_of(
        _leaf, st.builds(PbField, st.sampled_from(KNOWN_NUMBERS), st.just(LEN), children)),
        max_size=6),
    max_leaves=40)


@pytest.mark.parametrize("target", ["caffemodel_v2", "caffemodel_v1", "binaryproto",
                                    "solverstate"])
@HYPOTHESIS
@given(fields=_fields)
def test_protobuf_field_trees(target: str, fields: list[PbField], workdir: str) -> None:
    _run(target, serialize_pb(fields), workdir)


# --- hypothesis: prototxt token streams ---------------------------------------------------

_token = st.one_of(
    st.sampled_from(field_names()),
    st.sampled_from(("{", "}", ":", " ", "\n", "[", "]", ",", "#", '"', "layer", "name",
                     "type", "top", "bottom", "input_param", "shape", "dim")),
    st.sampled_from(HUGE_NUMBERS),
    st.sampled_from(HOSTILE_STRINGS),
    st.text(max_size=8),
)


@pytest.mark.parametrize("target", ["prototxt", "solver"])
@HYPOTHESIS
@given(toks=st.lists(_token, max_size=60))
def test_prototxt_token_streams(target: str, toks: list[str], workdir: str) -> None:
    _run(target, " ".join(toks).encode("utf-8", "surrogatepass"), workdir)


@pytest.mark.parametrize("target", sorted(TARGETS))
@HYPOTHESIS
@given(seed=st.integers(0, 2**32 - 1))
def test_hypothesis_driven_mutations(target: str, seed: int, workdir: str) -> None:
    t = TARGETS[target]
    _run(target, t.generate(random.Random(seed)), workdir)
