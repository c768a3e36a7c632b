"""Distortion models and their FITS form: 2-D polynomials, the focal plane and TAN-SIP headers.

A camera with a static distortion (GSAOI's four arrays) maps each array's
pixels into one focal plane (arcsec, ``u`` along the instrument's p axis,
``v`` along q) through a per-array polynomial (:class:`StaticDistortion`).
A frame's pointing then maps the focal plane onto the tangent plane of the
sky (xi towards east, eta north, arcsec): an affine transform as the headers
give it, or a low-order polynomial once alignment has fitted one.  The TAN
projection about the frame's tangent point gives RA/Dec.

Pixel -> focal plane -> tangent plane is a composition of polynomials, hence
a polynomial, and that is exactly what a TAN-SIP header says: intermediate
world coordinates ``CD @ (d + f(d))`` with ``d = pixel - CRPIX`` and ``f`` a
polynomial without constant or linear terms.  :func:`sip_header` writes the
composition exactly (CRPIX is the pixel that sees the tangent point; terms
of high degree are dropped only when they move no pixel by more than
``tol``, and the largest error is written as ``DISTRESI``), so every FITS
reader that knows SIP (astropy, ds9, ...) sees the same mapping as draconis,
and a file written and re-opened gives back the same mapping to the last
digit.  The inverse (AP/BP) is fitted; its largest error on the array is
written as ``DISTIRES`` (draconis itself inverts by iteration).

Everything here is plain NumPy on small arrays of coefficients; nothing
reads pixels.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from astropy.io import fits

__all__ = [
    "project", "deproject", "Poly2D", "PolyMap", "StaticDistortion", "sip_header", "header_polymap", "strip_wcs",
    "fit_polymap", "grid_points", "DISTORTION_KEYWORD", "RESIDUAL_KEYWORD", "INVERSE_RESIDUAL_KEYWORD",
]

#: Header keyword naming the static distortion model a WCS includes.
DISTORTION_KEYWORD = "DISTMODL"
#: Largest pixel error of the SIP forward polynomial against the model (truncation only).
RESIDUAL_KEYWORD = "DISTRESI"
#: Largest pixel error of the fitted SIP inverse (AP/BP) on the array.
INVERSE_RESIDUAL_KEYWORD = "DISTIRES"
#: SIP allows polynomial orders up to 9.
MAX_SIP_ORDER = 9
_WCS_PREFIXES = ("A_", "B_", "AP_", "BP_")
_WCS_KEYS = ("CTYPE1", "CTYPE2", "CRPIX1", "CRPIX2", "CRVAL1", "CRVAL2", "CD1_1", "CD1_2", "CD2_1", "CD2_2",
             "PC1_1", "PC1_2", "PC2_1", "PC2_2", "CDELT1", "CDELT2", "CUNIT1", "CUNIT2", "LONPOLE", "LATPOLE",
             DISTORTION_KEYWORD, RESIDUAL_KEYWORD, INVERSE_RESIDUAL_KEYWORD)


# ---------------------------------------------------------------------------
# the tangent plane
# ---------------------------------------------------------------------------
def project(ra: np.ndarray, dec: np.ndarray, ra0: float, dec0: float) -> tuple[np.ndarray, np.ndarray]:
    """Gnomonic projection about (ra0, dec0), degrees in; (xi east, eta north) in arcsec out."""
    ra, dec = np.radians(ra), np.radians(dec)
    a0, d0 = np.radians(ra0), np.radians(dec0)
    cosc = np.sin(d0) * np.sin(dec) + np.cos(d0) * np.cos(dec) * np.cos(ra - a0)
    xi = np.cos(dec) * np.sin(ra - a0) / cosc
    eta = (np.cos(d0) * np.sin(dec) - np.sin(d0) * np.cos(dec) * np.cos(ra - a0)) / cosc
    return np.degrees(xi) * 3600.0, np.degrees(eta) * 3600.0


def deproject(xi: np.ndarray, eta: np.ndarray, ra0: float, dec0: float) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`project`: (xi, eta) arcsec about (ra0, dec0) to (ra, dec) degrees."""
    x, y = np.radians(np.asarray(xi) / 3600.0), np.radians(np.asarray(eta) / 3600.0)
    a0, d0 = np.radians(ra0), np.radians(dec0)
    rho = np.hypot(x, y)
    c = np.arctan(rho)
    with np.errstate(invalid="ignore", divide="ignore"):
        dec = np.arcsin(np.cos(c) * np.sin(d0) + np.where(rho > 0, y * np.sin(c) * np.cos(d0) / rho, 0.0))
    ra = a0 + np.arctan2(x * np.sin(c), rho * np.cos(d0) * np.cos(c) - y * np.sin(d0) * np.sin(c))
    return np.degrees(ra) % 360.0, np.degrees(dec)



