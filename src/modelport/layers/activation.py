"""Element-wise activations: ReLU, PReLU, ELU, Sigmoid, TanH, AbsVal, BNLL, Power, Exp, Log,
Threshold, Clip, Swish, and Dropout (identity at test)."""

from __future__ import annotations
