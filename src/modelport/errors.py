"""modelport's exception hierarchy.

Every error a user can cause (bad files, unsupported layers, impossible shapes, parity failures)
is a ModelportError. The CLI prints its message on one line and exits non-zero; anything else
that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Sequence


class ModelportError(Exception):
    """Base class of every error modelport raises on purpose."""

    exit_code = 2


class FormatError(ModelportError):
    """A file could not be read: missing, truncated, not the expected format, or malformed."""


class ConfigError(ModelportError):
    """A net, solver or option is well-formed but asks for something inconsistent."""


def layer_message(name: str, type_: str, what: str, fix: str | None = None) -> str:
    """Format the standard `layer 'x' (type T): what. Fix: ...` message."""
    msg = f"layer '{name}' (type {type_}): {what.rstrip('.')}"
    if fix:
        msg += f". Fix: {fix.rstrip('.')}"
    return msg + "."


class LayerError(ModelportError):
    """An error attributable to one layer; the message names it and its type."""

    def __init__(self, name: str, type_: str, what: str, fix: str | None = None) -> None:
        self.layer_name = name
        self.layer_type = type_
        super().__init__(layer_message(name, type_, what, fix))


class ShapeError(LayerError):
    """A layer cannot be applied to the shapes it receives, or its weights have the wrong shape."""


class WeightError(LayerError):
    """A layer's weight blobs are missing, extra, or disagree with the net definition."""


class UnsupportedLayerError(ModelportError):
    """One or more layers have no converter; lists all of them at once."""

    def __init__(self, problems: Sequence[tuple[str, str, str]], source: str = "the net") -> None:
        self.problems = list(problems)
        listed = "; ".join(f"layer '{n}' (type {t}): {why}" for n, t, why in self.problems)
        count = len(self.problems)
        super().__init__(
            f"{count} layer{'s' if count != 1 else ''} in {source} cannot be converted: {listed}. "
            "Fix: register a converter with @modelport.register_layer(\"<Type>\") "
            "(README, 'Adding a layer'), or remove these layers from the prototxt."
        )


class ParityError(ModelportError):
    """Outputs differ from a reference by more than the tolerance."""

    exit_code = 1
