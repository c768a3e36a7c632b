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

import warnings
from collections.abc import Sequence

import numpy as np
from astropy.table import Table
from astropy.wcs import WCS
from scipy.spatial import cKDTree

from ..distortion import deproject, project
from ..frame import Extension, Frame
from ..parameters import DEBUG_AID, P, Params, suffix_param
from ..provenance import utc_timestamp
from .focal_plane import (
    attach_static_distortion,
    fit_focal_transform,
    frame_distortions,
    has_distortion,
    model_text,
    with_focal_transform,
)
from .registry import Context, primitive

# align_focal uses this module's catalogue helpers: imported as a module, the cycle is harmless
from . import align_focal  # noqa: E402  isort: skip

#: Catalogue services DRAGONS can query; draconis works offline and skips them.
ONLINE_CATALOGUES = ("2mass", "gmos", "sdss9", "gaia")
#: PHU keyword naming the alignment reference frame (its raw file stem).
REFERENCE_KEYWORD = "ALIGNREF"
#: PHU keyword saying how a frame's WCS was aligned (sources / offsets / none).
METHOD_KEYWORD = "ALIGNMTH"
#: OBJCAT FLAGS bits that make a source unfit for alignment (saturated, truncated, bad pixels).
_BAD_SOURCE_FLAGS = 1 | 4 | 8 | 16


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


def source_pixels(cat: Table) -> tuple[np.ndarray, np.ndarray]:
    """1-based (x, y) of catalogue rows: windowed centroids (XWIN_IMAGE) where measured, else X_IMAGE."""
    x, y = np.asarray(cat["X_IMAGE"], float), np.asarray(cat["Y_IMAGE"], float)
    if "XWIN_IMAGE" in cat.colnames:
        xw, yw = np.asarray(cat["XWIN_IMAGE"], float), np.asarray(cat["YWIN_IMAGE"], float)
        ok = np.isfinite(xw) & np.isfinite(yw) & (np.hypot(xw - x, yw - y) < 2.0)
        x, y = np.where(ok, xw, x), np.where(ok, yw, y)
    return x, y


def frame_sources(frame: Frame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ra, dec, flux) of the good sources of every array, from the arrays' current WCSs."""
    ras, decs, fluxes = [], [], []
    for ext in frame.extensions:
        ok = good_sources(ext.objcat)
        if ext.objcat is None or not ok.any():
            continue
        cat = ext.objcat[ok]
        ra, dec = ext.wcs.all_pix2world(*source_pixels(cat), 1)
        ras.append(ra)
        decs.append(dec)
        fluxes.append(np.asarray(cat["FLUX_AUTO"], float))
    if not ras:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    return np.concatenate(ras), np.concatenate(decs), np.concatenate(fluxes)


def focal_sources(frame: Frame) -> tuple[np.ndarray, np.ndarray]:
    """Focal-plane (u, v) arcsec of the good sources of every array (the order of :func:`frame_sources`)."""
    us, vs = [], []
    for ext, dist in zip(frame.extensions, frame_distortions(frame)):
        ok = good_sources(ext.objcat)
        if ext.objcat is None or dist is None or not ok.any():
            continue
        cat = ext.objcat[ok]
        u, v = dist.to_focal(*source_pixels(cat))
        us.append(u)
        vs.append(v)
    if not us:
        return np.zeros(0), np.zeros(0)
    return np.concatenate(us), np.concatenate(vs)


#: Centroid uncertainty (pixels) of the brightest sources: what the model and sampling leave.
CENTROID_FLOOR = 0.01


