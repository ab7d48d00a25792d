"""modelport.weights_file: deterministic safetensors bytes, shared tensors stored once."""

from __future__ import annotations

import json
import pathlib

import pytest
import torch
from safetensors.torch import load_file

from modelport.errors import FormatError
from modelport.weights_file import read_safetensors, save, write_safetensors


def test_exact_bytes_sorted_header_and_aligned_data(tmp_path: pathlib.Path) -> None:
    tensors = {"b": torch.tensor([1.0, 2.0]), "a": torch.tensor([3], dtype=torch.int64),
               "c": torch.tensor([1], dtype=torch.uint8)}
    save(tensors, tmp_path / "x.safetensors", {"z": "1", "format": "pt"})
    data = (tmp_path / "x.safetensors").read_bytes()
    header = (b'{"__metadata__":{"format":"pt","z":"1"},'
              b'"a":{"dtype":"I64","shape":[1],"data_offsets":[0,8]},'
              b'"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]},'
              b'"c":{"dtype":"U8","shape":[1],"data_offsets":[16,17]}}')
    header += b" " * (-len(header) % 8)
    body = (torch.tensor([3], dtype=torch.int64).numpy().tobytes()
            + torch.tensor([1.0, 2.0]).numpy().tobytes() + b"\x01")
    assert data == len(header).to_bytes(8, "little") + header + body
    loaded = load_file(tmp_path / "x.safetensors")  # the reference library reads it
    assert all(torch.equal(loaded[k], v) for k, v in tensors.items())
    save(dict(reversed(list(tensors.items()))), tmp_path / "y.safetensors",
         {"format": "pt", "z": "1"})
    assert (tmp_path / "y.safetensors").read_bytes() == data  # order-independent


def test_shared_tensors_are_stored_once_and_read_back(tmp_path: pathlib.Path) -> None:
    w = torch.randn(4, 3)
    tensors = {"ip1.weight": w, "ip1_p.weight": w, "ip1.bias": torch.zeros(4),
               "view": w[1:]}  # a different view of the same storage is its own tensor
    path = tmp_path / "s.safetensors"
    write_safetensors(path, tensors, {"format": "pt"}, dedupe=True)
    raw = load_file(path)
    assert sorted(raw) == ["ip1.bias", "ip1.weight", "view"]
    back, meta = read_safetensors(path)
    assert json.loads(meta["modelport.aliases"]) == {"ip1_p.weight": "ip1.weight"}
    assert sorted(back) == sorted(tensors)
    assert all(torch.equal(back[k], v) for k, v in tensors.items())
    assert back["ip1_p.weight"] is back["ip1.weight"]
    # without dedupe (model.py's reader knows no aliases) every name holds its own copy
    write_safetensors(path, tensors)
    assert sorted(load_file(path)) == sorted(tensors)


def test_unreadable_file_is_a_format_error(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(b"\xff" * 8 + b"{}")
    with pytest.raises(FormatError, match="not a readable safetensors file"):
        read_safetensors(path)


def test_a_header_nested_too_deeply_is_a_format_error(tmp_path: pathlib.Path) -> None:
    header = b"[" * 100_000 + b"]" * 100_000  # json's decoder recurses once per level
    path = tmp_path / "deep.safetensors"
    path.write_bytes(len(header).to_bytes(8, "little") + header)
    with pytest.raises(FormatError, match="not a readable safetensors file"):
        read_safetensors(path)


def _mixed_tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"w": torch.randn(37, 11, generator=g), "t": torch.randn(9, 13, generator=g).t(),
            "e": torch.zeros(0), "i": torch.arange(100, dtype=torch.int64),
            "h": torch.randn(53, generator=g).half()}


def test_chunked_write_hashed_on_a_worker_is_byte_identical(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import hashlib

    from modelport.formats.caffe import mapped

    tensors = _mixed_tensors()
    one = save(tensors, tmp_path / "one.safetensors", {"format": "pt"})  # one chunk, inline
    monkeypatch.setattr(mapped, "CHUNK_BYTES", 64)  # many chunks: the threaded hasher
    many = save(tensors, tmp_path / "many.safetensors", {"format": "pt"})
    data = (tmp_path / "many.safetensors").read_bytes()
    assert data == (tmp_path / "one.safetensors").read_bytes()
    assert one == many == hashlib.sha256(data).hexdigest()
    loaded = load_file(tmp_path / "many.safetensors")
    assert all(torch.equal(loaded[k], v) for k, v in tensors.items())


def test_each_written_chunk_is_released_only_once_hashed(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A chunk's pages are dropped (`release_address_range`: for a tensor viewing a mapped
    caffemodel, as `modelport convert` writes) after the worker hashed it, as it reads the
    same pages; every byte of the tensor is released exactly once."""
    import hashlib

    from modelport import digest
    from modelport.formats.caffe import mapped

    tensor = torch.arange(1000, dtype=torch.float32)
    futures: list = []
    releases: list[tuple[int, int, bool]] = []  # (offset, bytes, that chunk hashed by then)
    real_feed = digest.StreamHash.feed

    def feed(self, buffer):  # type: ignore[no-untyped-def]
        futures.append(real_feed(self, buffer))
        return futures[-1]

    monkeypatch.setattr(digest.StreamHash, "feed", feed)
    monkeypatch.setattr(mapped, "CHUNK_BYTES", 512)
    monkeypatch.setattr(mapped, "release_address_range", lambda a, n: releases.append(
        (a - tensor.data_ptr(), n, futures[len(releases)].done())))
    got = save({"x": tensor}, tmp_path / "x.safetensors")
    assert got == hashlib.sha256((tmp_path / "x.safetensors").read_bytes()).hexdigest()
    assert [(a, n) for a, n, _ in releases] == [(i, min(512, 4000 - i))
                                                for i in range(0, 4000, 512)]
    assert all(done for _a, _n, done in releases)
