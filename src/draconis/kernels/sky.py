"""Block kernels for sky subtraction and object masks (pure NumPy, no Dask, no I/O).

- :func:`background_level`: robust sky level of a sample of pixels, the mode
  found by fitting a Gaussian to the histogram of the sample, iterated;
  the sigma-clipped median when the fit does not converge.
- :func:`sampled_level`: that level over the good pixels of a block.
- :func:`disc`, :func:`dilate_mask`: binary dilation with a disc.
- :func:`sky_stack_block`: one row band of a sky stack from the ``k`` sky
  frames' row bands, through the shared frame-axis combiner;
  :func:`stack_sky_tile`: the same, normalising the skies from their levels
  as stackSkyFrames does; :func:`stack_sky_band`: that, on bands read from
  storage, with the skies' dilated object masks OR-ed into DQ
  (:func:`or_object_mask`).
- :func:`sky_match`, :func:`subtract_sky_block`: subtractSky on one tile
  (the sky matched to the frame's level, subtracted, VAR and DQ propagated).

The sliding-window sky of a whole time-ordered sequence is in
:mod:`draconis.kernels.sky_window`.
"""
from __future__ import annotations

from typing import TypeVar, overload

import numba
import numpy as np

from .combine import CombineSpec, combine_block

#: Histogram bins per (estimated) standard deviation in the Gaussian fit.
_BINS_PER_SIGMA = 6
#: Half-width (in sigma) of the part of the histogram that is fitted.
_FIT_HALF_WIDTH = 2.0


def _clipped_stats(values: np.ndarray, nsigma: float = 3.0, iters: int = 5) -> tuple[float, float]:
    """Median and MAD-based sigma after a few rounds of clipping, of ascending finite ``values``.

    Each round keeps the values within ``nsigma`` sigma of the centre (of all
    values, not of the last round's), then takes their median and the median
    of their absolute deviations.
    """
    centre, sigma = _clipped_stats_sorted(values, float(nsigma), int(iters))
    return float(centre), float(sigma)


@numba.njit(nogil=True, cache=True)
def _clipped_stats_sorted(s, nsigma, iters):
    # On sorted values the clipped set is a contiguous range found by bisection, its median is read off,
    # and the median absolute deviation is a merge of the two runs of deviations either side of the
    # centre: no partition of the whole sample per round (they were 60 % of a level's time). Deviations
    # are computed as numpy does (s - centre, then abs), so the kept sets and values are the same.
    a, b = 0, s.size
    centre = _median_of_range(s, a, b)
    sigma = 1.4826 * _mad_of_range(s, a, b, centre)
    for _ in range(iters):
        if not sigma > 0:
            break
        t = nsigma * sigma
        lo = _first_above(s, centre, -t, False)
        hi = _first_above(s, centre, t, True)
        if hi - lo < 3:
            break
        a, b = lo, hi
        centre = _median_of_range(s, a, b)
        sigma = 1.4826 * _mad_of_range(s, a, b, centre)
    return centre, sigma


@numba.njit(nogil=True, cache=True)
def _first_above(s, centre, t, inclusive):
    """First index whose ``s - centre`` is above ``t`` (at or above it when ``inclusive``)."""
    lo, hi = 0, s.size
    while lo < hi:
        mid = (lo + hi) // 2
        d = s[mid] - centre
        if d > t or (inclusive and d == t):
            hi = mid
        else:
            lo = mid + 1
    return lo


