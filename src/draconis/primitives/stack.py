"""Stacking primitives: stackFrames, stackDarks, stackFlats.

For each detector array the N inputs are combined in row bands ``(rows,
width)``: one task per band reads that band of every input (SCI, VAR, DQ),
combines it with :func:`draconis.kernels.stack.combine_tile` and yields the
band of the stack's SCI, VAR and DQ at once.  The band height comes from the
``memory`` parameter (``N x rows x width x`` :data:`BYTES_PER_PIXEL_STORED` must
fit) and a whole number of the inputs' row chunks, so no chunk is read
twice (inputs stored in taller chunks are read band by band, each band
reading just its rows).  Normalisation factors (scale/zero) are fitted on strided subsamples
of good pixels.

stackFrames on resampled inputs (frames on resampleToCommonFrame's common
grid) is one pass over the data: unless they already are, the frames are
checkpointed once, in row chunks chosen together with the band height, and
that write also answers "has this frame a usable pixel?" (and produces the
normalisation samples when they are needed).  Frames that cannot
contribute are left out, with a warning naming them: a frame whose every
pixel is non-finite or DQ-flagged (any bit but non_linear, whose pixels
were linearity-corrected) would otherwise enter the stack wherever no
better-flagged input covers a pixel (the DQ hierarchy), e.g. where only it
covers the union of the dithers, and be counted in NCOMBINE.  The band
tasks then read the checkpoint's chunk files straight into their cubes.
Calibration stacks and stacks of frames not on a common grid (every input
covering the same pixels) stay purely lazy.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import dask
import dask.array as da
import numpy as np
from dask.highlevelgraph import HighLevelGraph

from ..errors import InputError
from ..frame import Extension, Frame
from ..instruments.sections import parse_section
from ..io._tasks import USABLE_DQ, read_stack
from ..io.zarr import stored_source, stored_summary
from ..kernels.combine import CombineSpec
from ..kernels.stack import combine_blocks, combine_tile
from ..parameters import DEBUG_AID, P, Param, ParamGroup, Params, suffix_param
from .align import check_same_setup
from .bookkeeping import checkpoint_computed
from .prepare import stamp
from .registry import Context, primitive

__all__ = ["stack_frames_core", "tile_rows", "combine_rows", "checkpoint_rows", "band_rows", "sample_grid",
           "normalisation", "usable_frames", "on_common_grid", "COMBINE", "STACK"]

#: Bytes per input pixel a combine task holds when Dask stacks and concatenates the inputs' blocks (values,
#: variance, DQ, the concatenated copy, buffers).
BYTES_PER_PIXEL = 30
#: The same for stored checkpoint inputs, read straight into the task's cubes: SCI and VAR (float32), DQ
#: (uint16), and 20 % for the output band and the kernel's work buffers.
BYTES_PER_PIXEL_STORED = 12
#: Pixels per frame and array sampled to fit scale/zero.
NORM_SAMPLES = 40000
#: DQ bits that leave a pixel usable for the "every pixel is flagged" test (non_linear: corrected data).
_HARMLESS_DQ = USABLE_DQ


#: Rejection and combination: declared once, by the fields of CombineSpec (the kernel's spec).
COMBINE = ParamGroup.from_dataclass("combine", CombineSpec)


def _stack_group() -> ParamGroup:
    apply_dq, *rest = COMBINE.params
    statsec = P("statsec", str, None, "section used for level statistics, 1-based [x1:x2,y1:y2]", optional=True,
                check=parse_section)
    extra = (
        P("memory", float, 1.0, "GB allowed for one combine; above it the stack is done in row strips "
          "(None = all at once)", optional=True, low=0.01),
        P("debug_pixel", int, None, "print stacking details for this pixel", optional=True, low=0,
          unsupported=DEBUG_AID),
        P("save_rejection_map", bool, False, "store per-pixel rejected count as a table/plane",
          unsupported="the rejection map is not stored"),
        P("debug_old_normalization", bool, False, "use legacy background-ratio normalisation"),
        P("separate_ext", bool, True, "compute scale/offset per extension instead of globally"),
        P("scale", bool, False, "multiplicative normalisation of inputs to the first"),
        P("zero", bool, False, "additive normalisation of inputs to the first"),
    )
    # DRAGONS' order, which showpars prints: apply_dq, statsec, the rest of the combine group, then the others
    return ParamGroup("stack", (apply_dq, statsec, *rest, *extra))


#: Every parameter of a stack: stackFrames, stackDarks, stackFlats, makeLampFlat and skyCorrect
#: (DRAGONS' stackSkyFrames) take this group with their own defaults.
STACK = _stack_group()
#: Why stackDarks and makeLampFlat refuse the normalisation parameters: they never normalise.
_NO_NORMALISATION = "{} never normalises its inputs"


def without_normalisation(name: str, *, exclude: tuple[str, ...] = (), **defaults: Any) -> tuple[Param, ...]:
    """The :data:`STACK` group of a primitive that never normalises.

    No scale/zero; the normalisation parameters DRAGONS declares for it are
    refused unless left at their defaults.
    """
    reason = _NO_NORMALISATION.format(name)
    kept = [n for n in ("statsec", "debug_old_normalization", "separate_ext") if n not in exclude]
    return STACK(exclude=("scale", "zero", *exclude), unsupported={n: reason for n in kept}, **defaults)


# ---------------------------------------------------------------- tiles
def tile_rows(n_frames: int, shape: tuple[int, int], memory_gb: float | None, chunk_rows: int | None = None,
              *, bytes_per_pixel: int = BYTES_PER_PIXEL) -> int:
    """Rows per combine band so that ``n_frames x rows x width x bytes_per_pixel`` fits ``memory_gb``.

    The band is aligned with the inputs' row chunks where possible (a
    multiple of ``chunk_rows``, or a divisor of it), so a band task reads
    whole chunks.
    """
    ny, nx = shape
    if memory_gb is None:
        return ny
    budget = int(memory_gb * 1024 ** 3 // (max(n_frames, 1) * nx * bytes_per_pixel))
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


def combine_rows(n_frames: int, shape: tuple[int, int], memory_gb: float | None, chunk_rows: int | None,
                 *, bytes_per_pixel: int = BYTES_PER_PIXEL) -> int:
    """Rows per combine task.

    :func:`tile_rows` within ``memory_gb``, and at most ``1/MIN_BANDS`` of the
    image (a whole number of input chunks).
    """
    rows = tile_rows(n_frames, shape, memory_gb, chunk_rows, bytes_per_pixel=bytes_per_pixel)
    cap = -(-shape[0] // MIN_BANDS)
    if chunk_rows:
        cap = max(chunk_rows, cap // chunk_rows * chunk_rows)
    return max(1, min(rows, cap))


def checkpoint_rows(n_frames: int, shape: tuple[int, int], memory_gb: float | None,
                    upstream: Sequence[int] = ()) -> int:
    """Row-chunk height for checkpointing the inputs of a stack.

    The stack's band (:func:`combine_rows`), or the largest divisor of the
    inputs' own row blocks ``upstream`` not below half of it (then the write
    needs no rechunk); each band is then one chunk of every input.
    """
    rows = combine_rows(n_frames, shape, memory_gb, None, bytes_per_pixel=BYTES_PER_PIXEL_STORED)
    block = max(upstream, default=0)
    if block > rows:
        divisor = max(d for d in range(1, rows + 1) if block % d == 0)
        if 2 * divisor >= rows:
            return divisor
    return rows


# ---------------------------------------------------------------- normalisation
def sample_grid(shape: tuple[int, int], statsec: str | None) -> tuple[int, int, int, int, int]:
    """The strided grid ``(r0, r1, c0, c1, step)`` of SCI samples fitted for scale/zero (in ``statsec``)."""
    ny, nx = shape
    r0, r1, c0, c1 = 0, ny, 0, nx
    if statsec:
        ys, xs = parse_section(statsec).as_slices()
        r0, r1, _ = ys.indices(ny)
        c0, c1, _ = xs.indices(nx)
    step = max(1, int(math.sqrt(max(r1 - r0, 0) * max(c1 - c0, 0) / NORM_SAMPLES)))
    return r0, r1, c0, c1, step


def _sample(ext: Extension, statsec: str | None) -> tuple[da.Array, da.Array]:
    r0, r1, c0, c1, step = sample_grid(ext.shape, statsec)
    sci, dq = ext.plane("SCI"), ext.plane("DQ")
    s = sci[r0:r1:step, c0:c1:step].ravel()
    good = da.isfinite(s)
    if dq is not None:
        good &= dq[r0:r1:step, c0:c1:step].ravel() == 0
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
def _combine_ext(exts: Sequence[Extension], rows: int, options: dict, log: logging.Logger) -> dict[str, da.Array]:
    """The stack of one array: SCI, VAR, DQ planes of one band task per ``rows`` rows."""
    has = {}
    for name in ("VAR", "DQ"):
        present = [e.plane(name) is not None for e in exts]
        if any(present) and not all(present):
            log.warning("stack: some inputs lack %s; stacking without it", name)
        has[name] = all(present)
    names = ["SCI"] + [n for n in ("VAR", "DQ") if has[n]]
    sources = {n: [stored_source(e.plane(n)) for e in exts] for n in names}
    if all(src is not None for n in names for src in sources[n]):
        packed = _combine_stored(sources, exts[0].shape, rows, options)
    else:
        packed = _combine_lazy(exts, names, rows, options)
    # Without input VAR the combiner estimates the variance from the scatter.
    return {"SCI": packed[0], "VAR": packed[1], "DQ": packed[2].astype(np.uint16) if has["DQ"] else None}


def source_keys(sources: dict[str, list], prefix: str, token: str) -> tuple[dict, dict[str, str]]:
    """Each plane's list of checkpoint readers as one graph key (``<prefix>-<plane>-<token>``), not in every task.

    Returns the graph entries and the key of each plane.
    """
    keys = {plane: f"{prefix}-{plane}-{token}" for plane in sources}
    return {keys[plane]: (list, srcs) for plane, srcs in sources.items()}, keys


def _combine_stored(sources: dict[str, list], shape: tuple[int, int], rows: int, options: dict) -> da.Array:
    """Band tasks that read every input's chunks straight from the checkpoint into their cubes and combine.

    Each task is ``combine_tile(read_stack(SCI sources, y0, y1), ...)``: the reads run inside the combine
    task (no task per input chunk, nothing moved between workers), and the source lists are one graph key
    each, not copied into every task.
    """
    ny, nx = shape
    token = dask.base.tokenize(sources, rows, options)
    name = f"stack-{token}"
    dsk, keys = source_keys(sources, "stack-sources", token)
    bands = tuple(min(rows, ny - y) for y in range(0, ny, rows))
    for b, y0 in enumerate(range(0, ny, rows)):
        y1 = min(y0 + rows, ny)
        cubes = [(read_stack, keys[p], y0, y1) if p in keys else None for p in ("SCI", "VAR", "DQ")]
        dsk[(name, 0, b, 0)] = (combine_tile, *cubes, options)
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=())
    return da.Array(graph, name, ((3,), bands, (nx,)), dtype=np.float32, meta=np.empty((0, 0, 0), np.float32))


def _combine_lazy(exts: Sequence[Extension], names: list[str], rows: int, options: dict) -> da.Array:
    """The band tasks for inputs that are not stored checkpoints: the inputs' bands stacked by Dask."""
    nx = exts[0].shape[1]
    dtypes = {"SCI": np.float32, "VAR": np.float32, "DQ": np.uint16}
    args = []
    for name in names:
        args += [da.stack([e.data[name].data.astype(dtypes[name]).rechunk((rows, nx)) for e in exts]), "nyx"]
    return da.blockwise(combine_blocks, "pyx", *args, new_axes={"p": 3}, concatenate=True, dtype=np.float32,
                        meta=np.empty((0, 0, 0), np.float32), has_var="VAR" in names, has_dq="DQ" in names,
                        options=options)