def source_sigmas(frame: Frame) -> np.ndarray:
    """Position uncertainty (arcsec) of the good sources of every array (the order of :func:`frame_sources`).

    About FWHM / (S/N) for a background-limited star, with a floor of
    :data:`CENTROID_FLOOR` pixel.
    """
    out = []
    scale = float(frame.safe_descriptor("pixel_scale", 1.0) or 1.0)
    for ext in frame.extensions:
        ok = good_sources(ext.objcat)
        if ext.objcat is None or not ok.any():
            continue
        cat = ext.objcat[ok]
        n = len(cat)
        fwhm = np.asarray(cat["FWHM_IMAGE"], float) if "FWHM_IMAGE" in cat.colnames else np.full(n, 3.0)
        flux = np.asarray(cat["FLUX_AUTO"], float) if "FLUX_AUTO" in cat.colnames else np.ones(n)
        err = np.asarray(cat["FLUXERR_AUTO"], float) if "FLUXERR_AUTO" in cat.colnames else np.full(n, np.nan)
        with np.errstate(divide="ignore", invalid="ignore"):
            snr = np.where(np.isfinite(err) & (err > 0), flux / err, 10.0)
        fwhm = np.where(np.isfinite(fwhm) & (fwhm > 0), fwhm, np.nanmedian(fwhm) if np.isfinite(fwhm).any() else 3.0)
        out.append(np.hypot(fwhm / np.maximum(snr, 1.0), CENTROID_FLOOR) * scale)
    return np.concatenate(out) if out else np.zeros(0)


def choose_reference(frames: Sequence[Frame]) -> int:
    """Index of the frame with the most well-measured sources (the earliest among equals)."""
    counts = [sum(int(good_sources(ext.objcat).sum()) for ext in f.extensions) for f in frames]
    return int(np.argmax(counts)) if counts else 0


# ---------------------------------------------------------------------------
# matching and fitting (pure NumPy)
# ---------------------------------------------------------------------------
def initial_offset(src: np.ndarray, ref: np.ndarray, *, search: float, tolerance: float,
                   min_votes: int = 1) -> np.ndarray | None:
    """Most common displacement ref - src among pairs closer than ``search`` (a vote, ``tolerance`` wide).

    None if no displacement gathers ``min_votes`` pairs (then any answer would be chance).
    """
    if len(src) == 0 or len(ref) == 0:
        return None
    pairs = cKDTree(src).query_ball_tree(cKDTree(ref), r=search)
    diffs = np.array([ref[j] - src[i] for i, js in enumerate(pairs) for j in js]).reshape(-1, 2)
    if len(diffs) == 0:
        return None
    tree = cKDTree(diffs)
    votes = np.array([len(n) for n in tree.query_ball_point(diffs, r=tolerance)])
    if votes.max() < min_votes:
        return None
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


#: Width of the initial-offset vote in pixels (see :func:`align_catalogues`).
VOTE_PIXELS = 5.0


def vote_tolerance(frame: Frame, match_radius: float) -> float:
    """The initial-offset vote's width (arcsec) for ``frame``: ``match_radius``, at most VOTE_PIXELS pixels."""
    scale = frame.safe_descriptor("pixel_scale")
    return match_radius if not scale else min(match_radius, VOTE_PIXELS * float(scale))


def align_catalogues(src: np.ndarray, ref: np.ndarray, *, first_pass: float, match_radius: float,
                     rotate: bool, scale: bool, max_iters: int, tolerance: float | None = None,
                     min_votes: int = 1) -> tuple[np.ndarray | None, int, float]:
    """Fit the transform taking ``src`` onto ``ref`` (tangent-plane arcsec).

    ``tolerance`` is the width of the vote for the initial offset (default
    ``match_radius``): a few pixels, not the match radius, where pixels are
    much smaller than it (GSAOI), or a chance gathering of unrelated pairs
    can outvote the true offset.  ``min_votes``: fewest pairs that must agree
    on the initial offset (with few common sources a lone pair is chance).

    Returns (transform or None, number of matched sources, rms residual in arcsec).
    """
    shift = initial_offset(src, ref, search=first_pass,
                           tolerance=max(match_radius if tolerance is None else tolerance, 1e-3), min_votes=min_votes)
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


