"""Pixel <-> sky mappings of the simulated detectors.

Each array maps 1-based pixel coordinates to tangent-plane offsets (arcsec,
xi towards east, eta towards north) from the telescope pointing; a gnomonic
(TAN) projection about the pointing then gives RA/Dec.  F2, NIRI and GNIRS
arrays are linear (an orientation matrix at PA=0 rotated by the position
angle).  GSAOI arrays go through the static distortion polynomials of
``draconis/data/gsaoi_static_distortion.json`` (the truth), while their
headers carry only the best linear approximation, as real raw files do.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "tan_project", "tan_deproject", "rotation", "offset_pointing", "LinearArray",
    "DistortedArray", "load_gsaoi_distortion", "fit_affine",
]


def tan_deproject(xi, eta, ra0: float, dec0: float):
    """Tangent-plane offsets (arcsec) about (ra0, dec0) (deg) to RA, Dec (deg)."""
    x = np.radians(np.asarray(xi, dtype=float) / 3600.0)
    y = np.radians(np.asarray(eta, dtype=float) / 3600.0)
    a0, d0 = np.radians(ra0), np.radians(dec0)
    denom = np.cos(d0) - y * np.sin(d0)
    ra = a0 + np.arctan2(x, denom)
    dec = np.arctan2(np.sin(d0) + y * np.cos(d0), np.hypot(x, denom))
    return np.degrees(ra) % 360.0, np.degrees(dec)


def tan_project(ra, dec, ra0: float, dec0: float):
    """RA, Dec (deg) to tangent-plane offsets (arcsec) about (ra0, dec0)."""
    a = np.radians(np.asarray(ra, dtype=float))
    d = np.radians(np.asarray(dec, dtype=float))
    a0, d0 = np.radians(ra0), np.radians(dec0)
    cosc = np.sin(d0) * np.sin(d) + np.cos(d0) * np.cos(d) * np.cos(a - a0)
    xi = np.cos(d) * np.sin(a - a0) / cosc
    eta = (np.cos(d0) * np.sin(d) - np.sin(d0) * np.cos(d) * np.cos(a - a0)) / cosc
    return np.degrees(xi) * 3600.0, np.degrees(eta) * 3600.0


def rotation(pa_deg: float) -> np.ndarray:
    """Matrix turning PA=0 tangent-plane offsets into those at position angle ``pa_deg``.

    Matches real Gemini headers: CD(PA) = R(PA) @ CD(0).
    """
    c, s = np.cos(np.radians(pa_deg)), np.sin(np.radians(pa_deg))
    return np.array([[c, s], [-s, c]])


def offset_pointing(ra0: float, dec0: float, p: float, q: float, pa: float,
                    extra: tuple[float, float] = (0.0, 0.0)) -> tuple[float, float]:
    """Telescope pointing after a (p, q) offset (arcsec) at position angle ``pa``.

    p and q are instrument-frame offsets: at PA=0 the pointing moves east by p
    and north by q (RAOFFSET = p cos PA + q sin PA, DECOFFSE = -p sin PA + q
    cos PA, as in real headers).  ``extra`` adds an on-sky (east, north) error.
    """
    east, north = rotation(pa) @ np.array([p, q])
    ra, dec = tan_deproject(east + extra[0], north + extra[1], ra0, dec0)
    return float(ra), float(dec)


@dataclass(frozen=True)
class LinearArray:
    """A linear array: offsets = R(PA) @ m0 @ (pixel - ref), in arcsec.

    ``m0`` is the 2x2 plate matrix (arcsec/pixel) at PA=0; ``ref`` the 1-based
    pixel (x, y) that sees the pointing.
    """

    m0: np.ndarray
    ref: tuple[float, float]

    def matrix(self, pa: float) -> np.ndarray:
        """The rotation from detector pixels to sky offsets at position angle ``pa``."""
        return rotation(pa) @ self.m0

    def pix_to_offsets(self, x, y, pa: float):
        """Sky offsets (arcsec) of detector pixel positions."""
        m = self.matrix(pa)
        dx, dy = np.asarray(x, float) - self.ref[0], np.asarray(y, float) - self.ref[1]
        return m[0, 0] * dx + m[0, 1] * dy, m[1, 0] * dx + m[1, 1] * dy

    def offsets_to_pix(self, xi, eta, pa: float):
        """Detector pixel positions of sky offsets (arcsec)."""
        inv = np.linalg.inv(self.matrix(pa))
        xi, eta = np.asarray(xi, float), np.asarray(eta, float)
        return inv[0, 0] * xi + inv[0, 1] * eta + self.ref[0], inv[1, 0] * xi + inv[1, 1] * eta + self.ref[1]

    def header_wcs(self, pa: float) -> tuple[tuple[float, float], np.ndarray]:
        """(CRPIX, CD in deg/pixel) of the header WCS."""
        return self.ref, self.matrix(pa) / 3600.0


# ----------------------------------------------------------------------
# GSAOI static distortion
# ----------------------------------------------------------------------

def _poly_terms(coeffs: dict[str, float]):
    return [(int(k[1:].split("_")[0]), int(k[1:].split("_")[1]), v) for k, v in coeffs.items()]


def _eval(terms, x, y):
    out = np.zeros(np.broadcast(x, y).shape)
    for i, j, c in terms:
        out = out + c * x ** i * y ** j
    return out


def load_gsaoi_distortion() -> dict:
    """The packaged GSAOI static distortion model (parsed JSON).

    Only the data are shared with the pipeline: the simulator evaluates and
    inverts the polynomials with its own code, so a mistake in draconis'
    distortion code cannot hide in the truth.
    """
    from ..instruments.gsaoi.distortion import load_model

    return load_model()


class DistortedArray:
    """One GSAOI array: full-array 1-based pixels -> focal plane (u, v) arcsec.

    The focal-plane offsets at PA=0 point east (u) and north (v), as the
    sign of real GSAOI CD matrices shows (CD1_1 > 0 at PA=0).
    ``origin`` is the 0-based offset of the simulated (cropped) array inside
    the full 2048 x 2048 array.
    """

    def __init__(self, index: int, origin: tuple[int, int] = (0, 0)):
        model = load_gsaoi_distortion()
        self.index = index
        self.origin = origin
        self._fx = [t for comp in model["forward"] for t in _poly_terms(comp["parameters"][index]["x"])]
        self._fy = [t for comp in model["forward"] for t in _poly_terms(comp["parameters"][index]["y"])]
        self._bx = [t for comp in model["backward"] for t in _poly_terms(comp["parameters"][index]["x"])]
        self._by = [t for comp in model["backward"] for t in _poly_terms(comp["parameters"][index]["y"])]

    def forward(self, x, y):
        """Cropped-array 1-based pixels -> focal plane (u, v) arcsec."""
        xf = np.asarray(x, float) + self.origin[0]
        yf = np.asarray(y, float) + self.origin[1]
        return _eval(self._fx, xf, yf), _eval(self._fy, xf, yf)

    def backward(self, u, v, iterations: int = 3):
        """Focal plane (u, v) -> cropped-array pixels, refined by Newton steps."""
        u, v = np.asarray(u, float), np.asarray(v, float)
        x = _eval(self._bx, u, v) - self.origin[0]
        y = _eval(self._by, u, v) - self.origin[1]
        h = 0.5
        for _ in range(iterations):
            fu, fv = self.forward(x, y)
            ux, vx = self.forward(x + h, y)
            uy, vy = self.forward(x, y + h)
            a, b = (ux - fu) / h, (uy - fu) / h
            c, d = (vx - fv) / h, (vy - fv) / h
            det = a * d - b * c
            du, dv = u - fu, v - fv
            x = x + (d * du - b * dv) / det
            y = y + (-c * du + a * dv) / det
        return x, y

    def pix_to_offsets(self, x, y, pa: float):
        """Sky offsets (arcsec) of detector pixel positions."""
        u, v = self.forward(x, y)
        r = rotation(pa)
        return r[0, 0] * u + r[0, 1] * v, r[1, 0] * u + r[1, 1] * v

    def offsets_to_pix(self, xi, eta, pa: float):
        """Detector pixel positions of sky offsets (arcsec)."""
        r = np.linalg.inv(rotation(pa))
        xi, eta = np.asarray(xi, float), np.asarray(eta, float)
        return self.backward(r[0, 0] * xi + r[0, 1] * eta, r[1, 0] * xi + r[1, 1] * eta)

    def header_wcs(self, pa: float, shape: tuple[int, int]) -> tuple[tuple[float, float], np.ndarray]:
        """Best linear (CRPIX, CD deg/pixel) approximation over the array."""
        return fit_affine(lambda x, y: self.pix_to_offsets(x, y, pa), shape)


def fit_affine(mapping, shape: tuple[int, int], n: int = 17) -> tuple[tuple[float, float], np.ndarray]:
    """Least-squares affine fit of ``mapping(x, y) -> (xi, eta)`` arcsec.

    Returns the 1-based pixel where the fitted offsets vanish (CRPIX) and the
    CD matrix in degrees per pixel.
    """
    rows, cols = shape
    xg, yg = np.meshgrid(np.linspace(1, cols, n), np.linspace(1, rows, n))
    x, y = xg.ravel(), yg.ravel()
    xi, eta = mapping(x, y)
    design = np.column_stack([x, y, np.ones_like(x)])
    cx, *_ = np.linalg.lstsq(design, xi, rcond=None)
    cy, *_ = np.linalg.lstsq(design, eta, rcond=None)
    m = np.array([[cx[0], cx[1]], [cy[0], cy[1]]])
    crpix = np.linalg.solve(m, -np.array([cx[2], cy[2]]))
    return (float(crpix[0]), float(crpix[1])), m / 3600.0
