"""Resampling kernels: one output row band from one input region (NumPy, SciPy, numba; no Dask, no I/O).

The input-pixel position of each output pixel comes from a coarse map (the
WCS evaluated every ``step`` output pixels) interpolated linearly: evaluating
a WCS (and a distortion model) per pixel is what makes resampling slow, while
the map is smooth enough for a 32-pixel grid to be exact to ~1e-4 px.  A map
that is affine (``force_affine``) is carried as its six coefficients
(:class:`AffineMap`): exact, a few bytes in the task graph instead of the
grid's ~80 kB per frame, and evaluated per pixel with two multiply-adds.

The interpolation itself (SCI, VAR and every DQ bit) is one pass over the
output pixels per plane (:mod:`._resample_core`, numba), with SciPy's
B-spline prefilter for the cubic interpolants.

Variance is propagated for independent input pixels: an interpolant with
weights ``w_k`` gives ``var = sum(w_k**2 var_k)``.  For the separable
B-spline interpolants that sum depends only on the fractional position, so it
is tabulated once per order (:func:`variance_factor`) and multiplies the
linearly interpolated variance.  Merely interpolating VAR would overstate the
noise of interpolated pixels by up to ~2x, and the stack's VAR with it.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
from scipy import ndimage

from . import _resample_core as core
from ._fill import fill_nearest

#: DQ value of output pixels no input pixel covers.
NO_DATA = 16
#: DQ bits whose pixels are replaced (see :func:`clean`) before spline interpolation,
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


def coarse_axis(start: int, stop: int, step: int) -> np.ndarray:
    """Where a pixel map is evaluated along one axis of ``[start, stop)``: every ``step`` px and the last pixel."""
    return np.unique(np.append(np.arange(start, stop, step), stop - 1)).astype(float)


def anchored_axis(start: int, stop: int, n: int, step: int) -> np.ndarray:
    """The points of an array's grid (every ``step`` px from 0, and ``n - 1``) that bracket ``[start, stop)``.

    Unlike :func:`coarse_axis` the grid is the array's, not the band's: two
    bands that share a pixel interpolate it between the same grid points.
    """
    first = (start // step) * step
    last = -(-(stop - 1) // step) * step
    return np.unique(np.minimum(np.arange(first, last + 1, step), n - 1)).astype(float)


def grid_weights(grid: np.ndarray, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
    """For pixels ``start..stop-1``: the index of the grid point below each and its fraction towards the next.

    Both come from the pixel's own coordinate and its two grid points, so
    they do not depend on where the grid array starts (for :func:`lerp_along`).
    """
    at = np.arange(start, stop, dtype=float)
    j = np.clip(np.searchsorted(grid, at, side="right") - 1, 0, max(len(grid) - 2, 0))
    if len(grid) < 2:
        return j, np.zeros_like(at)
    return j, (at - grid[j]) / (grid[j + 1] - grid[j])


def fine_map(coarse: np.ndarray, gy: np.ndarray, gx: np.ndarray, y0: int, y1: int, nx: int,
             x0: int = 0) -> np.ndarray:
    """Linear interpolation of a coarse (ny_c, nx_c) map sampled at output rows ``gy``, cols ``gx``.

    Returns the values at output rows ``[y0, y1)`` and columns ``[x0, nx)``.
    Bilinear interpolation on a tensor grid is separable: the coarse rows are
    interpolated to the band's rows first (a small array), then along the
    columns, two multiply-adds per pixel instead of a general 2-D
    interpolation per pixel.
    """
    ys = np.interp(np.arange(y0, y1), gy, np.arange(len(gy)))
    xs = np.interp(np.arange(x0, nx), gx, np.arange(len(gx)))
    rows = _linear_along(coarse, ys, axis=0)  # (y1 - y0, nx_c)
    return _linear_along(rows, xs, axis=1)


def _linear_along(values: np.ndarray, at: np.ndarray, axis: int) -> np.ndarray:
    """``values`` interpolated linearly at fractional indices ``at`` (within [0, n-1]) along ``axis``."""
    j0 = np.clip(np.floor(at).astype(np.intp), 0, max(values.shape[axis] - 2, 0))
    return lerp_along(values, j0, at - j0, axis)


def lerp_along(values: np.ndarray, j0: np.ndarray, t: np.ndarray, axis: int) -> np.ndarray:
    """``values`` interpolated linearly along ``axis`` (0 or 1): from index ``j0`` towards the next, by ``t``."""
    j1 = np.minimum(j0 + 1, values.shape[axis] - 1)
    if axis == 0:
        return values[j0] * (1.0 - t)[:, None] + values[j1] * t[:, None]
    return values[:, j0] * (1.0 - t)[None, :] + values[:, j1] * t[None, :]


def clean(sci: np.ndarray, dq: np.ndarray | None) -> np.ndarray:
    """``sci`` with flagged and non-finite pixels replaced by their nearest good neighbour.

    A bad pixel takes the value of a good pixel at the minimal Euclidean
    distance (:func:`._fill.fill_nearest`); when under 1 % of the pixels are
    bad and each has a good pixel in its 5x5 box, it takes the median of
    those instead.  With no good pixel at all, every pixel becomes 0.
    """
    bad = ~np.isfinite(sci)
    if dq is not None:
        bad |= (dq & CLEAN_BITS) != 0
    n_bad = np.count_nonzero(bad)  # one pass over the mask instead of any(), all() and mean()
    if n_bad == 0:
        return sci
    if n_bad == bad.size:
        return np.zeros(sci.shape, np.float32)
    if n_bad < 0.01 * bad.size:
        filled = _fill_sparse(sci, bad)
        if filled is not None:
            return filled
    # exact nearest good pixel (numba, ~8x faster than SciPy's distance_transform_edt + gather)
    out = np.empty_like(sci)
    fill_nearest(sci, bad, out)
    return out


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
                    ix: np.ndarray, *, order: int, dq_threshold: float,
                    jacobian: np.ndarray | float | None = None,
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Values of an input region at positions (iy, ix) (region pixel coordinates).

    ``jacobian`` (input pixels per output pixel) is an array shaped like
    ``iy``, a number, or None (1).  SCI and VAR are interpolated with
    ``order`` (VAR with at most 1, times the interpolant's weight sums), each
    DQ bit with at most 1: an output pixel gets the bit when the flagged
    pixels' weight exceeds ``dq_threshold``.

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
    cy, cx = np.clip(iy, 0, ny - 1), np.clip(ix, 0, nx - 1)
    out_sci = np.empty(iy.shape, np.float32)
    if order <= 1:
        core.linear_at(np.nan_to_num(np.asarray(sci, np.float32)), cy, cx, order, out_sci)
    else:
        data = clean(np.asarray(sci, np.float32), dq)
        # SciPy's own prefilter, on the input padded as map_coordinates(mode="nearest") pads it
        padded = np.pad(data, core.SPLINE_PAD, mode="edge")
        if order == 3:
            coef = ndimage.spline_filter(padded, order, output=np.float64, mode="nearest")
            core.cubic_at(coef, cy, cx, out_sci)
        else:  # quintic: rare, left to SciPy
            ndimage.map_coordinates(data, [cy, cx], order=order, mode="nearest", output=out_sci)
    if var is not None:
        var64 = np.empty(iy.shape, np.float64)
        fractions, sums = _variance_table(max(int(order), 0))
        core.variance_at(np.nan_to_num(np.asarray(var, np.float32)), cy, cx, min(order, 1), fractions, sums,
                         var64)
    if jacobian is not None:
        jac = np.float64(jacobian) if np.ndim(jacobian) == 0 else jacobian  # float64 products, one rounding
        out_sci *= jac
        if var is not None:
            var64 *= jac ** 2
    out_var = np.zeros(iy.shape, np.float32) if var is None else var64.astype(np.float32)
    out_dq = np.zeros(iy.shape, np.uint16)
    if dq is not None:
        core.dq_at(np.asarray(dq, np.uint16), cy, cx, min(order, 1), np.float32(dq_threshold), out_dq)
    out_sci[~covered] = 0.0
    out_var[~covered] = 0.0
    out_dq[~covered] = NO_DATA
    return out_sci, out_var, out_dq, covered


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

    def positions(self, r0: int, r1: int, c0: int, c1: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Input row, column (and Jacobian or None) of output rows ``[r0, r1)``, columns ``[c0, c1)``."""
        iy = fine_map(self.iy, self.gy, self.gx, r0, r1, c1, x0=c0)
        ix = fine_map(self.ix, self.gy, self.gx, r0, r1, c1, x0=c0)
        jac = None if self.jacobian is None else fine_map(self.jacobian, self.gy, self.gx, r0, r1, c1, x0=c0)
        return iy, ix, jac


