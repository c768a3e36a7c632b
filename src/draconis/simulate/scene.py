"""The sky: a catalogue of stars and galaxies, and its rendering onto an array.

Sources are Gaussian on the sky (galaxies wider than the PSF), so an image
is the sum of small stamps, each integrated exactly over the pixels with the
error function: a stamp's pixels add up to the source flux (less what falls
outside the stamp, under 1e-6 of it).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import erf

from .geometry import tan_deproject, tan_project

__all__ = ["Catalogue", "make_catalogue", "render_sources"]

_FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))


@dataclass
class Catalogue:
    """Sources with RA/Dec (deg), flux (e- per second at the array) and size."""

    ra: np.ndarray
    dec: np.ndarray
    flux: np.ndarray
    kind: np.ndarray  # 'star', 'galaxy', 'saturated_star', 'target'
    fwhm: np.ndarray  # intrinsic FWHM (arcsec); 0 for point sources

    def __len__(self) -> int:
        return len(self.ra)


def make_catalogue(rng: np.random.Generator, centre: tuple[float, float],
                   regions: list[tuple[float, float, float]], *, density: float, flux_range: tuple[float, float],
                   n_galaxies: int = 3, n_saturated: int = 2, saturating_flux: float = 0.0,
                   extra: Sequence[tuple[float, float, float, str, float]] = (), min_stars: int = 6) -> Catalogue:
    """Random sources over square ``regions`` (xi, eta centre, half-size; arcsec) about ``centre``.

    ``density`` is stars per square arcminute; fluxes are log-uniform over
    ``flux_range`` (e-/s).  ``extra`` adds fixed sources (xi, eta, flux,
    kind, fwhm).
    """
    xi, eta, flux, kind, fwhm = [], [], [], [], []
    for cx, cy, half in regions:
        area = (2 * half / 60.0) ** 2
        n = max(min_stars, int(rng.poisson(density * area)))
        xi += list(cx + rng.uniform(-half, half, n))
        eta += list(cy + rng.uniform(-half, half, n))
        low, high = np.log(flux_range)
        flux += list(np.exp(rng.uniform(low, high, n)))
        kind += ["star"] * n
        fwhm += [0.0] * n
        for _ in range(n_galaxies):
            xi.append(cx + rng.uniform(-0.8, 0.8) * half)
            eta.append(cy + rng.uniform(-0.8, 0.8) * half)
            flux.append(float(np.exp(rng.uniform(*np.log(flux_range)))) * 3)
            kind.append("galaxy")
            fwhm.append(float(rng.uniform(0.8, 2.0)))
        for _ in range(n_saturated):
            xi.append(cx + rng.uniform(-0.7, 0.7) * half)
            eta.append(cy + rng.uniform(-0.7, 0.7) * half)
            flux.append(saturating_flux * float(rng.uniform(1.5, 3.0)))
            kind.append("saturated_star")
            fwhm.append(0.0)
    for x, y, f, k, w in extra:
        xi.append(x)
        eta.append(y)
        flux.append(f)
        kind.append(k)
        fwhm.append(w)
    ra, dec = tan_deproject(np.array(xi), np.array(eta), *centre)
    return Catalogue(np.atleast_1d(ra), np.atleast_1d(dec), np.array(flux, float), np.array(kind),
                     np.array(fwhm, float))


def _profile(edges_lo: np.ndarray, centre: float, sigma: float) -> np.ndarray:
    s = sigma * np.sqrt(2.0)
    return 0.5 * (erf((edges_lo + 1.0 - centre) / s) - erf((edges_lo - centre) / s))


def render_sources(image: np.ndarray, cat: Catalogue, to_pixels, pointing: tuple[float, float],
                   psf_fwhm: float, scale: float, exptime: float) -> int:
    """Add ``cat`` (flux x exptime electrons) to ``image`` in place; returns sources drawn.

    ``to_pixels(xi, eta)`` maps tangent-plane offsets (arcsec) about the
    actual ``pointing`` to 1-based pixel (x, y); ``scale`` (arcsec/pixel)
    sizes the stamps.
    """
    if len(cat) == 0:
        return 0
    xi, eta = tan_project(cat.ra, cat.dec, *pointing)
    x, y = to_pixels(xi, eta)
    x0, y0 = np.asarray(x, float) - 1.0, np.asarray(y, float) - 1.0  # 0-based pixel centres
    rows, cols = image.shape
    drawn = 0
    for i in range(len(cat)):
        sigma = np.hypot(psf_fwhm, cat.fwhm[i]) * _FWHM_TO_SIGMA / scale
        half = int(np.ceil(5 * sigma)) + 1
        cx, cy = x0[i], y0[i]
        if not (-half < cx < cols + half and -half < cy < rows + half):
            continue
        c_lo, c_hi = max(int(np.floor(cx)) - half, 0), min(int(np.floor(cx)) + half + 1, cols)
        r_lo, r_hi = max(int(np.floor(cy)) - half, 0), min(int(np.floor(cy)) + half + 1, rows)
        if c_lo >= c_hi or r_lo >= r_hi:
            continue
        # Pixel j covers [j - 0.5, j + 0.5] in 0-based coordinates.
        px = _profile(np.arange(c_lo, c_hi) - 0.5, cx, sigma)
        py = _profile(np.arange(r_lo, r_hi) - 0.5, cy, sigma)
        image[r_lo:r_hi, c_lo:c_hi] += (cat.flux[i] * exptime) * np.outer(py, px)
        drawn += 1
    return drawn
