"""Source detection on one detector array (pure NumPy + photutils; no Dask, no I/O).

:func:`detect_array` does what DRAGONS asks of SExtractor: a background mesh
(``back_size`` px boxes, median-filtered over ``back_filtersize`` boxes), a
Gaussian filter (FWHM 2 px, like SExtractor's default 3x3 kernel), detection
above ``detect_thresh`` × background RMS with at least ``detect_minarea``
connected pixels, deblending (``deblend_mincont``), and a catalogue with
SExtractor-like columns (1-based pixel positions).
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numba
import numpy as np
from astropy.table import Table
from scipy import ndimage

from .resample import anchored_axis, grid_weights, lerp_along

#: Smallest radius (px) of the aperture of FLUX_APER.
APER_RADIUS = 5.0
#: FLUX_APER's radius in units of the frame's median stellar FWHM: 2.5 FWHM holds all but ~1e-7 of a
#: Gaussian star, so fluxes of one star in frames of different seeing agree (scaleCountsToReference
#: uses them); a fixed 5 px aperture lost 0.2-3 % in F2 seeing of 0.6-0.8".
APER_FWHM = 2.5
#: FWHM (px) of the detection filter.
FILTER_FWHM = 2.0
#: DQ bits that make a source "has bad pixels" (FLAGS 1): bad_pixel, cosmic_ray, no_data.
_BAD_BITS = 1 | 8 | 16
_SATURATED = 4

COLUMNS = ("NUMBER", "X_IMAGE", "Y_IMAGE", "XWIN_IMAGE", "YWIN_IMAGE", "X_WORLD", "Y_WORLD", "FLUX_AUTO",
           "FLUXERR_AUTO", "FLUX_APER", "FLUXERR_APER", "MAG_AUTO", "MAGERR_AUTO", "FWHM_IMAGE", "FWHM_WORLD",
           "ELLIPTICITY", "CLASS_STAR", "FLAGS", "ISOAREA_IMAGE", "A_IMAGE", "B_IMAGE", "THETA_IMAGE", "BACKGROUND")


def empty_catalog() -> Table:
    """A catalogue with the OBJCAT columns and no rows."""
    dtypes = {"NUMBER": np.int32, "FLAGS": np.int16, "ISOAREA_IMAGE": np.int32}
    return Table({c: np.zeros(0, dtype=dtypes.get(c, np.float64)) for c in COLUMNS})


def _odd_at_most(value: int, limit: int) -> int:
    value = max(1, min(int(value), int(limit)))
    return value if value % 2 else max(1, value - 1)


def estimate_background(data: np.ndarray, bad: np.ndarray, *, back_size: int, back_filtersize: int):
    """Background and RMS maps from a mesh (a constant clipped estimate when the mesh fails)."""
    from photutils.background import Background2D

    ny, nx = data.shape
    box = max(4, min(int(back_size), ny, nx))
    meshes = min(ny // box, nx // box)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bkg = Background2D(data, box, mask=bad, filter_size=_odd_at_most(back_filtersize, max(meshes, 1)),
                               exclude_percentile=50.0)
        shape = data.shape
        return (_expand_mesh(np.asarray(bkg.background_mesh, float), bkg.box_size, shape, lambda: bkg.background),
                _expand_mesh(np.asarray(bkg.background_rms_mesh, float), bkg.box_size, shape,
                             lambda: bkg.background_rms))
    except (ValueError, TypeError):
        good = data[~bad]
        from astropy.stats import sigma_clipped_stats

        _, med, std = sigma_clipped_stats(good if good.size else np.zeros(1), sigma=3.0)
        return np.full(data.shape, med), np.full(data.shape, max(std, 1e-10))


def _bspline3(t: np.ndarray) -> np.ndarray:
    """The cubic B-spline."""
    t = np.abs(t)
    return np.where(t < 1, 2 / 3 - t ** 2 + t ** 3 / 2, np.where(t < 2, (2 - t) ** 3 / 6, 0.0))


def _zoom_weights(n_in: int, box: int, n_keep: int) -> np.ndarray:
    """``(n_keep, n_in)`` cubic-spline weights of the first ``n_keep`` points of a ``box``-fold zoom.

    Points are the centres of the zoomed grid's cells (scipy's ``grid_mode``),
    coefficients beyond the edges mirrored about them (``mode='reflect'``).
    """
    n_out = int(round(n_in * box))
    x = (np.arange(n_keep) + 0.5) * (n_in / n_out) - 0.5
    weights = np.zeros((n_keep, n_in))
    base = np.floor(x).astype(int)
    rows = np.arange(n_keep)
    for d in range(-1, 3):
        k = base + d
        mirrored = np.where(k < 0, -k - 1, np.where(k >= n_in, 2 * n_in - k - 1, k))
        np.add.at(weights, (rows, mirrored), _bspline3(x - k))
    return weights


def _expand_mesh(mesh: np.ndarray, box: Sequence[int], shape: tuple[int, int], fallback) -> np.ndarray:
    """The full-size image of a background mesh, as photutils makes it, ~20x faster.

    photutils expands the mesh with ``scipy.ndimage.zoom`` (cubic spline,
    ``mode='reflect'``, ``grid_mode=True``), crops it to the image and clips
    it to the mesh's range: 16 spline taps per pixel, 0.33 s per map at 2048²
    (two maps per detection).  The cubic spline is a tensor product, so the
    same image is ``W0 @ C @ W1.T`` with the mesh's spline coefficients ``C``
    and 1-D weight matrices: equal to within 1e-15 relative.  Meshes that do
    not cover the image take photutils' own path (``fallback``).
    """
    ny, nx = shape
    if mesh.ndim != 2 or mesh.shape[0] * box[0] < ny or mesh.shape[1] * box[1] < nx:
        return np.asarray(fallback(), float)
    if np.ptp(mesh) == 0:
        return np.full(shape, float(np.min(mesh)))
    coefficients = ndimage.spline_filter(mesh, order=3, mode="reflect")
    image = _zoom_weights(mesh.shape[0], box[0], ny) @ coefficients @ _zoom_weights(mesh.shape[1], box[1], nx).T
    return np.clip(image, mesh.min(), mesh.max(), out=image)


def smooth(image: np.ndarray) -> np.ndarray:
    """``image`` (as float64) convolved with the detection filter: ``ndimage.convolve``'s, to the bit."""
    from photutils.segmentation import make_2dgaussian_kernel

    kernel = make_2dgaussian_kernel(FILTER_FWHM, size=5).array
    # a convolution is a correlation with the flipped kernel
    weights = np.ascontiguousarray((kernel / kernel.sum())[::-1, ::-1], dtype=np.float64)
    return _correlate_nearest(np.ascontiguousarray(image, dtype=np.float64), weights,
                              np.empty(image.shape, np.float64))


