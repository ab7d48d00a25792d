"""The input blobs a Caffe net declares, and their shapes (Input, MemoryData, DummyData).

The rule lives with the IR (`modelport.ir.declared_input_shapes`, what `Net.input_shapes()`
returns); this name is kept for callers of the reader package.
"""

from __future__ import annotations

from modelport.ir import declared_input_shapes

__all__ = ["declared_input_shapes"]