# ---------------------------------------------------------------------------
# 2-D polynomials
# ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, eq=False)
class Poly2D:
    """``p(x, y) = sum c[i, j] x**i y**j`` with a square coefficient array ``c``."""

    c: Any  # array-like in, a square float ndarray after __post_init__

    def __post_init__(self) -> None:
        c = np.atleast_2d(np.asarray(self.c, dtype=float))
        n = max(c.shape)
        if c.shape != (n, n):
            c = np.pad(c, ((0, n - c.shape[0]), (0, n - c.shape[1])))
        object.__setattr__(self, "c", c)

    @classmethod
    def zero(cls) -> Poly2D:
        """The zero polynomial."""
        return cls(np.zeros((1, 1)))

    @classmethod
    def from_terms(cls, terms: Mapping[str, float] | Iterable[tuple[int, int, float]]) -> Poly2D:
        """From ``{'c1_0': 0.02, ...}`` (astropy's names: x power, then y power) or (i, j, value) triples."""
        triples = [(int(k[1:].split("_")[0]), int(k[1:].split("_")[1]), float(v)) for k, v in terms.items()] \
            if isinstance(terms, Mapping) else [(int(i), int(j), float(v)) for i, j, v in terms]
        n = max((i + j for i, j, _ in triples), default=0) + 1
        c = np.zeros((n, n))
        for i, j, v in triples:
            c[i, j] += v
        return cls(c)

    @property
    def degree(self) -> int:
        """Highest i + j with a non-zero coefficient (0 for constants and zero)."""
        i, j = np.nonzero(self.c)
        return int((i + j).max()) if len(i) else 0

    def __call__(self, x, y) -> np.ndarray:
        """The polynomial's values at points (x, y)."""
        x, y = np.asarray(x, float), np.asarray(y, float)
        out = np.zeros(np.broadcast(x, y).shape)
        # Horner in x over polynomials in y: a few multiply-adds per coefficient.
        for i in range(self.c.shape[0] - 1, -1, -1):
            row = np.zeros_like(out)
            for j in range(self.c.shape[1] - 1, -1, -1):
                row = row * y + self.c[i, j]
            out = out * x + row
        return out

    def __add__(self, other: Poly2D) -> Poly2D:
        n = max(self.c.shape[0], other.c.shape[0])
        return Poly2D(_pad(self.c, n) + _pad(other.c, n))

    def __mul__(self, other: Poly2D | float) -> Poly2D:
        if isinstance(other, Poly2D):
            # imported here: scipy.signal (with scipy.stats) is ~0.6 s of import that every Dask worker
            # unpickling a primitive's task paid through draconis.primitives, for GSAOI's models only
            from scipy.signal import convolve2d

            return Poly2D(convolve2d(self.c, other.c))
        return Poly2D(self.c * float(other))

    __rmul__ = __mul__

    def __sub__(self, other: Poly2D) -> Poly2D:
        return self + other * -1.0

    def coefficient(self, i: int, j: int) -> float:
        """The coefficient of x**i y**j (0 beyond the array)."""
        return float(self.c[i, j]) if i < self.c.shape[0] and j < self.c.shape[1] else 0.0

    def truncated(self, degree: int, *, keep_from: int = 0) -> Poly2D:
        """Terms with ``keep_from <= i + j <= degree`` only."""
        i, j = np.indices(self.c.shape)
        total = i + j
        return Poly2D(np.where((total <= degree) & (total >= keep_from), self.c, 0.0)[:degree + 1, :degree + 1])

    def compose(self, a: Poly2D, b: Poly2D) -> Poly2D:
        """``self(a(x, y), b(x, y))`` as a polynomial in (x, y), exactly."""
        n = self.degree
        apow, bpow = [Poly2D(np.ones((1, 1)))], [Poly2D(np.ones((1, 1)))]
        for _ in range(n):
            apow.append(apow[-1] * a)
            bpow.append(bpow[-1] * b)
        out = Poly2D.zero()
        for i in range(n + 1):
            for j in range(n + 1 - i):
                if self.c[i, j] != 0.0:
                    out = out + (apow[i] * bpow[j]) * float(self.c[i, j])
        return out

    def shifted(self, x0: float, y0: float) -> Poly2D:
        """``q(x, y) = p(x + x0, y + y0)``."""
        return self.compose(Poly2D([[x0, 1.0], [0.0, 0.0]]).transpose(), Poly2D([[y0, 1.0], [0.0, 0.0]]))

    def transpose(self) -> Poly2D:
        """The polynomial with x and y exchanged."""
        return Poly2D(self.c.T)

    def derivative(self, axis: int) -> Poly2D:
        """d/dx (axis 0) or d/dy (axis 1)."""
        c = self.c
        if axis == 0:
            d = c[1:, :] * np.arange(1, c.shape[0])[:, None]
        else:
            d = c[:, 1:] * np.arange(1, c.shape[1])[None, :]
        return Poly2D(d if d.size else np.zeros((1, 1)))

    def terms(self, min_degree: int = 0) -> list[tuple[int, int, float]]:
        """Non-zero (i, j, value) with ``i + j >= min_degree``, by increasing degree."""
        i, j = np.nonzero(self.c)
        out = [(int(a), int(b), float(self.c[a, b])) for a, b in zip(i, j) if a + b >= min_degree]
        return sorted(out, key=lambda t: (t[0] + t[1], -t[0]))


