"""InnerProduct (axis, transpose, bias_term) and Embed."""

from __future__ import annotations
