"""Block kernels for sky subtraction and object masks (pure NumPy, no Dask, no I/O).

- :func:`background_level`: robust sky level of a sample of pixels, the mode
  found by fitting a Gaussian to the histogram of the sample, iterated;
  the sigma-clipped median when the fit does not converge.
- :func:`sampled_level`: that level over the good pixels of a block.
- :func:`disc`, :func:`dilate_mask`: binary dilation with a disc.
- :func:`sky_stack_block`: one row band of a sky stack from the ``k`` sky
  frames' row bands, through the shared frame-axis combiner.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from .combine import CombineSpec, combine_block

#: Histogram bins per (estimated) standard deviation in the Gaussian fit.
_BINS_PER_SIGMA = 6
#: Half-width (in sigma) of the part of the histogram that is fitted.
_FIT_HALF_WIDTH = 2.0


def _clipped_stats(values: np.ndarray, nsigma: float = 3.0, iters: int = 5) -> tuple[float, float]:
    """Median and MAD-based sigma after a few rounds of clipping."""
    centre = float(np.median(values))
    sigma = 1.4826 * float(np.median(np.abs(values - centre)))
    for _ in range(iters):
        if not sigma > 0:
            break
        kept = values[np.abs(values - centre) < nsigma * sigma]
        if kept.size < 3:
            break
        centre = float(np.median(kept))
        sigma = 1.4826 * float(np.median(np.abs(kept - centre)))
    return centre, sigma


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
    values = np.asarray(values, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
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


def dilate_mask(mask: np.ndarray, radius: float) -> np.ndarray:
    """``mask`` (non-zero = set) dilated by a disc of ``radius`` px, as uint8 0/1."""
    mask = np.asarray(mask) != 0
    if radius < 1:
        return mask.astype(np.uint8)
    return ndimage.binary_dilation(mask, structure=disc(radius)).astype(np.uint8)


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
