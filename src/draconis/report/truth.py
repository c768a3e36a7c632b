"""A stack against the simulator's truth: photometry and astrometry of its isolated stars (``draconis demo``).

Stars of the truth catalogue (``truth/sources.ecsv``) that are isolated (no
other source within :data:`ISOLATION` pixels), inside the stack and free of
flagged pixels are measured in a box of :data:`BOX` pixels less the median
of an annulus: the flux against the truth (in electrons per exposure of the
reference frame) and the flux-weighted centroid against the truth position.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

from ..kernels.calib import NO_DATA, NON_LINEAR, SATURATED

BOX = 8          # half-size of the photometry box (pixels)
ANNULUS = (10, 14)
ISOLATION = 15


@dataclasses.dataclass
class TruthComparison:
    """How a stack's isolated stars compare with the truth."""

    stars: int
    flux_ratio_median: float
    flux_ratio_scatter: float
    offset_median_arcsec: tuple[float, float]
    offset_scatter_arcsec: float
    background_median: float

    def lines(self) -> list[str]:
        """A short account for the terminal."""
        if not self.stars:
            return ["  no isolated, unflagged truth star inside the stack to compare"]
        out = [f"  photometry: {self.stars} isolated stars, flux / truth = {self.flux_ratio_median:.3f} (median), "
               f"scatter {self.flux_ratio_scatter:.3f}",
               f"  astrometry: common offset E {self.offset_median_arcsec[0]:+.3f}\", "
               f"N {self.offset_median_arcsec[1]:+.3f}\"; star-to-star scatter {self.offset_scatter_arcsec:.3f}\""]
        out.append(f"  background: median {self.background_median:.2f} e- (truth 0 after sky subtraction)")
        return out


def compare_with_truth(stack, truth_dir: str | os.PathLike, exptime: float) -> TruthComparison:
    """Measure the isolated truth stars of ``stack`` (a draconis frame); fluxes are e-/s x ``exptime``."""
    from astropy.table import Table

    from .measure import planes

    sources = Table.read(os.path.join(truth_dir, "sources.ecsv"))
    sci, _var, dq = planes(stack)
    dq = np.zeros(sci.shape, np.uint16) if dq is None else dq
    wcs = stack[0].wcs.celestial
    x, y = wcs.all_world2pix(np.asarray(sources["ra"], float), np.asarray(sources["dec"], float), 0)
    flux = np.asarray(sources["flux_e_per_s"], float) * exptime
    star = np.array([str(k).lower() == "star" for k in sources["kind"]]) if "kind" in sources.colnames \
        else np.ones(len(x), bool)
    sep = np.hypot(x[:, None] - x[None], y[:, None] - y[None]) + np.eye(len(x)) * 1e9
    margin = ANNULUS[1] + 1
    keep = star & (sep.min(axis=1) > ISOLATION) & (x > margin) & (y > margin)
    keep &= (x < sci.shape[1] - margin) & (y < sci.shape[0] - margin)
    ratios, offsets = [], []
    for xi, yi, f in zip(x[keep], y[keep], flux[keep]):
        measured = _measure(sci, dq, xi, yi)
        if measured is not None:
            ratios.append(measured[0] / f)
            offsets.append(measured[1:])
    good = (dq & ~np.uint16(NON_LINEAR)) == 0
    background = float(np.median(sci[good])) if good.any() else float("nan")
    if not ratios:
        return TruthComparison(0, float("nan"), float("nan"), (float("nan"),) * 2, float("nan"), background)
    ratio_values, offset_values = np.array(ratios), np.array(offsets)
    east_north = _to_east_north(wcs, x[keep][:len(offset_values)], y[keep][:len(offset_values)], offset_values)
    med = np.median(east_north, axis=0)
    scatter = float(np.sqrt(np.mean(np.sum((east_north - med) ** 2, axis=1))))
    return TruthComparison(len(ratio_values), float(np.median(ratio_values)), float(np.std(ratio_values)),
                           (float(med[0]), float(med[1])), scatter, background)


def _measure(sci: np.ndarray, dq: np.ndarray, xi: float, yi: float) -> tuple[float, float, float] | None:
    cx, cy = int(round(xi)), int(round(yi))
    box = (slice(cy - BOX, cy + BOX + 1), slice(cx - BOX, cx + BOX + 1))
    if (dq[box] & (SATURATED | NO_DATA)).any():
        return None
    ay, ax = np.mgrid[cy - ANNULUS[1]:cy + ANNULUS[1] + 1, cx - ANNULUS[1]:cx + ANNULUS[1] + 1]
    r = np.hypot(ax - xi, ay - yi)
    ring = (r >= ANNULUS[0]) & (r <= ANNULUS[1]) & (dq[ay, ax] == 0)
    if ring.sum() < 10:
        return None
    cut = sci[box] - np.median(sci[ay[ring], ax[ring]])
    yy, xx = np.mgrid[box]
    total = cut.sum()
    if not total > 0:
        return None
    return float(total), float((cut * xx).sum() / total - xi), float((cut * yy).sum() / total - yi)


def _to_east_north(wcs, x: np.ndarray, y: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Pixel offsets (measured - truth) as (east, north) arcsec on the sky."""
    ra0, dec0 = wcs.all_pix2world(x, y, 0)
    ra1, dec1 = wcs.all_pix2world(x + offsets[:, 0], y + offsets[:, 1], 0)
    east = ((ra1 - ra0 + 180.0) % 360.0 - 180.0) * np.cos(np.radians(dec0)) * 3600.0
    return np.column_stack([east, (dec1 - dec0) * 3600.0])