@numba.njit(cache=True, nogil=True)
def _correlate_nearest(data, weights, out):
    """``ndimage.correlate(data, weights, mode='nearest')`` into ``out``, twice as fast, the same numbers.

    Every output pixel sums its products from 0.0 in ndimage's order (kernel
    rows, then columns), so the floating-point result is ndimage's to the bit;
    the sums run along image rows (one pass per kernel weight over an
    edge-padded input row in cache), which the compiler vectorises.
    """
    ny, nx = data.shape
    ky, kx = weights.shape
    ry, rx = ky // 2, kx // 2
    padded = np.empty(nx + 2 * rx)
    for y in range(ny):
        acc = out[y]
        acc[:] = 0.0
        for i in range(ky):
            src = data[min(max(y + i - ry, 0), ny - 1)]
            padded[rx:rx + nx] = src
            padded[:rx] = src[0]
            padded[rx + nx:] = src[nx - 1]
            for j in range(kx):
                w = weights[i, j]
                for x in range(nx):
                    acc[x] += padded[x + j] * w
    return out


def detect_array(sci: np.ndarray, var: np.ndarray | None = None, dq: np.ndarray | None = None, *,
                 detect_thresh: float = 2.0, analysis_thresh: float = 2.0, detect_minarea: int = 8,
                 deblend_mincont: float = 0.005, back_size: int = 32, back_filtersize: int = 8,
                 phot_min_radius: float = 3.5, mask: bool = False, replace_flags: int = 249,
                 saturation: float | None = None, wcs=None, pixel_scale: float | None = None,
                 catalog: bool = True) -> tuple[Table | None, np.ndarray]:
    """Detect sources on one array.

    ``catalog=False`` skips the measurements (~40 % of a detection): the
    mask is the same, deblending included.

    Returns
    -------
    catalog : astropy.table.Table or None
        OBJCAT rows (columns :data:`COLUMNS`), positions 1-based; None with ``catalog=False``.
    segmentation : numpy.ndarray
        bool map of source pixels (the OBJMASK).
    """
    from photutils.segmentation import SourceCatalog, detect_sources

    data = np.array(sci, dtype=np.float64)
    bad = ~np.isfinite(data)
    flagged = np.zeros(data.shape, bool) if dq is None else (dq & replace_flags) != 0
    replace = (flagged | bad) if mask else bad
    if replace.any():  # (the median of 4 M pixels costs ~0.1 s: only when something is replaced)
        good = ~(bad | flagged)
        data[replace] = np.median(data[good]) if good.any() else 0.0
    background, rms = estimate_background(data, bad | flagged, back_size=back_size,
                                          back_filtersize=back_filtersize)
    if not rms.min() > 0:  # (false for NaN too)
        rms = np.where(rms > 0, rms, np.max(rms) if np.max(rms) > 0 else 1.0)
    residual = data - background
    convolved = smooth(residual)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no sources found" is an answer, not a problem
        segm = detect_sources(convolved, detect_thresh * rms, n_pixels=int(detect_minarea))
    if segm is None:
        return (empty_catalog() if catalog else None), np.zeros(data.shape, bool)
    parents = segm.data
    parent_pixels = _SourcePixels(parents)
    segm = deblend(convolved, segm, parent_pixels, n_pixels=int(detect_minarea), contrast=deblend_mincont)
    if not catalog:
        return None, segm.data > 0
    error = np.sqrt(np.clip(var, 0, None)) if var is not None else rms
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cat = SourceCatalog(residual, segm, convolved_data=convolved, error=error, mask=bad,
                            background=background, kron_params=(2.5, float(phot_min_radius), 0.0))
        pixels = parent_pixels if segm.data is parents else parent_pixels.relabelled(segm.data)
        table = _catalog_table(cat, segm, pixels, parents, residual, rms, dq, analysis_thresh, saturation, data,
                               wcs, pixel_scale)
    return table, segm.data > 0


