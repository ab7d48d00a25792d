"""Verify references are a registry: names and aliases resolve to the registered factories, and
a reference registered at run time resolves with no other change."""

from __future__ import annotations

import pytest

from modelport.errors import ConfigError
from modelport.verify import reference_base
from modelport.verify.reference_base import Reference, ReferenceOutput, register_reference
from modelport.verify.references import reference_names, resolve_reference


def test_built_in_references_are_registered() -> None:
    assert set(reference_names()) >= {"opencv", "pycaffe", "onnxruntime"}
    with pytest.raises(ConfigError, match="needs the prototxt and caffemodel"):
        resolve_reference("cv2")
    with pytest.raises(ConfigError, match="unknown reference 'nope'.*Fix:"):
        resolve_reference("nope")


def test_a_registered_reference_resolves(monkeypatch) -> None:
    class Fake(Reference):
        name = "fake"

        def __init__(self, spec: str) -> None:
            self.spec = spec

        def run(self, net, inputs) -> ReferenceOutput:
            return ReferenceOutput()

    monkeypatch.setattr(reference_base, "_KINDS", dict(reference_base._KINDS))
    register_reference("fake", "fk", suffix=".fakeref")(lambda spec, p, c: Fake(spec))
    assert isinstance(resolve_reference("FK"), Fake)
    found = resolve_reference("dir/x.fakeref")
    assert isinstance(found, Fake) and found.spec == "dir/x.fakeref"
