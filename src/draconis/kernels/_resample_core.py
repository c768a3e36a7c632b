"""Per-pixel interpolation loops of the resampling kernel (numba).

One pass over the output pixels computes each pixel's taps and weights once
and applies them to the plane at hand.  SciPy's ``map_coordinates`` did the
same work once per plane *and once per DQ bit* (a float copy of every bit
plane, interpolated on its own), which was most of the time of a resample.

The arithmetic follows SciPy's for the same mode (``nearest``, on positions
already clipped to the input), so results agree with it to float32 rounding:

* order 0 takes the pixel ``floor(p + 0.5)``;
* order 1 weighs pixels ``floor(p)`` and ``floor(p) + 1`` (clamped to the
  edge) by ``1 - t`` and ``t``;
* order 3 evaluates the cubic B-spline on coefficients SciPy's
  ``spline_filter`` made from the input padded by ``SPLINE_PAD`` edge pixels
  (what ``map_coordinates(..., mode="nearest")`` does internally), so the
  four taps of every clipped position lie inside the padded array.
"""
from __future__ import annotations

import math

import numba
import numpy as np

#: Edge pixels SciPy pads an input with before its spline prefilter in mode "nearest".
SPLINE_PAD = 12


@numba.njit(nogil=True, cache=True, inline="always")
def _taps(p, n, order):
    # first tap, its weight and the second tap's weight (order 0: one tap of weight 1)
    if order == 0:
        j = int(math.floor(p + 0.5))
        j = min(max(j, 0), n - 1)
        return j, min(j + 1, n - 1), 1.0, 0.0
    j = int(math.floor(p))
    j = min(max(j, 0), n - 1)
    t = p - j
    return j, min(j + 1, n - 1), 1.0 - t, t


@numba.njit(nogil=True, cache=True)
def linear_at(data, iy, ix, order, out):
    """``data`` (2-D) at positions (``iy``, ``ix``), order 0 or 1, into ``out`` (any float dtype).

    The value is accumulated in float64 and cast once, as SciPy does.
    """
    ny, nx = data.shape
    for r in range(iy.shape[0]):
        for c in range(iy.shape[1]):
            j0, j1, wy0, wy1 = _taps(iy[r, c], ny, order)
            i0, i1, wx0, wx1 = _taps(ix[r, c], nx, order)
            v = wy0 * (wx0 * np.float64(data[j0, i0]) + wx1 * np.float64(data[j0, i1]))
            if wy1 != 0.0:
                v += wy1 * (wx0 * np.float64(data[j1, i0]) + wx1 * np.float64(data[j1, i1]))
            out[r, c] = v


@numba.njit(nogil=True, cache=True)
def variance_at(var, iy, ix, order, fractions, sums, out):
    """Variance at (``iy``, ``ix``): interpolated VAR (order 0/1, as float32) x both axes' weight sums.

    ``fractions``, ``sums`` tabulate the sum of squared 1-D weights of the
    interpolant against the fractional position (evenly spaced on [0, 1]);
    it is interpolated linearly, as ``numpy.interp`` does.  ``out`` is
    float64: the Jacobian (if any) multiplies it before the cast to float32.
    """
    ny, nx = var.shape
    last = fractions.shape[0] - 1
    for r in range(iy.shape[0]):
        for c in range(iy.shape[1]):
            p, q = iy[r, c], ix[r, c]
            j0, j1, wy0, wy1 = _taps(p, ny, order)
            i0, i1, wx0, wx1 = _taps(q, nx, order)
            v = wy0 * (wx0 * np.float64(var[j0, i0]) + wx1 * np.float64(var[j0, i1]))
            if wy1 != 0.0:
                v += wy1 * (wx0 * np.float64(var[j1, i0]) + wx1 * np.float64(var[j1, i1]))
            v32 = np.float32(v)  # SciPy's interpolated VAR was a float32 array
            out[r, c] = np.float64(v32) * _table(p - math.floor(p), fractions, sums, last) \
                * _table(q - math.floor(q), fractions, sums, last)


@numba.njit(nogil=True, cache=True, inline="always")
def _table(f, fractions, sums, last):
    # numpy.interp on an evenly spaced table: locate the interval, then the same slope formula
    k = min(max(int(f * last), 0), last - 1)
    while k > 0 and fractions[k] > f:
        k -= 1
    while k < last - 1 and fractions[k + 1] <= f:
        k += 1
    if f >= fractions[last]:
        return sums[last]
    slope = (sums[k + 1] - sums[k]) / (fractions[k + 1] - fractions[k])
    return slope * (f - fractions[k]) + sums[k]


@numba.njit(nogil=True, cache=True)
def dq_at(dq, iy, ix, order, threshold, out):
    """DQ at (``iy``, ``ix``): bit b is set where the interpolated weight of pixels with b exceeds ``threshold``.

    ``threshold`` is float32 and the weight is rounded to float32 before the
    comparison, as when each bit plane was a float32 array.
    """
    ny, nx = dq.shape
    for r in range(iy.shape[0]):
        for c in range(iy.shape[1]):
            j0, j1, wy0, wy1 = _taps(iy[r, c], ny, order)
            i0, i1, wx0, wx1 = _taps(ix[r, c], nx, order)
            d00, d01, d10, d11 = dq[j0, i0], dq[j0, i1], dq[j1, i0], dq[j1, i1]
            present = d00 | d01 | d10 | d11
            if present == 0:
                out[r, c] = 0
                continue
            w00, w01, w10, w11 = wy0 * wx0, wy0 * wx1, wy1 * wx0, wy1 * wx1
            flags = 0
            for b in range(16):
                bit = 1 << b
                if present & bit:
                    w = 0.0
                    if d00 & bit:
                        w += w00
                    if d01 & bit:
                        w += w01
                    if d10 & bit:
                        w += w10
                    if d11 & bit:
                        w += w11
                    if np.float32(w) > threshold:
                        flags |= bit
            out[r, c] = flags


@numba.njit(nogil=True, cache=True, inline="always")
def _cubic_weights(t):
    # the cubic B-spline's weights of the four taps floor(p)-1 .. floor(p)+2 at fraction t
    s = 1.0 - t
    return s * s * s / 6.0, (3.0 * t * t * t - 6.0 * t * t + 4.0) / 6.0, \
        (3.0 * s * s * s - 6.0 * s * s + 4.0) / 6.0, t * t * t / 6.0


@numba.njit(nogil=True, cache=True)
def cubic_at(coef, iy, ix, out):
    """Cubic B-spline on ``coef`` (prefiltered, padded by :data:`SPLINE_PAD`) at the clipped (``iy``, ``ix``)."""
    for r in range(iy.shape[0]):
        for c in range(iy.shape[1]):
            p = iy[r, c] + SPLINE_PAD
            q = ix[r, c] + SPLINE_PAD
            j = int(math.floor(p))
            i = int(math.floor(q))
            wy = _cubic_weights(p - j)
            wx = _cubic_weights(q - i)
            v = 0.0
            for a in range(4):
                row = 0.0
                for b in range(4):
                    row += wx[b] * coef[j - 1 + a, i - 1 + b]
                v += wy[a] * row
            out[r, c] = v