def _check_alignment(frames: Sequence[Frame]) -> None:
    first = frames[0]
    for f in frames[1:]:
        if len(f) != len(first) or any(a.shape != b.shape for a, b in zip(f.extensions, first.extensions)):
            raise InputError(f.path or f.filename, f"arrays {[e.shape for e in f.extensions]} differ from "
                                                   f"{first.filename} {[e.shape for e in first.extensions]}; "
                                                   "cannot stack")


def stack_frames_core(frames: Sequence[Frame], params: Mapping[str, Any], log: logging.Logger,
                      *, suffix: str | None = "_stack", samples: list | None = None) -> Frame:
    """Combine aligned frames into one (the work of stackFrames; used by other primitives).

    Parameters
    ----------
    frames : sequence of Frame
        At least two frames with the same array shapes.
    params : Mapping
        The resolved parameters of a primitive declaring the :data:`STACK`
        group (the combine group, memory; scale, zero, separate_ext, statsec,
        debug_old_normalization where it normalises).
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
    factors = normalisation(frames, scale=scale, zero=zero, separate_ext=params.get("separate_ext", True),
                            statsec=params.get("statsec"), old=params.get("debug_old_normalization", False),
                            samples=samples)
    spec = CombineSpec.from_params(params)
    exts = []
    for e, ext0 in enumerate(frames[0].extensions):
        rows = band_rows([f[e] for f in frames], params.get("memory", 1.0))
        norm = {"scale": factors[e]} if scale else ({"zero": factors[e]} if zero else {})
        planes = _combine_ext([f[e] for f in frames], rows, {"spec": spec, **norm}, log)
        header_cards = _combined_levels(frames, e)
        exts.append(ext0.with_planes(**planes, OBJMASK=None).with_header(**header_cards).replace(objcat=None))
    log.info("stack: %d frames, band of %d rows, %s/%s%s", len(frames), rows, spec.operation,
             spec.reject_method, " scaled" if scale else (" offset" if zero else ""))
    return _stack_phu(frames[0].with_extensions(exts), frames, suffix)


def band_rows(exts: Sequence[Extension], memory_gb: float | None) -> int:
    """Rows per band task for stacking ``exts``: within ``memory_gb``, a whole number of their row chunks."""
    sci = exts[0].plane("SCI")
    stored = all(stored_source(e.plane("SCI")) is not None for e in exts)
    return combine_rows(len(exts), exts[0].shape, memory_gb, sci.chunks[0][0],
                        bytes_per_pixel=BYTES_PER_PIXEL_STORED if stored else BYTES_PER_PIXEL)


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
    array has a usable pixel. The answers (and, with ``with_samples``, the
    normalisation samples of :func:`normalisation`, returned for the kept
    frames) come from the checkpoint write that stored the frames
    (:func:`draconis.io.zarr.stored_summary`); whatever it did not record is
    computed in one ``dask.compute`` for every frame.

    Raises
    ------
    InputError
        Every input is unusable: there is nothing to stack.
    """
    recorded = [[_recorded_flag(ext, apply_dq) for ext in f.extensions] for f in frames]
    samples = [[_recorded_samples(ext) for ext in f.extensions] for f in frames] if with_samples else None
    lazy = [[_has_usable_pixel(ext, apply_dq) if flag is None else flag for ext, flag in zip(f.extensions, row)]
            for f, row in zip(frames, recorded)]
    if samples is not None:
        samples = [[_sample(ext, statsec) if got is None else got for ext, got in zip(f.extensions, row)]
                   for f, row in zip(frames, samples)]
    if dask.is_dask_collection(lazy) or any(dask.is_dask_collection(x) for row in lazy for x in row) or (
            samples is not None and any(dask.is_dask_collection(x) for row in samples for pair in row for x in pair)):
        lazy, samples = dask.compute(lazy, samples)
    flags = lazy
    keep = [i for i, per_ext in enumerate(flags) if any(bool(x) for x in per_ext)]
    kept = set(keep)
    what = "flagged (DQ) or non-finite" if apply_dq else "non-finite"
    if not keep:
        names = ", ".join(f.path or f.filename for f in frames[:5]) + (f" and {len(frames) - 5} more"
                                                                       if len(frames) > 5 else "")
        raise InputError(None, f"{name}: every pixel of every input is {what} ({names}); nothing to stack")
    for i, frame in enumerate(frames):
        if i not in kept:
            log.warning("%s: %s: every pixel is %s; left out of the stack (it contributes nothing); "
                        "stacking the other %d frame(s)", name, frame.filename, what, len(keep))
    return [frames[i] for i in keep], ([samples[i] for i in keep] if samples is not None else None)


