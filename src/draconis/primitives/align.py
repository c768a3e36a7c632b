"""Alignment (DRAGONS calls it registration): adjustWCSToReference, addReferenceCatalog, determineAstrometricSolution.

adjustWCSToReference works on catalogues only (the OBJCATs detectSources
attached), so it computes no pixels. Positions of every array of a frame are
merged and projected onto one tangent plane (arcsec, +x towards east, +y
north) about the reference's pointing; a transform (shift, optionally
rotation and scale) from each frame's sources to the reference's is fitted
there and applied to each array's WCS by moving CRVAL and turning the CD
matrix, which is exact for a TAN WCS whose tangent point is near the plane's.

The reference is the frame with the most well-measured sources (unflagged,
positive flux), not blindly the first: a first frame taken through cloud or
with a bad guide would otherwise misalign every other frame. Its name is
written to every output (PHU ``ALIGNREF``) so resampleToCommonFrame uses the
same frame's pixel grid.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from astropy.table import Table
from astropy.wcs import WCS
from scipy.spatial import cKDTree

from ..frame import Extension, Frame
from ..parameters import DEBUG_AID, P, Params, suffix_param
from ..provenance import utc_timestamp
from .registry import Context, primitive

#: Why the distortion order parameters are refused: the fitted transform is a shift (plus rotation, scale).
_NO_DISTORTION_FIT = "no distortion polynomial is fitted: the transform is a shift, optionally rotation and scale"
#: Catalogue services DRAGONS can query; draconis works offline and skips them.
ONLINE_CATALOGUES = ("2mass", "gmos", "sdss9", "gaia")
#: PHU keyword naming the alignment reference frame (its raw file stem).
REFERENCE_KEYWORD = "ALIGNREF"
#: PHU keyword saying how a frame's WCS was aligned (sources / offsets / none).
METHOD_KEYWORD = "ALIGNMTH"
#: OBJCAT FLAGS bits that make a source unfit for alignment (saturated, truncated, bad pixels).
_BAD_SOURCE_FLAGS = 1 | 4 | 8 | 16


# ---------------------------------------------------------------------------
# tangent-plane geometry
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
# catalogues
# ---------------------------------------------------------------------------
def good_sources(table: Table | None) -> np.ndarray:
    """Boolean mask of catalogue rows fit for alignment (finite position, positive flux, unflagged)."""
    if table is None or len(table) == 0:
        return np.zeros(0, dtype=bool)
    ok = np.isfinite(np.asarray(table["X_IMAGE"], float)) & np.isfinite(np.asarray(table["Y_IMAGE"], float))
    if "FLUX_AUTO" in table.colnames:
        ok &= np.asarray(table["FLUX_AUTO"], float) > 0
    if "FLAGS" in table.colnames:
        ok &= (np.asarray(table["FLAGS"], int) & _BAD_SOURCE_FLAGS) == 0
    return ok


def frame_sources(frame: Frame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ra, dec, flux) of the good sources of every array, from the arrays' current WCSs."""
    ras, decs, fluxes = [], [], []
    for ext in frame.extensions:
        ok = good_sources(ext.objcat)
        if ext.objcat is None or not ok.any():
            continue
        cat = ext.objcat[ok]
        ra, dec = ext.wcs.all_pix2world(np.asarray(cat["X_IMAGE"], float), np.asarray(cat["Y_IMAGE"], float), 1)
        ras.append(ra)
        decs.append(dec)
        fluxes.append(np.asarray(cat["FLUX_AUTO"], float))
    if not ras:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    return np.concatenate(ras), np.concatenate(decs), np.concatenate(fluxes)


def choose_reference(frames: Sequence[Frame]) -> int:
    """Index of the frame with the most well-measured sources (the earliest among equals)."""
    counts = [sum(int(good_sources(ext.objcat).sum()) for ext in f.extensions) for f in frames]
    return int(np.argmax(counts)) if counts else 0


