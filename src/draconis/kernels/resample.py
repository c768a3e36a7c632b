"""Resampling kernels: one output row band from one input region (pure NumPy/SciPy; no Dask, no I/O).

The input-pixel position of each output pixel comes from a coarse map (the
WCS evaluated every ``step`` output pixels) interpolated linearly: evaluating
a WCS (and a distortion model) per pixel is what makes resampling slow, while
the map is smooth enough for a 32-pixel grid to be exact to ~1e-4 px.

Variance is propagated for independent input pixels: an interpolant with
weights ``w_k`` gives ``var = sum(w_k**2 var_k)``.  For the separable
B-spline interpolants that sum depends only on the fractional position, so it
is tabulated once per order (:func:`variance_factor`) and multiplies the
linearly interpolated variance.  Merely interpolating VAR would overstate the
noise of interpolated pixels by up to ~2x, and the stack's VAR with it.
"""
from __future__ import annotations

import dataclasses
from functools import lru_cache

import numpy as np
from scipy import ndimage

#: DQ value of output pixels no input pixel covers.
NO_DATA = 16
#: DQ bits whose pixels are replaced (by the nearest good pixel) before spline interpolation,
#: so a hot pixel or an unilluminated region does not ring into good pixels.
CLEAN_BITS = 1 | 4 | 8 | 16 | 32 | 64 | 128
#: DQ bit given to output pixels interpolated from non-finite input pixels (bad_pixel).
NON_FINITE = 1
#: Half-width beyond the footprint (px) still counted as covered (floating-point slack).
_EDGE = 0.5 + 1e-3