def _col(values) -> np.ndarray:
    arr: np.ndarray = np.ma.filled(np.ma.asarray(values, dtype=float), np.nan)
    return np.asarray(arr, dtype=float)


def _catalog_table(cat, segm, pixels: _SourcePixels, parents, residual, rms, dq, analysis_thresh, saturation,
                   data, wcs, pixel_scale) -> Table:
    labels = np.asarray(segm.labels)
    x, y = _col(cat.xcentroid), _col(cat.ycentroid)
    flux, fluxerr = _col(cat.kron_flux), _col(cat.kron_flux_err)
    fwhm = _col(cat.fwhm.value if hasattr(cat.fwhm, "value") else cat.fwhm)
    radius = aperture_radius(fwhm, flux, fluxerr)
    aper, apererr = (_col(v) for v in cat.circular_photometry(radius))
    a = _col(getattr(cat.semimajor_sigma, "value", cat.semimajor_sigma))
    b = _col(getattr(cat.semiminor_sigma, "value", cat.semiminor_sigma))
    theta = _col(getattr(cat.orientation, "value", cat.orientation))
    with np.errstate(divide="ignore", invalid="ignore"):
        mag = np.where(flux > 0, -2.5 * np.log10(flux), 99.0)
        magerr = np.where(flux > 0, 1.0857 * fluxerr / flux, 99.0)
    table = Table()
    table["NUMBER"] = np.arange(1, len(labels) + 1, dtype=np.int32)
    table["X_IMAGE"], table["Y_IMAGE"] = x + 1.0, y + 1.0
    # Windowed (Gaussian-weighted) centroids, as SExtractor's XWIN: less noise from the faint wings of a
    # segment than the isophotal barycentre, which matters for aligning a distorted mosaic to 0.05 px.
    # photutils 3 renamed them x_centroid_win / y_centroid_win; 1.x and 2.x call them xcentroid_win
    new_names = hasattr(type(cat), "x_centroid_win")
    xwin = cat.x_centroid_win if new_names else cat.xcentroid_win
    ywin = cat.y_centroid_win if new_names else cat.ycentroid_win
    table["XWIN_IMAGE"], table["YWIN_IMAGE"] = _col(xwin) + 1.0, _col(ywin) + 1.0
    table["X_WORLD"], table["Y_WORLD"] = _world(wcs, x, y)
    table["FLUX_AUTO"], table["FLUXERR_AUTO"] = flux, fluxerr
    table["FLUX_APER"], table["FLUXERR_APER"] = aper, apererr
    table["MAG_AUTO"], table["MAGERR_AUTO"] = mag, magerr
    table["FWHM_IMAGE"] = fwhm
    table["FWHM_WORLD"] = fwhm * (pixel_scale or np.nan) / 3600.0
    table["ELLIPTICITY"] = np.where(a > 0, 1.0 - b / np.where(a > 0, a, 1.0), 0.0)
    table["CLASS_STAR"] = class_star(fwhm, flux, fluxerr)
    table["FLAGS"] = _flags(cat, segm, pixels, parents, dq, saturation, data).astype(np.int16)
    above = pixels.take(residual) > analysis_thresh * pixels.take(rms)
    table["ISOAREA_IMAGE"] = pixels.count(above)[labels].astype(np.int32)
    table["A_IMAGE"], table["B_IMAGE"], table["THETA_IMAGE"] = a, b, theta
    table["BACKGROUND"] = _col(cat.background_centroid)
    table.meta["APERRAD"] = radius  # FLUX_APER radius (px); 8 characters: a plain FITS card when written
    return table