def same_position_angle(frame: Frame, ref: Frame, tolerance: float = 0.01) -> bool:
    """Whether the two frames were taken at the same position angle (degrees; unknown counts as same)."""
    a, b = frame.safe_descriptor("position_angle"), ref.safe_descriptor("position_angle")
    if a is None or b is None:
        return True
    return abs((float(a) - float(b) + 180.0) % 360.0 - 180.0) <= tolerance


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
           P("order", int, 3, "polynomial order of distortion fit (frames with a static distortion, GSAOI: the "
             "highest order of the focal plane -> reference map; others are fitted a shift, rotation, scale)",
             low=1, high=10),
           P("max_iters", int, 5, "iteration limit", low=1, high=20),
           P("debug", bool, False, "write diagnostic plots", unsupported=DEBUG_AID))
def adjust_wcs_to_reference(frames: list[Frame], p: Params, ctx: Context) -> list[Frame]:
    """Correct every frame's WCS so its sources land on the reference frame's sources."""
    if not frames:
        return []
    check_same_setup(frames)
    frames = [attach_static_distortion(f) for f in frames]
    iref = choose_reference(frames)
    ref = frames[iref]
    ctx.log.info("adjustWCSToReference: reference frame %s (%d well-measured sources; most of the %d frames)",
                 ref.filename, len(frame_sources(ref)[0]), len(frames))
    ra0, dec0 = float(ref[0].header["CRVAL1"]), float(ref[0].header["CRVAL2"])
    ref_xy = np.column_stack(project(*frame_sources(ref)[:2], ra0, dec0))
    if all(has_distortion(f) for f in frames):
        aligned, methods = align_focal.align_distorted(frames, iref, (ra0, dec0), p, ctx.log)
    else:
        aligned, methods = [], []
        for k, frame in enumerate(frames):
            new, how = (frame, "reference") if k == iref else _align_one(frame, ref, ref_xy, (ra0, dec0), p, ctx)
            aligned.append(new)
            methods.append(how)
    outputs, fell_back, unaligned = [], [], []
    for frame, new, how in zip(frames, aligned, methods):
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
    if shift is None or len(frame) != len(ref) or not same_position_angle(frame, ref):
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


def refcat_columns(table: Table) -> tuple[str, str] | None:
    """Names of the RA and Dec columns (degrees) of a reference catalogue, or None."""
    ra = next((c for c in ("RAJ2000", "RA_ICRS", "RA", "ra") if c in table.colnames), None)
    dec = next((c for c in ("DEJ2000", "DE_ICRS", "DEC", "Dec", "dec") if c in table.colnames), None)
    return None if ra is None or dec is None else (ra, dec)


def refcat_in_field(table: Table, frames: Sequence[Frame]) -> np.ndarray:
    """Which catalogue rows fall on some array of some frame (header WCS, distortion included)."""
    cols = refcat_columns(table)
    inside = np.zeros(len(table), bool)
    if cols is None or not len(table):
        return inside
    ra, dec = (np.asarray(table[c], float) for c in cols)
    for frame in frames:
        for ext in frame.extensions:
            ny, nx = ext.shape
            with warnings.catch_warnings(), np.errstate(invalid="ignore"):
                # a catalogue of another field: the inversion of the distortion diverges there, harmlessly
                warnings.simplefilter("ignore", RuntimeWarning)
                x, y = ext.wcs.all_world2pix(ra, dec, 0, quiet=True)
            inside |= (x > -0.5) & (x < nx - 0.5) & (y > -0.5) & (y < ny - 0.5)
    return inside


@primitive("determineAstrometricSolution",
           suffix_param("_astrometryCorrected"),
           P("initial", float, 5.0, "initial cross-correlation radius (arcsec)", low=1.0),
           P("final", float, 1.0, "final match radius (arcsec)", low=0.0),
           P("rotate", bool, False, "fit rotation"),
           P("scale", bool, False, "fit a scale change"),
           P("order", int, 2, "polynomial order of distortion fit (frames with a static distortion: the "
             "highest order of the focal plane -> sky map)", low=1, high=10),
           P("max_iters", int, 5, "iteration limit", low=1, high=20),
           P("min_matches", int, 3, "fewest matches with the catalogue to recalibrate a frame (draconis)", low=3),
           P("debug", bool, False, "write diagnostic plots", unsupported=DEBUG_AID))