@dataclasses.dataclass(frozen=True)
class AffineMap:
    """An affine output-to-input mapping: ``iy = ay[0] + ay[1] * y + ay[2] * x`` (``ix`` likewise with ``ax``).

    ``y``, ``x`` are output row and column, ``iy``, ``ix`` 0-based input row
    and column; ``jacobian`` is the constant input pixels per output pixel
    (None for 1); ``box`` as in :class:`PixelMap`.  Six numbers stand for
    what a coarse grid would sample (exactly, as the map is affine).
    """

    ay: tuple[float, float, float]
    ax: tuple[float, float, float]
    jacobian: float | None
    box: tuple[int, int, int, int]

    def positions(self, r0: int, r1: int, c0: int, c1: int) -> tuple[np.ndarray, np.ndarray, float | None]:
        """Input row, column (and Jacobian or None) of output rows ``[r0, r1)``, columns ``[c0, c1)``."""
        y = np.arange(r0, r1, dtype=np.float64)[:, None]
        x = np.arange(c0, c1, dtype=np.float64)[None, :]
        iy = (self.ay[0] + self.ay[1] * y) + self.ay[2] * x
        ix = (self.ax[0] + self.ax[1] * y) + self.ax[2] * x
        return iy, ix, self.jacobian


def resample_band(regions: list, maps: Sequence[PixelMap | AffineMap], y0: int, y1: int, nx: int, *, order: int,
                  dq_threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SCI, VAR, DQ of output rows ``[y0, y1)`` (all ``nx`` columns) from the arrays of one frame.

    ``regions`` holds, per array, ``(sci, var, dq, (row0, col0))``: the part
    of the input this band needs and where it starts in the input; ``maps``
    the arrays' :class:`PixelMap` or :class:`AffineMap`.  Each array is
    interpolated only over its box; where arrays overlap the first one
    covering a pixel supplies it.  Pixels no array covers get DQ
    :data:`NO_DATA` and SCI = VAR = 0.
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
        iy, ix, jac = m.positions(r0, r1, c0, c1)
        iy -= origin[0]
        ix -= origin[1]
        s, v, d, covered = resample_region(np.asarray(rsci), None if rvar is None else np.asarray(rvar),
                                           None if rdq is None else np.asarray(rdq), iy, ix, order=order,
                                           dq_threshold=dq_threshold, jacobian=jac)
        sub = (slice(r0 - y0, r1 - y0), slice(c0, c1))
        if not done.any() and covered.all():  # the usual case: one array covers its whole box
            sci[sub], var[sub], dq[sub] = s, v, d
        else:
            take = covered & ~done[sub]
            sci[sub][take], var[sub][take], dq[sub][take] = s[take], v[take], d[take]
        done[sub] |= covered
    return sci, var, dq


@dataclasses.dataclass(frozen=True)
class BlockLayout:
    """Which input blocks a band task receives for one array and which part of them it needs.

    ``rows``, ``cols``: the first input row (column) of each block row
    (column) given; ``box`` = (row0, row1, col0, col1): the input region, half
    open.
    """

    rows: tuple[int, ...]
    cols: tuple[int, ...]
    box: tuple[int, int, int, int]


def assemble(blocks: Sequence[Sequence[np.ndarray]], layout: BlockLayout) -> np.ndarray:
    """The region ``layout.box`` of an input array from its blocks (a view when one block holds it)."""
    r0, r1, c0, c1 = layout.box
    if len(layout.rows) == 1 and len(layout.cols) == 1:
        b = np.asarray(blocks[0][0])
        return b[r0 - layout.rows[0]:r1 - layout.rows[0], c0 - layout.cols[0]:c1 - layout.cols[0]]
    first = np.asarray(blocks[0][0])
    out = np.empty((r1 - r0, c1 - c0), first.dtype)
    for row, bs in zip(layout.rows, blocks):
        for col, b in zip(layout.cols, bs):
            b = np.asarray(b)
            y0, y1 = max(r0, row), min(r1, row + b.shape[0])
            x0, x1 = max(c0, col), min(c1, col + b.shape[1])
            if y0 < y1 and x0 < x1:
                out[y0 - r0:y1 - r0, x0 - c0:x1 - c0] = b[y0 - row:y1 - row, x0 - col:x1 - col]
    return out


def resample_band_from_blocks(planes: Sequence[tuple[Any, Any, Any]], layouts: Sequence[BlockLayout],
                              maps: Sequence[PixelMap | AffineMap], y0: int, y1: int, nx: int, order: int,
                              dq_threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`resample_band` on regions cut from whole input blocks.

    ``planes`` holds, per array, the SCI, VAR and DQ blocks (nested lists as
    :func:`assemble` takes them; None for an absent plane).  A graph task
    that names the blocks themselves needs no slicing or concatenating task
    of its own per band and plane.
    """
    regions = []
    for (bsci, bvar, bdq), layout in zip(planes, layouts):
        cut = [None if b is None else assemble(b, layout) for b in (bsci, bvar, bdq)]
        regions.append((*cut, (layout.box[0], layout.box[2])))
    return resample_band(regions, maps, y0, y1, nx, order=order, dq_threshold=dq_threshold)
