"""The per-band kernel of stackFrames: one row band of N aligned frames to the stack's SCI, VAR and DQ.

A stack task reads the band of every input (``(N, y, x)`` cubes of SCI and,
when present, VAR and DQ) and returns the three output planes packed in one
float32 block ``(3, y, x)`` (DQ values are exact in float32), so one task
produces the whole band and the planes are split off afterwards without
recomputation.  The combination itself is :func:`draconis.kernels.combine.combine_block`.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .combine import combine_block

__all__ = ["combine_tile", "combine_blocks"]


def combine_tile(sci: np.ndarray, var: np.ndarray | None, dq: np.ndarray | None,
                 options: Mapping[str, Any]) -> np.ndarray:
    """Combine one band of N frames.

    Parameters
    ----------
    sci : ndarray, shape (N, y, x)
    var, dq : ndarray, shape (N, y, x), or None
        Variance and DQ of the inputs, when they have them.
    options : mapping
        Keyword arguments of :func:`~draconis.kernels.combine.combine_block`
        (operation, rejection, ``scale``/``zero`` per frame...).

    Returns
    -------
    ndarray of float32, shape (3, y, x)
        Combined SCI, its VAR (estimated from the scatter when the inputs
        have none) and the output DQ.
    """
    s, v, d, _ = combine_block(sci, var, dq, **options)
    out = np.empty((3,) + s.shape, np.float32)
    out[0], out[1], out[2] = s, v, d
    return out


def combine_blocks(*blocks: np.ndarray, has_var: bool, has_dq: bool, options: Mapping[str, Any]) -> np.ndarray:
    """:func:`combine_tile` on blocks given in order SCI[, VAR][, DQ] (a ``blockwise`` function)."""
    sci = blocks[0]
    var = blocks[1] if has_var else None
    dq = blocks[1 + has_var] if has_dq else None
    return combine_tile(sci, var, dq, options)