def aperture_radius(fwhm: np.ndarray, flux: np.ndarray, fluxerr: np.ndarray) -> float:
    """FLUX_APER's radius (px).

    ``APER_FWHM`` times the median FWHM of the well-measured sources, at least ``APER_RADIUS``.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        good = np.isfinite(fwhm) & (fwhm > 0) & (flux / fluxerr > 20)
    if good.sum() < 3:
        good = np.isfinite(fwhm) & (fwhm > 0)
    if not good.any():
        return APER_RADIUS
    return float(max(APER_RADIUS, APER_FWHM * np.median(fwhm[good])))


def _world(wcs, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if wcs is None or len(x) == 0:
        return np.full(len(x), np.nan), np.full(len(x), np.nan)
    ra, dec = wcs.all_pix2world(x, y, 0)
    return np.asarray(ra, float), np.asarray(dec, float)


def class_star(fwhm: np.ndarray, flux: np.ndarray, fluxerr: np.ndarray) -> np.ndarray:
    """A stellarity proxy in [0, 1]: 1 at the PSF width, falling linearly to 0 at 1.5 × the PSF width.

    The PSF width is the median FWHM of the sources detected at S/N > 20 (all
    sources if fewer than three are). This is not SExtractor's neural network.
    """
    if len(fwhm) == 0:
        return np.zeros(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = np.where(fluxerr > 0, flux / fluxerr, 0.0)
    bright = np.isfinite(fwhm) & (snr > 20)
    ref = fwhm[bright] if bright.sum() >= 3 else fwhm[np.isfinite(fwhm)]
    psf = np.median(ref) if ref.size else np.nan
    if not psf > 0:
        return np.full(len(fwhm), 0.5)
    return np.clip(1.0 - (fwhm / psf - 1.0) / 0.5, 0.0, 1.0)


class _SourcePixels:
    """The pixels of a segmentation map that belong to a source, for per-label reductions.

    ``scipy.ndimage`` reductions by label visit every pixel of the image
    (0.15 s each at 2048²); sources cover a few per cent of it, so reducing
    over their pixels alone is ~10x cheaper and gives the same numbers.
    """

    def __init__(self, segmentation: np.ndarray, index: np.ndarray | None = None):
        flat = segmentation.ravel()
        # ``index``: the source pixels when already known (a deblended map has its parents' pixels)
        self.index = np.flatnonzero(flat) if index is None else index
        self.label = flat[self.index]
        self.size = int(self.label.max(initial=0)) + 1

    def take(self, image: np.ndarray) -> np.ndarray:
        """``image`` at the source pixels."""
        return image.ravel()[self.index]

    def count(self, condition: np.ndarray) -> np.ndarray:
        """Per label (index = label), how many of its pixels meet ``condition`` (given at the source pixels)."""
        return np.bincount(self.label[condition], minlength=self.size)

    def maximum(self, values: np.ndarray) -> np.ndarray:
        """Per label, the largest of ``values`` (given at the source pixels); 0 for labels without pixels."""
        out = np.zeros(self.size, dtype=np.result_type(values.dtype, np.int64))
        np.maximum.at(out, self.label, values)
        return out

    def relabelled(self, segmentation: np.ndarray) -> _SourcePixels:
        """The same pixels labelled by ``segmentation`` (a deblended map: same source pixels, new labels)."""
        return _SourcePixels(segmentation, self.index)

    def peak_counts(self, segmentation: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Per label, how many of its pixels are not below any 8-connected neighbour of the same label."""
        ny, nx = segmentation.shape
        y, x = np.divmod(self.index, nx)
        at = values.ravel()[self.index]
        flat_labels, flat_values = segmentation.ravel(), values.ravel()
        peak = np.ones(self.index.size, bool)
        for dy, dx in ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)):
            yy, xx = y + dy, x + dx
            inside = (yy >= 0) & (yy < ny) & (xx >= 0) & (xx < nx)
            j = (self.index + (dy * nx + dx))[inside]
            higher = (flat_labels[j] == self.label[inside]) & (flat_values[j] > at[inside])
            peak[np.flatnonzero(inside)[higher]] = False
        return self.count(peak)


