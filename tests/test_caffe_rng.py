"""Caffe's random streams (modelport.caffe_rng) and fillers drawn from them, against real Caffe.

References: ../shared/golden/rng/streams (raw `caffe_rng_rand()` draws and a scripted sequence
of `caffe_rng_{uniform,gaussian,bernoulli}<float|double>` calls read from libcaffe.so through
ctypes) and ../shared/golden/rng/fillers (every blob of two nets built by pycaffe right after
`set_random_seed`). Everything is compared bit for bit.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from google.protobuf import text_format

from modelport.caffe_rng import CaffeRNG
from modelport.errors import ConfigError, ModelportError
from modelport.fillers import fill
from modelport.formats.caffe import caffe_pb2

GOLDEN = Path(__file__).resolve().parents[2] / "shared" / "golden" / "rng"
STREAMS = GOLDEN / "streams"
FILLERS = GOLDEN / "fillers"

pytestmark = pytest.mark.skipif(not GOLDEN.is_dir(), reason="golden/rng not available")


def _seeds() -> list[dict[str, Any]]:
    if not STREAMS.is_dir():
        return []
    return list(json.loads((STREAMS / "streams.json").read_text())["seeds"])


def _bits(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a).tobytes()


def _run_op(rng: CaffeRNG, op: dict[str, Any]) -> np.ndarray:
    kind, n, dtype = op["op"], op["n"], op.get("dtype", "float32")
    if kind == "rand":
        return rng.raw(n)
    if kind == "uniform":
        return np.asarray(rng.uniform(op["a"], op["b"], n, dtype))
    if kind == "gaussian":
        return np.asarray(rng.gaussian(op["mu"], op["sigma"], n, dtype))
    assert kind == "bernoulli"
    return np.asarray(rng.bernoulli(op["p"], n, dtype))


def _replay_ops(seed: int, ops: list[dict[str, Any]], rng: CaffeRNG,
                skip_before: int | None = None) -> str | None:
    """The first op whose values or draw count differ from Caffe's, else None. With
    `skip_before=k`, one raw draw is dropped before op k and only values are compared."""
    recorded = np.load(STREAMS / f"ops_{seed}.npz")
    for k, op in enumerate(ops):
        if k == skip_before:
            rng.discard(1)
        start = rng.consumed
        if skip_before is None and start != op["start"]:
            return f"{op['key']}: starts at draw {start}, Caffe {op['start']}"
        got = _run_op(rng, op)
        ref = recorded[op["key"]]
        if got.dtype != ref.dtype or _bits(got) != _bits(ref):
            return f"{op['key']}: values differ"
        if skip_before is None and rng.consumed - start != op["consumed"]:
            return f"{op['key']}: took {rng.consumed - start} draws, Caffe {op['consumed']}"
    return None


@pytest.mark.parametrize("seed", [0, 1, 1701, 4294967295])
def test_raw_stream_equals_caffe_rng_rand(seed: int) -> None:
    ref = np.load(STREAMS / f"raw_{seed}.npy")
    rng = CaffeRNG(seed)
    got = np.concatenate([[rng.rand()], rng.raw(4321), rng.raw(ref.size - 4322)])
    assert got.dtype == np.uint32 or got.dtype == np.int64
    assert np.array_equal(got.astype(np.uint32), ref)
    assert rng.consumed == ref.size


@pytest.mark.parametrize("case", _seeds(), ids=lambda c: f"seed{c['seed']}")
def test_distributions_replay_caffe_calls_bit_for_bit(case: dict[str, Any]) -> None:
    # uniform/gaussian/bernoulli in float and double, min == max redraws, p = 0 (no draw),
    # with raw probes between the calls: values and the number of draws each call took.
    assert _replay_ops(case["seed"], case["ops"], CaffeRNG(case["seed"])) is None


def test_replay_fails_for_a_wrong_seed_or_one_skipped_draw() -> None:
    case = _seeds()[2]
    seed = case["seed"]
    assert _replay_ops(seed, case["ops"], CaffeRNG(seed + 1)) == "op00_rand: values differ"
    for k in (1, 3, 11):  # uniform<float>, gaussian<float>, bernoulli<double>
        failure = _replay_ops(seed, case["ops"], CaffeRNG(seed), skip_before=k)
        assert failure == f"{case['ops'][k]['key']}: values differ"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_vectorised_gaussian_equals_scalar_boost_code(dtype: type) -> None:
    # The block path classifies draws at once; it must consume and return exactly what the
    # scalar port of Boost's loop does, including the tail and the full exp checks.
    n = 120_000 if dtype is np.float32 else 40_000
    fast = CaffeRNG(31)
    got = fast.gaussian(0.25, 3.0, n, dtype)
    slow = CaffeRNG(31)
    ft = np.dtype(dtype).type
    ref: np.ndarray = np.array([slow._unit_normal(ft) * ft(3.0) + ft(0.25) for _ in range(n)],
                               dtype=dtype)
    assert _bits(got) == _bits(ref)
    assert fast.consumed == slow.consumed
    assert np.abs(got - 0.25).max() > 3.4426 * 3.0  # the tail was exercised


def test_scalar_and_block_calls_agree() -> None:
    # One call for n values equals n calls for one value (a fresh variate_generator per call).
    a, b = CaffeRNG(5), CaffeRNG(5)
    many = a.uniform(-1.0, 2.0, 50)
    one = np.array([b.uniform(-1.0, 2.0) for _ in range(50)], dtype=np.float32)
    assert _bits(many) == _bits(one)
    assert a.bernoulli(0.3, 20, np.float64).tolist() == [b.bernoulli(0.3, None, np.float64)
                                                          for _ in range(20)]


def test_bernoulli_p_zero_takes_no_draw_and_p_one_takes_one_each() -> None:
    rng = CaffeRNG(3)
    assert rng.bernoulli(0.0, 10).sum() == 0 and rng.consumed == 0
    assert rng.bernoulli(1.0, 10).sum() == 10 and rng.consumed == 10


def test_uniform_int_is_boosts_bucket_rejection() -> None:
    # boost::uniform_int<long>(0, 2): bucket = (2^32 - 1) // 3; a draw >= 3 * bucket is redrawn.
    rng = CaffeRNG(0)
    raw = CaffeRNG(0).raw(200)
    bucket = 0xFFFFFFFF // 3
    expected: list[int] = []
    k = 0
    while len(expected) < 150:
        r = int(raw[k]) // bucket
        k += 1
        if r <= 2:
            expected.append(r)
    assert [rng.uniform_int(0, 2) for _ in range(150)] == expected
    assert rng.consumed == k


def test_shuffle_is_fisher_yates_from_the_back() -> None:
    items = list(range(10))
    rng, ref = CaffeRNG(9), CaffeRNG(9)
    rng.shuffle(items)
    expected = list(range(10))
    for i in range(9, 0, -1):
        j = ref.uniform_int(0, i)
        expected[i], expected[j] = expected[j], expected[i]
    assert items == expected and rng.consumed == ref.consumed >= 9


@pytest.mark.parametrize("call", [
    lambda r: r.uniform(1.0, 0.0, 3),
    lambda r: r.gaussian(0.0, 0.0, 3),
    lambda r: r.bernoulli(1.5, 3),
    lambda r: r.uniform(0.0, 1.0, 3, np.float16),
])
def test_bad_arguments_are_modelport_errors(call: Any) -> None:
    with pytest.raises(ModelportError, match="Fix:"):
        call(CaffeRNG(0))


# ------------------------------------------------------------------------------------ fillers
def _filler_cases() -> list[str]:
    return sorted(p.name for p in FILLERS.iterdir()) if FILLERS.is_dir() else []


def _fill_case(case: str, rng: CaffeRNG) -> list[str]:
    """Fill every blob of the golden net in Caffe's order; the blobs that differ."""
    meta = json.loads((FILLERS / case / "case.json").read_text())
    bad = []
    for blob in meta["blobs"]:
        param = text_format.Parse(blob["filler"], caffe_pb2.FillerParameter())
        got = fill(param, blob["shape"], rng=rng).numpy()
        ref = np.load(FILLERS / case / blob["file"])
        if got.shape != ref.shape or _bits(got) != _bits(ref):
            bad.append(f"{blob['layer']}[{blob['blob']}]")
    return bad


