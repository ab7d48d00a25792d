"""Blob plumbing: Concat, Slice, Split, Flatten, Reshape, Crop, Tile, Silence."""

from __future__ import annotations
