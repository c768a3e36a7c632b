"""Stacking primitives: stackFrames, stackDarks, stackFlats.

For each detector array the N inputs are re-chunked to the same row bands
``(tile_rows, width)`` and stacked to an ``(N, y, x)`` cube whose frame axis
is one block per band; :func:`draconis.kernels.combine.combine_block` then
combines each band in one task (reading one band of every input).  The band
height comes from the ``memory`` parameter: ``N x rows x width x ~30 bytes``
must fit.  Normalisation factors (scale/zero) are fitted on subsamples of
good pixels computed for all frames in a single ``dask.compute``.

stackFrames leaves out, with a warning naming them, resampled inputs
(frames on resampleToCommonFrame's common grid) that cannot contribute: a
frame whose every pixel is non-finite or DQ-flagged (any bit but
non_linear, whose pixels were linearity-corrected) would otherwise enter the
stack wherever no better-flagged input covers a pixel (the DQ hierarchy),
e.g. where only it covers the union of the dithers, and be counted in
NCOMBINE. One ``dask.compute`` answers "has this frame a usable pixel?" for
every frame (with the normalisation samples when those are needed).
Calibration stacks and stacks of frames not on a common grid (every input
covering the same pixels) stay purely lazy.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import dask
import dask.array as da
import numpy as np

from ..errors import InputError
from ..frame import Extension, Frame
from .bookkeeping import checkpoint_computed
from ..instruments.sections import parse_section
from ..kernels.combine import OPERATIONS, REJECT_METHODS, combine_block
from ..parameters import P, suffix_param
from .prepare import stamp
from .align import check_same_setup
from .registry import primitive

__all__ = ["stack_frames_core", "tile_rows", "combine_rows", "normalisation", "usable_frames", "on_common_grid", "STACK_PARAMS"]

#: Bytes per input pixel a combine task holds (values, variance, DQ, buffers).
BYTES_PER_PIXEL = 30
#: Pixels per frame and array sampled to fit scale/zero.
NORM_SAMPLES = 40000
#: DQ bits that leave a pixel usable for the "every pixel is flagged" test (non_linear: corrected data).
_HARMLESS_DQ = 2


def _stack_params(reject: str, nlow: int, nhigh: int, *, with_norm: bool = True) -> tuple:
    common = (
        suffix_param("_stack"),
        P("apply_dq", bool, True, "ignore DQ-flagged pixels when combining"),
        P("statsec", str, None, "section used for level statistics, 1-based [x1:x2,y1:y2]", optional=True,
          check=parse_section),
        P("operation", str, "mean", "combiner: mean | wtmean (inverse-variance) | median | lmedian",
          choices=OPERATIONS),
        P("reject_method", str, reject, "none | minmax | sigclip | varclip", choices=REJECT_METHODS),
        P("hsigma", float, 3.0, "upper clipping threshold (sigma)", low=0),
        P("lsigma", float, 3.0, "lower clipping threshold (sigma)", low=0),
        P("mclip", bool, True, "use median (not mean) as clipping centre"),
        P("max_iters", int, None, "iteration limit (None = until convergence)", optional=True, low=1),
        P("nlow", int, nlow, "number of lowest values rejected per pixel", low=0),
        P("nhigh", int, nhigh, "number of highest values rejected per pixel", low=0),
        P("memory", float, 1.0, "GB allowed for one combine; above it the stack is done in row strips "
          "(None = all at once)", optional=True, low=0.01),
        P("debug_pixel", int, None, "print stacking details for this pixel", optional=True, low=0),
        P("save_rejection_map", bool, False, "store per-pixel rejected count as a table/plane"),
        P("debug_old_normalization", bool, False, "use legacy background-ratio normalisation"),
        P("separate_ext", bool, True, "compute scale/offset per extension instead of globally"),
    )
    if not with_norm:
        return common
    return common + (
        P("scale", bool, False, "multiplicative normalisation of inputs to the first"),
        P("zero", bool, False, "additive normalisation of inputs to the first"),
    )


STACK_PARAMS = _stack_params("sigclip", 0, 0)


# ---------------------------------------------------------------- tiles
def tile_rows(n_frames: int, shape: tuple[int, int], memory_gb: float | None, chunk_rows: int | None = None) -> int:
    """Rows per combine band so that ``n_frames x rows x width x BYTES_PER_PIXEL`` fits ``memory_gb``.

    The band is aligned with the inputs' row chunks where possible (a
    multiple of ``chunk_rows``, or a divisor of it), so a band task reads
    whole chunks.
    """
    ny, nx = shape
    if memory_gb is None:
        return ny
    budget = int(memory_gb * 1024 ** 3 // (max(n_frames, 1) * nx * BYTES_PER_PIXEL))
    rows = max(1, min(ny, budget))
    if chunk_rows and rows < ny:
        if rows >= chunk_rows:
            rows = rows // chunk_rows * chunk_rows
        else:
            rows = max(d for d in range(1, rows + 1) if chunk_rows % d == 0)
    return max(1, min(ny, rows))


#: A stack is cut into at least this many row bands (when the input chunks allow), so every worker has
#: several bands to combine: three 768-row bands on two workers left one idle a third of the time.
MIN_BANDS = 8


def combine_rows(n_frames: int, shape: tuple[int, int], memory_gb: float | None, chunk_rows: int | None) -> int:
    """Rows per combine task: :func:`tile_rows` within ``memory_gb``, and at most ``1/MIN_BANDS`` of the image
    (a whole number of input chunks)."""
    rows = tile_rows(n_frames, shape, memory_gb, chunk_rows)
    cap = -(-shape[0] // MIN_BANDS)
    if chunk_rows:
        cap = max(chunk_rows, cap // chunk_rows * chunk_rows)
    return max(1, min(rows, cap))


# ---------------------------------------------------------------- normalisation
def _sample(ext: Extension, statsec: str | None) -> tuple[da.Array, da.Array]:
    sci, dq = ext.plane("SCI"), ext.plane("DQ")
    if statsec:
        ys, xs = parse_section(statsec).as_slices()
        sci = sci[ys, xs]
        dq = dq[ys, xs] if dq is not None else None
    step = max(1, int(math.sqrt(sci.size / NORM_SAMPLES)))
    s = sci[::step, ::step].ravel()
    good = da.isfinite(s)
    if dq is not None:
        good &= dq[::step, ::step].ravel() == 0
    return s, good


def _fit(ref: np.ndarray, x: np.ndarray, *, scale: bool, old: bool) -> float:
    """Scale (ref ~ s*x) or offset (ref ~ x + z) of ``x`` against ``ref``, clipped least squares."""
    if ref.size == 0:
        return 1.0 if scale else 0.0
    if old:
        return float(np.median(ref) / np.median(x)) if scale else float(np.median(ref) - np.median(x))
    keep = np.ones(ref.size, bool)
    value = 1.0 if scale else 0.0
    for _ in range(10):
        r, xx = ref[keep], x[keep]
        if r.size == 0:
            break
        value = float(np.dot(r, xx) / np.dot(xx, xx)) if scale else float(np.mean(r - xx))
        resid = ref - (value * x if scale else x + value)
        sigma = np.std(resid[keep])
        new = np.abs(resid - np.median(resid[keep])) <= 3 * sigma if sigma > 0 else keep
        if np.array_equal(new, keep):
            break
        keep = new
    return value


def normalisation(frames: Sequence[Frame], *, scale: bool, zero: bool, separate_ext: bool,
                  statsec: str | None = None, old: bool = False, samples: list | None = None) -> list[np.ndarray]:
    """Per-array lists of per-frame factors (scale or zero) against the first frame.

    All samples are computed in one ``dask.compute`` (unless ``samples``,
    the computed ``_sample`` pairs per frame and array, are given).

    Returns
    -------
    list of ndarray
        One array of N factors per extension (1 for scale, 0 for zero when
        neither is requested).
    """
    n, n_ext = len(frames), len(frames[0])
    if not (scale or zero):
        return [np.full(n, 0.0) for _ in range(n_ext)]
    if samples is None:
        (samples,) = dask.compute(_lazy_samples(frames, statsec))
    factors = np.empty((n_ext, n))
    for i in range(n):
        if separate_ext:
            for e in range(n_ext):
                factors[e, i] = _pair_fit(samples[0][e], samples[i][e], scale, old)
        else:
            ref = (np.concatenate([s[0] for s in samples[0]]), np.concatenate([s[1] for s in samples[0]]))
            cur = (np.concatenate([s[0] for s in samples[i]]), np.concatenate([s[1] for s in samples[i]]))
            factors[:, i] = _pair_fit(ref, cur, scale, old)
    return list(factors)


def _lazy_samples(frames: Sequence[Frame], statsec: str | None) -> list:
    return [[_sample(ext, statsec) for ext in f.extensions] for f in frames]


def _pair_fit(ref, cur, scale: bool, old: bool) -> float:
    (r, rg), (x, xg) = ref, cur
    if r.size != x.size:
        m = min(r.size, x.size)
        r, rg, x, xg = r[:m], rg[:m], x[:m], xg[:m]
    good = rg & xg
    return _fit(r[good].astype(np.float64), x[good].astype(np.float64), scale=scale, old=old)


# ---------------------------------------------------------------- combine
def _combine_tile(*blocks: np.ndarray, has_var: bool, has_dq: bool, **kw) -> np.ndarray:
    sci = blocks[0]
    var = blocks[1] if has_var else None
    dq = blocks[1 + has_var] if has_dq else None
    s, v, d, n = combine_block(sci, var, dq, **kw)
    return np.stack([s, v, d.astype(np.float32), n.astype(np.float32)])


def _combine_ext(exts: Sequence[Extension], rows: int, kw: dict, log: logging.Logger) -> dict[str, da.Array]:
    ny, nx = exts[0].shape
    chunks = (rows, nx)
    cubes, has = [], {}
    for name, dtype in (("SCI", np.float32), ("VAR", np.float32), ("DQ", np.uint16)):
        planes = [e.plane(name) for e in exts]
        if any(p is None for p in planes):
            if name != "SCI" and any(p is not None for p in planes):
                log.warning("stack: some inputs lack %s; stacking without it", name)
            has[name] = False
            continue
        has[name] = True
        cubes.append(da.stack([p.astype(dtype).rechunk(chunks) for p in planes]))
    args = []
    for cube in cubes:
        args += [cube, "nyx"]
    packed = da.blockwise(_combine_tile, "pyx", *args, new_axes={"p": 4}, concatenate=True, dtype=np.float32,
                          meta=np.empty((0, 0, 0), np.float32), has_var=has["VAR"], has_dq=has["DQ"], **kw)
    # Without input VAR the combiner estimates the variance from the scatter.
    out = {"SCI": packed[0], "VAR": packed[1]}
    out["DQ"] = packed[2].astype(np.uint16) if has["DQ"] else None
    return out


def _check_alignment(frames: Sequence[Frame]) -> None:
    first = frames[0]
    for f in frames[1:]:
        if len(f) != len(first) or any(a.shape != b.shape for a, b in zip(f.extensions, first.extensions)):
            raise InputError(f.path or f.filename, f"arrays {[e.shape for e in f.extensions]} differ from "
                                                   f"{first.filename} {[e.shape for e in first.extensions]}; "
                                                   "cannot stack")


def stack_frames_core(frames: Sequence[Frame], params: dict[str, Any], log: logging.Logger,
                      *, suffix: str | None = "_stack", samples: list | None = None) -> Frame:
    """Combine aligned frames into one (the work of stackFrames; used by other primitives).

    Parameters
    ----------
    frames : sequence of Frame
        At least two frames with the same array shapes.
    params : dict
        stackFrames parameters (operation, reject_method, lsigma, hsigma,
        mclip, max_iters, nlow, nhigh, apply_dq, memory, scale, zero,
        separate_ext, statsec, debug_old_normalization).
    log : logging.Logger
    suffix : str or None
        Output suffix (also sets DATALAB's '-STACK' part).
    samples : list, optional
        Normalisation samples already computed for ``frames`` (see :func:`usable_frames`).
    """
    _check_alignment(frames)
    scale, zero = bool(params.get("scale", False)), bool(params.get("zero", False))
    if scale and zero:
        log.warning("stack: scale and zero both requested; zero ignored")
        zero = False
    for name in ("save_rejection_map", "debug_pixel"):
        if params.get(name):
            log.warning("stack: %s is not supported; ignored", name)
    factors = normalisation(frames, scale=scale, zero=zero, separate_ext=params.get("separate_ext", True),
                            statsec=params.get("statsec"), old=params.get("debug_old_normalization", False),
                            samples=samples)
    kw = {key: params[key] for key in ("operation", "reject_method", "lsigma", "hsigma", "mclip", "max_iters",
                                       "nlow", "nhigh", "apply_dq") if key in params}
    exts = []
    for e, ext0 in enumerate(frames[0].extensions):
        chunk_rows = ext0.plane("SCI").chunks[0][0]
        rows = combine_rows(len(frames), ext0.shape, params.get("memory", 1.0), chunk_rows)
        norm = {"scale": factors[e]} if scale else ({"zero": factors[e]} if zero else {})
        planes = _combine_ext([f[e] for f in frames], rows, {**kw, **norm}, log)
        header_cards = _combined_levels(frames, e)
        exts.append(ext0.with_planes(**planes, OBJMASK=None).with_header(**header_cards).replace(objcat=None))
    log.info("stack: %d frames, band of %d rows, %s/%s%s", len(frames), rows, kw.get("operation"),
             kw.get("reject_method"), " scaled" if scale else (" offset" if zero else ""))
    return _stack_phu(frames[0].with_extensions(exts), frames, suffix)


def _combined_levels(frames: Sequence[Frame], e: int) -> dict[str, float]:
    cards: dict[str, float] = {}
    gains = [f[e].header.get("GAIN") for f in frames]
    if all(g is not None for g in gains) and len({float(g) for g in gains}) > 1:
        cards["GAIN"] = len(gains) / sum(1.0 / float(g) for g in gains)
    noises = [f[e].header.get("RDNOISE") for f in frames]
    if all(r is not None for r in noises):
        cards["RDNOISE"] = math.sqrt(sum(float(r) ** 2 for r in noises) / len(noises))
    return cards


def _stack_phu(out: Frame, frames: Sequence[Frame], suffix: str | None) -> Frame:
    cards: dict[str, Any] = {"NCOMBINE": (len(frames), "number of frames combined")}
    for i, f in enumerate(frames, start=1):
        cards[f"IMCMB{i:03d}"] = f.orig_filename
    label = out.phu.get("DATALAB")
    if label and suffix:
        cards["DATALAB"] = f"{label}{suffix.upper().replace('_', '-')}"
    airmasses = [f.safe_descriptor("airmass") for f in frames]
    airmasses = [float(a) for a in airmasses if isinstance(a, (int, float))]
    if airmasses:
        cards["AIRMASS"] = float(np.mean(airmasses))
    return stamp(out.with_phu(**cards), "STACKFRM").with_suffix(suffix)


def _values(p, names: Sequence[str]) -> dict[str, Any]:
    return {n: p[n] for n in names if n in p}


_ALL = ("operation", "reject_method", "lsigma", "hsigma", "mclip", "max_iters", "nlow", "nhigh", "apply_dq",
        "memory", "scale", "zero", "separate_ext", "statsec", "debug_old_normalization", "save_rejection_map",
        "debug_pixel")


# ---------------------------------------------------------------- unusable inputs
def _has_usable_pixel(ext: Extension, apply_dq: bool) -> da.Array:
    """Lazy 0-d bool: some pixel of ``ext`` is finite (and, with ``apply_dq``, unflagged but for non_linear)."""
    sci, dq = ext.plane("SCI"), ext.plane("DQ")
    good = da.isfinite(sci)
    if apply_dq and dq is not None:
        good &= (dq & ~np.uint16(_HARMLESS_DQ)) == 0
    return good.any()


def usable_frames(frames: Sequence[Frame], *, apply_dq: bool, log: logging.Logger, name: str = "stackFrames",
                  statsec: str | None = None, with_samples: bool = False) -> tuple[list[Frame], list | None]:
    """The frames that have at least one usable pixel; the others are named in a warning and left out.

    A pixel is usable when its SCI is finite and (``apply_dq``) its DQ has no
    bit but non_linear. A frame of several arrays is left out only when no
    array has a usable pixel. One ``dask.compute`` for every frame; with
    ``with_samples`` the normalisation samples (:func:`normalisation`) are
    computed in the same pass and returned for the kept frames.

    Raises
    ------
    InputError
        Every input is unusable: there is nothing to stack.
    """
    flags = [[_has_usable_pixel(ext, apply_dq) for ext in f.extensions] for f in frames]
    lazy_samples = _lazy_samples(frames, statsec) if with_samples else None
    flags, samples = dask.compute(flags, lazy_samples)
    keep = [i for i, per_ext in enumerate(flags) if any(bool(x) for x in per_ext)]
    kept = set(keep)
    what = "flagged (DQ) or non-finite" if apply_dq else "non-finite"
    if not keep:
        names = ", ".join(f.path or f.filename for f in frames)
        raise InputError(None, f"{name}: every pixel of every input is {what} ({names}); nothing to stack")
    for i, frame in enumerate(frames):
        if i not in kept:
            log.warning("%s: %s: every pixel is %s; left out of the stack (it contributes nothing); "
                        "stacking the other %d frame(s)", name, frame.filename, what, len(keep))
    return [frames[i] for i in keep], ([samples[i] for i in keep] if samples is not None else None)


def on_common_grid(frames: Sequence[Frame]) -> bool:
    """True when the frames were resampled onto one grid (resampleToCommonFrame's PHU stamp ALIGN)."""
    return any("ALIGN" in f.phu for f in frames)


def _run_stack(frames: list[Frame], p, ctx, *, name: str = "stackFrames", check_usable: bool = False,
               **forced) -> list[Frame]:
    if len(frames) == 0:
        return []
    params = {**_values(p, _ALL), **forced}
    samples = None
    if check_usable:
        # resampled frames are read twice (usability, combine): computed once, stored in the stack's tiles
        ext0 = frames[0][0]
        rows = combine_rows(len(frames), ext0.shape, params.get("memory", 1.0), ext0.plane("SCI").chunks[0][0])
        frames = checkpoint_computed(frames, ctx, "stackFrames", rows=rows)
        normalised = bool(params.get("scale")) or bool(params.get("zero"))
        frames, samples = usable_frames(frames, apply_dq=params.get("apply_dq", True), log=ctx.log, name=name,
                                        statsec=params.get("statsec"), with_samples=normalised and len(frames) > 1)
    if len(frames) == 1:
        ctx.log.warning("%s: only one input (%s); passed through unstacked", name, frames[0].filename)
        return list(frames)
    return [stack_frames_core(frames, params, ctx.log, suffix=p.suffix, samples=samples)]


# ---------------------------------------------------------------- primitives
@primitive("stackFrames", *STACK_PARAMS)
def stack_frames(frames: list[Frame], p, ctx) -> list[Frame]:
    """Combine aligned frames pixel by pixel (normalisation, rejection, DQ hierarchy, VAR)."""
    if frames:
        # header-only, so a recipe that stacks without adjustWCSToReference is protected too
        check_same_setup(frames)
    # Only resampled frames pay for the usability compute: there a frame covers part of the grid, and its
    # flagged pixels can be the only data somewhere; calibration-style stacks stay lazy.
    return _run_stack(frames, p, ctx, check_usable=on_common_grid(frames))


@primitive("stackDarks", *_stack_params("varclip", 0, 0, with_norm=False))
def stack_darks(frames: list[Frame], p, ctx) -> list[Frame]:
    """Stack darks (varclip, no normalisation); every input must be a DARK of the first one's exposure."""
    if frames:
        t0 = frames[0].safe_descriptor("exposure_time")
        for f in frames:
            if "DARK" not in f.tags:
                raise InputError(f.path or f.filename, "is not a DARK; stackDarks stacks darks only")
            t = f.safe_descriptor("exposure_time")
            if t0 is not None and (t is None or abs(float(t) - float(t0)) > 0.01):
                raise InputError(f.path or f.filename, f"exposure time {t} s differs from {frames[0].filename} "
                                                       f"({t0} s); darks of one exposure time only")
    return _run_stack(frames, p, ctx, name="stackDarks", scale=False, zero=False)


@primitive("stackFlats", *_stack_params("minmax", 1, 1))
def stack_flats(frames: list[Frame], p, ctx) -> list[Frame]:
    """Stack flats (minmax 1/1 by default)."""
    return _run_stack(frames, p, ctx, name="stackFlats")