@pytest.mark.parametrize("case", _filler_cases())
def test_every_filler_blob_is_bit_equal_to_caffe(case: str) -> None:
    # gaussian (mean, sparse incl. 0 and p = 1, -0.0 where masked), uniform (min == max),
    # xavier/msra FAN_IN/FAN_OUT/AVERAGE (5-D, transpose, 1-D bias), positive_unitball,
    # bilinear K = 2..6, constant; one stream through the whole net in construction order.
    meta = json.loads((FILLERS / case / "case.json").read_text())
    rng = CaffeRNG(meta["seed"])
    assert _fill_case(case, rng) == []
    assert rng.consumed == meta["draws_consumed"]
    assert rng.raw(16).tolist() == meta["stream_after"]


def test_filler_replay_fails_with_the_seed_off_by_one() -> None:
    meta = json.loads((FILLERS / "fillers_all" / "case.json").read_text())
    bad = _fill_case("fillers_all", CaffeRNG(meta["seed"] + 1))
    assert bad and bad[0] == "conv_gauss[0]"  # the first random blob already differs


def test_bilinear_odd_kernel_uses_the_2018_centre() -> None:
    out = fill(caffe_pb2.FillerParameter(type="bilinear"), (1, 1, 5, 5)).numpy()[0, 0]
    row = np.array([1 / 3, 2 / 3, 1, 2 / 3, 1 / 3], dtype=np.float32)
    np.testing.assert_allclose(out, np.outer(row, row), rtol=0, atol=1e-7)
    assert out[2, 2] == 1 and np.array_equal(out, out.T)  # centred (the old c = 0.5 was not)


def test_five_axis_xavier_uses_the_stored_shape() -> None:
    param = caffe_pb2.FillerParameter(type="xavier")
    out = fill(param, (4, 2, 3, 3, 3), rng=CaffeRNG(2)).numpy()
    bound = np.sqrt(np.float32(3) / np.float32(2 * 27))
    assert out.shape == (4, 2, 3, 3, 3) and np.abs(out).max() <= bound
    with pytest.raises(ConfigError, match="4 axes"):
        fill(caffe_pb2.FillerParameter(type="bilinear"), (1, 1, 2, 4, 4))


@pytest.mark.parametrize("op", ["uniform", "gaussian"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_block_boundaries_do_not_change_the_stream(op: str, dtype: type,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # Values are decided a block of raw words at a time; a block ending mid-rejection or
    # mid-pair must continue exactly where Boost would.
    import modelport.caffe_rng as caffe_rng

    big = CaffeRNG(3)
    ref = getattr(big, op)(-1.0 if op == "uniform" else 0.0, 1.0, 50_000, dtype)
    monkeypatch.setattr(caffe_rng, "_BLOCK", 97)
    small = CaffeRNG(3)
    got = getattr(small, op)(-1.0 if op == "uniform" else 0.0, 1.0, 50_000, dtype)
    assert _bits(got) == _bits(ref) and small.consumed == big.consumed
