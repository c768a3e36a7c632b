"""Applying calibrations: darkCorrect, flatCorrect, applyDQPlane.

Calibrations come from the ``dark=``/``flat=`` parameters (file names or
frames, opened by the runner) or from ``ctx.calibration`` (user_cal, then the database); they are
cut to each science array by detector section (GSAOI ROIs).  VAR and DQ
propagate: subtraction adds variances, division follows the first-order
rule, DQ planes are OR-ed.
"""
from __future__ import annotations

import dask
import dask.array as da
import numpy as np

from ..errors import CalibrationNotFoundError, ParameterError
from ..frame import Frame
from ..kernels import calib as k
from ..parameters import P, Params, suffix_param, unsupported
from .prepare import clip_calibration, lazy_map, stamp
from .registry import Context, primitive

_DO_CAL = ("procmode", "force", "skip")


def _find_calibration(frames: list[Frame], explicit: list[Frame] | None, caltype: str, do_cal: str, ctx,
                      who: str) -> list[Frame | None]:
    """One calibration per frame (explicit list: one, or one per frame), None where absent and allowed."""
    if explicit:
        cals: list[Frame | None] = list(explicit)
        if len(cals) not in (1, len(frames)):
            raise ParameterError(f"{who}: {len(cals)} calibration(s) given for {len(frames)} input(s)")
        return list(cals * len(frames) if len(cals) == 1 else cals)
    out: list[Frame | None] = []
    for frame in frames:
        why = ""
        try:
            cal = ctx.calibration(caltype, frame)
        except CalibrationNotFoundError as err:
            cal, why = None, f": {err}"
        if cal is None and (do_cal == "force" or ctx.mode == "sq"):
            raise CalibrationNotFoundError(f"{frame.filename}: no {caltype} found ({who}){why}; "
                                           f"give one with --user_cal or -p {who}:do_cal=skip")
        if cal is None:
            ctx.log.warning("%s: no %s for %s%s; not corrected", who, caltype, frame.filename, why)
        out.append(cal)
    return out


def _or_dq(dq, cal_dq):
    if cal_dq is None:
        return dq
    cal_dq = cal_dq.astype(np.uint16)
    return cal_dq if dq is None else dq | cal_dq


@primitive("darkCorrect",
           P("do_cal", str, "procmode", "'procmode' (sq: missing cal is an error), 'force' (always required), "
             "'skip' (do not apply)", choices=_DO_CAL),
           suffix_param("_darkCorrected"),
           P("dark", list, None, "explicit processed dark(s), one or one per input", optional=True, opens="frames"),
           calibrations=("processed_dark",))
def dark_correct(frames: list[Frame], p: Params, ctx: Context) -> list[Frame]:
    """Subtract the processed dark (no exposure-time scaling: the dark must match)."""
    if p.do_cal == "skip":
        ctx.log.info("darkCorrect: skipped (do_cal=skip)")
        return list(frames)
    darks = _find_calibration(frames, p.dark, "processed_dark", p.do_cal, ctx, "darkCorrect")
    out = []
    for frame, dark in zip(frames, darks):
        if dark is None or "DARKCORR" in frame.phu:
            out.append(frame)
            continue
        t_sci, t_dark = frame.safe_descriptor("exposure_time"), dark.safe_descriptor("exposure_time")
        if t_sci is not None and t_dark is not None and abs(float(t_sci) - float(t_dark)) > 0.01:
            # Darks are not scaled: a dark of another exposure time would leave
            # the wrong dark current in every pixel, so it is refused.
            raise CalibrationNotFoundError(
                f"{frame.filename}: darkCorrect: dark {dark.filename} has exposure time {float(t_dark):g} s, "
                f"the frame {float(t_sci):g} s (darks are not scaled; give a matching dark)")
        exts = []
        for ext, cal in zip(frame.extensions, clip_calibration(dark, frame)):
            planes = {"SCI": lazy_map(k.subtract_sci, ext.plane("SCI"), cal["SCI"], dtype=np.float32)}
            variances = [v for v in (ext.plane("VAR"), cal.get("VAR")) if v is not None]
            if variances:
                planes["VAR"] = lazy_map(k.sum_var, *variances, dtype=np.float32)
            planes["DQ"] = _or_dq(ext.plane("DQ"), cal.get("DQ"))
            exts.append(ext.with_planes(**planes))
        frame = frame.with_extensions(exts).with_phu(DARKIM=(dark.filename, "processed dark used"))
        out.append(stamp(frame, "DARKCORR").with_suffix(p.suffix))
    return out