def deblend(convolved: np.ndarray, segm, pixels: _SourcePixels, *, n_pixels: int, contrast: float):
    """Deblend with photutils' ``deblend_sources`` (32 exponential levels, 8-connected) where a segment can split.

    photutils re-thresholds every segment of at least ``2 n_pixels`` at 32
    levels (a third of a detection's time on full-size F2 frames); a
    segment splits only where some level cuts it into two or more pieces.
    Every piece of a level holds a pixel not below any neighbour of the
    segment (its highest), so a segment with one such pixel never splits:
    only the others (~1 % of them) are given to photutils, which returns the
    same map as when given all.  ``segm`` itself when nothing splits.
    """
    from photutils.segmentation import SegmentationImage, deblend_sources

    if contrast >= 1 or segm.n_labels == 0:
        return segm
    peaks = pixels.peak_counts(segm.data, convolved)
    areas = np.bincount(pixels.label, minlength=pixels.size)
    candidates = np.flatnonzero((areas >= 2 * n_pixels) & (peaks >= 2))
    if candidates.size == 0:
        return segm
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # photutils numbers the pieces after the last label, then renumbers the labels in order with a
            # np.unique of the whole map (40 ms at 2048^2): the same numbering is read off the source pixels
            split = deblend_sources(convolved, segm, n_pixels, labels=candidates, contrast=contrast,
                                    relabel=False, progress_bar=False).data
    except (ValueError, MemoryError):
        return segm
    flat = split.ravel()
    labels = flat[pixels.index]
    present = np.bincount(labels) > 0
    present[0] = False
    consecutive = np.zeros(present.size, dtype=split.dtype)
    consecutive[present] = np.arange(1, np.count_nonzero(present) + 1, dtype=split.dtype)
    flat[pixels.index] = consecutive[labels]
    return SegmentationImage(split)


