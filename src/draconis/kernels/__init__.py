"""Pure NumPy/numba kernels: functions of one block, no dask, no xarray, no I/O.

Primitives apply these with ``map_blocks``/``blockwise``; they release the GIL
and are safe to call from many threads at once.
"""
from __future__ import annotations

from .combine import (
    DQ_HIERARCHY,
    OPERATIONS,
    REJECT_METHODS,
    CombineParameterError,
    CombineSpec,
    combine_block,
    median_along_frames,
)

__all__ = [
    "DQ_HIERARCHY",
    "OPERATIONS",
    "REJECT_METHODS",
    "CombineParameterError",
    "CombineSpec",
    "combine_block",
    "median_along_frames",
]