@lru_cache(maxsize=8)
def _variance_table(order: int, samples: int = 201) -> tuple[np.ndarray, np.ndarray]:
    """Fractions f in [0, 1] and sum of squared 1-D interpolation weights at f."""
    fractions = np.linspace(0.0, 1.0, samples)
    if order <= 0:
        return fractions, np.ones(samples)
    if order == 1:
        return fractions, (1 - fractions) ** 2 + fractions ** 2
    n = 64
    sums = np.zeros(samples)
    for k in range(-12, 13):  # weight of input pixel k at position f: response to an impulse at k
        impulse = np.zeros(n)
        impulse[n // 2 + k] = 1.0
        w = ndimage.map_coordinates(impulse, [n // 2 + fractions], order=order, mode="nearest")
        sums += w ** 2
    return fractions, sums


def variance_factor(position: np.ndarray, order: int) -> np.ndarray:
    """Sum of squared 1-D interpolation weights at ``position`` (depends on its fractional part)."""
    fractions, sums = _variance_table(int(order))
    return np.interp(position - np.floor(position), fractions, sums)


def fine_map(coarse: np.ndarray, gy: np.ndarray, gx: np.ndarray, y0: int, y1: int, nx: int,
             x0: int = 0) -> np.ndarray:
    """Linear interpolation of a coarse (ny_c, nx_c) map sampled at output rows ``gy``, cols ``gx``.

    Returns the values at output rows ``[y0, y1)`` and columns ``[x0, nx)``.
    """
    ys = np.interp(np.arange(y0, y1), gy, np.arange(len(gy)))
    xs = np.interp(np.arange(x0, nx), gx, np.arange(len(gx)))
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    return ndimage.map_coordinates(coarse, [yy, xx], order=1, mode="nearest")


def clean(sci: np.ndarray, dq: np.ndarray | None) -> np.ndarray:
    """``sci`` with flagged and non-finite pixels replaced by their nearest good neighbour."""
    bad = ~np.isfinite(sci)
    if dq is not None:
        bad |= (dq & CLEAN_BITS) != 0
    if not bad.any() or bad.all():
        return np.where(bad, 0.0, sci).astype(np.float32) if bad.any() else sci
    if bad.mean() < 0.01:
        filled = _fill_sparse(sci, bad)
        if filled is not None:
            return filled
    idx = ndimage.distance_transform_edt(bad, return_distances=False, return_indices=True)
    return sci[tuple(idx)]


def _fill_sparse(sci: np.ndarray, bad: np.ndarray, half: int = 2) -> np.ndarray | None:
    """Isolated bad pixels replaced by the median of the good pixels of their 5x5 box (None if one has none)."""
    ys, xs = np.nonzero(bad)
    off = np.arange(-half, half + 1)
    yy = np.clip(ys[:, None, None] + off[None, :, None], 0, sci.shape[0] - 1)
    xx = np.clip(xs[:, None, None] + off[None, None, :], 0, sci.shape[1] - 1)
    values = np.where(bad[yy, xx], np.nan, sci[yy, xx]).reshape(len(ys), -1)
    if np.isnan(values).all(axis=1).any():
        return None
    out = sci.copy()
    with np.errstate(all="ignore"):
        out[ys, xs] = np.nanmedian(values, axis=1)
    return out


def resample_region(sci: np.ndarray, var: np.ndarray | None, dq: np.ndarray | None, iy: np.ndarray,
                    ix: np.ndarray, *, order: int, dq_threshold: float, jacobian: np.ndarray | None = None,
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Values of an input region at positions (iy, ix) (region pixel coordinates).

    Returns
    -------
    sci, var : float32 arrays shaped like ``iy``
    dq : uint16 array (NO_DATA outside the region's footprint)
    covered : bool array, True where the position lies on the input
    """
    ny, nx = sci.shape
    # NaN/inf pixels are replaced before interpolating; flag them so nothing downstream takes the
    # replacement for data (an all-NaN frame would otherwise be stacked as zeros).
    nonfinite = ~np.isfinite(sci)
    if nonfinite.any():
        base = np.zeros(sci.shape, np.uint16) if dq is None else np.asarray(dq)
        dq = base | np.where(nonfinite, NON_FINITE, 0).astype(base.dtype)
    covered = (iy > -_EDGE) & (iy < ny - 1 + _EDGE) & (ix > -_EDGE) & (ix < nx - 1 + _EDGE)
    coords = [np.clip(iy, 0, ny - 1), np.clip(ix, 0, nx - 1)]
    data = clean(np.asarray(sci, np.float32), dq) if order > 1 else np.nan_to_num(np.asarray(sci, np.float32))
    out_sci = ndimage.map_coordinates(data, coords, order=order, mode="nearest", output=np.float32)
    out_var = np.zeros(iy.shape, np.float32)
    if var is not None:
        v = ndimage.map_coordinates(np.nan_to_num(np.asarray(var, np.float32)), coords, order=min(order, 1),
                                    mode="nearest", output=np.float32)
        out_var = v * variance_factor(coords[0], order) * variance_factor(coords[1], order)
    if jacobian is not None:
        out_sci *= jacobian
        out_var *= jacobian ** 2
    out_dq = np.zeros(iy.shape, np.uint16)
    if dq is not None:
        present = int(np.bitwise_or.reduce(dq, axis=None)) if dq.size else 0
        for bit in (1 << b for b in range(16)):
            if present & bit:
                plane = ((dq & bit) != 0).astype(np.float32)
                contrib = ndimage.map_coordinates(plane, coords, order=min(order, 1), mode="nearest")
                out_dq[contrib > dq_threshold] |= bit
    out_sci[~covered] = 0.0
    out_var[~covered] = 0.0
    out_dq[~covered] = NO_DATA
    return out_sci, out_var.astype(np.float32), out_dq, covered


@dataclasses.dataclass(frozen=True, eq=False)
class PixelMap:
    """Where the output pixels of a box fall on one input array, sampled on a coarse grid.

    ``iy``, ``ix`` (0-based input row and column) are given at output rows
    ``gy`` and columns ``gx`` (increasing, first and last at the box edges);
    ``jacobian`` (input pixels per output pixel, or None for 1) likewise.
    ``box`` = (y0, y1, x0, x1), half-open output rows and columns outside
    which the input contributes nothing.
    """

    iy: np.ndarray
    ix: np.ndarray
    gy: np.ndarray
    gx: np.ndarray
    jacobian: np.ndarray | None
    box: tuple[int, int, int, int]


def resample_band(regions: list, maps: list[PixelMap], y0: int, y1: int, nx: int, *, order: int,
                  dq_threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SCI, VAR, DQ of output rows ``[y0, y1)`` (all ``nx`` columns) from the arrays of one frame.

    ``regions`` holds, per array, ``(sci, var, dq, (row0, col0))``: the part
    of the input this band needs and where it starts in the input; ``maps``
    the arrays' :class:`PixelMap`.  Each array is interpolated only over its
    box; where arrays overlap the first one covering a pixel supplies it.
    Pixels no array covers get DQ :data:`NO_DATA` and SCI = VAR = 0.
    """
    shape = (y1 - y0, nx)
    sci, var = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
    dq = np.full(shape, NO_DATA, np.uint16)
    done = np.zeros(shape, bool)
    for (rsci, rvar, rdq, origin), m in zip(regions, maps):
        r0, r1 = max(y0, m.box[0]), min(y1, m.box[1])
        c0, c1 = m.box[2], m.box[3]
        if r0 >= r1 or c0 >= c1:
            continue
        iy = fine_map(m.iy, m.gy, m.gx, r0, r1, c1, x0=c0) - origin[0]
        ix = fine_map(m.ix, m.gy, m.gx, r0, r1, c1, x0=c0) - origin[1]
        jac = None if m.jacobian is None else fine_map(m.jacobian, m.gy, m.gx, r0, r1, c1, x0=c0)
        s, v, d, covered = resample_region(np.asarray(rsci), None if rvar is None else np.asarray(rvar),
                                           None if rdq is None else np.asarray(rdq), iy, ix, order=order,
                                           dq_threshold=dq_threshold, jacobian=jac)
        sub = (slice(r0 - y0, r1 - y0), slice(c0, c1))
        take = covered & ~done[sub]
        sci[sub][take], var[sub][take], dq[sub][take] = s[take], v[take], d[take]
        done[sub] |= covered
    return sci, var, dq
