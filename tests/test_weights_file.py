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
