"""The GNIRS acquisition-keyhole illumination pattern.

Through the GNIRS acquisition mirror only a keyhole-shaped patch of the
ALADDIN array is lit: a round aperture with a narrow slit-like extension
running up the rows from it.  Everything else receives no light.

The geometry is expressed as fractions of the array so the same function
serves full-size (1022 x 1024) frames and the shrunken frames of tests.
draconis' addIllumMaskToDQ uses :func:`keyhole_mask` as its GNIRS keyhole
lookup, and the simulator lights exactly these pixels.
"""
from __future__ import annotations

import numpy as np

#: Centre of the round aperture as (row, column) fractions of the array.
CIRCLE_CENTRE: tuple[float, float] = (0.40, 0.50)
#: Radius of the round aperture as a fraction of the number of columns.
CIRCLE_RADIUS: float = 0.10
#: Half width of the slit extension (fraction of the number of columns).
SLIT_HALF_WIDTH: float = 0.03
#: Row fraction where the slit extension ends (it starts at the circle centre).
SLIT_END: float = 0.90

__all__ = ["keyhole_mask", "keyhole_centre", "CIRCLE_CENTRE", "CIRCLE_RADIUS", "SLIT_HALF_WIDTH", "SLIT_END"]


def keyhole_centre(shape: tuple[int, int]) -> tuple[float, float]:
    """Centre (row, column), 0-based pixels, of the keyhole's round aperture.

    Parameters
    ----------
    shape : tuple of int
        Array shape (rows, columns).
    """
    rows, cols = shape
    return CIRCLE_CENTRE[0] * (rows - 1), CIRCLE_CENTRE[1] * (cols - 1)


def keyhole_mask(shape: tuple[int, int]) -> np.ndarray:
    """Boolean map of the illuminated GNIRS keyhole (True = lit).

    Parameters
    ----------
    shape : tuple of int
        Array shape (rows, columns), e.g. ``(1022, 1024)``.

    Returns
    -------
    numpy.ndarray
        Boolean array of ``shape``.
    """
    rows, cols = shape
    r0, c0 = keyhole_centre(shape)
    yy = np.arange(rows, dtype=float)[:, None]
    xx = np.arange(cols, dtype=float)[None, :]
    radius = CIRCLE_RADIUS * cols
    circle = (yy - r0) ** 2 + (xx - c0) ** 2 <= radius ** 2
    slit = (np.abs(xx - c0) <= SLIT_HALF_WIDTH * cols) & (yy >= r0) & (yy <= SLIT_END * (rows - 1))
    return circle | slit
