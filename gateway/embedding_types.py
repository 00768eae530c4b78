"""Embeddings as vector databases store them: float, base64 float32, int8 / uint8 per calibrated ranges, and
sign bits packed into bytes (binary / ubinary), exactly as sentence-transformers' `quantize_embeddings` makes
them, so that an index built with the library and one built through Trident agree byte for byte.

int8 / uint8 use the per-dimension `[min, max]` the builder measured once on a fixed calibration text set
(`ModelSpec.quantization_ranges`, shown in `/info`), never ranges taken from the request's own batch: the
same text gets the same row whatever it is sent with.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from gateway.responses import base64_rows

EmbeddingType = Literal["float", "int8", "uint8", "binary", "ubinary", "base64"]
EMBEDDING_TYPES: tuple[str, ...] = EmbeddingType.__args__
BY_RANGES = ("int8", "uint8")  # the types that need the calibrated ranges


def quantize_by_ranges(vectors: np.ndarray, ranges: np.ndarray, signed: bool) -> np.ndarray:
    """255 equal steps per dimension between its calibrated min and max, clipped: `quantize_embeddings`'s
    arithmetic (float32 ranges, a zero-width dimension gets step 1), so the results are the same bytes."""
    ranges = np.asarray(ranges, dtype=np.float32)
    starts = ranges[0, : vectors.shape[-1]]
    steps = (ranges[1, : vectors.shape[-1]] - starts) / 255
    steps = np.where(steps == 0, 1, steps)
    buckets = np.clip(np.floor((vectors - starts) / steps), 0, 255)
    return (buckets - 128).astype(np.int8) if signed else buckets.astype(np.uint8)


def pack_signs(vectors: np.ndarray, signed: bool) -> np.ndarray:
    """One bit per dimension (1 where the value is > 0), eight to a byte, first dimension in the high bit;
    `binary` shifts each byte by -128 into int8, `ubinary` keeps it as uint8."""
    packed = np.packbits(vectors > 0, axis=-1)
    return (packed.astype(np.int16) - 128).astype(np.int8) if signed else packed


def encode(vectors: np.ndarray, kind: str, ranges: np.ndarray | None = None) -> np.ndarray | list[str]:
    """float32 rows `[n, dim]` as `kind`: an array of rows (JSON numbers), or base64 strings of float32."""
    if kind == "float":
        return vectors
    if kind == "base64":
        return base64_rows(vectors)
    if kind in BY_RANGES:
        if ranges is None:
            raise ValueError(f"{kind} needs the model's quantization ranges")
        return quantize_by_ranges(vectors, ranges, signed=kind == "int8")
    if kind in ("binary", "ubinary"):
        return pack_signs(vectors, signed=kind == "binary")
    raise ValueError(f"unknown embedding type {kind!r}; expected one of {', '.join(EMBEDDING_TYPES)}")
