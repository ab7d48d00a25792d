"""Export targets are a registry: a target registered at run time gets its CLI flag and is
exported by `modelport export` with no other change."""

from __future__ import annotations

import argparse

from modelport.commands.export import add_parser, export_all
from modelport.export import targets
from modelport.export.targets import ExportTarget, export_targets, register_target


def test_built_in_targets_in_order() -> None:
    assert [t.flag for t in export_targets()] == ["--onnx", "--torchscript", "--exported-program"]


def test_a_registered_target_gets_a_flag_and_is_exported(tmp_path, monkeypatch) -> None:
    class Report:
        path = ""

    seen = []

    def build(module, args, inputs, outputs):
        seen.append((module, inputs, outputs))
        return b"fake-bytes", Report()

    monkeypatch.setattr(targets, "_TARGETS", dict(targets._TARGETS))
    register_target(ExportTarget("fake", "--fake-format", "FILE.fake", "write a fake", build))
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    out = tmp_path / "m.fake"
    args = parser.parse_args(["export", "deploy.prototxt", "--fake-format", str(out)])
    reports = export_all("the-module", args, None, None)
    assert out.read_bytes() == b"fake-bytes" and reports[0].path == str(out)
    assert seen == [("the-module", None, None)]