def _recorded_flag(ext: Extension, apply_dq: bool) -> bool | None:
    summary = stored_summary(ext)
    if summary is None:
        return None
    return summary.usable if apply_dq else summary.finite


def _recorded_samples(ext: Extension):
    summary = stored_summary(ext)
    return None if summary is None else summary.samples


#: Stored chunks up to this many bands tall are read as they are: a band reads just its rows of a raw plane
#: (SCI, VAR) and decompresses the whole (small) DQ chunk, which costs less than writing the frames again.
MAX_CHUNK_BANDS = 4


def _ready(frame: Frame, band_budget: int, samples: bool) -> bool:
    """Whether a stack can read ``frame`` as it is stored.

    That is: checkpointed planes in chunks at most :data:`MAX_CHUNK_BANDS`
    bands tall, with the write's summary (and samples when wanted).
    """
    for ext in frame.extensions:
        summary = stored_summary(ext)
        if summary is None or (samples and summary.samples is None):
            return False
        for name in ("SCI", "VAR", "DQ"):
            plane = ext.plane(name)
            source = stored_source(plane) if plane is not None else None
            if plane is not None and (source is None or source.chunk_rows > MAX_CHUNK_BANDS * band_budget):
                return False
    return True


def on_common_grid(frames: Sequence[Frame]) -> bool:
    """True when the frames were resampled onto one grid (resampleToCommonFrame's PHU stamp ALIGN)."""
    return any("ALIGN" in f.phu for f in frames)


