"""Detector effects: the static truth maps and the readout of one exposure.

The static maps of an array (drawn once per dataset) are its dark current
(e-/s, with hot pixels), its response (pixel-to-pixel ~1 % times a smooth
gradient, dead pixels near 0, times the illumination pattern) and the bad
pixel mask.  :func:`read_out` turns the electrons collected in one exposure
into raw ADU: Poisson noise, cosmic rays, the inverse of the pipeline's
non-linearity correction, saturation, read noise and the gain.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .instruments import ArrayModel

__all__ = ["ArrayTruth", "EFFECTS", "make_array_truth", "read_out", "add_cosmic_rays"]

#: Every switchable effect and its default.
EFFECTS: dict[str, bool] = {
    "bias": True,
    "dark_current": True,
    "nonlinearity": True,
    "read_noise": True,
    "poisson": True,
    "flat": True,
    "illumination": True,
    "sky": True,
    "sky_drift": True,
    "sources": True,
    "pointing_error": True,
    "bad_pixels": True,
    "cosmic_rays": True,
    "saturation": True,
}

#: Hot pixels: dark current (e-/s) range, loud even in the 1 s NIRI darks.
HOT_PIXEL_RATE = (40000.0, 90000.0)
#: Fraction of pixels that are hot, and that are dead.
HOT_FRACTION = 0.002
DEAD_FRACTION = 0.002


@dataclass
class ArrayTruth:
    """Static truth of one array."""

    dark_current: np.ndarray  # e-/s
    response: np.ndarray  # flat pattern incl. illumination, median 1 where lit
    illumination: np.ndarray  # bool
    bad: np.ndarray  # bool: hot or dead


def make_array_truth(rng: np.random.Generator, shape: tuple[int, int], mean_dark: float,
                     effects: dict[str, bool], illumination: np.ndarray | None) -> ArrayTruth:
    """Draw the static maps of one array."""
    rows, cols = shape
    if effects["dark_current"]:
        dark = rng.lognormal(np.log(max(mean_dark, 1e-6)), 0.3, shape)
    else:
        dark = np.zeros(shape)
    yy, xx = np.mgrid[0:rows, 0:cols]
    if effects["flat"]:
        # Smooth +-5 % gradient with a random direction, and 1 % pixel-to-pixel.
        angle = rng.uniform(0, 2 * np.pi)
        ramp = (np.cos(angle) * (xx / max(cols - 1, 1) - 0.5) + np.sin(angle) * (yy / max(rows - 1, 1) - 0.5))
        response = (1.0 + 0.1 * ramp) * rng.normal(1.0, 0.01, shape)
    else:
        response = np.ones(shape)
    bad = np.zeros(shape, bool)
    if effects["bad_pixels"]:
        n = rows * cols
        n_hot, n_dead = max(1, int(HOT_FRACTION * n)), max(1, int(DEAD_FRACTION * n))
        # Distinct random pixels without permuting the whole array (slow at 2048 x 2048).
        picks = np.unique(rng.integers(0, n, 3 * (n_hot + n_dead) + 8))
        picks = rng.permutation(picks)[:n_hot + n_dead]
        hot, dead = picks[:n_hot], picks[n_hot:]
        dark.ravel()[hot] = rng.uniform(*HOT_PIXEL_RATE, hot.size)
        response.ravel()[dead] = rng.uniform(0.0, 0.05, dead.size)
        bad.ravel()[hot] = True
        bad.ravel()[dead] = True
    lit = np.ones(shape, bool) if illumination is None or not effects["illumination"] else illumination
    response = np.where(lit, response, 0.0)
    good = lit & ~bad
    response = response / np.median(response[good]) if good.any() else response
    return ArrayTruth(dark, response, lit, bad)


def add_cosmic_rays(rng: np.random.Generator, electrons: np.ndarray, exptime: float,
                    rate_per_mpix_s: float = 0.5) -> int:
    """Add cosmic-ray hits (1-3 pixel tracks of 3000-30000 e-) in place; returns their number."""
    rows, cols = electrons.shape
    n = int(rng.poisson(rate_per_mpix_s * rows * cols / 1e6 * exptime))
    for _ in range(n):
        r, c = int(rng.integers(0, rows)), int(rng.integers(0, cols))
        length = int(rng.integers(1, 4))
        dr, dc = (0, 1) if rng.random() < 0.5 else (1, 0)
        energy = rng.uniform(3000.0, 30000.0)
        for k in range(length):
            rr, cc = r + k * dr, c + k * dc
            if rr < rows and cc < cols:
                electrons[rr, cc] += energy / length
    return n


def read_out(rng: np.random.Generator, array: ArrayModel, expected: np.ndarray, bias: float,
             effects: dict[str, bool], cosmic_exptime: float = 0.0) -> tuple[np.ndarray, int]:
    """Raw ADU (float32) of one exposure; also the number of cosmic rays.

    ``expected`` is the mean number of electrons collected (sky, sources,
    lamp and dark current, already through the response); ``bias`` (e-) is
    added without noise.  Cosmic rays are added when ``cosmic_exptime`` > 0.
    """
    electrons = rng.poisson(np.clip(expected, 0, None)).astype(np.float64) if effects["poisson"] \
        else np.array(expected, dtype=np.float64)
    n_cr = add_cosmic_rays(rng, electrons, cosmic_exptime) if effects["cosmic_rays"] and cosmic_exptime > 0 else 0
    electrons += bias
    if effects["nonlinearity"] and array.delinearize is not None:
        electrons = array.delinearize(electrons)
    if effects["read_noise"]:
        electrons += rng.normal(0.0, array.read_noise, electrons.shape)
    adu = electrons / array.gain
    if effects["saturation"]:
        np.minimum(adu, array.saturation_adu, out=adu)
    return adu.astype(np.float32), n_cr