def _pad(c: np.ndarray, n: int) -> np.ndarray:
    return np.pad(c, ((0, n - c.shape[0]), (0, n - c.shape[1])))


@dataclasses.dataclass(frozen=True, eq=False)
class PolyMap:
    """A polynomial map of the plane: ``(x, y) -> (px(x, y), py(x, y))``."""

    px: Poly2D
    py: Poly2D

    @classmethod
    def affine(cls, matrix, offset=(0.0, 0.0)) -> PolyMap:
        """``(x, y) -> matrix @ (x, y) + offset``."""
        m = np.asarray(matrix, float)
        return cls(Poly2D([[offset[0], m[0, 1]], [m[0, 0], 0.0]]), Poly2D([[offset[1], m[1, 1]], [m[1, 0], 0.0]]))

    @classmethod
    def identity(cls) -> PolyMap:
        """The identity map."""
        return cls.affine(np.eye(2))

    @property
    def degree(self) -> int:
        """The larger degree of the two polynomials."""
        return max(self.px.degree, self.py.degree)

    def __call__(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        """The map's values (px, py) at points (x, y)."""
        return self.px(x, y), self.py(x, y)

    def compose(self, inner: PolyMap) -> PolyMap:
        """``self(inner(x, y))``."""
        return PolyMap(self.px.compose(inner.px, inner.py), self.py.compose(inner.px, inner.py))

    def shifted(self, x0: float, y0: float) -> PolyMap:
        """``(x, y) -> self(x + x0, y + y0)``."""
        return PolyMap(self.px.shifted(x0, y0), self.py.shifted(x0, y0))

    def linear_matrix(self) -> np.ndarray:
        """The 2x2 matrix of the first-degree terms."""
        return np.array([[self.px.coefficient(1, 0), self.px.coefficient(0, 1)],
                         [self.py.coefficient(1, 0), self.py.coefficient(0, 1)]])

    def constant(self) -> np.ndarray:
        """The image of the origin."""
        return np.array([self.px.coefficient(0, 0), self.py.coefficient(0, 0)])

    def jacobian(self, x, y) -> np.ndarray:
        """d(px, py)/d(x, y) at the points, shape (..., 2, 2)."""
        parts = [p.derivative(a)(x, y) for p in (self.px, self.py) for a in (0, 1)]
        return np.stack(parts, axis=-1).reshape(np.broadcast(np.asarray(x), np.asarray(y)).shape + (2, 2))

    def matrix_applied(self, m) -> PolyMap:
        """``m @ self``: a fixed linear map applied to the output."""
        m = np.asarray(m, float)
        return PolyMap(self.px * m[0, 0] + self.py * m[0, 1], self.px * m[1, 0] + self.py * m[1, 1])

    def inverse(self, u, v, start: tuple[np.ndarray, np.ndarray] | None = None, *, tol: float = 1e-10,
                max_iter: int = 30) -> tuple[np.ndarray, np.ndarray]:
        """Points (x, y) with ``self(x, y) = (u, v)``, by Newton steps from ``start`` (default: linear inverse)."""
        u, v = np.broadcast_arrays(np.asarray(u, float), np.asarray(v, float))
        if start is None:
            minv = np.linalg.inv(self.linear_matrix())
            du, dv = u - self.constant()[0], v - self.constant()[1]
            x, y = minv[0, 0] * du + minv[0, 1] * dv, minv[1, 0] * du + minv[1, 1] * dv
        else:
            x, y = (np.array(np.broadcast_to(s, u.shape), float) for s in start)
        for _ in range(max_iter):
            fu, fv = self(x, y)
            ru, rv = u - fu, v - fv
            j = self.jacobian(x, y)
            det = j[..., 0, 0] * j[..., 1, 1] - j[..., 0, 1] * j[..., 1, 0]
            dx = (j[..., 1, 1] * ru - j[..., 0, 1] * rv) / det
            dy = (-j[..., 1, 0] * ru + j[..., 0, 0] * rv) / det
            x, y = x + dx, y + dy
            if np.all(np.abs(dx) < tol) and np.all(np.abs(dy) < tol):
                break
        return x, y


def fit_polymap(x, y, u, v, order: int, weights=None) -> PolyMap:
    """Least-squares polynomial map of ``order`` taking (x, y) to (u, v).

    Fitted in centred, scaled coordinates (well conditioned even for a small
    patch far from the origin), then expressed exactly in the original ones.
    """
    x, y, u, v = (np.asarray(a, float).ravel() for a in (x, y, u, v))
    cx, cy = x.mean(), y.mean()
    s = max(np.ptp(x), np.ptp(y), 1e-12) / 2.0
    xs, ys = (x - cx) / s, (y - cy) / s
    powers = [(i, j) for d in range(order + 1) for i in range(d, -1, -1) for j in [d - i]]
    design = np.column_stack([xs ** i * ys ** j for i, j in powers])
    w = np.ones_like(x) if weights is None else np.sqrt(np.asarray(weights, float).ravel())
    polys = []
    for values in (u, v):
        coef, *_ = np.linalg.lstsq(design * w[:, None], values * w, rcond=None)
        scaled = Poly2D.from_terms([(i, j, c) for (i, j), c in zip(powers, coef)])
        # q(x) = scaled((x - c) / s): compose with the affine normalisation
        polys.append(scaled.compose(Poly2D([[-cx / s, 0.0], [1.0 / s, 0.0]]), Poly2D([[-cy / s, 1.0 / s]])))
    return PolyMap(*polys)


def grid_points(shape: tuple[int, int], n: int = 21, margin: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """1-based pixel centres (x, y) on an n x n grid from the first to the last pixel (plus ``margin``)."""
    ny, nx = shape
    xs = np.linspace(1.0 - margin, nx + margin, n)
    ys = np.linspace(1.0 - margin, ny + margin, n)
    x, y = np.meshgrid(xs, ys)
    return x.ravel(), y.ravel()


# ---------------------------------------------------------------------------
# the static distortion of one array
# ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, eq=False)
class StaticDistortion:
    """One array's static distortion: 1-based full-array pixels <-> focal plane (arcsec).

    ``backward`` only starts the Newton inversion of ``forward``, so
    :meth:`to_pixel` is the exact inverse whatever the accuracy of the
    model's own backward polynomials.
    """

    name: str
    forward: PolyMap
    backward: PolyMap

    def __repr__(self) -> str:
        return f"<StaticDistortion {self.name!r} degree {self.forward.degree}>"

    def for_section(self, origin: tuple[int, int]) -> StaticDistortion:
        """The same model for a file whose pixel (1, 1) is full-array pixel (1 + ox, 1 + oy)."""
        ox, oy = float(origin[0]), float(origin[1])
        if ox == 0 and oy == 0:
            return self
        back = PolyMap(self.backward.px + Poly2D([[-ox]]), self.backward.py + Poly2D([[-oy]]))
        return StaticDistortion(self.name, self.forward.shifted(ox, oy), back)

    def to_focal(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        """Focal-plane (u, v) arcsec of 1-based pixels (x, y)."""
        return self.forward(x, y)

    def to_pixel(self, u, v) -> tuple[np.ndarray, np.ndarray]:
        """1-based pixels of focal-plane positions, exactly (Newton steps from the backward polynomials)."""
        return self.forward.inverse(u, v, start=self.backward(u, v))


# ---------------------------------------------------------------------------
# TAN-SIP headers
# ---------------------------------------------------------------------------
def strip_wcs(header: fits.Header) -> fits.Header:
    """A copy of ``header`` without celestial WCS and SIP keywords."""
    out = header.copy()
    for key in list(out.keys()):
        if key in _WCS_KEYS or (key.startswith(_WCS_PREFIXES) and (key[-1].isdigit() or key.endswith("ORDER"))):
            out.remove(key, ignore_missing=True, remove_all=True)
    return out


def sip_header(pix_to_tangent: PolyMap, crval: tuple[float, float], shape: tuple[int, int], *,
               model: str | None = None, tol: float = 1e-6) -> fits.Header:
    """TAN(-SIP) WCS cards of an array whose 1-based pixels map to tangent-plane arcsec by ``pix_to_tangent``.

    Parameters
    ----------
    pix_to_tangent
        Pixel (1-based) -> (xi east, eta north) arcsec about ``crval``.
    crval
        Tangent point (RA, Dec) in degrees.
    shape
        (rows, cols) of the array: where truncation and the inverse are checked.
    model
        Name of the distortion model (written as DISTMODL).
    tol
        Terms of high degree are dropped while the pixels they move stay under ``tol``.
    """
    crpix = _tangent_point_pixel(pix_to_tangent, shape)
    about = pix_to_tangent.shifted(*crpix)
    lin = about.linear_matrix()
    linv = np.linalg.inv(lin)
    # f = L^-1 (H - L d): the non-linear part in pixel units, exactly
    nonlin = PolyMap(about.px.truncated(MAX_SIP_ORDER * 3, keep_from=2),
                     about.py.truncated(MAX_SIP_ORDER * 3, keep_from=2)).matrix_applied(linv)
    x, y = grid_points(shape, 25, margin=2.0)
    dx, dy = x - crpix[0], y - crpix[1]
    order, resid = _sip_order(nonlin, dx, dy, tol)
    h = fits.Header()
    h["CTYPE1"] = ("RA---TAN-SIP" if order else "RA---TAN", "tangent projection" + (" with SIP" if order else ""))
    h["CTYPE2"] = ("DEC--TAN-SIP" if order else "DEC--TAN", "tangent projection" + (" with SIP" if order else ""))
    h["CRPIX1"], h["CRPIX2"] = float(crpix[0]), float(crpix[1])
    h["CRVAL1"], h["CRVAL2"] = float(crval[0]) % 360.0, float(crval[1])
    cd = lin / 3600.0
    h["CD1_1"], h["CD1_2"], h["CD2_1"], h["CD2_2"] = (float(c) for c in cd.ravel())
    if order:
        for name, poly in (("A", nonlin.px), ("B", nonlin.py)):
            h[f"{name}_ORDER"] = order
            for i, j, value in poly.truncated(order).terms(min_degree=2):
                h[f"{name}_{i}_{j}"] = value
        _write_inverse(h, nonlin.px.truncated(order), nonlin.py.truncated(order), dx, dy)
    if model:
        h[DISTORTION_KEYWORD] = (model, "static distortion model in this WCS")
    if order:
        h[RESIDUAL_KEYWORD] = (float(resid), "[pix] max error of SIP A/B against the model")
    return h


def _tangent_point_pixel(g: PolyMap, shape: tuple[int, int]) -> tuple[float, float]:
    """The 1-based pixel where ``g`` vanishes (it may lie off the array)."""
    ny, nx = shape
    cx, cy = (nx + 1) / 2.0, (ny + 1) / 2.0
    about = g.shifted(cx, cy)
    minv = np.linalg.inv(about.linear_matrix())
    start = -minv @ about.constant()
    x, y = g.inverse(0.0, 0.0, start=(cx + start[0], cy + start[1]), tol=1e-12)
    return float(x), float(y)


def _sip_order(nonlin: PolyMap, dx, dy, tol: float) -> tuple[int, float]:
    """Smallest SIP order whose dropped terms move no grid pixel by more than ``tol`` (0 if linear)."""
    full = max(nonlin.degree, 0)
    if full < 2:
        return 0, 0.0
    fx, fy = nonlin(dx, dy)
    for order in range(2, min(full, MAX_SIP_ORDER) + 1):
        tx, ty = nonlin.px.truncated(order)(dx, dy), nonlin.py.truncated(order)(dx, dy)
        err = float(np.max(np.hypot(tx - fx, ty - fy)))
        if err <= tol or order == min(full, MAX_SIP_ORDER):
            return order, err
    return full, 0.0  # pragma: no cover - loop always returns


def _write_inverse(h: fits.Header, fx: Poly2D, fy: Poly2D, dx, dy) -> None:
    """AP/BP: a fit of pixel offsets as (intermediate pixel + polynomial); residual in DISTIRES."""
    ux, uy = dx + fx(dx, dy), dy + fy(dx, dy)
    best = None
    for order in range(max(fx.degree, fy.degree, 2), MAX_SIP_ORDER + 1):
        inv = fit_polymap(ux, uy, dx - ux, dy - uy, order)
        px, py = inv(ux, uy)
        err = float(np.max(np.hypot(ux + px - dx, uy + py - dy)))
        if best is None or err < best[1]:
            best = (order, err, inv)
        if err < 1e-4:
            break
    assert best is not None  # the loop runs at least once
    order, err, inv = best
    for name, poly in (("AP", inv.px), ("BP", inv.py)):
        h[f"{name}_ORDER"] = order
        for i, j, value in poly.truncated(order).terms():
            h[f"{name}_{i}_{j}"] = value
    h[INVERSE_RESIDUAL_KEYWORD] = (err, "[pix] max error of SIP AP/BP on the array")


def header_polymap(header: fits.Header) -> PolyMap:
    """The pixel (1-based) -> tangent-plane arcsec map of a TAN or TAN-SIP header, exactly.

    Raises KeyError when the header has no CD/PC WCS.
    """
    crpix = (float(header["CRPIX1"]), float(header["CRPIX2"]))
    if "CD1_1" in header:
        cd = np.array([[header.get("CD1_1", 0.0), header.get("CD1_2", 0.0)],
                       [header.get("CD2_1", 0.0), header.get("CD2_2", 0.0)]], float)
    else:
        pc = np.array([[header.get("PC1_1", 1.0), header.get("PC1_2", 0.0)],
                       [header.get("PC2_1", 0.0), header.get("PC2_2", 1.0)]], float)
        cd = pc * np.array([header["CDELT1"], header["CDELT2"]], float)[:, None]
    fx, fy = _sip_poly(header, "A"), _sip_poly(header, "B")
    d = PolyMap(Poly2D([[0.0, 0.0], [1.0, 0.0]]) + fx, Poly2D([[0.0, 1.0], [0.0, 0.0]]) + fy)
    return d.matrix_applied(cd * 3600.0).shifted(-crpix[0], -crpix[1])


def _sip_poly(header: fits.Header, name: str) -> Poly2D:
    if f"{name}_ORDER" not in header or "-SIP" not in str(header.get("CTYPE1", "")):
        return Poly2D.zero()
    order = int(header[f"{name}_ORDER"])
    return Poly2D.from_terms([(i, j, header.get(f"{name}_{i}_{j}", 0.0))
                              for i in range(order + 1) for j in range(order + 1 - i)])
