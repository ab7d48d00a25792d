"""Optional dependencies: one place that imports them and says which extra to install.

modelport's core needs only protobuf, numpy, torch, safetensors and rich. Exporting, the OpenCV
reference, data readers, plots and transfer heads need more; they are grouped into the extras of
pyproject.toml. `require("onnxscript", "export")` imports the module or raises one
`MissingDependencyError` line naming the pip package and the extra, e.g.

    ONNX export (opset >= 18) needs onnxscript, which is not installed (import failed: ...).
    Fix: pip install 'modelport[export]'
"""

from __future__ import annotations

import importlib
from types import ModuleType

from modelport.errors import ConfigError

__all__ = ["EXTRAS", "MissingDependencyError", "available", "require"]

# The extras of pyproject.toml, as `pip install 'modelport[<extra>]'` installs them.
EXTRAS = ("images", "data", "export", "report", "transfer", "tf", "keras", "tensorflow", "dev")

# Import name -> the pip distribution that provides it.
PIP_NAMES = {
    "cv2": "opencv-python-headless<5",
    "skimage": "scikit-image",
    "sklearn": "scikit-learn",
    "onnx": "onnx",
    "onnxruntime": "onnxruntime",
    "onnxscript": "onnxscript",
    "lmdb": "lmdb",
    "h5py": "h5py",
    "matplotlib": "matplotlib",
    "scipy": "scipy",
    "jsonschema": "jsonschema",
    "tensorboard": "tensorboard",
    "google_crc32c": "google-crc32c",
    "ml_dtypes": "ml_dtypes",
    "keras": "keras",
    "tensorflow": "tensorflow-cpu",
}


class MissingDependencyError(ConfigError):
    """An optional package a feature needs is not installed (the message names the extra)."""

    def __init__(self, module: str, extra: str, purpose: str | None = None,
                 reason: str | None = None) -> None:
        self.module = module
        self.extra = extra
        top = module.split(".")[0]
        package = PIP_NAMES.get(top, top)
        what = purpose or f"this feature (module {module})"
        why = f" (import failed: {_one_line(reason)})" if reason else ""
        super().__init__(f"{what} needs {package}, which is not installed{why}. "
                         f"Fix: pip install 'modelport[{extra}]'")


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= 160 else line[:157] + "..."


def require(module: str, extra: str, purpose: str | None = None) -> ModuleType:
    """`import module` (dotted names allowed), or a MissingDependencyError naming `extra`.

    `purpose` says what needs it ("the OpenCV reference", "reading LMDB"); it starts the message.
    Any failure to import counts as missing: a broken install (an ImportError raised inside the
    package, a module set to None in sys.modules) is reported the same way.
    """
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r}; pyproject.toml defines {EXTRAS}")
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(module, extra, purpose, str(exc)) from None


def available(module: str) -> bool:
    """Whether `module` imports (for features that degrade instead of failing)."""
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True
