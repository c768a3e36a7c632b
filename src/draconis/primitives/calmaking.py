"""Making calibrations: makeLampFlat, normalizeFlat, thresholdFlatfield, makeBPM.

Which frames make a lamp flat is read from the tags, not the instrument:
darks in the input list are subtracted from the flats (F2 K band); lamp-on
minus lamp-off when both exist; flats tagged only LAMPOFF (lamp on, GCAL
shutter closed: F2 K band) get a processed dark from the calibration
database; instruments whose short-wavelength flats need no off frames are
listed in ``STACK_ONLY_BELOW_UM`` (GSAOI < 1.4 um).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr

from ..errors import CalibrationNotFoundError, InputError
from ..frame import DIMS, Frame
from ..io.zarr import stored_summary
from ..kernels import calib as k
from ..parameters import P, Params, suffix_param
from ..provenance import combined_cards
from .bookkeeping import checkpoint_computed
from .prepare import clip_calibration, lazy_map, stamp
from .registry import Context, primitive
from .stack import stack_frames_core, without_normalisation

#: instrument -> wavelength (um) below which lamp-on flats are only stacked.
STACK_ONLY_BELOW_UM: dict[str, float] = {"GSAOI": 1.4}
#: Pixels sampled per frame for the flat normalisation median.
MEDIAN_SAMPLES = 2_000_000


def _difference(a: Frame, b: Frame) -> Frame:
    """``a - b`` with variances added and DQ OR-ed (b cut to a's arrays)."""
    exts = []
    for ext, cal in zip(a.extensions, clip_calibration(b, a)):
        planes: dict[str, Any] = {"SCI": ext.plane("SCI") - cal["SCI"].astype(np.float32)}
        if ext.plane("VAR") is not None and cal.get("VAR") is not None:
            planes["VAR"] = ext.plane("VAR") + cal["VAR"].astype(np.float32)
        if ext.plane("DQ") is not None and cal.get("DQ") is not None:
            planes["DQ"] = ext.plane("DQ") | cal["DQ"].astype(np.uint16)
        exts.append(ext.with_planes(**planes))
    return a.with_extensions(exts)


def _stack(frames: Sequence[Frame], p, ctx) -> Frame:
    if len(frames) == 1:
        return frames[0]
    return stack_frames_core(frames, p.replace(scale=False, zero=False), ctx.log, suffix=None)


def _exptimes(frames: Sequence[Frame]) -> list[float | None]:
    return [f.safe_descriptor("exposure_time") for f in frames]


def _stack_only(frame: Frame) -> bool:
    limit = STACK_ONLY_BELOW_UM.get(str(frame.safe_descriptor("instrument", "")).upper())
    wave = frame.safe_descriptor("central_wavelength")
    return limit is not None and wave is not None and float(wave) < limit


def _call_stack_darks(darks: list[Frame], ctx) -> Frame:
    # stackDarks with its own parameters (and the user's -p stackDarks:...), none of makeLampFlat's
    return ctx.call("stackDarks", darks)[0]


@primitive("makeLampFlat", suffix_param("_lampstack"),
           *without_normalisation("makeLampFlat", exclude=("separate_ext",)),
           calibrations=("processed_dark",), calls={"stackDarks": ()})
def make_lamp_flat(frames: list[Frame], p: Params, ctx: Context) -> list[Frame]:
    """Lamp flat: on - off stacks; flats - darks; or a plain stack (see module notes)."""
    if not frames:
        return []
    darks = [f for f in frames if "DARK" in f.tags]
    flats = [f for f in frames if "DARK" not in f.tags]
    if not flats:
        raise InputError(frames[0].path or frames[0].filename, "makeLampFlat received no flats")
    on = [f for f in flats if "LAMPON" in f.tags]
    off = [f for f in flats if "LAMPOFF" in f.tags]
    if darks:
        result = _flat_minus_darks(flats, darks, p, ctx)
    elif on and _stack_only(on[0]):
        ctx.log.info("makeLampFlat: short-wavelength flats; lamp-on frames only stacked")
        result = _stack(on, p, ctx)
    elif on and off:
        t_on, t_off = _exptimes(on)[0], _exptimes(off)[0]
        if t_on is not None and t_off is not None and abs(t_on - t_off) > 0.01:
            ctx.log.warning("makeLampFlat: lamp-on (%.3f s) and lamp-off (%.3f s) exposures differ", t_on, t_off)
        result = _difference(_stack(on, p, ctx), _stack(off, p, ctx))
    elif off and not on:
        result = _flat_minus_processed_dark(_stack(off, p, ctx), ctx)
    else:
        ctx.log.info("makeLampFlat: no lamp-off frames; lamp-on frames only stacked")
        result = _stack(flats, p, ctx)
    result = result.with_phu(**combined_cards(flats))
    return [stamp(result, "MAKELAMP").with_suffix(p.suffix)]


def _flat_minus_darks(flats: list[Frame], darks: list[Frame], p, ctx) -> Frame:
    t_flat, t_dark = _exptimes(flats)[0], _exptimes(darks)[0]
    if t_flat is None or t_dark is None or abs(float(t_flat) - float(t_dark)) > 0.01:
        raise InputError(darks[0].path or darks[0].filename,
                         f"dark exposure {t_dark} s differs from the flats' {t_flat} s ({flats[0].filename})")
    ctx.log.info("makeLampFlat: %d flat(s) minus the stack of %d dark(s)", len(flats), len(darks))
    return _difference(_stack(flats, p, ctx), _call_stack_darks(darks, ctx) if len(darks) > 1 else darks[0])


def _flat_minus_processed_dark(flat: Frame, ctx) -> Frame:
    try:
        dark = ctx.calibration("processed_dark", flat)
    except CalibrationNotFoundError:
        dark = None
    if dark is None:
        raise CalibrationNotFoundError(f"{flat.filename}: lamp-on/shutter-closed flats need darks of the same "
                                       "exposure in the input list or a processed_dark")
    ctx.log.info("makeLampFlat: flats dark-corrected with %s", dark.filename)
    return _difference(flat, dark)


# ---------------------------------------------------------------- normalizeFlat
def _sample_step(size: int) -> int:
    """Row and column stride of the normalisation sample of an array of ``size`` pixels (~MEDIAN_SAMPLES)."""
    return max(1, int(np.sqrt(size / MEDIAN_SAMPLES)))


def _good_sample(ext, flags: int | None = None):
    sci, dq = ext.plane("SCI"), ext.plane("DQ")
    step = _sample_step(sci.size)
    s = sci[::step, ::step].ravel()
    good = da.isfinite(s)
    if dq is not None:
        good &= dq[::step, ::step].ravel() == 0
    return s[good]


def _statistic(values: np.ndarray, how: str) -> float:
    if values.size == 0:
        return 1.0
    return float(np.median(values) if how == "median" else np.mean(values))


@primitive("normalizeFlat",
           suffix_param("_normalized"),
           P("scale", str, "median", "statistic used to normalise", choices=("mean", "median")),
           P("separate_ext", bool, False, "compute scale/offset per extension instead of globally"))
def normalize_flat(frames: list[Frame], p: Params, ctx: Context) -> list[Frame]:
    """Divide by the median (or mean) of the good (DQ==0) pixels of all arrays together."""
    # The flat is usually the lazy stack of the lamp frames: measured here and written later, it was
    # computed twice (5.4 s + 6.1 s of a 12.4 s full-size F2 flat); stored once, both read it.
    # The write takes the median's strided sample on the way (the grid of _good_sample).
    shapes = {e.shape for f in frames for e in f.extensions}
    grid = None
    if len(shapes) == 1:
        ny, nx = shapes.pop()
        grid = (0, ny, 0, nx, _sample_step(ny * nx))
    frames = checkpoint_computed(frames, ctx, "normalizeFlat", samples=grid)
    written = [[stored_summary(e) for e in f.extensions] for f in frames]
    if all(s is not None and s.samples is not None for row in written for s in row):
        samples = [[s.samples[0][s.samples[1]] for s in row] for row in written]  # type: ignore[union-attr,index]
    else:
        (samples,) = dask.compute([[_good_sample(e) for e in f.extensions] for f in frames])
    out = []
    for frame, ext_samples in zip(frames, samples):
        if p.separate_ext:
            norms = [_statistic(s, p.scale) for s in ext_samples]
        else:
            norms = [_statistic(np.concatenate(ext_samples), p.scale)] * len(frame)
        exts = []
        for ext, m in zip(frame.extensions, norms):
            m = m if m not in (0.0,) and np.isfinite(m) else 1.0
            planes = {"SCI": ext.plane("SCI") / np.float32(m)}
            var = ext.plane("VAR")
            if var is not None:
                planes["VAR"] = var / np.float32(m * m)
            exts.append(ext.with_planes(**planes))
        ctx.log.info("normalizeFlat: %s divided by %s", frame.filename, ", ".join(f"{m:.6g}" for m in norms))
        out.append(stamp(frame.with_extensions(exts), "NORMLIZE").with_suffix(p.suffix))
    return out


# ---------------------------------------------------------------- thresholdFlatfield
@primitive("thresholdFlatfield",
           suffix_param("_thresholdFlatfielded"),
           P("upper", float, 10.0, "normalised-flat value above which DQ 64 is set", low=1),
           P("lower", float, 0.01, "normalised-flat value below which DQ 64 is set", high=1))
def threshold_flatfield(frames: list[Frame], p: Params, ctx: Context) -> list[Frame]:
    """DQ 64 where the normalised flat is below ``lower`` or above ``upper`` (not already bad_pixel).

    Those pixels are set to 1 so that dividing by the flat leaves them unchanged.
    """
    out = []
    for frame in frames:
        exts = []
        for ext in frame.extensions:
            sci = ext.plane("SCI")
            dq = ext.plane("DQ")
            dq = da.zeros(ext.shape, dtype=np.uint16, chunks=sci.chunks) if dq is None else dq
            new_dq = lazy_map(k.threshold_dq, sci, dq, dtype=np.uint16, lower=p.lower, upper=p.upper)
            flagged = (sci < p.lower) | (sci > p.upper)
            exts.append(ext.with_planes(SCI=da.where(flagged, np.float32(1.0), sci), DQ=new_dq))
        out.append(stamp(frame.with_extensions(exts), "THRESFLT").with_suffix(p.suffix))
    return out


# ---------------------------------------------------------------- makeBPM
@primitive("makeBPM",
           P("override_thresh", bool, True, "use the user thresholds (False: automatic dark threshold)"),
           P("dark_lo_thresh", float, -20.0, "dark pixels below this (e-) are bad", optional=True),
           P("dark_hi_thresh", float, None, "dark pixels above this (e-) are bad", optional=True),
           P("flat_lo_thresh", float, None, "normalised-flat pixels below this are bad", optional=True, high=1.0),
           P("flat_hi_thresh", float, 1.25, "normalised-flat pixels above this are bad", optional=True, low=1.0),
           P("keep_unilluminated", bool, False, "carry bit 64 from the flat into the BPM"))
def make_bpm(frames: list[Frame], p: Params, ctx: Context) -> list[Frame]:
    """Bad pixel mask from the normalised flat (main stream) and the dark stack (stream ``darks``).

    Output: SCI int16 (1 bad, +64 unilluminated if kept), OBJECT='BPM',
    BPMASK stamp (tags BPM CAL PROCESSED), suffix ``_bpm``.
    """
    if not frames:
        return []
    flat = frames[0]
    darks = ctx.stream("darks")
    dark = darks[0] if darks else None
    if dark is None:
        ctx.log.warning("makeBPM: no dark stack in stream 'darks'; using the flat only")
    flat_lo, flat_hi = p.flat_lo_thresh, p.flat_hi_thresh
    dark_los, dark_his = _dark_limits(dark, flat, p)
    if not p.override_thresh:
        flat_hi = None
    dark_planes = clip_calibration(dark, flat, planes=("SCI",)) if dark is not None else [None] * len(flat)
    exts = []
    for ext, dplanes, lo, hi in zip(flat.extensions, dark_planes, dark_los, dark_his):
        arrays = [ext.plane("SCI")]
        dq = ext.plane("DQ")
        has_dq = dq is not None
        if dq is not None:
            arrays.append(dq)
        if dplanes is not None:
            arrays.append(dplanes["SCI"].astype(np.float32))
        bpm = lazy_map(_bpm_kernel, *arrays, dtype=np.int16, has_dq=has_dq, has_dark=dplanes is not None,
                       flat_lo=flat_lo, flat_hi=flat_hi, dark_lo=lo, dark_hi=hi,
                       keep_unilluminated=p.keep_unilluminated)
        header = ext.header.copy()
        for key in ("BUNIT", "VARNOISE"):
            header.remove(key, ignore_missing=True)
        exts.append(ext.replace(header=header, data=xr.Dataset({"SCI": (DIMS, bpm)}), objcat=None))
    out = flat.with_extensions(exts).with_phu(OBJECT="BPM")
    ctx.log.info("makeBPM: flat %s..%s, dark %s..%s", flat_lo, flat_hi, dark_los, dark_his)
    return [stamp(out, "BPMASK", "UT time stamp for makeBPM").with_suffix("_bpm")]


def _bpm_kernel(flat, *rest, has_dq: bool, has_dark: bool, **kw):
    dq = rest[0] if has_dq else None
    dark = rest[int(has_dq)] if has_dark else None
    return k.bpm_block(flat, dq, dark, **kw)


def _dark_limits(dark: Frame | None, flat: Frame, p) -> tuple[list, list]:
    """Per-array dark limits in the dark's units (thresholds are electrons)."""
    n = len(flat)
    if dark is None:
        return [None] * n, [None] * n
    in_adu = bool(dark.safe_descriptor("is_in_adu", False))
    gains = dark.safe_descriptor("gain") or [1.0] * n
    gains = [float(g) if in_adu and g else 1.0 for g in gains]
    if p.override_thresh:
        los = [None if p.dark_lo_thresh is None else p.dark_lo_thresh / g for g in gains]
        his = [None if p.dark_hi_thresh is None else p.dark_hi_thresh / g for g in gains]
        return los, his
    if p.dark_hi_thresh is not None:
        return [None] * n, [p.dark_hi_thresh / g for g in gains]
    # Automatic limit: 0.75 x (mean + 3 sigma) of each dark array.
    stats = dask.compute([(e.plane("SCI").mean(), e.plane("SCI").std()) for e in dark.extensions])[0]
    return [None] * n, [0.75 * (float(m) + 3 * float(s)) for m, s in stats]
