"""Illumination masks: which pixels of an array receive light.

Each mask is a function of the array shape only (fractions of the array),
so full-size frames and the small frames of tests share one geometry.
``ILLUMINATION_MASKS`` is the lookup the addDQ / addIllumMaskToDQ primitives
use: instrument name -> mask function; instruments without an entry are
fully illuminated.

GNIRS keyhole: a round aperture centred at (0.40, 0.50) of (rows - 1,
columns - 1) with radius 0.10 x columns, plus a slit running up the rows
from the circle centre to 0.90 x (rows - 1), half width 0.03 x columns.
This is the geometry of ``draconis.simulate.keyhole`` (a test checks they
agree pixel for pixel).

F2 imaging: the circular field of the f/16 camera, centred on the array,
radius 0.50 x the smaller dimension (corners unilluminated).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["keyhole_mask", "f2_field_mask", "illuminated", "ILLUMINATION_MASKS", "ALIGN_TO_DATA", "best_shift"]

KEYHOLE_CENTRE = (0.40, 0.50)
KEYHOLE_RADIUS = 0.10
KEYHOLE_SLIT_HALF_WIDTH = 0.03
KEYHOLE_SLIT_END = 0.90
F2_FIELD_RADIUS = 0.50


def _grid(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = shape
    return np.arange(rows, dtype=float)[:, None], np.arange(cols, dtype=float)[None, :]


def keyhole_mask(shape: tuple[int, int]) -> np.ndarray:
    """True where the GNIRS acquisition keyhole lights the array.

    Parameters
    ----------
    shape : tuple of int
        (rows, columns) of the array, e.g. (1022, 1024).
    """
    rows, cols = shape
    yy, xx = _grid(shape)
    r0, c0 = KEYHOLE_CENTRE[0] * (rows - 1), KEYHOLE_CENTRE[1] * (cols - 1)
    circle = (yy - r0) ** 2 + (xx - c0) ** 2 <= (KEYHOLE_RADIUS * cols) ** 2
    slit = (np.abs(xx - c0) <= KEYHOLE_SLIT_HALF_WIDTH * cols) & (yy >= r0) & (yy <= KEYHOLE_SLIT_END * (rows - 1))
    return circle | slit


def f2_field_mask(shape: tuple[int, int]) -> np.ndarray:
    """True inside F2's circular imaging field (centred on the array)."""
    rows, cols = shape
    yy, xx = _grid(shape)
    radius = F2_FIELD_RADIUS * min(rows, cols)
    return (yy - (rows - 1) / 2) ** 2 + (xx - (cols - 1) / 2) ** 2 <= radius ** 2


#: instrument name -> function(shape) -> bool array (True = illuminated).
ILLUMINATION_MASKS: dict[str, Callable[[tuple[int, int]], np.ndarray]] = {
    "GNIRS": keyhole_mask,
    "F2": f2_field_mask,
}


#: Instruments whose mask addIllumMaskToDQ slides onto the lit area of the data
#: (the GNIRS keyhole moves by a few pixels between configurations).
ALIGN_TO_DATA: frozenset[str] = frozenset({"GNIRS"})


def best_shift(mask: np.ndarray, row_profile: np.ndarray, col_profile: np.ndarray,
               max_shift: int = 100) -> tuple[int, int]:
    """(xshift, yshift) that best lays ``mask`` on data with these profiles.

    Parameters
    ----------
    mask : ndarray of bool
        Illumination mask (True = lit).
    row_profile, col_profile : ndarray
        Sum of the data along x (one value per row) and along y (per column).
    max_shift : int
        Largest shift tried, in pixels.

    Returns
    -------
    tuple of int
        The shifts maximising the correlation of the mask's profiles with the
        data's (0 when the data have no contrast).
    """
    return (_profile_shift(mask.sum(axis=0), col_profile, max_shift),
            _profile_shift(mask.sum(axis=1), row_profile, max_shift))


def _profile_shift(model: np.ndarray, data: np.ndarray, max_shift: int) -> int:
    # The model is not mean-subtracted: zero-padded shifts then keep its norm,
    # so the correlation peaks exactly at the true shift.
    model = np.asarray(model, float)
    data = np.nan_to_num(np.asarray(data, float))
    data = data - data.mean()
    if not np.any(model) or not np.any(data):
        return 0
    n = len(model)
    best, best_val = 0, -np.inf
    for s in range(-min(max_shift, n - 1), min(max_shift, n - 1) + 1):
        shifted = np.zeros(n)
        if s >= 0:
            shifted[s:] = model[:n - s]
        else:
            shifted[:s] = model[-s:]
        val = float(np.dot(shifted, data))
        if val > best_val:
            best, best_val = s, val
    return best


def illuminated(instrument: str, shape: tuple[int, int], *, xshift: int = 0, yshift: int = 0) -> np.ndarray | None:
    """The illumination map of ``instrument`` for an array of ``shape``, shifted.

    Parameters
    ----------
    instrument : str
        Instrument name (the ``instrument`` descriptor).
    shape : tuple of int
        Array shape (rows, columns).
    xshift, yshift : int
        Shift of the mask in pixels (positive: towards larger x / y); pixels
        shifted in from outside count as unilluminated.

    Returns
    -------
    ndarray of bool or None
        None when the instrument has no illumination mask.
    """
    func = ILLUMINATION_MASKS.get(str(instrument).upper())
    if func is None:
        return None
    mask = func((int(shape[0]), int(shape[1])))
    if xshift or yshift:
        shifted = np.zeros_like(mask)
        rows, cols = mask.shape
        src_y = slice(max(0, -yshift), rows - max(0, yshift))
        dst_y = slice(max(0, yshift), rows - max(0, -yshift))
        src_x = slice(max(0, -xshift), cols - max(0, xshift))
        dst_x = slice(max(0, xshift), cols - max(0, -xshift))
        shifted[dst_y, dst_x] = mask[src_y, src_x]
        mask = shifted
    return mask