def _run_stack(frames: list[Frame], p, ctx, *, name: str = "stackFrames", check_usable: bool = False,
               **forced) -> list[Frame]:
    if len(frames) == 0:
        return []
    params = p.replace(**forced)
    samples = None
    if check_usable:
        frames, samples = _one_pass_inputs(frames, params, ctx, name)
    if len(frames) == 1:
        ctx.log.warning("%s: only one input (%s); passed through unstacked", name, frames[0].filename)
        return list(frames)
    return [stack_frames_core(frames, params, ctx.log, suffix=p.suffix, samples=samples)]


def _one_pass_inputs(frames: list[Frame], params: Mapping[str, Any], ctx, name: str) -> tuple[list[Frame], list | None]:
    """The usable frames, stored so that the stack reads each once, and their normalisation samples.

    Unless the frames already are so stored, they are checkpointed in row
    chunks of the stack's band height; that write records which frames have
    a usable pixel and the samples, so nothing reads the frames but the
    combine itself.
    """
    ext0 = frames[0][0]
    memory = params.get("memory", 1.0)
    normalised = (bool(params.get("scale")) or bool(params.get("zero"))) and len(frames) > 1
    # stored chunks are read as they are when they fit the memory budget (bands are then whole chunks, even if
    # fewer than MIN_BANDS: rewriting the frames costs more than the parallelism it would buy), or are at most
    # MAX_CHUNK_BANDS bands tall
    budget = tile_rows(len(frames), ext0.shape, memory, bytes_per_pixel=BYTES_PER_PIXEL_STORED)
    if not all(_ready(f, budget, normalised) for f in frames):
        rows = checkpoint_rows(len(frames), ext0.shape, memory, ext0.plane("SCI").chunks[0])
        grid = sample_grid(ext0.shape, params.get("statsec")) if normalised else None
        frames = checkpoint_computed(frames, ctx, "stackFrames", rows=rows, samples=grid, force=True)
    return usable_frames(frames, apply_dq=params.get("apply_dq", True), log=ctx.log, name=name,
                         statsec=params.get("statsec"), with_samples=normalised)


# ---------------------------------------------------------------- primitives
@primitive("stackFrames", suffix_param("_stack"), *STACK())
def stack_frames(frames: list[Frame], p: Params, ctx: Context) -> list[Frame]:
    """Combine aligned frames pixel by pixel (normalisation, rejection, DQ hierarchy, VAR)."""
    if frames:
        # header-only, so a recipe that stacks without adjustWCSToReference is protected too
        check_same_setup(frames)
    # Only resampled frames are checked for usable pixels: there a frame covers part of the grid, and its
    # flagged pixels can be the only data somewhere; calibration-style stacks stay lazy.
    return _run_stack(frames, p, ctx, check_usable=on_common_grid(frames))


@primitive("stackDarks", suffix_param("_stack"), *without_normalisation("stackDarks", reject_method="varclip"))
def stack_darks(frames: list[Frame], p: Params, ctx: Context) -> list[Frame]:
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


@primitive("stackFlats", suffix_param("_stack"), *STACK(reject_method="minmax", nlow=1, nhigh=1))
def stack_flats(frames: list[Frame], p: Params, ctx: Context) -> list[Frame]:
    """Stack flats (minmax 1/1 by default)."""
    return _run_stack(frames, p, ctx, name="stackFlats")
