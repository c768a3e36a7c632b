"""Frames whose arrays share one distorted focal plane (GSAOI): their WCS as static distortion + pointing.

Every array k of such a frame maps pixels to the focal plane through the
instrument's static distortion ``D_k`` (``Instrument.static_distortions``);
one map ``F`` per frame takes the focal plane onto the tangent plane of the
sky (arcsec about the frame's tangent point).  Each array's header holds the
exact composition ``F o D_k`` as a TAN-SIP WCS (:func:`draconis.distortion.sip_header`),
so everything that reads ``ext.wcs`` (detection, sky association, resampling,
object-mask transfer) goes through the distortion.

- :func:`attach_static_distortion` (prepare; and inputs prepared before the
  model was attached) fits ``F`` (affine) to the header's linear WCS of all
  arrays together and writes the SIP headers;
- :func:`focal_transform` recovers ``F`` from any frame's headers;
- :func:`with_focal_transform` writes the headers for a new ``F`` (alignment).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..distortion import (
    DISTORTION_KEYWORD,
    PolyMap,
    StaticDistortion,
    fit_polymap,
    grid_points,
    project,
    sip_header,
    strip_wcs,
)
from ..frame import Frame

__all__ = ["frame_distortions", "has_distortion", "distortion_attached", "focal_transform", "with_focal_transform",
           "attach_static_distortion", "tangent_point", "focal_positions"]


def frame_distortions(frame: Frame) -> list[StaticDistortion | None]:
    """The static distortion of each array of ``frame`` (None for arrays without one)."""
    model = frame.instrument_model
    return list(model.static_distortions(frame.phu, frame.ext_headers, frame.tags))


def _distortions(frame: Frame, dists: Sequence[StaticDistortion | None] | None) -> list[StaticDistortion]:
    """``dists`` (default: the frame's), every array's model present (ValueError otherwise: a caller's bug)."""
    found = frame_distortions(frame) if dists is None else list(dists)
    if any(d is None for d in found) or len(found) != len(frame):
        raise ValueError(f"{frame.filename}: not every array has a static distortion model")
    return [d for d in found if d is not None]


def has_distortion(frame: Frame) -> bool:
    """Whether every array of ``frame`` has a static distortion model."""
    try:
        dists = frame_distortions(frame)
    except Exception:  # noqa: BLE001 - no instrument, missing keywords: no model
        return False
    return bool(dists) and all(d is not None for d in dists)


def distortion_attached(frame: Frame) -> bool:
    """Whether every array's WCS already includes its static distortion (DISTMODL present)."""
    return all(DISTORTION_KEYWORD in ext.header for ext in frame.extensions)


def tangent_point(frame: Frame) -> tuple[float, float]:
    """The tangent point (CRVAL) of the frame's first array."""
    header = frame[0].header
    return float(header["CRVAL1"]), float(header["CRVAL2"])


def focal_transform(frame: Frame, dists: Sequence[StaticDistortion | None] | None = None, *, order: int = 1,
                    centre: tuple[float, float] | None = None, n: int = 17) -> PolyMap:
    """The map focal plane -> tangent plane (arcsec about ``centre``) that the frame's headers say.

    Fitted (polynomial of ``order``) to points on an ``n`` x ``n`` grid of every
    array, so it is exact when the headers hold ``F o D_k`` with ``F`` of that
    order.  An array whose header is linear (a raw file: no DISTMODL) holds
    the best linear approximation of ``F o D_k`` over the array, which for an
    affine ``F`` is ``F`` composed with the best linear approximation of
    ``D_k``: its points are fitted as that, so ``F`` comes out exact (fitting
    the distorted positions themselves would be biased by up to half a pixel
    at full size).  Which linear approximation a header holds depends on how
    it was fitted: the 17 x 17 grid of pixel centres used here is the
    simulator's; the real instrument's is not documented, so absolute
    astrometry at better than ~0.5 pixel (full-size arrays) needs a
    reference catalogue.
    """
    models = _distortions(frame, dists)
    centre = tangent_point(frame) if centre is None else centre
    us, vs, xis, etas = [], [], [], []
    for ext, dist in zip(frame.extensions, models):
        x, y = grid_points(ext.shape, n)
        ra, dec = ext.wcs.all_pix2world(x, y, 1)
        xi, eta = project(ra, dec, *centre)
        u, v = dist.to_focal(x, y)
        if DISTORTION_KEYWORD not in ext.header:
            u, v = fit_polymap(x, y, u, v, 1)(x, y)
        us.append(u)
        vs.append(v)
        xis.append(xi)
        etas.append(eta)
    return fit_polymap(np.concatenate(us), np.concatenate(vs), np.concatenate(xis), np.concatenate(etas), order)


def with_focal_transform(frame: Frame, transform: PolyMap, centre: tuple[float, float],
                         dists: Sequence[StaticDistortion | None] | None = None) -> Frame:
    """``frame`` whose arrays' WCSs are ``transform o D_k`` about the tangent point ``centre`` (exact SIP)."""
    exts = []
    for ext, dist in zip(frame.extensions, _distortions(frame, dists)):
        cards = sip_header(transform.compose(dist.forward), centre, ext.shape, model=dist.name)
        header = strip_wcs(ext.header)
        header.update(cards)
        exts.append(ext.replace(header=header))
    return frame.with_extensions(exts)


def attach_static_distortion(frame: Frame) -> Frame:
    """``frame`` with its static distortion in every array's WCS (unchanged if there is none or it is there)."""
    if distortion_attached(frame) or not has_distortion(frame):
        return frame
    if any("CRVAL1" not in ext.header for ext in frame.extensions):
        return frame
    dists = frame_distortions(frame)
    centre = tangent_point(frame)
    return with_focal_transform(frame, focal_transform(frame, dists, centre=centre), centre, dists)


def focal_positions(frame: Frame, index: int, x, y) -> tuple[np.ndarray, np.ndarray]:
    """Focal-plane (u, v) arcsec of 1-based pixels (x, y) of array ``index``."""
    return _distortions(frame, None)[index].to_focal(x, y)


# ---------------------------------------------------------------------------
# alignment in the focal plane
# ---------------------------------------------------------------------------
def model_text(order: int) -> str:
    """How a frame's focal-plane map was found (the order :func:`fit_focal_transform` returns), for the log."""
    if order < 0:
        return "its map moved (too few sources to fit one)"
    return {0: "shift, rotation and scale", 1: "affine map"}.get(order, f"polynomial map of order {order}")


def polynomial_terms(order: int) -> int:
    """Coefficients per axis of a 2-D polynomial of ``order``."""
    return (order + 1) * (order + 2) // 2


def fit_similarity(uv: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None) -> PolyMap:
    """Weighted least-squares shift, rotation and uniform scale (mirrored if the data want it): uv -> target."""
    w = np.ones(len(uv)) if weights is None else np.asarray(weights, float)
    cu, ct = (w[:, None] * uv).sum(axis=0) / w.sum(), (w[:, None] * target).sum(axis=0) / w.sum()
    (u, v), (x, y) = (uv - cu).T, (target - ct).T
    sw = np.sqrt(np.concatenate([w, w]))
    fits = []
    for mirror in (1.0, -1.0):
        # x = a u - m b v, y = b u + m a v: a rotation by atan2(b, a), scale hypot(a, b), m = -1 mirrors v
        design = np.block([[u[:, None], -mirror * v[:, None]], [v[:, None] * mirror, u[:, None]]])
        (a, b), *_ = np.linalg.lstsq(design * sw[:, None], np.concatenate([x, y]) * sw, rcond=None)
        m = np.array([[a, -mirror * b], [b, mirror * a]])
        fits.append((float((w[:, None] * (np.column_stack([u, v]) @ m.T - np.column_stack([x, y])) ** 2).sum()), m))
    m = min(fits, key=lambda f: f[0])[1]
    return PolyMap.affine(m, ct - m @ cu)


def choose_order(uv: np.ndarray, target: np.ndarray, order: int, *, weights: np.ndarray | None = None,
                 significance: float = 0.001) -> tuple[int, PolyMap]:
    """The model (0: similarity, 1: affine, 2.. polynomial of that order, up to ``order``) and its fit.

    Each step up is kept only if it lowers the residuals significantly (an
    F-test at ``significance``) and leaves 3 pairs per coefficient: terms
    fitted to centroid noise would move the corners of the field, where
    there are the fewest stars to hold them.
    """
    from scipy.stats import f as f_dist

    w = np.ones(len(uv)) if weights is None else np.asarray(weights, float)

    def rss_of(m):
        return float((w[:, None] * (np.column_stack(m(uv[:, 0], uv[:, 1])) - target) ** 2).sum())

    n = len(uv)
    best, mapping, params = 0, fit_similarity(uv, target, w), 4
    rss = rss_of(mapping)
    for k in range(1, order + 1):
        k_params = 2 * polynomial_terms(k)
        if n < 1.5 * k_params:
            break
        cand = fit_polymap(uv[:, 0], uv[:, 1], target[:, 0], target[:, 1], k, weights=w)
        cand_rss, dof = rss_of(cand), 2 * n - k_params
        if cand_rss <= 0 or dof <= 0:
            break
        stat = ((rss - cand_rss) / (k_params - params)) / (cand_rss / dof)
        if f_dist.sf(stat, k_params - params, dof) > significance:
            break
        best, mapping, rss, params = k, cand, cand_rss, k_params
    return best, mapping


def fit_focal_transform(uv: np.ndarray, predicted: np.ndarray, ref: np.ndarray, *, match_radius: float,
                        order: int, max_iters: int, clip: float = 3.0, sigma: np.ndarray | None = None,
                        ref_sigma: np.ndarray | None = None) -> tuple[PolyMap | None, int, float, int]:
    """Fit the map taking focal-plane positions ``uv`` onto tangent-plane positions ``ref`` (arcsec).

    ``predicted`` are the tangent-plane positions of the ``uv`` sources the
    current (roughly aligned) WCS gives; sources are matched as mutual
    nearest neighbours within ``match_radius``; pairs further than ``clip``
    robust standard deviations from the fit (blends, a galaxy's knot matched
    to a star: a few per cent of pairs, off by up to a pixel) are left out;
    a shift, rotation and scale are fitted, then an affine map and
    polynomials up to ``order`` where the pairs support them
    (:func:`choose_order`).  Matching, clipping
    and fitting repeat up to ``max_iters`` times.  ``sigma`` and
    ``ref_sigma`` (arcsec, per source) are the positions' uncertainties: pairs
    are weighted by 1 / (sigma**2 + ref_sigma**2), so a bright star's
    centroid counts for more than a faint one's.

    Returns
    -------
    (map or None, pairs kept, rms residual of the kept pairs in arcsec, order used: 0 for the similarity)
    """
    from .align import match

    transform: PolyMap | None = None
    used, last = 1, None
    i = j = keep = np.zeros(0, int)
    for _ in range(max(1, max_iters)):
        i, j = match(predicted, ref, match_radius)
        if len(i) < 3:
            return None, int(len(i)), np.nan, 0
        keep = np.ones(len(i), bool)
        err = np.hypot(np.ones(len(i)) if sigma is None else sigma[i], 0.0 if ref_sigma is None else ref_sigma[j])
        for _ in range(5):  # clip, refit, until the kept set is stable
            used, transform = choose_order(uv[i[keep]], ref[j[keep]], order, weights=1.0 / err[keep] ** 2)
            resid = np.hypot(*(np.column_stack(transform(uv[i, 0], uv[i, 1])) - ref[j]).T) / err
            spread = np.median(resid[keep]) / np.sqrt(np.log(4.0))  # 2-D: the median of a Rayleigh
            new = resid <= max(clip * spread, 1e-9)
            if new.sum() < 3 or (new == keep).all():
                break
            keep = new
        assert transform is not None
        predicted = np.column_stack(transform(uv[:, 0], uv[:, 1]))
        key = (tuple(i[keep]), tuple(j[keep]))
        if key == last:
            break
        last = key
    assert transform is not None
    resid = np.column_stack(transform(uv[i[keep], 0], uv[i[keep], 1])) - ref[j[keep]]
    rms = float(np.sqrt((resid ** 2).sum(axis=1).mean()))
    return transform, int(keep.sum()), rms, used


def master_catalogue(positions: Sequence[np.ndarray], order_: Sequence[int], radius: float
                     ) -> list[list[tuple[int, int]]]:
    """Group the sources of several frames into objects (lists of (frame, source) members).

    ``positions`` are each frame's sources in one tangent plane (arcsec);
    frames are taken in ``order_``; a source joins the object whose mean
    position is its mutual nearest neighbour within ``radius``, else starts
    a new object.
    """
    from .align import match

    objects: list[list[tuple[int, int]]] = []
    means = np.zeros((0, 2))
    for k in order_:
        pos = positions[k]
        i, j = match(pos, means, radius) if len(means) else (np.zeros(0, int), np.zeros(0, int))
        for a, b in zip(i, j):
            objects[b].append((k, int(a)))
        new = np.setdiff1d(np.arange(len(pos)), i)
        objects.extend([[(k, int(a))] for a in new])
        means = np.array([np.mean([positions[f][s] for f, s in obj], axis=0) for obj in objects]).reshape(-1, 2)
    return objects


def leave_one_out_targets(objects: list[list[tuple[int, int]]], positions: Sequence[np.ndarray],
                          sigmas: Sequence[np.ndarray], frame: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For ``frame``'s sources seen by other frames too: their indices, mean positions and uncertainties.

    The mean is over the *other* frames' members of each object, weighted by
    1 / sigma**2; its uncertainty is 1 / sqrt(sum of the weights).
    """
    idx, targets, errors = [], [], []
    for obj in objects:
        mine = [s for f, s in obj if f == frame]
        others = [(positions[f][s], sigmas[f][s]) for f, s in obj if f != frame]
        if len(mine) == 1 and others:
            w = np.array([1.0 / e ** 2 for _, e in others])
            idx.append(mine[0])
            targets.append((w[:, None] * np.array([p for p, _ in others])).sum(axis=0) / w.sum())
            errors.append(1.0 / np.sqrt(w.sum()))
    return np.array(idx, int), np.array(targets).reshape(-1, 2), np.array(errors)