# ---------------------------------------------------------------------------
# matching and fitting (pure NumPy)
# ---------------------------------------------------------------------------
def initial_offset(src: np.ndarray, ref: np.ndarray, *, search: float, tolerance: float) -> np.ndarray | None:
    """Most common displacement ref - src among pairs closer than ``search`` (a vote, ``tolerance`` wide)."""
    if len(src) == 0 or len(ref) == 0:
        return None
    pairs = cKDTree(src).query_ball_tree(cKDTree(ref), r=search)
    diffs = np.array([ref[j] - src[i] for i, js in enumerate(pairs) for j in js]).reshape(-1, 2)
    if len(diffs) == 0:
        return None
    tree = cKDTree(diffs)
    votes = np.array([len(n) for n in tree.query_ball_point(diffs, r=tolerance)])
    best = diffs[np.argmax(votes)]
    near = diffs[np.hypot(*(diffs - best).T) <= tolerance]
    return near.mean(axis=0)


def match(src: np.ndarray, ref: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Indices (i_src, i_ref) of mutual nearest neighbours closer than ``radius``."""
    if len(src) == 0 or len(ref) == 0:
        return np.zeros(0, int), np.zeros(0, int)
    d1, j = cKDTree(ref).query(src, distance_upper_bound=radius)
    _, back = cKDTree(src).query(ref, distance_upper_bound=radius)
    i = np.arange(len(src))
    ok = np.isfinite(d1)
    ok[ok] &= back[j[ok]] == i[ok]
    return i[ok], j[ok]


def fit_transform(src: np.ndarray, ref: np.ndarray, *, rotate: bool, scale: bool) -> np.ndarray:
    """3x3 homogeneous similarity ``T`` with ``ref ≈ T @ src`` (shift; rotation/scale if asked)."""
    cs, cr = src.mean(axis=0), ref.mean(axis=0)
    a, b = src - cs, ref - cr
    rot = np.eye(2)
    if rotate and len(src) >= 2:
        u, _, vt = np.linalg.svd(b.T @ a)
        d = np.sign(np.linalg.det(u @ vt))
        rot = u @ np.diag([1.0, d]) @ vt
    s = 1.0
    if scale and len(src) >= 2:
        rotated = a @ rot.T
        denom = float((rotated ** 2).sum())
        s = float((rotated * b).sum()) / denom if denom > 0 else 1.0
    out = np.eye(3)
    out[:2, :2] = s * rot
    out[:2, 2] = cr - s * rot @ cs
    return out


def apply(t: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Points ``xy`` (N, 2) moved by the 2x3 affine transform ``t``."""
    return xy @ t[:2, :2].T + t[:2, 2]


def align_catalogues(src: np.ndarray, ref: np.ndarray, *, first_pass: float, match_radius: float,
                     rotate: bool, scale: bool, max_iters: int) -> tuple[np.ndarray | None, int, float]:
    """Fit the transform taking ``src`` onto ``ref`` (tangent-plane arcsec).

    Returns (transform or None, number of matched sources, rms residual in arcsec).
    """
    shift = initial_offset(src, ref, search=first_pass, tolerance=max(match_radius, 1e-3))
    if shift is None:
        return None, 0, np.nan
    t = np.eye(3)
    t[:2, 2] = shift
    last = None
    for _ in range(max(1, max_iters)):
        i, j = match(apply(t, src), ref, match_radius)
        if len(i) == 0:
            return None, 0, np.nan
        t = fit_transform(src[i], ref[j], rotate=rotate and len(i) >= 3, scale=scale and len(i) >= 3)
        key = (tuple(i), tuple(j))
        if key == last:
            break
        last = key
    i, j = match(apply(t, src), ref, match_radius)
    if len(i):
        t = fit_transform(src[i], ref[j], rotate=rotate and len(i) >= 3, scale=scale and len(i) >= 3)
    resid = apply(t, src[i]) - ref[j] if len(i) else np.zeros((0, 2))
    rms = float(np.sqrt((resid ** 2).sum(axis=1).mean())) if len(i) else np.nan
    return t, int(len(i)), rms


# ---------------------------------------------------------------------------
# WCS updates
# ---------------------------------------------------------------------------
def _cd(header) -> np.ndarray:
    w = WCS(header, naxis=2, relax=True).wcs
    if w.has_cd():
        return np.array(w.cd, dtype=float)
    return np.array(w.get_pc(), dtype=float) * np.asarray(w.cdelt, dtype=float)[:, None]


def _write_linear_wcs(header, crval: tuple[float, float], cd: np.ndarray, crpix: tuple[float, float] | None = None):
    out = header.copy()
    for key in ("PC1_1", "PC1_2", "PC2_1", "PC2_2", "CDELT1", "CDELT2"):
        out.remove(key, ignore_missing=True)
    out["CRVAL1"], out["CRVAL2"] = float(crval[0]), float(crval[1])
    if crpix is not None:
        out["CRPIX1"], out["CRPIX2"] = float(crpix[0]), float(crpix[1])
    out["CD1_1"], out["CD1_2"], out["CD2_1"], out["CD2_2"] = (float(v) for v in cd.ravel())
    return out


def transform_extension(ext: Extension, t: np.ndarray, ra0: float, dec0: float) -> Extension:
    """``ext`` with its WCS corrected by the tangent-plane transform ``t`` about (ra0, dec0)."""
    header = ext.header
    xi, eta = project(np.array([header["CRVAL1"]]), np.array([header["CRVAL2"]]), ra0, dec0)
    new = apply(t, np.column_stack([xi, eta]))[0]
    ra, dec = deproject(new[0], new[1], ra0, dec0)
    cd = t[:2, :2] @ _cd(header)
    return ext.replace(header=_write_linear_wcs(header, (float(ra), float(dec)), cd))


def offsets_extension(ext: Extension, ref_ext: Extension, shift: tuple[float, float]) -> Extension:
    """``ext`` given the reference array's WCS moved by ``shift`` = (dx, dy) pixels.

    The detector offsets say where a star moves on the detector: a star at
    pixel p of the reference is at p + shift in this frame (F2, NIRI and
    GNIRS descriptors, checked against real headers' WCS orientation).
    """
    ref = ref_ext.header
    crpix = (ref["CRPIX1"] + shift[0], ref["CRPIX2"] + shift[1])
    return ext.replace(header=_write_linear_wcs(ext.header, (ref["CRVAL1"], ref["CRVAL2"]), _cd(ref), crpix))


def refresh_world(ext: Extension) -> Extension:
    """OBJCAT X_WORLD/Y_WORLD recomputed from the array's (new) WCS."""
    cat = ext.objcat
    if cat is None or len(cat) == 0 or "X_IMAGE" not in cat.colnames:
        return ext
    cat = cat.copy()
    ra, dec = ext.wcs.all_pix2world(np.asarray(cat["X_IMAGE"], float), np.asarray(cat["Y_IMAGE"], float), 1)
    cat["X_WORLD"], cat["Y_WORLD"] = ra, dec
    return ext.replace(objcat=cat)


def telescope_shift(frame: Frame, ref: Frame) -> tuple[float, float] | None:
    """Pixel shift (dx, dy) of ``frame`` relative to ``ref`` from the telescope offsets, or None."""
    try:
        dx = float(frame.descriptor("detector_x_offset")) - float(ref.descriptor("detector_x_offset"))
        dy = float(frame.descriptor("detector_y_offset")) - float(ref.descriptor("detector_y_offset"))
    except Exception:  # noqa: BLE001 - offsets missing: no fallback possible
        return None
    if not (np.isfinite(dx) and np.isfinite(dy)):
        return None
    return dx, dy


# ---------------------------------------------------------------------------
# the primitive
# ---------------------------------------------------------------------------
@primitive("adjustWCSToReference",
           suffix_param("_wcsCorrected"),
           P("method", str, "sources", "'sources' (match catalogues) or 'offsets' (header offsets)",
             choices=("offsets", "sources")),
           P("fallback", str, "offsets", "method used if 'sources' fails ('offsets' or None)", optional=True,
             choices=("offsets",)),
           P("first_pass", float, 5.0, "initial search radius (arcsec)", low=0.0),
           P("match_radius", float, 0.5, "final matching radius (arcsec)", low=0.0),
           P("min_sources", int, 3, "minimum matched sources to trust source alignment", low=1),
           P("cull_sources", bool, False, "keep only star-like sources", unsupported="sources are not culled"),
           P("rotate", bool, False, "fit rotation"),
           P("scale", bool, False, "fit a scale change"),
           P("debug_ignore_wcs", bool, False, "align by cross-correlation ignoring WCS", unsupported=DEBUG_AID),
           P("final", float, 0.5, "final match radius (arcsec)", low=0.0,
             unsupported="match_radius is the final matching radius"),
           P("order", int, 3, "polynomial order of distortion fit", low=1, high=10, unsupported=_NO_DISTORTION_FIT),
           P("max_iters", int, 5, "iteration limit", low=1, high=20),
           P("debug", bool, False, "write diagnostic plots", unsupported=DEBUG_AID))
def adjust_wcs_to_reference(frames: list[Frame], p: Params, ctx: Context) -> list[Frame]:
    """Correct every frame's WCS so its sources land on the reference frame's sources."""
    if not frames:
        return []
    check_same_setup(frames)
    iref = choose_reference(frames)
    ref = frames[iref]
    ctx.log.info("adjustWCSToReference: reference frame %s (%d well-measured sources; most of the %d frames)",
                 ref.filename, len(frame_sources(ref)[0]), len(frames))
    ra0, dec0 = float(ref[0].header["CRVAL1"]), float(ref[0].header["CRVAL2"])
    ref_xy = np.column_stack(project(*frame_sources(ref)[:2], ra0, dec0))
    outputs, fell_back, unaligned = [], [], []
    for k, frame in enumerate(frames):
        if k == iref:
            new, how = frame, "reference"
        else:
            new, how = _align_one(frame, ref, ref_xy, (ra0, dec0), p, ctx)
            if how == "offsets":
                fell_back.append(frame.filename)
            elif how == "none":
                unaligned.append(frame.filename)
        new = new.map_extensions(refresh_world).with_phu(
            **{REFERENCE_KEYWORD: (ref.stem, "alignment reference frame"),
               METHOD_KEYWORD: (how, "how the WCS was aligned"),
               "CORRWCS": (utc_timestamp(), "UT time stamp for adjustWCSToReference")})
        outputs.append(new.with_suffix(p.suffix))
    if fell_back:
        ctx.log.warning("adjustWCSToReference: too few matched sources in %d frame(s) (%s); aligned them with the "
                        "telescope offsets instead (fallback='offsets')", len(fell_back), ", ".join(fell_back))
    if unaligned:
        ctx.log.warning("adjustWCSToReference: could not align %d frame(s) (%s); their header WCS is kept",
                        len(unaligned), ", ".join(unaligned))
    return outputs


def check_same_setup(frames: Sequence[Frame]) -> None:
    """InputError naming the first frame whose instrument or filter differs from the first frame's."""
    from ..errors import InputError

    first = frames[0]
    for name in ("instrument", "filter_name"):
        want = first.safe_descriptor(name)
        for frame in frames[1:]:
            got = frame.safe_descriptor(name)
            if want is not None and got is not None and got != want:
                raise InputError(frame.path or frame.filename,
                                 f"{name.replace('_name', '')} {got!r} differs from {want!r} of {first.filename}; "
                                 "frames of different instruments or filters cannot be aligned and stacked together")


def _align_one(frame: Frame, ref: Frame, ref_xy: np.ndarray, centre, p, ctx) -> tuple[Frame, str]:
    if p.method == "sources":
        src_xy = np.column_stack(project(*frame_sources(frame)[:2], *centre))
        t, n, rms = align_catalogues(src_xy, ref_xy, first_pass=p.first_pass, match_radius=p.match_radius,
                                     rotate=p.rotate, scale=p.scale, max_iters=p.max_iters)
        if t is not None and n >= p.min_sources:
            ctx.log.info("adjustWCSToReference: %s: %d matched sources, shift (%.3f, %.3f)\", rms %.3f\"",
                         frame.filename, n, t[0, 2], t[1, 2], rms)
            aligned = frame.map_extensions(lambda e: transform_extension(e, t, *centre))
            return aligned.with_phu(ALIGNNUM=(int(n), "sources matched to the reference"),
                                    ALIGNRMS=(round(float(rms), 4), "rms of the matched sources (arcsec)")), "sources"
        ctx.log.debug("adjustWCSToReference: %s: %d matched source(s) < min_sources=%d",
                      frame.filename, n, p.min_sources)
        if p.fallback != "offsets":
            return frame, "none"
    shift = telescope_shift(frame, ref)
    if shift is None or len(frame) != len(ref):
        return frame, "none"
    exts = [offsets_extension(e, r, shift) for e, r in zip(frame.extensions, ref.extensions)]
    return frame.with_extensions(exts), "offsets"


# ---------------------------------------------------------------------------
# reference catalogues (offline: a user file only)
# ---------------------------------------------------------------------------
@primitive("addReferenceCatalog",
           suffix_param("_refcatAdded"),
           P("radius", float, 0.033, "search / matching radius", low=0.0,
             unsupported="the search radius of online catalogues, which draconis does not query"),
           P("source", str, "2mass", "reference catalogue file (online catalogue names are not queried)",
             optional=True, opens="table", passthrough=ONLINE_CATALOGUES),
           P("format", str, None, "format of a user catalogue", optional=True))
def add_reference_catalog(frames: list[Frame], p: Params, ctx: Context) -> list[Frame]:
    """Attach a reference catalogue (REFCAT) from a user file (opened by the runner).

    No online catalogue is queried.
    """
    if p.source is None:
        ctx.log.info("addReferenceCatalog: source=None; no reference catalogue added (skipped)")
        return list(frames)
    if isinstance(p.source, str):  # one of ONLINE_CATALOGUES
        ctx.log.warning("addReferenceCatalog: draconis queries no online catalogue (%s); skipped (frames keep "
                        "their own WCS); give a catalogue file as source", p.source)
        return list(frames)
    table = p.source
    ctx.log.info("addReferenceCatalog: %d reference sources", len(table))
    return [f.replace(tables={**f.tables, "REFCAT": table}).with_suffix(p.suffix) for f in frames]


@primitive("determineAstrometricSolution",
           suffix_param("_astrometryCorrected"),
           P("initial", float, 5.0, "initial cross-correlation radius (arcsec)", low=1.0),
           P("final", float, 1.0, "final match radius (arcsec)", low=0.0),
           P("rotate", bool, False, "fit rotation"),
           P("scale", bool, False, "fit a scale change"),
           P("order", int, 2, "polynomial order of distortion fit", low=1, high=10, unsupported=_NO_DISTORTION_FIT),
           P("max_iters", int, 5, "iteration limit", low=1, high=20),
           P("debug", bool, False, "write diagnostic plots", unsupported=DEBUG_AID))
def determine_astrometric_solution(frames: list[Frame], p: Params, ctx: Context) -> list[Frame]:
    """Fit each frame's WCS to its REFCAT (columns RAJ2000/DEJ2000 or RA/DEC); skipped without one."""
    outputs = []
    for frame in frames:
        refcat = frame.tables.get("REFCAT")
        if refcat is None or len(refcat) == 0:
            outputs.append(frame)
            continue
        ra_col = next((c for c in ("RAJ2000", "RA", "ra") if c in refcat.colnames), None)
        dec_col = next((c for c in ("DEJ2000", "DEC", "Dec", "dec") if c in refcat.colnames), None)
        if ra_col is None or dec_col is None:
            ctx.log.warning("determineAstrometricSolution: REFCAT of %s has no RA/Dec columns; skipped",
                            frame.filename)
            outputs.append(frame)
            continue
        ra0, dec0 = float(frame[0].header["CRVAL1"]), float(frame[0].header["CRVAL2"])
        ref_xy = np.column_stack(project(np.asarray(refcat[ra_col], float), np.asarray(refcat[dec_col], float),
                                         ra0, dec0))
        src_xy = np.column_stack(project(*frame_sources(frame)[:2], ra0, dec0))
        t, n, rms = align_catalogues(src_xy, ref_xy, first_pass=p.initial, match_radius=p.final,
                                     rotate=p.rotate, scale=p.scale, max_iters=p.max_iters)
        if t is None or n < 3:
            ctx.log.warning("determineAstrometricSolution: %s: only %d match(es) with REFCAT; WCS unchanged",
                            frame.filename, n)
            outputs.append(frame)
            continue
        ctx.log.info("determineAstrometricSolution: %s: %d matches, rms %.3f\"", frame.filename, n, rms)
        moved = frame.with_extensions(refresh_world(transform_extension(e, t, ra0, dec0)) for e in frame.extensions)
        outputs.append(moved.with_suffix(p.suffix))
    if not any("REFCAT" in f.tables for f in frames):
        ctx.log.info("determineAstrometricSolution: no REFCAT attached; skipped")
    return outputs
