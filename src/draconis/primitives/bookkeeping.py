"""Stream bookkeeping and the primitives that hand frames to the runner for I/O.

Stream primitives (selectFromInputs, clearStream, copyInputs, removeFirstFrame,
transferAttribute) only rearrange frames.  flushPixels, writeOutputs and the
storeProcessed* primitives are the few that touch disk, and they do it
through the run context (checkpoint, write_outputs, store_calibration), which
writes atomically and removes everything again if the run fails.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from astropy.wcs import WCS

from ..errors import InputError, ParameterError
from ..frame import Frame
from ..parameters import P, Params, suffix_param
from ..provenance import utc_timestamp
from .registry import Context, primitive

log = logging.getLogger("draconis")


def _tags(frame: Frame) -> frozenset[str]:
    try:
        return frame.tags
    except Exception:  # noqa: BLE001 - hand-built frames without an instrument
        return frozenset()


def _split_list(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").replace(" ", ",").split(",") if t.strip()]


# -- stream bookkeeping ------------------------------------------------------
@primitive("selectFromInputs",
           P("tags", str, None, "comma-separated tags the selected frames must all have", optional=True))
def select_from_inputs(frames: list[Frame], p: Params, ctx: Context) -> list[Frame]:
    """Keep only the frames having all of ``tags`` (the output goes to ``outstream``)."""
    wanted = set(_split_list(p.tags))
    selected = [f for f in frames if wanted <= _tags(f)]
    ctx.log.info("Selected %d of %d frame(s) with tags %s", len(selected), len(frames), ",".join(sorted(wanted)) or "-")
    return selected


@primitive("clearStream", P("stream", str, "main", "stream to operate on"))
def clear_stream(frames: list[Frame], p: Params, ctx: Context) -> list[Frame]:
    """Empty a stream (``p.clearStream(stream='skysub')``)."""
    return []


@primitive("copyInputs")
def copy_inputs(frames: list[Frame], p: Params, ctx: Context) -> list[Frame]:
    """Copy the input stream to ``outstream`` (the frames are immutable: no pixel copy)."""
    return list(frames)


@primitive("removeFirstFrame",
           P("remove_first", bool, True, "drop the earliest (by ut_datetime) frame"),
           P("remove_files", list, None, "filenames to drop", optional=True))
def remove_first_frame(frames: list[Frame], p: Params, ctx: Context) -> list[Frame]:
    """Drop the earliest frame (by ``ut_datetime``) and any frame named in ``remove_files``."""
    frames = list(frames)
    if p.remove_first and frames:
        first = min(range(len(frames)), key=lambda i: frames[i].descriptor("ut_datetime"))
        ctx.log.info("Removing the first frame %s", frames[first].filename)
        frames.pop(first)
    names = {n.removesuffix(".fits") for n in (p.remove_files or [])}
    if names:
        kept = [f for f in frames if f.stem not in names and f.filename.removesuffix(".fits") not in names]
        ctx.log.info("Removed %d frame(s) named in remove_files", len(frames) - len(kept))
        frames = kept
    return frames


_ATTRIBUTES = {"objmask": "OBJMASK", "wcs": "wcs", "mask": "DQ", "dq": "DQ"}


@primitive("transferAttribute",
           suffix_param("_attributeTransferred"),
           P("source", str, None, "stream or file(s) holding the source images", optional=True, opens="stream"),
           P("attribute", str, None, "attribute to copy ('OBJMASK', 'wcs', 'mask')", optional=True))
def transfer_attribute(frames: list[Frame], p: Params, ctx: Context) -> list[Frame]:
    """Copy OBJMASK, the WCS or the DQ mask from the matching frames of ``source`` (a stream or files)."""
    attribute = _ATTRIBUTES.get((p.attribute or "").lower())
    if attribute is None:
        raise ParameterError(f"transferAttribute: attribute {p.attribute!r} is not one of OBJMASK, wcs, mask")
    sources = p.source or []
    if not sources:
        raise ParameterError("transferAttribute: source names no stream with frames and no file")
    by_stem = {f.stem: f for f in sources}
    out = []
    for i, frame in enumerate(frames):
        src = by_stem.get(frame.stem) or (sources[i] if len(sources) == len(frames) else None)
        if src is None:
            ctx.log.warning("transferAttribute: no source frame matches %s", frame.filename)
            out.append(frame)
            continue
        out.append(_transfer(frame, src, attribute))
    return out


def _transfer(frame: Frame, src: Frame, attribute: str) -> Frame:
    if len(src) != len(frame):
        raise InputError(src.filename, f"has {len(src)} extensions, {frame.filename} has {len(frame)}")
    exts = []
    for ext, sext in zip(frame.extensions, src.extensions):
        if attribute == "wcs":
            header = ext.header.copy()
            header.update(WCS(sext.header, naxis=2, relax=True).to_header(relax=True))
            exts.append(ext.replace(header=header))
        elif sext.plane(attribute) is not None:
            exts.append(ext.with_planes(**{attribute: sext.plane(attribute)}))
        else:
            exts.append(ext)
    return frame.with_extensions(exts)


# -- memory relief and outputs ------------------------------------------------
@primitive("flushPixels",
           P("force", bool, False, "checkpoint even frames whose pixels are read straight from disk"))
def flush_pixels(frames: list[Frame], p: Params, ctx: Context) -> list[Frame]:
    """Checkpoint the stream to zarr and continue from the checkpoint (keeps graphs small).

    Frames whose pixels are read straight from storage (nothing to compute)
    are left as they are unless ``force``.
    """
    if not p.force and all(is_stored(f) for f in frames):
        ctx.log.info("flushPixels: every frame is read straight from disk; nothing to flush (force=False)")
        return list(frames)
    return ctx.checkpoint(frames, "flushPixels")


def is_stored(frame: Frame) -> bool:
    """Whether every pixel plane is read straight from storage (a checkpoint or a file, one graph layer)."""
    return all(_read_as_stored(ext.plane(n)) for ext in frame.extensions
               for n in ("SCI", "VAR", "DQ") if ext.plane(n) is not None)


def _read_as_stored(arr) -> bool:
    layers = arr.__dask_graph__().layers
    return len(layers) == 1 and str(arr.name).startswith(("zarr-", "fits-"))


def checkpoint_computed(frames: list[Frame], ctx, label: str, *, rows: int | None = None,
                        samples: tuple[int, int, int, int, int] | None = None, force: bool = False) -> list[Frame]:
    """``frames`` whose pixels are still to be computed, written once to zarr and reopened lazily.

    For primitives that read every frame twice, or whole: the computation is
    then done once, and later steps read the checkpoint. ``rows`` is the
    height of the stored row bands (e.g. the stack's bands), ``samples`` asks
    the write for normalisation samples (see :func:`draconis.io.zarr.prepare_zarr`).
    Frames already read from storage (unless ``force``) leave ``frames`` as they are.
    """
    if not frames or (not force and all(is_stored(f) for f in frames)):
        return list(frames)
    options: dict[str, Any] = {}
    if rows is not None:
        options["chunks"] = (rows, frames[0][0].shape[1])
    if samples is not None:
        options["samples"] = samples
    return ctx.checkpoint(frames, label, **options)


@primitive("writeOutputs",
           P("overwrite", bool, True, "overwrite existing output files"),
           P("outfilename", str, None, "explicit output name (single input only)", optional=True),
           P("prefix", str, "", "prefix for output names", optional=True),
           suffix_param(""),
           P("strip", bool, False, "strip existing prefix/suffix first"))
def write_outputs(frames: list[Frame], p: Params, ctx: Context) -> list[Frame]:
    """Write the stream to FITS files (names from prefix/suffix/outfilename)."""
    if p.outfilename and len(frames) != 1:
        raise ParameterError(f"writeOutputs: outfilename needs exactly one input, got {len(frames)}")
    renamed = []
    for frame in frames:
        if p.outfilename:
            name = p.outfilename if p.outfilename.endswith(".fits") else p.outfilename + ".fits"
        else:
            base = frame.stem if p.strip else frame.filename.removesuffix(".fits")
            name = f"{p.prefix or ''}{base}{p.suffix or ''}.fits"
        renamed.append(frame.replace(filename=name))
    return ctx.write_outputs(renamed, overwrite=p.overwrite)


def _store(frames, p, ctx, *, keyword: str, tag: str | None, caltype: str | None, what: str):
    stamp = utc_timestamp()
    marked, skipped = [], []
    for frame in frames:
        if tag and tag not in _tags(frame) and not p.get("force", False):
            ctx.log.warning("%s is not tagged %s: not stored as a %s (use force=True)", frame.filename, tag, what)
            skipped.append(frame)
            continue
        marked.append(frame.with_phu(**{keyword: (stamp, f"UT time stamp of the processed {what}"),
                                        "PROCMODE": (ctx.mode, "processing mode")}).with_suffix(p.suffix))
    written = ctx.write_outputs(marked) if marked else []
    if caltype:
        for frame in written:
            path = ctx.path_of(frame)
            if path:
                ctx.store_calibration(path, caltype)
    return written + skipped


@primitive("storeProcessedDark",
           suffix_param("_dark"),
           P("force", bool, False, "store even if the tags do not say it is this kind of calibration"))
def store_processed_dark(frames: list[Frame], p: Params, ctx: Context) -> list[Frame]:
    """Mark as a processed dark (PROCDARK), write ``<name>_dark.fits`` and store it as processed_dark."""
    return _store(frames, p, ctx, keyword="PROCDARK", tag="DARK", caltype="processed_dark", what="dark")


@primitive("storeProcessedFlat",
           suffix_param("_flat"),
           P("force", bool, False, "store even if the tags do not say it is this kind of calibration"))
def store_processed_flat(frames: list[Frame], p: Params, ctx: Context) -> list[Frame]:
    """Mark as a processed flat (PROCFLAT), write ``<name>_flat.fits`` and store it as processed_flat."""
    return _store(frames, p, ctx, keyword="PROCFLAT", tag="FLAT", caltype="processed_flat", what="flat")


@primitive("storeProcessedBPM",
           suffix_param("_bpm"),
           P("force", bool, False, "store even if the tags do not say it is this kind of calibration"))
def store_processed_bpm(frames: list[Frame], p: Params, ctx: Context) -> list[Frame]:
    """Mark as a processed BPM (PROCBPM), write ``<name>_bpm.fits`` and store it as processed_bpm."""
    return _store(frames, p, ctx, keyword="PROCBPM", tag=None, caltype="processed_bpm", what="BPM")


@primitive("storeProcessedScience", suffix_param(None))
def store_processed_science(frames: list[Frame], p: Params, ctx: Context) -> list[Frame]:
    """Mark as processed science (PROCSCI) and write the frames (``suffix`` e.g. ``_image``)."""
    return _store(frames, p, ctx, keyword="PROCSCI", tag=None, caltype=None, what="science")


# -- checkWCS -------------------------------------------------------------------
#: DRAGONS' defaults (prepare's debug_consistency_limit, debug_max_deadtime)
CONSISTENCY_LIMIT = 30.0  # arcsec
MAX_DEADTIME = 60.0  # s between exposures before a new pointing is assumed


def _centre(frame: Frame) -> tuple[float, float]:
    ext = frame.extensions[0]
    ny, nx = ext.shape
    ra, dec = ext.wcs.wcs_pix2world([[(nx - 1) / 2, (ny - 1) / 2]], 0)[0]
    return float(ra), float(dec)


def _offsets(frame: Frame) -> tuple[float, float]:
    # FITS keywords have 8 characters: Gemini writes the Dec offset as DECOFFSE
    return float(frame.phu.get("RAOFFSET", 0.0) or 0.0), float(frame.phu.get("DECOFFSE", 0.0) or 0.0)


def _pointings(frames: list[Frame], max_deadtime: float) -> list[list[Frame]]:
    groups: list[list[Frame]] = []
    last = None
    for frame in frames:
        when = frame.safe_descriptor("ut_datetime")
        gap = (when - last).total_seconds() - float(frame.safe_descriptor("exposure_time", 0) or 0) \
            if when is not None and last is not None else 0.0
        if not groups or gap > max_deadtime:
            groups.append([])
        groups[-1].append(frame)
        last = when
    return groups


@primitive("checkWCS")
def check_wcs(frames: list[Frame], p: Params, ctx: Context) -> list[Frame]:
    """Report frames whose WCS disagrees (> 30") with the first frame of their pointing plus telescope offsets."""
    if any("PREPARED" in _tags(f) for f in frames):
        bad = next(f for f in frames if "PREPARED" in _tags(f))
        raise InputError(bad.path or bad.filename, "checkWCS needs unprepared (raw) inputs")
    insts = {str(f.phu.get("INSTRUME", "")) for f in frames}
    if len(insts) > 1:
        raise InputError(frames[-1].path or frames[-1].filename, f"checkWCS inputs mix instruments {sorted(insts)}")
    problems = wcs_discrepancies(frames)
    for frame, reference, miss in problems:
        ctx.log.warning("checkWCS: %s is %.1f\" from the position expected from %s and the offsets",
                        frame.filename, miss, reference.filename)
    ctx.log.info("checkWCS: %d frame(s) checked, %d discrepant", len(frames), len(problems))
    return list(frames)


def wcs_discrepancies(frames: Sequence[Frame], *, limit: float = CONSISTENCY_LIMIT,
                      max_deadtime: float = MAX_DEADTIME) -> list[tuple[Frame, Frame, float]]:
    """Frames whose WCS centre is more than ``limit`` arcsec from where the telescope offsets put it.

    Frames are grouped in pointings (a gap of more than ``max_deadtime`` s
    starts a new one); each is compared with the first of its pointing.
    Returns ``(frame, first of its pointing, miss in arcsec)`` for each
    discrepant frame.  Headers only.
    """
    out = []
    for group in _pointings(list(frames), max_deadtime):
        ra0, dec0 = _centre(group[0])
        off0 = _offsets(group[0])
        for frame in group[1:]:
            ra, dec = _centre(frame)
            off = _offsets(frame)
            measured = np.array([(ra - ra0) * np.cos(np.radians(dec0)) * 3600.0, (dec - dec0) * 3600.0])
            expected = np.array([off[0] - off0[0], off[1] - off0[1]])
            miss = float(np.hypot(*(measured - expected)))
            if miss > limit:
                out.append((frame, group[0], miss))
    return out
