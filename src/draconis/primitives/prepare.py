"""Standardisation primitives.

prepare, addDQ, addIllumMaskToDQ, addVAR, ADUToElectrons, nonlinearityCorrect.

All of them extend lazy graphs: per-pixel work goes through the kernels of
:mod:`draconis.kernels.calib` with ``dask.array.map_blocks``; headers are
updated on copies.  Shared helpers used by the other calibration-stage
modules (time stamps, clipping a calibration to a frame) live here too.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import dask
import dask.array as da
import numpy as np

from ..errors import CalibrationNotFoundError, InputError
from ..frame import Extension, Frame
from ..instruments.illumination import ALIGN_TO_DATA, best_shift, illuminated
from ..kernels import calib as k
from ..parameters import P, Params, suffix_param, unsupported
from ..provenance import utc_timestamp
from .bookkeeping import wcs_discrepancies
from .focal_plane import attach_static_distortion
from .registry import Context, primitive

__all__ = ["stamp", "clip_calibration", "lazy_map", "band_map"]


# ---------------------------------------------------------------- helpers
def stamp(frame: Frame, keyword: str, comment: str = "") -> Frame:
    """Copy of ``frame`` with PHU ``keyword`` (and GEM-TLM) set to the current UTC time."""
    now = utc_timestamp()
    return frame.with_phu(**{keyword: (now, comment or f"UT time stamp for {keyword}"),
                             "GEM-TLM": (now, "UT last modification with draconis")})


def lazy_map(kernel, *arrays: da.Array, dtype, **kwargs) -> da.Array:
    """``map_blocks`` of ``kernel`` over arrays aligned to the chunks of the first."""
    first = arrays[0]
    aligned = [first] + [a if a.chunks == first.chunks else a.rechunk(first.chunks) for a in arrays[1:]]
    return da.map_blocks(kernel, *aligned, dtype=dtype, meta=np.empty((0, 0), dtype=dtype), **kwargs)


def band_map(kernel, arr: da.Array, *, dtype, **kwargs) -> da.Array:
    """Apply a whole-array kernel (e.g. connected regions) and return row-band chunks again."""
    whole = arr.rechunk(arr.shape)
    out = da.map_blocks(kernel, whole, dtype=dtype, meta=np.empty((0, 0), dtype=dtype), **kwargs)
    return out.rechunk(arr.chunks)


def _sections(frame: Frame) -> list:
    try:
        return list(frame.descriptor("detector_section"))
    except Exception:  # noqa: BLE001 - frames without section keywords: whole arrays
        return [None] * len(frame)


def clip_calibration(cal: Frame, frame: Frame, planes: Sequence[str] = ("SCI", "VAR", "DQ")) -> list[dict]:
    """Planes of each extension of ``cal`` cut to the area of ``frame``'s arrays.

    Arrays of the same shape are used as they are; a larger calibration (e.g.
    a full-frame flat for a GSAOI ROI standard) is cut by the two frames'
    detector sections.

    Raises
    ------
    InputError
        The calibration has another number of arrays or does not cover the frame.
    """
    name = cal.path or cal.filename
    if len(cal) != len(frame):
        raise InputError(name, f"has {len(cal)} array(s) but {frame.filename} has {len(frame)}")
    cal_secs, sci_secs = _sections(cal), _sections(frame)
    out = []
    for i, (cext, ext) in enumerate(zip(cal.extensions, frame.extensions)):
        arrays: dict[str, da.Array] = {}
        for plane in planes:
            array = cext.plane(plane)
            if array is not None:
                arrays[plane] = array
        if cext.shape != ext.shape:
            cs, ss = cal_secs[i], sci_secs[i]
            if cs is None or ss is None or not _covers(cs, ss):
                raise InputError(name, f"array {i + 1} ({cext.shape[0]}x{cext.shape[1]}) does not cover "
                                       f"{frame.filename} ({ext.shape[0]}x{ext.shape[1]})")
            ys = slice(ss.y1 - cs.y1, ss.y2 - cs.y1)
            xs = slice(ss.x1 - cs.x1, ss.x2 - cs.x1)
            arrays = {p: a[ys, xs] for p, a in arrays.items()}
            if next(iter(arrays.values())).shape != ext.shape:
                raise InputError(name, f"array {i + 1} section does not match {frame.filename}")
        out.append({p: a.rechunk(ext.plane("SCI").chunks) for p, a in arrays.items()})
    return out


def _covers(outer: Any, inner: Any) -> bool:
    """Whether section ``outer`` contains section ``inner``."""
    return outer.x1 <= inner.x1 and inner.x2 <= outer.x2 and outer.y1 <= inner.y1 and inner.y2 <= outer.y2


def _per_ext(frame: Frame, name: str, default: Any = None) -> list:
    value = frame.safe_descriptor(name)
    if value is None:
        return [default] * len(frame)
    return list(value) if isinstance(value, (list, tuple)) else [value] * len(frame)


def _float_or_none(v: Any) -> float | None:
    try:
        return None if v is None else float(v)
    except (TypeError, ValueError):
        return None


# ---------------------------------------------------------------- prepare
def _exit_or_ignore(value: str) -> None:
    if value not in ("exit", "ignore"):
        raise ValueError(f"{value!r} is not supported by draconis (rebuilding a WCS from the offsets is not "
                         "implemented): use 'exit' or 'ignore'")


@primitive("prepare",
           suffix_param("_prepared"),
           P("require_wcs", bool, True, "fail if any extension lacks a usable WCS"),
           P("bad_wcs", str, "exit", "what to do when WCS and telescope offsets disagree: exit / fix from offsets / "
             "new from target+offsets / ignore", choices=("exit", "fix", "new", "ignore"), check=_exit_or_ignore),
           P("debug_consistency_limit", float, 30.0, "pointing disagreement tolerance (arcsec)", low=2),
           P("debug_max_deadtime", float, 60.0, "gap (s) after which a new pointing is assumed", low=10),
           *unsupported("spectroscopy only: draconis reduces imaging",
                        P("mdf", str, None, "MDF file (spectroscopy only)", optional=True),
                        P("attach_mdf", bool, True, "attach MDF (spectroscopy only)")))
def prepare(frames: list[Frame], p: Params, ctx: Context) -> list[Frame]:
    """Validate, convert SCI to float32 and write the detector properties into each array header.

    validateData checks the number of arrays and the WCS; standardizeHeaders
    writes GAIN, RDNOISE, SATLEVEL, NONLINEA, PIXSCALE (from descriptors),
    EXTNAME/EXTVER, the total EXPTIME, and the PREPARE stamp (tag PREPARED).
    Unless ``bad_wcs='ignore'``, a frame whose WCS centre is more than
    ``debug_consistency_limit`` arcsec from where the telescope offsets put it
    (relative to the first frame of its pointing) stops the reduction.
    An instrument's static distortion (GSAOI) enters every array's WCS here
    (focal_plane.attach_static_distortion).
    """
    if p.bad_wcs != "ignore":
        _check_wcs(frames, p)
    out = []
    for frame in frames:
        if "PREPARED" in frame.tags:
            ctx.log.warning("prepare: %s is already prepared; left unchanged", frame.filename)
            out.append(frame)
            continue
        _validate(frame, p.require_wcs)
        out.append(attach_static_distortion(_standardize(frame)).with_suffix(p.suffix))
    return out


def _check_wcs(frames: list[Frame], p) -> None:
    raw = [f for f in frames if "PREPARED" not in f.tags]
    bad = wcs_discrepancies(raw, limit=p.debug_consistency_limit, max_deadtime=p.debug_max_deadtime)
    if bad:
        frame, reference, miss = bad[0]
        raise InputError(frame.path or frame.filename,
                         f"WCS is {miss:.1f}\" from where the telescope offsets put it relative to "
                         f"{reference.filename} (limit {p.debug_consistency_limit:g}\"; "
                         f"{len(bad)} frame(s) discrepant); -p prepare:bad_wcs=ignore keeps the header WCS")


def _validate(frame: Frame, require_wcs: bool) -> None:
    expected = getattr(frame.instrument_model, "n_arrays", len(frame))
    if len(frame) != expected:
        raise InputError(frame.path or frame.filename, f"has {len(frame)} pixel extension(s); "
                                                       f"{frame.instrument_model.name} data need {expected}")
    if require_wcs:
        for i, ext in enumerate(frame.extensions, start=1):
            if "CRVAL1" not in ext.header and "CRVAL1" not in frame.phu:
                raise InputError(frame.path or frame.filename, f"array {i} has no WCS (CRVAL1 missing); "
                                                               "use -p prepare:require_wcs=False")


def _standardize(frame: Frame) -> Frame:
    # Descriptors are read before the PREPARE stamp: afterwards they read the
    # keywords written here.
    values = {key: _per_ext(frame, name) for key, name in
              (("GAIN", "gain"), ("RDNOISE", "read_noise"), ("SATLEVEL", "saturation_level"),
               ("NONLINEA", "non_linear_level"))}
    pixscale = frame.safe_descriptor("pixel_scale")
    exptime = frame.safe_descriptor("exposure_time")
    exts = []
    for i, ext in enumerate(frame.extensions):
        cards: dict[str, Any] = {key: _float_or_none(values[key][i]) for key in values}
        cards.update(PIXSCALE=_float_or_none(pixscale), EXTNAME="SCI", EXTVER=i + 1)
        cards = {key: v for key, v in cards.items() if v is not None}
        ext = ext.with_header(**cards)
        exts.append(ext.with_planes(SCI=ext.plane("SCI").astype(np.float32)))
    out = frame.with_extensions(exts)
    if exptime is not None:
        out = out.with_phu(EXPTIME=(float(exptime), "total exposure time (s)"))
    return stamp(out, "PREPARE", "UT time stamp for prepare")


# ---------------------------------------------------------------- addDQ
@primitive("addDQ",
           suffix_param("_dqAdded"),
           P("illum_mask", str, None, "illumination mask file to use instead of the lookup one", optional=True,
             opens="frame"),
           P("static_bpm", object, "default", "static BPM; 'default' = ask the calibration DB for processed_bpm; "
             "None = no static BPM", optional=True, opens="frame", passthrough=("default",)),
           P("user_bpm", object, None, "extra user BPM OR-ed into DQ", optional=True, opens="frame"),
           P("add_illum_mask", bool, False, "also OR the illumination mask (bit 64) into DQ (never for DARK/BIAS)"),
           P("non_linear", bool, False, "latency: also propagate non-linear (2) pixels, not only saturated (4)"),
           P("time", float, 120.0, "latency window (s)", low=0.0),
           P("latency", bool, True, "flag pixels saturated in earlier frames (within time) as cosmic_ray (8)"),
           P("xshift", int, 0, "shift (pix) of illumination mask in x", low=-100, high=100),
           P("yshift", int, 0, "shift (pix) of illumination mask in y", low=-100, high=100),
           calibrations=("processed_bpm",), worker_imports=(__name__,))
def add_dq(frames: list[Frame], p: Params, ctx: Context) -> list[Frame]:
    """Build the DQ plane.

    Static and user BPMs, saturation, non-linearity, hidden saturation,
    latency and (optionally) the illumination mask.
    """
    user = p.user_bpm
    out = []
    for frame in frames:
        if any(ext.plane("DQ") is not None for ext in frame.extensions) and "ADDDQ" in frame.phu:
            ctx.log.warning("addDQ: %s already has a DQ plane; left unchanged", frame.filename)
            out.append(frame)
            continue
        dqs = _static_dq(frame, p, user, ctx)
        dqs = [dq | _saturation_planes(ext, sat, nl) for dq, ext, sat, nl in
               zip(dqs, frame.extensions, _per_ext(frame, "saturation_level"), _per_ext(frame, "non_linear_level"))]
        if p.add_illum_mask and not ({"DARK", "BIAS"} & frame.tags):
            dqs = [dq | m for dq, m in zip(dqs, _illum_planes(frame, p.illum_mask, p.xshift, p.yshift))]
        out.append(frame.with_extensions(ext.with_planes(DQ=dq) for ext, dq in zip(frame.extensions, dqs)))
    if p.latency:
        out = _add_latency(out, p.time, p.non_linear, ctx)
    return [stamp(f, "ADDDQ", "UT time stamp for addDQ").with_suffix(p.suffix) for f in out]


def _static_dq(frame: Frame, p, user: Frame | None, ctx) -> list[da.Array]:
    dqs = [da.zeros(ext.shape, dtype=np.uint16, chunks=ext.plane("SCI").chunks) for ext in frame.extensions]
    bpm = None
    if isinstance(p.static_bpm, str) and p.static_bpm == "default":
        try:
            bpm = ctx.calibration("processed_bpm", frame)
        except CalibrationNotFoundError:
            bpm = None
        if bpm is None:
            ctx.log.warning("addDQ: no static BPM found for %s", frame.filename)
    elif p.static_bpm is not None:
        bpm = p.static_bpm
    for mask in (bpm, user):
        if mask is None:
            continue
        planes = clip_calibration(mask, frame, planes=("SCI",))
        dqs = [dq | pl["SCI"].astype(np.uint16) for dq, pl in zip(dqs, planes)]
    return dqs


def _saturation_planes(ext: Extension, sat: Any, nonlin: Any) -> da.Array:
    sat, nonlin = _float_or_none(sat), _float_or_none(nonlin)
    sci = ext.plane("SCI")
    dq = lazy_map(k.saturation_dq, sci, dtype=np.uint16, saturation=sat, non_linear=nonlin)
    if sat is not None and nonlin is not None and sat > nonlin:
        dq = dq | band_map(k.hidden_saturation_dq, sci, dtype=np.uint16, non_linear=nonlin)
    return dq


def _illum_planes(frame: Frame, illum_mask: Frame | None, xshift: int, yshift: int) -> list[da.Array]:
    """Bit 64 planes of the illumination mask (a user mask's nonzero pixels, or the instrument lookup)."""
    if illum_mask is not None:
        planes = clip_calibration(illum_mask, frame, planes=("SCI",))
        return [da.where(pl["SCI"] != 0, np.uint16(k.UNILLUMINATED), np.uint16(0)) for pl in planes]
    out = []
    instrument = str(frame.safe_descriptor("instrument", ""))
    for ext in frame.extensions:
        sci = ext.plane("SCI")
        if illuminated(instrument, (2, 2)) is None:
            out.append(da.zeros(ext.shape, dtype=np.uint16, chunks=sci.chunks))
            continue
        # The mask is made inside the tasks (cached per process), not embedded in the graph.
        out.append(da.map_blocks(_illum_block, sci, dtype=np.uint16, meta=np.empty((0, 0), np.uint16),
                                 instrument=instrument, shape=ext.shape, xshift=xshift, yshift=yshift))
    return out


@functools.lru_cache(maxsize=16)
def _illum_dq(instrument: str, shape: tuple[int, int], xshift: int, yshift: int) -> np.ndarray:
    lit = illuminated(instrument, shape, xshift=xshift, yshift=yshift)
    if lit is None:  # no illumination mask for this instrument: every pixel is lit
        lit = np.ones(shape, bool)
    out = np.where(lit, 0, k.UNILLUMINATED).astype(np.uint16)
    out.flags.writeable = False
    return out


def _illum_block(block, block_info=None, *, instrument, shape, xshift, yshift):
    (y0, y1), (x0, x1) = block_info[0]["array-location"]
    return _illum_dq(instrument, tuple(shape), xshift, yshift)[y0:y1, x0:x1].copy()


def _add_latency(frames: list[Frame], window: float, non_linear: bool, ctx) -> list[Frame]:
    """OR bit 8 where an earlier frame (within ``window`` s) was saturated (or non-linear)."""
    times = [f.safe_descriptor("ut_datetime") for f in frames]
    if any(t is None for t in times) or len(frames) < 2:
        return frames
    bits = k.SATURATED | (k.NON_LINEAR if non_linear else 0)
    out = []
    for i, frame in enumerate(frames):
        earlier = [j for j, t in enumerate(times) if 0 < (times[i] - t).total_seconds() <= window
                   and len(frames[j]) == len(frame)]
        if not earlier:
            out.append(frame)
            continue
        exts = []
        for e, ext in enumerate(frame.extensions):
            prev = [dq for j in earlier if frames[j][e].shape == ext.shape
                    for dq in [frames[j][e].plane("DQ")] if dq is not None]
            dq = ext.plane("DQ")
            if prev:
                dq = dq | lazy_map(k.latency_dq, *prev, dtype=np.uint16, bits=bits)
            exts.append(ext.with_planes(DQ=dq))
        ctx.log.debug("addDQ: latency from %d earlier frame(s) on %s", len(earlier), frame.filename)
        out.append(frame.with_extensions(exts))
    return out


# ---------------------------------------------------------------- addIllumMaskToDQ
@primitive("addIllumMaskToDQ",
           suffix_param("_illumMaskAdded"),
           P("illum_mask", str, None, "illumination mask file to use instead of the lookup one", optional=True,
             opens="frame"),
           P("xshift", int, 0, "shift (pix) of illumination mask in x", low=-100, high=100),
           P("yshift", int, 0, "shift (pix) of illumination mask in y", low=-100, high=100))
def add_illum_mask_to_dq(frames: list[Frame], p: Params, ctx: Context) -> list[Frame]:
    """OR the illumination mask (bit 64) into DQ, optionally shifted by xshift/yshift."""
    shifts = _keyhole_shifts(frames, p, ctx)
    out = []
    for frame, (xs, ys) in zip(frames, shifts):
        masks = _illum_planes(frame, p.illum_mask, xs, ys)
        exts = []
        for ext, m in zip(frame.extensions, masks):
            dq = ext.plane("DQ")
            exts.append(ext.with_planes(DQ=m if dq is None else dq | m))
        out.append(stamp(frame.with_extensions(exts), "ADILLMSK").with_suffix(p.suffix))
    return out


def _keyhole_shifts(frames: list[Frame], p, ctx) -> list[tuple[int, int]]:
    """Mask shifts per frame.

    The user's, or (instruments in ALIGN_TO_DATA, no user shift) the shift
    laying the mask on the lit area, from row/column profiles of the first
    array (one dask.compute for all frames).
    """
    default = [(p.xshift, p.yshift)] * len(frames)
    if p.illum_mask or p.xshift or p.yshift:
        return default
    todo = [i for i, f in enumerate(frames) if str(f.safe_descriptor("instrument", "")).upper() in ALIGN_TO_DATA]
    if not todo:
        return default
    lazy = []
    for i in todo:
        sci = frames[i][0].plane("SCI")
        sci = da.where(da.isfinite(sci), sci, 0)
        lazy.append((sci.sum(axis=1), sci.sum(axis=0)))
    (profiles,) = dask.compute(lazy)
    out = list(default)
    for i, (rows, cols) in zip(todo, profiles):
        mask = illuminated(frames[i].descriptor("instrument"), frames[i][0].shape)
        if mask is None:  # ALIGN_TO_DATA instruments have masks; nothing to align otherwise
            continue
        out[i] = best_shift(mask, rows, cols)
        ctx.log.info("addIllumMaskToDQ: %s mask shifted by x=%d, y=%d", frames[i].filename, *out[i])
    return out


# ---------------------------------------------------------------- addVAR
@primitive("addVAR",
           suffix_param("_varAdded"),
           P("read_noise", bool, False, "add read-noise variance"),
           P("poisson_noise", bool, False, "add Poisson variance"))
def add_var(frames: list[Frame], p: Params, ctx: Context) -> list[Frame]:
    """Add read-noise and/or Poisson variance; VARNOISE records the components (never added twice)."""
    out = []
    for frame in frames:
        in_adu = bool(frame.safe_descriptor("is_in_adu", True))
        gains = _per_ext(frame, "gain", 1.0)
        noises = _per_ext(frame, "read_noise")
        coadds = int(frame.safe_descriptor("coadds", 1) or 1)
        averaged = not getattr(frame.instrument_model, "coadds_summed", True)
        exts = []
        for ext, gain, rn in zip(frame.extensions, gains, noises):
            gain = float(gain) if in_adu and gain else 1.0
            done = [c for c in str(ext.header.get("VARNOISE", "")).split(",") if c]
            var = ext.plane("VAR")
            var = da.zeros(ext.shape, dtype=np.float32, chunks=ext.plane("SCI").chunks) if var is None else var
            if p.poisson_noise and "Poisson" not in done:
                var = var + lazy_map(k.poisson_var, ext.plane("SCI"), dtype=np.float32,
                                     divisor=gain * (coadds if averaged else 1))
                done.append("Poisson")
            elif p.poisson_noise:
                ctx.log.warning("addVAR: Poisson variance already in %s; not added again", frame.filename)
            if p.read_noise and "read" not in done:
                if rn is None:
                    ctx.log.warning("addVAR: no read noise known for %s", frame.filename)
                else:
                    var = var + np.float32((float(rn) / gain) ** 2)
                    done.append("read")
            elif p.read_noise:
                ctx.log.warning("addVAR: read noise variance already in %s; not added again", frame.filename)
            exts.append(ext.with_planes(VAR=var.astype(np.float32)).with_header(VARNOISE=",".join(done) or None))
        out.append(stamp(frame.with_extensions(exts), "ADDVAR").with_suffix(p.suffix))
    return out


# ---------------------------------------------------------------- ADUToElectrons
@primitive("ADUToElectrons", suffix_param("_ADUToElectrons"))
def adu_to_electrons(frames: list[Frame], p: Params, ctx: Context) -> list[Frame]:
    """Multiply SCI by the gain (VAR by its square); BUNIT='electron', GAIN=1, levels scaled."""
    out = []
    for frame in frames:
        if not frame.safe_descriptor("is_in_adu", True):
            ctx.log.warning("ADUToElectrons: %s is already in electrons", frame.filename)
            out.append(frame.with_suffix(p.suffix))
            continue
        exts = []
        for ext, gain in zip(frame.extensions, _per_ext(frame, "gain", 1.0)):
            g = float(gain)
            planes = {"SCI": lazy_map(k.scale_block, ext.plane("SCI"), dtype=np.float32, factor=g)}
            var = ext.plane("VAR")
            if var is not None:
                planes["VAR"] = lazy_map(k.scale_block, var, dtype=np.float32, factor=g * g)
            cards = {"GAIN": 1.0, "BUNIT": "electron"}
            for key in ("SATLEVEL", "NONLINEA"):
                if key in ext.header:
                    cards[key] = float(ext.header[key]) * g
            exts.append(ext.with_planes(**planes).with_header(**cards))
        out.append(stamp(frame.with_extensions(exts), "ADUTOELE").with_suffix(p.suffix))
    return out


# ---------------------------------------------------------------- nonlinearityCorrect
@primitive("nonlinearityCorrect", suffix_param("_nonlinearityCorrected"), worker_imports=(__name__,))
def nonlinearity_correct(frames: list[Frame], p: Params, ctx: Context) -> list[Frame]:
    """Linearise counts with the instrument's polynomial or IRDC coefficients (instruments.md §5)."""
    out = []
    for frame in frames:
        if "LINCORR" in frame.phu:
            ctx.log.warning("nonlinearityCorrect: %s already corrected", frame.filename)
            out.append(frame)
            continue
        coeffs = _per_ext(frame, "nonlinearity_coeffs")
        if all(c is None for c in coeffs):
            ctx.log.warning("nonlinearityCorrect: no coefficients for %s; not corrected", frame.filename)
            out.append(frame.with_suffix(p.suffix))
            continue
        coadds = int(frame.safe_descriptor("coadds", 1) or 1)
        summed = getattr(frame.instrument_model, "coadds_summed", True)
        exptime = float(frame.safe_descriptor("exposure_time", 0.0) or 0.0)
        exts = []
        for ext, c, gain in zip(frame.extensions, coeffs, _per_ext(frame, "gain", 1.0)):
            if c is None:
                exts.append(ext)
                continue
            kw = _linearity_kwargs(c, float(gain) / (coadds if summed else 1), exptime / coadds, frame, ctx)
            exts.append(_linearize_ext(ext, kw, float(gain)))
        out.append(stamp(frame.with_extensions(exts), "LINCORR").with_suffix(p.suffix))
    return out


def _linearity_kwargs(c: Any, to_electrons: float, t: float, frame: Frame, ctx) -> dict[str, Any]:
    """Kernel arguments from a coefficient record (duck-typed: tuple, IRDC, row-IRDC)."""
    kw: dict[str, Any]
    if hasattr(c, "even"):
        kw = dict(form="irdc", coeffs=(c.even.gamma, c.even.eta), odd_coeffs=(c.odd.gamma, c.odd.eta))
    elif hasattr(c, "gamma"):
        kw = dict(form="irdc", coeffs=(c.gamma, c.eta))
    else:
        return dict(form="polynomial", coeffs=tuple(float(v) for v in c), to_electrons=to_electrons)
    delta = float(c.time_delta)
    if t > 600:
        ctx.log.warning("nonlinearityCorrect: %s exposure %.1f s per coadd is outside the calibrated range",
                        frame.filename, t)
    kw.update(to_electrons=to_electrons, exposure_scale=t / (t + delta) if t + delta > 0 else 1.0)
    ctx.log.info("nonlinearityCorrect: %s effective exposure time %.4f s per coadd", frame.filename, t + delta)
    return kw


def _linearize_block(block, block_info=None, **kw):
    row0 = block_info[0]["array-location"][0][0] if block_info else 0
    return k.linearize_block(block, row0=row0, **kw)


def _linearize_ext(ext: Extension, kw: dict, gain: float) -> Extension:
    sci = ext.plane("SCI")
    new = da.map_blocks(_linearize_block, sci, dtype=np.float32, meta=np.empty((0, 0), np.float32), **kw)
    planes = {"SCI": new}
    var = ext.plane("VAR")
    if var is not None and "Poisson" in str(ext.header.get("VARNOISE", "")):
        planes["VAR"] = var + (new - sci) / np.float32(gain)
    cards = {}
    level_kw = {**kw, "exposure_scale": 1.0}
    level_kw.pop("odd_coeffs", None)
    for key in ("SATLEVEL", "NONLINEA"):
        if key in ext.header:
            cards[key] = float(k.linearize_block(np.array([[float(ext.header[key])]]), **level_kw)[0, 0])
    return ext.with_planes(**planes).with_header(**cards)