def determine_astrometric_solution(frames: list[Frame], p: Params, ctx: Context) -> list[Frame]:
    """Fit each frame's WCS to its REFCAT (RA/Dec columns in degrees); skipped without one.

    Frames with a static distortion (GSAOI) get their focal plane -> sky map
    fitted (affine, then a polynomial up to ``order`` where the matches
    support it); others a shift (rotation, scale if asked).

    Raises
    ------
    InputError
        The catalogue has no source in the field of any frame.
    """
    from ..errors import InputError

    with_refcat = [f for f in frames if f.tables.get("REFCAT") is not None]
    if not with_refcat:
        ctx.log.info("determineAstrometricSolution: no REFCAT attached; skipped")
        return list(frames)
    refcat = with_refcat[0].tables["REFCAT"]
    if refcat_columns(refcat) is None:
        raise InputError(None, f"the reference catalogue (addReferenceCatalog:source) has no RA/Dec columns "
                               f"(RAJ2000/DEJ2000, RA/DEC or ra/dec); it has {', '.join(refcat.colnames[:8])}")
    if not refcat_in_field(refcat, with_refcat).any():
        raise InputError(None, f"none of the {len(refcat)} sources of the reference catalogue "
                               f"(addReferenceCatalog:source) lies in the field of the {len(with_refcat)} frame(s): "
                               "a catalogue of another field?")
    outputs = []
    for frame in frames:
        table = frame.tables.get("REFCAT")
        new = None if table is None else _fit_to_refcat(attach_static_distortion(frame), table, p, ctx)
        outputs.append(frame if new is None else new.map_extensions(refresh_world).with_suffix(p.suffix))
    return outputs


def _fit_to_refcat(frame: Frame, refcat: Table, p, ctx) -> Frame | None:
    """``frame`` calibrated on ``refcat``, or None (warned) when too few sources match."""
    centre = (float(frame[0].header["CRVAL1"]), float(frame[0].header["CRVAL2"]))
    columns = refcat_columns(refcat)
    assert columns is not None  # checked by the caller
    ra, dec = (np.asarray(refcat[c], float) for c in columns)
    ref_xy = np.column_stack(project(ra, dec, *centre))
    src_xy = np.column_stack(project(*frame_sources(frame)[:2], *centre))
    t, n, rms = align_catalogues(src_xy, ref_xy, first_pass=p.initial, match_radius=p.final,
                                 rotate=p.rotate, scale=p.scale, max_iters=p.max_iters,
                                 tolerance=vote_tolerance(frame, p.final), min_votes=p.min_matches)
    if t is not None and n >= p.min_matches and has_distortion(frame):
        uv = np.column_stack(focal_sources(frame))
        transform, n, rms, used = fit_focal_transform(uv, apply(t, src_xy), ref_xy, match_radius=p.final,
                                                      order=p.order, max_iters=p.max_iters,
                                                      sigma=source_sigmas(frame))
        if transform is not None and n >= p.min_matches:
            ctx.log.info("determineAstrometricSolution: %s: %d matches with the reference catalogue, %s, "
                         "rms %.4f\"", frame.filename, n, model_text(used), rms)
            return with_focal_transform(frame, transform, centre)
    elif t is not None and n >= p.min_matches:
        ctx.log.info("determineAstrometricSolution: %s: %d matches, rms %.3f\"", frame.filename, n, rms)
        return frame.map_extensions(lambda e: transform_extension(e, t, *centre))
    ctx.log.warning("determineAstrometricSolution: %s: only %d match(es) with the reference catalogue "
                    "(min_matches=%d); its WCS is left as it was", frame.filename, n, p.min_matches)
    return None