@numba.njit(nogil=True, cache=True)
def _median_of_range(s, a, b):
    """np.median of the ascending ``s[a:b]``."""
    n = b - a
    if n % 2:
        return s[a + n // 2]
    return (s[a + n // 2 - 1] + s[a + n // 2]) / 2.0


@numba.njit(nogil=True, cache=True)
def _mad_of_range(s, a, b, centre):
    """np.median(np.abs(s[a:b] - centre)) of the ascending ``s[a:b]``, merging the deviations outwards."""
    n = b - a
    # the deviations below the centre grow leftwards from p - 1, those above rightwards from p, the first
    # value not below the centre (inside the range: the centre is its median)
    p = min(max(_first_above(s, centre, 0.0, True), a), b)
    left, right = p - 1, p
    want = n // 2  # the deviation of rank want (0-based), and the one before it when n is even
    previous = 0.0
    current = 0.0
    for _ in range(want + 1):
        dl = abs(s[left] - centre) if left >= a else np.inf
        dr = abs(s[right] - centre) if right < b else np.inf
        previous = current
        if dl <= dr:
            current = dl
            left -= 1
        else:
            current = dr
            right += 1
    if n % 2:
        return current
    return (previous + current) / 2.0


def _gaussian_peak(values: np.ndarray, centre: float, sigma: float) -> tuple[float, float] | None:
    """Centre and sigma of a Gaussian fitted to the histogram near ``centre``.

    The fit is a weighted parabola to log(counts) (a Gaussian is a parabola
    in log space); None when the histogram has no proper peak.
    """
    half = _FIT_HALF_WIDTH * sigma
    nbins = max(int(2 * _FIT_HALF_WIDTH * _BINS_PER_SIGMA), 8)
    counts, edges = np.histogram(values, bins=nbins, range=(centre - half, centre + half))
    mids = 0.5 * (edges[1:] + edges[:-1])
    use = counts > 0
    if use.sum() < 4:
        return None
    x = (mids[use] - centre) / sigma
    # Poisson weights: var(log N) ~ 1/N.
    c2, c1, _ = np.polyfit(x, np.log(counts[use]), 2, w=np.sqrt(counts[use]))
    if not c2 < 0:
        return None
    mu = -c1 / (2 * c2)
    if not np.isfinite(mu) or abs(mu) > _FIT_HALF_WIDTH:
        return None
    return centre + mu * sigma, sigma * np.sqrt(-1.0 / (2 * c2))


def background_level(values: np.ndarray, *, threshold: float = 0.001, max_iters: int = 20) -> float:
    """Robust background (modal) level of ``values``.

    A Gaussian is fitted to the histogram of the values around the current
    estimate, starting from the sigma-clipped median; the fit is repeated on a
    window re-centred on the new peak until the peak moves by less than
    ``threshold`` × sigma. If a fit fails (no peak, runaway) or does not
    converge in ``max_iters``, the sigma-clipped median is returned.

    Parameters
    ----------
    values
        Pixel values (any shape; non-finite values are ignored).
    threshold
        Convergence threshold in units of the fitted sigma.
    max_iters
        Maximum number of fits.

    Returns
    -------
    float
        The level; NaN when there are no finite values.
    """
    values = np.asarray(values).ravel()
    # sorted in their own precision, then widened: the same numbers in the same order, and numpy sorts
    # float32 twice as fast as float64 (the sort was ~60 % of a sky level's time)
    values = np.sort(values[np.isfinite(values)]).astype(np.float64, copy=False)
    if values.size == 0:
        return float("nan")
    median, sigma = _clipped_stats(values)
    if values.size < 50 or not sigma > 0:
        return median
    centre = median
    for _ in range(max_iters):
        fit = _gaussian_peak(values, centre, sigma)
        if fit is None:
            return median
        new_centre, new_sigma = fit
        converged = abs(new_centre - centre) < threshold * sigma
        centre, sigma = new_centre, max(new_sigma, 1e-6 * max(abs(new_centre), 1.0))
        if converged:
            return float(centre)
    return median


def sampled_level(sci: np.ndarray, dq: np.ndarray | None = None, objmask: np.ndarray | None = None,
                  *, threshold: float = 0.001) -> float:
    """:func:`background_level` of the pixels of ``sci`` not flagged in ``dq`` or ``objmask``."""
    good = np.isfinite(sci)
    if dq is not None:
        good &= dq == 0
    if objmask is not None:
        good &= objmask == 0
    return background_level(sci[good], threshold=threshold)


def disc(radius: float) -> np.ndarray:
    """Boolean disc footprint: pixels whose centre lies within ``radius`` of the centre pixel."""
    r = int(np.floor(radius))
    y, x = np.mgrid[-r:r + 1, -r:r + 1]
    return (x * x + y * y) <= radius * radius + 1e-9


def dilation_reach(radius: float) -> int:
    """Rows (and columns) beyond a block that :func:`dilate_mask` with ``radius`` reads into it (0 below 1 px)."""
    return int(np.ceil(radius)) if radius >= 1 else 0


def dilate_mask(mask: np.ndarray, radius: float) -> np.ndarray:
    """``mask`` (non-zero = set) dilated by a disc of ``radius`` px, as uint8 0/1.

    ``ndimage.binary_dilation(mask, disc(radius))`` (zeros beyond the edges),
    computed by painting the disc's rows around each set pixel: object masks
    are mostly empty, and this is ~10x faster than the dilation's pass of
    every structure element over every pixel.
    """
    mask = np.asarray(mask) != 0
    if radius < 1:
        return mask.astype(np.uint8)
    footprint = disc(radius)
    half = footprint.shape[0] // 2
    widths = footprint.sum(axis=1).astype(np.int64) // 2  # the disc's half-width on each of its rows
    out = np.zeros(mask.shape, np.uint8)
    _paint_rows(np.ascontiguousarray(mask), half, widths, out)
    return out


@numba.njit(cache=True, nogil=True)
def _paint_rows(mask, half, widths, out):
    """Set, around every set pixel of ``mask``, the runs ``x +- widths[k]`` of rows ``y - half + k``."""
    ny, nx = mask.shape
    for y in range(ny):
        for x in range(nx):
            if not mask[y, x]:
                continue
            for k in range(widths.shape[0]):
                yy = y - half + k
                if yy < 0 or yy >= ny:
                    continue
                x0 = max(x - widths[k], 0)
                x1 = min(x + widths[k] + 1, nx)
                for xx in range(x0, x1):
                    out[yy, xx] = 1


def sky_stack_block(sci: np.ndarray, var: np.ndarray | None, dq: np.ndarray | None, spec: CombineSpec, *,
                    zero: np.ndarray | None, scale: np.ndarray | None) -> np.ndarray:
    """One tile of a sky stack: combine ``k`` skies along axis 0.

    Parameters
    ----------
    sci, var, dq
        Arrays of shape ``(k, rows, width)`` (``var``/``dq`` may be None).
    zero, scale
        Per-sky additive / multiplicative normalisation (length ``k``) or None.
    spec
        Rejection and combination (:class:`~draconis.kernels.combine.CombineSpec`).

    Returns
    -------
    numpy.ndarray
        float32 array ``(3, rows, width)``: the combined SCI, VAR and DQ
        (DQ as exact small integers in float32), so one task yields all three.
    """
    out_sci, out_var, out_dq, _ = combine_block(sci, var, dq, spec, zero=zero, scale=scale)
    result = np.empty((3,) + out_sci.shape, dtype=np.float32)
    result[0] = out_sci
    result[1] = 0.0 if out_var is None else out_var
    result[2] = 0 if out_dq is None else out_dq
    return result


def sky_normalisation(levels: np.ndarray, mode: str | None) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Per-sky ``(zero, scale)`` that bring every sky to the first sky's level (stackSkyFrames).

    ``mode`` "scale": ``scale = L0 / L`` (a sky whose level is not positive is
    left as it is, and nothing is scaled when the first level is not
    positive); "zero": ``zero = L0 - L``; None: neither.
    """
    levels = np.asarray(levels, dtype=np.float64)
    if mode == "scale" and levels[0] > 0:
        return None, np.where(levels > 0, levels[0] / np.where(levels > 0, levels, 1.0), 1.0)
    if mode == "zero":
        return levels[0] - levels, None
    return None, None


def stack_sky_tile(sci: np.ndarray, var: np.ndarray | None, dq: np.ndarray | None, levels: np.ndarray,
                   spec: CombineSpec, *, mode: str | None) -> np.ndarray:
    """One tile of a sky stack, the skies normalised to the first by their levels.

    Parameters
    ----------
    sci, var, dq
        ``(k, rows, width)`` bands of the ``k`` skies (``var`` may be None).
    levels
        The ``k`` background levels.
    spec
        Rejection and combination (:class:`~draconis.kernels.combine.CombineSpec`), already fitted to ``k``.
    mode
        "scale", "zero" or None (:func:`sky_normalisation`).

    Returns
    -------
    numpy.ndarray
        float32 ``(3, rows, width)``: SCI, VAR, DQ (as :func:`sky_stack_block`).
    """
    zero, scale = sky_normalisation(levels, mode)
    return sky_stack_block(sci, var, dq, spec, zero=zero, scale=scale)


def or_object_mask(dq: np.ndarray, mask: np.ndarray, top: int, radius: float, bit: int) -> np.ndarray:
    """OR into the band ``dq`` (in place, and returned) the band's object mask dilated by ``radius``.

    ``mask`` holds the band's rows with ``top`` rows above them and some
    below (as many as the dilation reaches, fewer at the image edges: the
    dilation sees zeros beyond them), so the band gets what dilating the
    whole mask gives; masked pixels get DQ ``bit``.
    """
    dilated = dilate_mask(mask, radius)[top:top + dq.shape[0]]
    dq |= dilated.astype(np.uint16) * np.uint16(bit)
    return dq


def stack_sky_band(sci: np.ndarray, var: np.ndarray | None, dq: np.ndarray, levels, spec: CombineSpec,
                   mode: str | None, objmask: np.ndarray | None = None, top: int = 0, radius: float = 0.0,
                   bit: int = 1) -> np.ndarray:
    """:func:`stack_sky_tile` on bands read from storage, the skies' dilated object masks OR-ed into DQ first.

    Parameters
    ----------
    sci, var, dq
        ``(k, rows, width)`` bands of the ``k`` skies (``var`` may be None);
        ``dq`` is modified in place when ``objmask`` is given.
    levels
        The ``k`` background levels.
    spec, mode
        As :func:`stack_sky_tile`.
    objmask
        ``(k, top + rows + bottom, width)`` object masks of the band with
        ``top`` rows above it and some below (as many as the dilation
        reaches, fewer at the image edges, beyond which the mask is 0), or None.
    radius, bit
        Dilation radius (:func:`dilate_mask`) and the DQ bit masked pixels get.

    Returns
    -------
    numpy.ndarray
        float32 ``(3, rows, width)``: SCI, VAR, DQ.
    """
    if objmask is not None:
        for i in range(dq.shape[0]):  # one sky at a time: the dilation's buffers are those of one band
            or_object_mask(dq[i], objmask[i], top, radius, bit)
    return stack_sky_tile(sci, var, dq, np.asarray(levels, dtype=np.float64), spec, mode=mode)


def sky_match(sci_level: float, sky_level: float, mode: str | None) -> tuple[float, float]:
    """``(factor, offset)`` that match a sky of ``sky_level`` to a frame of ``sci_level`` (subtractSky).

    "scale": factor = sci_level / sky_level (1 when the sky level is not
    positive: it cannot be scaled to); "offset": offset = sci_level -
    sky_level; None: (1, 0).
    """
    sci_level, sky_level = float(sci_level), float(sky_level)
    if mode == "scale" and sky_level > 0:
        return sci_level / sky_level, 0.0
    if mode == "offset":
        return 1.0, sci_level - sky_level
    return 1.0, 0.0


#: What ``out`` of :func:`subtract_sky_block` may be; it is returned as given.
_Planes = TypeVar("_Planes", bound=np.ndarray | list[np.ndarray] | tuple[np.ndarray, ...])


@overload
def subtract_sky_block(sci: np.ndarray, sky_sci: np.ndarray, sky_var: np.ndarray | None, sky_dq: np.ndarray,
                       var: np.ndarray | None, dq: np.ndarray | None, *, factor: float, offset: float,
                       reset_level: float | None = None, out: None = None) -> np.ndarray: ...


@overload
def subtract_sky_block(sci: np.ndarray, sky_sci: np.ndarray, sky_var: np.ndarray | None, sky_dq: np.ndarray,
                       var: np.ndarray | None, dq: np.ndarray | None, *, factor: float, offset: float,
                       reset_level: float | None = None, out: _Planes) -> _Planes: ...


def subtract_sky_block(sci: np.ndarray, sky_sci: np.ndarray, sky_var: np.ndarray | None, sky_dq: np.ndarray,
                       var: np.ndarray | None, dq: np.ndarray | None, *, factor: float, offset: float,
                       reset_level: float | None = None, out=None):
    """A frame's tile minus its matched sky, with VAR and DQ (float32 arithmetic, as the planes are).

    ``SCI - (sky * factor + offset)`` (plus ``reset_level`` when given),
    ``VAR + sky_var * factor**2``, ``DQ | sky_dq``; ``factor``, ``offset``,
    ``factor**2`` and ``reset_level`` are rounded to float32 first.

    Returns
    -------
    numpy.ndarray, or the list or tuple ``out``
        float32 ``(3, rows, width)`` SCI, VAR, DQ; ``out`` when given: such an
        array, or three ``(rows, width)`` arrays (DQ's float32 or uint16) in a
        list or tuple, returned as given.
    """
    sci = np.asarray(sci)
    if out is None:
        out = np.empty((3,) + sci.shape, dtype=np.float32)

    def flat(a, dtype):
        return _ABSENT[dtype] if a is None else np.ascontiguousarray(a, dtype=dtype).reshape(-1)

    planes = [o.reshape(-1) if o.flags.c_contiguous else np.empty(sci.size, np.float32) for o in out]
    _subtract_rows(flat(sci, np.float32), flat(var, np.float32), flat(dq, np.uint16), flat(sky_sci, np.float32),
                   flat(sky_var, np.float32), flat(np.asarray(sky_dq).astype(np.uint16), np.uint16),
                   np.float32(factor), np.float32(offset), np.float32(factor * factor),
                   np.float32(reset_level if reset_level is not None else 0.0), reset_level is not None, *planes)
    for o, plane in zip(out, planes):
        if not o.flags.c_contiguous:  # written to a copy: put it in place
            o[...] = plane.reshape(o.shape)
    return out


_ABSENT = {np.float32: np.zeros(0, np.float32), np.uint16: np.zeros(0, np.uint16)}


@numba.njit(nogil=True, cache=True)
def _subtract_rows(sci, var, dq, sky, sky_var, sky_dq, factor, offset, factor2, level, reset, out_s, out_v, out_d):
    """The pixels of :func:`subtract_sky_block`, in one pass (absent planes have length 0)."""
    has_var = var.shape[0] > 0
    has_dq = dq.shape[0] > 0
    sky_has_var = sky_var.shape[0] > 0
    zero = np.float32(0.0)
    for i in range(sci.shape[0]):
        value = sci[i] - (sky[i] * factor + offset)
        if reset:
            value += level
        out_s[i] = value
        added = sky_var[i] * factor2 if sky_has_var else zero
        out_v[i] = (var[i] if has_var else zero) + added
        out_d[i] = sky_dq[i] | (dq[i] if has_dq else np.uint16(0))  # float32 or uint16


def subtract_sky_tile(sci: np.ndarray, sky: np.ndarray, sci_level, sky_level, var: np.ndarray | None,
                      dq: np.ndarray | None, *, mode: str | None, reset: bool, sky_has_var: bool) -> np.ndarray:
    """SubtractSky on one tile: ``sky`` is a float32 ``(3, rows, width)`` SCI/VAR/DQ sky stack tile.

    The sky is matched to the frame (:func:`sky_match` of the two levels),
    subtracted, and the frame's level added back when ``reset``; returns
    float32 ``(3, rows, width)`` SCI, VAR, DQ (:func:`subtract_sky_block`).
    """
    sci_level = float(sci_level)
    factor, offset = sky_match(sci_level, float(sky_level), mode)
    return subtract_sky_block(sci, sky[0], sky[1] if sky_has_var else None, sky[2], var, dq, factor=factor,
                              offset=offset, reset_level=sci_level if reset else None)
