"""Nearest-good-pixel fill (numba) behind :func:`draconis.kernels.resample.clean`.

Every bad pixel takes the value of a good pixel at the exact minimal
Euclidean distance, by the separable lower-envelope method of Felzenszwalb
and Huttenlocher (as refined by Meijster et al. with integer arithmetic):

1. a pass down and up the rows gives, for every pixel, the nearest good
   pixel of its own column (its row);
2. per row, the squared distance to any pixel of column ``q`` through that
   column's nearest good pixel is the parabola ``(x - q)**2 + f(q)``; the
   lower envelope of these parabolas over the row's columns gives, for
   every ``x``, the column whose candidate is nearest overall.

Squared distances and the envelope's breakpoints are integers (the
breakpoint is a floor division), so the minimum is exact, not merely
accurate to rounding.  Ties are broken deterministically, by the order of
the passes (the upper of two equally near good pixels of a column; between
columns, whichever the envelope keeps), not necessarily as SciPy breaks
them.  The output is filled while the envelope is read, so no index arrays
of the image's size are made (SciPy's ``distance_transform_edt`` returns two
index planes, then a gather reads them): the only full-size scratch is the
column pass's int32 plane.
"""
from __future__ import annotations

import numba
import numpy as np

__all__ = ["fill_nearest"]


@numba.njit(nogil=True, cache=True)
def _column_nearest(bad, near):
    """Row of the nearest good pixel of each pixel's column into ``near`` (-1: the column has none).

    Both passes sweep whole rows, so memory is read in order and the inner
    loop runs over contiguous columns (a column-by-column walk would stride
    by a row per step).
    """
    ny, nx = bad.shape
    last = np.full(nx, -1, np.int64)
    for y in range(ny):
        for x in range(nx):
            if not bad[y, x]:
                last[x] = y
            near[y, x] = last[x]
    last[:] = -1
    for y in range(ny - 1, -1, -1):
        for x in range(nx):
            if not bad[y, x]:
                last[x] = y
            below = last[x]
            above = near[y, x]
            # the one below only when strictly nearer: ties keep the upper pixel
            if below >= 0 and (above < 0 or below - y < y - above):
                near[y, x] = below


@numba.njit(nogil=True, cache=True)
def _fill_row(sci, near, y, out, site, height, start):
    """Row ``y`` of ``out`` from the lower envelope of the columns' parabolas.

    ``site``, ``height`` and ``start`` hold the envelope: parabola ``k`` is
    centred on column ``site[k]``, has minimum ``height[k]`` (the squared
    distance to that column's nearest good pixel) and is the lowest from
    column ``start[k]`` up to ``start[k + 1] - 1``.
    """
    nx = near.shape[1]
    k = -1
    for q in range(nx):
        r = near[y, q]
        if r < 0:
            continue  # no good pixel in this column
        fq = (y - r) * (y - r)
        # A parabola centred further right, if not above the top one where that one starts,
        # stays below it to the end of the row (their difference falls linearly in x): drop the top one.
        while k >= 0:
            d = start[k] - site[k]
            e = start[k] - q
            if e * e + fq <= d * d + height[k]:
                k -= 1
            else:
                break
        if k < 0:
            k = 0
            site[0] = q
            height[0] = fq
            start[0] = 0
            continue
        v = site[k]
        # first column where the new parabola is strictly lower (ties keep the left one); the
        # numerator is positive since the new one is above the top one where that one starts
        if fq == 0 and height[k] == 0:
            w = (q + v) // 2 + 1  # two good pixels of this row (the common case): no division
        else:
            w = (fq - height[k] + q * q - v * v) // (2 * (q - v)) + 1
        if w < nx:
            k += 1
            site[k] = q
            height[k] = fq
            start[k] = w
    n = k + 1
    k = 0
    for x in range(nx):
        while k + 1 < n and start[k + 1] <= x:
            k += 1
        q = site[k]
        out[y, x] = sci[near[y, q], q]


@numba.njit(nogil=True, cache=True)
def fill_nearest(sci, bad, out):
    """``out`` = ``sci`` with each ``bad`` pixel replaced by the value of a nearest good pixel.

    Parameters
    ----------
    sci : (ny, nx) float array
        Values; only its good pixels are read, and it is not modified.
    bad : (ny, nx) bool array
        Pixels to replace; at least one pixel must be good.
    out : (ny, nx) float array
        Receives the result (it may not be ``sci``).

    Notes
    -----
    A good pixel is its own unique nearest good pixel (distance 0), so it is
    copied unchanged.
    """
    ny, nx = bad.shape
    near = np.empty((ny, nx), np.int32)
    _column_nearest(bad, near)
    site = np.empty(nx, np.int64)
    height = np.empty(nx, np.int64)
    start = np.empty(nx, np.int64)
    for y in range(ny):
        _fill_row(sci, near, y, out, site, height, start)