def _flags(cat, segm, pixels: _SourcePixels, parents, dq, saturation, data) -> np.ndarray:
    """SExtractor-like FLAGS: 1 bad pixels in the object, 2 deblended, 4 saturated, 8 touches the edge."""
    labels = np.asarray(segm.labels)
    flags = np.zeros(len(labels), dtype=np.int64)
    if dq is not None:
        dq_at = pixels.take(dq)
        flags |= 1 * (pixels.count((dq_at & _BAD_BITS) != 0)[labels] > 0)
        flags |= 4 * (pixels.count((dq_at & _SATURATED) != 0)[labels] > 0)
    if saturation is not None:
        flags |= 4 * (pixels.count(pixels.take(data) >= saturation)[labels] > 0)
    # A source is deblended when its parent segment holds more than one source.
    parent_of = pixels.maximum(pixels.take(parents))[labels].astype(int)
    counts = np.bincount(parent_of, minlength=parent_of.max(initial=0) + 1)
    flags |= 2 * (counts[parent_of] > 1)
    ny, nx = segm.data.shape
    bbox_edge = np.array([(bb.ixmin == 0) | (bb.iymin == 0) | (bb.ixmax >= nx) | (bb.iymax >= ny)
                          for bb in cat.bbox], dtype=bool)
    flags |= 8 * bbox_edge
    return flags


def spline_coefficients(mask: np.ndarray, order: int) -> np.ndarray:
    """Spline coefficients of a whole mask for interpolation of ``order`` (the mask itself for order <= 1)."""
    data = np.asarray(mask, np.float32)
    return ndimage.spline_filter(data, order=order, mode="constant") if order > 1 else data


#: Pixels between the WCS evaluations of a mask transfer (resampleToCommonFrame's coarse step).
MAP_STEP = 32


def transfer_mask_tile(sources: Sequence[tuple[np.ndarray, Any]], target_wcs: Any, box: tuple[int, int, int, int],
                       *, order: int, threshold: float, step: int = MAP_STEP,
                       shape: tuple[int, int] | None = None) -> np.ndarray:
    """One tile of a mask resampled from other grids through their WCSs (transferObjectMask).

    Parameters
    ----------
    sources
        ``(coefficients, wcs)`` per source mask: :func:`spline_coefficients` of
        the whole mask and its astropy WCS.
    target_wcs
        WCS of the array the tile belongs to.
    box
        ``(y0, y1, x0, x1)`` of the tile in that array (0-based, ends exclusive).
    order, threshold
        Interpolation order; a pixel is set where the interpolated mask exceeds ``threshold``.
    step
        Pixels between the WCS evaluations: the WCSs are evaluated on a grid
        of this step from the array's origin (and its last row and column)
        and the source positions interpolated linearly in between, as
        resampleToCommonFrame maps its pixels. Evaluating both WCSs at every
        pixel took ~85 % of the transfer (~1.4 s of CPU per full-size F2 frame).
    shape
        The whole array's (ny, nx) (default: the box's ends). The grid is
        the array's, not the tile's, so a pixel gets the same value from any
        tile that holds it: tasks that compute a few rows beyond their band
        (for a dilation) agree with the tasks those rows belong to.

    Returns
    -------
    ndarray of uint8, shape (y1 - y0, x1 - x0)
        1 where any source mask covers the pixel.
    """
    y0, y1, x0, x1 = box
    ny, nx = shape if shape is not None else (y1, x1)
    gy, gx = anchored_axis(y0, y1, ny, step), anchored_axis(x0, x1, nx, step)
    yy, xx = np.meshgrid(gy, gx, indexing="ij")
    ra, dec = target_wcs.all_pix2world(xx.ravel(), yy.ravel(), 0)
    rows, cols = grid_weights(gy, y0, y1), grid_weights(gx, x0, x1)
    out = np.zeros((y1 - y0) * (x1 - x0), dtype=bool)
    for mask, wcs in sources:
        sx, sy = wcs.all_world2pix(ra, dec, 0)
        # bilinear between the grid points, separably: the grid rows to the tile's rows, then along them
        fy = lerp_along(lerp_along(sy.reshape(yy.shape), *rows, 0), *cols, 1).ravel()
        fx = lerp_along(lerp_along(sx.reshape(yy.shape), *rows, 0), *cols, 1).ravel()
        values = ndimage.map_coordinates(mask, [fy, fx], order=order, mode="constant", cval=0.0, prefilter=False)
        out |= values > threshold
    return out.reshape(y1 - y0, x1 - x0).astype(np.uint8)