@primitive("flatCorrect",
           P("do_cal", str, "procmode", "'procmode' (sq: missing cal is an error), 'force' (always required), "
             "'skip' (do not apply)", choices=_DO_CAL),
           suffix_param("_flatCorrected"),
           P("flat", list, None, "explicit processed flat(s), one or one per input", optional=True, opens="frames"),
           calibrations=("processed_flat",))
def flat_correct(frames: list[Frame], p: Params, ctx: Context) -> list[Frame]:
    """Divide by the processed flat, cut to the science arrays' detector sections."""
    if p.do_cal == "skip":
        ctx.log.info("flatCorrect: skipped (do_cal=skip)")
        return list(frames)
    flats = _find_calibration(frames, p.flat, "processed_flat", p.do_cal, ctx, "flatCorrect")
    out = []
    for frame, flat in zip(frames, flats):
        if flat is None or "FLATCORR" in frame.phu:
            out.append(frame)
            continue
        exts = []
        for ext, cal in zip(frame.extensions, clip_calibration(flat, frame)):
            sci, fsci = ext.plane("SCI"), cal["SCI"].astype(np.float32)
            planes = {"SCI": lazy_map(k.divide_sci, sci, fsci, dtype=np.float32)}
            var = ext.plane("VAR")
            if var is not None:
                fvar = cal.get("VAR")
                fvar = da.zeros_like(fsci) if fvar is None else fvar.astype(np.float32)
                planes["VAR"] = lazy_map(k.divide_var, sci, var, fsci, fvar, dtype=np.float32)
            planes["DQ"] = _or_dq(ext.plane("DQ"), cal.get("DQ"))
            exts.append(ext.with_planes(**planes))
        frame = frame.with_extensions(exts).with_phu(FLATIM=(flat.filename, "processed flat used"))
        out.append(stamp(frame, "FLATCORR").with_suffix(p.suffix))
    return out


# ---------------------------------------------------------------- applyDQPlane
@primitive("applyDQPlane",
           suffix_param("_dqPlaneApplied"),
           P("replace_flags", int, 65529, "DQ bit mask selecting pixels to replace / to treat as bad", low=0),
           P("replace_value", object, "median", "'mean', 'median' or a number"),
           *unsupported(
               "the ring filter is not implemented: flagged pixels take the array's statistic or the value",
               P("inner", float, None, "inner radius (pix) of ring filter", optional=True, low=1),
               P("outer", float, None, "outer radius (pix) of ring filter", optional=True, low=1),
               P("max_iters", int, 1, "iteration limit (None = until convergence)", low=1, optional=True)))
def apply_dq_plane(frames: list[Frame], p: Params, ctx: Context) -> list[Frame]:
    """Replace pixels whose DQ has any of ``replace_flags`` by the median/mean of the good pixels or a value.

    The statistic is taken over each array's good pixels; the statistics of
    all frames are computed in one ``dask.compute``.  The ring filter
    (inner/outer/max_iters) is not implemented (declared unsupported).
    """
    value = _replace_value(p.replace_value)
    targets = [(f, e) for f in frames for e in f.extensions if e.plane("DQ") is not None]
    if isinstance(value, str):
        stats = dask.compute(*[_good_stat(e, p.replace_flags, value) for _, e in targets])
    else:
        stats = [value] * len(targets)
    fill = {id(e): np.float32(s) for (_, e), s in zip(targets, stats)}
    out = []
    for frame in frames:
        exts = []
        for ext in frame.extensions:
            if id(ext) not in fill:
                exts.append(ext)
                continue
            dq = ext.plane("DQ")
            if dq is None:  # targets have a DQ plane
                exts.append(ext)
                continue
            bad = (dq & np.uint16(p.replace_flags)) != 0
            exts.append(ext.with_planes(SCI=da.where(bad, fill[id(ext)], ext.plane("SCI"))))
        out.append(stamp(frame.with_extensions(exts), "APPLYDQ").with_suffix(p.suffix))
    return out


def _replace_value(value):
    if isinstance(value, str) and value.strip().lower() in ("mean", "median"):
        return value.strip().lower()
    try:
        return float(value)
    except (TypeError, ValueError) as err:
        raise ParameterError(f"applyDQPlane:replace_value: {value!r} is not 'mean', 'median' or a number") from err


def _good_stat(ext, flags: int, how: str):
    """Lazy median (of a subsample of at most ~1M good pixels) or mean of good pixels."""
    sci, dq = ext.plane("SCI"), ext.plane("DQ")
    step = max(1, int(np.sqrt(sci.size / 1e6)))
    s, d = sci[::step, ::step].ravel(), dq[::step, ::step].ravel()
    good = s[((d & np.uint16(flags)) == 0) & da.isfinite(s)]
    if how == "mean":
        return good.mean()
    return dask.delayed(lambda a: float(np.median(a)) if a.size else 0.0)(good)
