"""The simulator's truth on a reduced image's grid: sources rendered through its WCS, and the sky it should have.

Used by the end-to-end truth tests: ``SCI - source_model(...) - expected_sky`` of a stack is what the
pipeline left behind, to be compared with zero within the stack's VAR.
"""
from __future__ import annotations

import numpy as np
from astropy.table import Table
from scipy.special import erf

FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))


def pixel_scale(wcs) -> float:
    """Arcsec per pixel of a celestial WCS (square root of the CD determinant)."""
    return float(np.sqrt(abs(np.linalg.det(wcs.pixel_scale_matrix))) * 3600.0)


def _profile(edges: np.ndarray, centre: float, sigma: float) -> np.ndarray:
    return np.diff(0.5 * erf((edges - centre) / (np.sqrt(2.0) * sigma)))


def source_model(shape: tuple[int, int], wcs, sources: Table, *, exptime: float, seeing: float,
                 field: str = "target", nsigma: float = 7.0) -> np.ndarray:
    """Electrons of every truth source of ``field`` on the grid of ``wcs``: Gaussians (PSF of ``seeing``
    arcsec FWHM convolved with each source's own FWHM) integrated over the pixels."""
    model = np.zeros(shape)
    scale = pixel_scale(wcs)
    x, y = wcs.all_world2pix(np.asarray(sources["ra"], float), np.asarray(sources["dec"], float), 0)
    for xi, yi, row in zip(x, y, sources):
        if str(row["field"]) != field:
            continue
        sigma = np.hypot(seeing, float(row["fwhm_arcsec"])) * FWHM_TO_SIGMA / scale
        half = int(np.ceil(nsigma * sigma)) + 1
        x0, x1 = max(int(xi) - half, 0), min(int(xi) + half + 1, shape[1])
        y0, y1 = max(int(yi) - half, 0), min(int(yi) + half + 1, shape[0])
        if x0 >= x1 or y0 >= y1:
            continue
        px = _profile(np.arange(x0, x1 + 1) - 0.5, xi, sigma)
        py = _profile(np.arange(y0, y1 + 1) - 0.5, yi, sigma)
        model[y0:y1, x0:x1] += float(row["flux_e_per_s"]) * exptime * np.outer(py, px)
    return model


def compact_source_mask(shape: tuple[int, int], wcs, sources: Table, *, seeing: float, field: str = "target",
                        radius_sigma: float = 6.0, saturated_radius: float = 25.0) -> np.ndarray:
    """True near compact truth sources (stars, small galaxies), where a model with one mean PSF cannot
    describe a stack of frames of different seeing; saturated stars get ``saturated_radius`` pixels."""
    scale = pixel_scale(wcs)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    mask = np.zeros(shape, bool)
    x, y = wcs.all_world2pix(np.asarray(sources["ra"], float), np.asarray(sources["dec"], float), 0)
    for xi, yi, row in zip(x, y, sources):
        if str(row["field"]) != field:
            continue
        sigma = np.hypot(seeing, float(row["fwhm_arcsec"])) * FWHM_TO_SIGMA / scale
        if sigma * scale > 3.0 * seeing:  # an extended source: the model describes it
            continue
        radius = saturated_radius if "saturated" in str(row["kind"]) else radius_sigma * sigma + 2
        mask |= (xx - xi) ** 2 + (yy - yi) ** 2 < radius ** 2
    return mask
