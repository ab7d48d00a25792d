"""Startup is torch-free: `modelport --help` (and the parser of every subcommand) must not import
torch or numpy, so the CLI answers at once (issue 13). Structural checks in a fresh interpreter,
never timing asserts."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=300)


def test_help_does_not_import_torch() -> None:
    proc = _run("""
        import contextlib, io, sys
        import modelport.cli
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            try:
                modelport.cli.main(["--help"])
            except SystemExit as exc:
                assert exc.code == 0, exc.code
        assert "convert" in out.getvalue() and "inspect" in out.getvalue(), out.getvalue()
        heavy = sorted(m for m in ("torch", "numpy", "onnx", "cv2") if m in sys.modules)
        assert not heavy, heavy
        print("ok")
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("ok")


def test_import_modelport_is_torch_free_and_register_layer_still_works() -> None:
    proc = _run("""
        import sys
        import modelport
        assert "torch" not in sys.modules
        assert callable(modelport.register_layer)   # lazy: imports the layer registry now
        assert "torch" in sys.modules
        print("ok")
    """)
    assert proc.returncode == 0, proc.stderr


def test_cli_default_opset_matches_the_exporter() -> None:
    from modelport.commands.export import DEFAULT_OPSET
    from modelport.export.onnx import DEFAULT_OPSET as EXPORTER_OPSET

    assert DEFAULT_OPSET == EXPORTER_OPSET


def test_inspect_of_a_prototxt_without_weights_does_not_import_torch() -> None:
    from golden_support import CAFFE_CASES

    proto = CAFFE_CASES / "caffenet" / "net.prototxt"
    proc = _run(f"""
        import contextlib, io, sys
        import modelport.cli
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = modelport.cli.main(["inspect", {str(proto)!r}])
        assert code == 0, code
        assert "60,965,224 parameters" in out.getvalue(), out.getvalue()
        assert "torch" not in sys.modules
        print("ok")
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("ok")
