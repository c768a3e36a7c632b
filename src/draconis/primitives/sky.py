"""Sky primitives: separateSky, associateSky, skyCorrect (stackSkyFrames + subtractSky), cleanReadout.

The sky of a science frame is the combination of its associated sky frames
(median with min/max rejection by default). It is built lazily, one row band
at a time, one task per band holding the ``k`` skies' bands, so the frame
axis is never rechunked. The band height is planned from the workers'
memory (:func:`direct_rows`): a task of ``k`` skies fits the same per-task
budget as the sliding window's (:func:`draconis.primitives.sky_window.task_budget`),
whatever ``k``. When the skies are checkpoints the band tasks read their
rows themselves (object masks dilated in the band); otherwise Dask reads the
bands and stacks them (``da.stack``, ``blockwise``). Frames whose sky lists
are identical share one sky graph, and the per-sky work (object-mask
dilation, background level) is shared by every window the sky appears in.

Levels (the background of a frame, used to normalise skies to each other
and to match a sky to its science frame) are lazy 0-d Dask arrays computed
from a sample of each *input* frame (every 10th column; every column where
the instrument's illuminated area is small), never from the stacked sky, so
the stack itself streams tile by tile. The level of a stack is that of its
first sky when skies are normalised (``scale``/``zero``), else the median of
the sky levels.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import dask
import dask.array as da
import numpy as np
from astropy.table import Table
from dask.highlevelgraph import HighLevelGraph

from ..buffers import reusable_buffer
from ..errors import ParameterError
from ..frame import Frame
from ..instruments.sections import parse_section
from ..io._tasks import read_stack
from ..io.zarr import stored_source
from ..kernels import sky as ksky
from ..kernels.combine import CombineSpec
from ..parameters import P, Params, suffix_param, unsupported
from ..provenance import utc_timestamp
from . import sky_window
from .registry import Context, primitive
from .sky_pointing import (
    config_key,
    field_centre,
    field_size_arcsec,
    frame_time,
    group_positions,
    pointing_positions,
    same_config,
    separation_arcsec,
)
from .stack import STACK, source_keys

#: DQ bit that object-mask pixels get in the sky frames (bad_pixel, as OR-ing OBJMASK does).
OBJECT_DQ_BIT = 1
#: Tags of instruments whose illuminated area is small (a keyhole): levels use every pixel.
_FULL_SAMPLING_TAGS = frozenset({"GNIRS"})
_SAMPLE_STEP = 10
#: Fewest pixels a level is measured on when the array allows it.
_MIN_SAMPLES = 20000


# ---------------------------------------------------------------------------
# separateSky
# ---------------------------------------------------------------------------
@primitive("separateSky",
           suffix_param("_skySeparated"),
           P("ref_obj", str, None, "comma-separated filenames forced to be OBJECT", optional=True),
           P("ref_sky", str, None, "comma-separated filenames forced to be SKY", optional=True),
           P("frac_FOV", float, 0.9, "fraction of the field used to decide two pointings overlap",
             low=0.3, high=1.0))
def separate_sky(frames: list[Frame], p: Params, ctx: Context) -> list[Frame]:
    """Classify frames as object and/or sky; objects stay in the stream, skies go to stream ``sky``."""
    is_obj, is_sky = classify_frames(frames, ref_obj=p.ref_obj, ref_sky=p.ref_sky, frac_fov=p.frac_FOV,
                                     log=ctx.log)
    objects, skies = [], []
    for frame, obj, sky in zip(frames, is_obj, is_sky):
        out = frame.with_phu(OBJFRAME=(True, "frame is an object frame") if obj else None,
                             SKYFRAME=(True, "frame is a sky frame") if sky else None)
        out = out.with_suffix(p.suffix)
        if obj:
            objects.append(out)
        if sky:
            skies.append(out)
    ctx.log.info("separateSky: %d object frame(s), %d sky frame(s)%s", len(objects), len(skies),
                 " (every frame is both)" if len(objects) == len(skies) == len(frames) else "")
    ctx.set_stream("sky", skies)
    return objects


def _names(text: str | None) -> set[str]:
    if not text:
        return set()
    return {os.path.splitext(os.path.basename(t.strip()))[0] for t in text.split(",") if t.strip()}


def _matches(frame: Frame, names: set[str]) -> bool:
    return frame.stem in names or os.path.splitext(frame.filename)[0] in names


def classify_frames(frames: Sequence[Frame], *, ref_obj: str | None = None, ref_sky: str | None = None,
                    frac_fov: float = 0.9, log=None) -> tuple[list[bool], list[bool]]:
    """Object and sky flags per frame (a frame may be both).

    Order of evidence: explicit ``ref_obj``/``ref_sky`` names; OBJFRAME/SKYFRAME
    keywords from an earlier run; otherwise pointings grouped by overlap
    (field centres closer than ``frac_fov`` × field size). One group: every
    frame is both. Two groups: the group nearest the target is object. More:
    groups nearest the target are object until at least half the frames are.
    Unguided frames (no wavefront sensor) among guided ones are sky only.
    """
    n = len(frames)
    obj_names, sky_names = _names(ref_obj), _names(ref_sky)
    if obj_names or sky_names:
        is_obj = [_matches(f, obj_names) for f in frames]
        is_sky = [_matches(f, sky_names) for f in frames]
        if not sky_names:
            is_sky = [not o for o in is_obj]
        elif not obj_names:
            is_obj = [not s for s in is_sky]
        return _ensure_both(frames, is_obj, is_sky, log)
    if all("OBJFRAME" in f.phu or "SKYFRAME" in f.phu for f in frames):
        return ([bool(f.phu.get("OBJFRAME", False)) for f in frames],
                [bool(f.phu.get("SKYFRAME", False)) for f in frames])
    positions, target = pointing_positions(frames)
    size = min(field_size_arcsec(f) for f in frames)
    groups = group_positions(positions, frac_fov * size)
    groups.sort(key=lambda g: float(np.hypot(*(positions[g].mean(axis=0) - target))))
    if log is not None:
        log.info("separateSky: %d pointing group(s) (overlap distance %.1f arcsec): %s", len(groups),
                 frac_fov * size, "; ".join(",".join(frames[i].stem for i in g) for g in groups))
    if len(groups) == 1:
        is_obj, is_sky = [True] * n, [True] * n
    else:
        chosen = list(groups[0])
        for group in groups[1:]:
            if len(groups) == 2 or len(chosen) >= n / 2:
                break
            chosen.extend(group)
        is_obj = [i in set(chosen) for i in range(n)]
        is_sky = [not o for o in is_obj]
    guided = [f.safe_descriptor("wavefront_sensor") is not None for f in frames]
    if any(guided) and not all(guided):
        if log is not None:
            log.info("separateSky: unguided frames are sky: %s",
                     ", ".join(f.filename for f, g in zip(frames, guided) if not g))
        for i, g in enumerate(guided):
            if not g:
                is_obj[i], is_sky[i] = False, True
    return _ensure_both(frames, is_obj, is_sky, log)


def _ensure_both(frames, is_obj, is_sky, log) -> tuple[list[bool], list[bool]]:
    """If a class is empty, every frame becomes both (warned)."""
    if not any(is_obj) or not any(is_sky):
        if log is not None:
            missing = "object" if not any(is_obj) else "sky"
            log.warning("separateSky: no %s frames identified; treating every frame as both object and sky",
                        missing)
        return [True] * len(frames), [True] * len(frames)
    return list(is_obj), list(is_sky)


# ---------------------------------------------------------------------------
# associateSky
# ---------------------------------------------------------------------------
@primitive("associateSky",
           suffix_param("_skyAssociated"),
           P("time", float, 600.0, "sky association window (s)", low=0.0),
           P("distance", float, 1.0, "minimum separation (arcsec) between a science frame and an acceptable sky",
             low=0.0),
           P("min_skies", int, 3, "minimum skies per frame (overrides time if needed)", optional=True, low=0),
           P("max_skies", int, None, "maximum skies per frame (None = no limit)", optional=True, low=1),
           P("use_all", bool, False, "use every other frame (science and sky) farther than distance, "
                                     "ignoring time/config"),
           P("sky", list, None, "explicit sky frame(s)", optional=True, opens="frames"))
def associate_sky(frames: list[Frame], p: Params, ctx: Context) -> list[Frame]:
    """Attach to each science frame the list of its sky frames (table SKYTABLE)."""
    if p.sky:
        candidates = list(p.sky)
        ctx.set_stream("sky", candidates)
    elif p.use_all:
        candidates = _unique([*frames, *ctx.stream("sky")])
    else:
        candidates = list(ctx.stream("sky"))
        if not candidates:
            ctx.log.warning("associateSky: the 'sky' stream is empty; using the input frames as sky candidates")
            candidates = list(frames)
    kept, orphans = [], []
    for frame in frames:
        skies = choose_skies(frame, candidates, time=p.time, distance=p.distance, min_skies=p.min_skies,
                             max_skies=p.max_skies, use_all=p.use_all, log=ctx.log)
        if not skies:
            orphans.append(frame)
            continue
        table = Table({"SKYNAME": [s.filename for s in skies]})
        kept.append(frame.replace(tables={**frame.tables, "SKYTABLE": table}).with_suffix(p.suffix))
    if orphans:
        ctx.log.warning("associateSky: no sky frames for %s; moved to stream 'no_skies'",
                        ", ".join(f.filename for f in orphans))
        ctx.set_stream("no_skies", [*ctx.stream("no_skies"), *orphans])
    return kept


def choose_skies(frame: Frame, candidates: Sequence[Frame], *, time: float, distance: float,
                 min_skies: int | None, max_skies: int | None, use_all: bool = False, log=None) -> list[Frame]:
    """The sky frames for ``frame``, in time order (associateSky's rule).

    Candidates: same configuration (unless ``use_all``), more than ``distance``
    arcsec from the frame. Sorted by |Δt|, the nearest ``n`` are taken, with
    n = min(max_skies or all, max(min_skies, number within ``time`` s));
    ``use_all`` takes every candidate.
    """
    t0 = frame_time(frame)
    centre = field_centre(frame)
    key = None if use_all else config_key(frame)
    pool = []
    for sky in candidates:
        if sky.stem == frame.stem:
            continue
        if key is not None and not same_config(key, config_key(sky)):
            continue
        if separation_arcsec(centre, field_centre(sky)) <= distance:
            continue
        pool.append((abs((frame_time(sky) - t0).total_seconds()), sky))
    pool.sort(key=lambda item: item[0])
    if use_all:
        return sorted((s for _, s in pool), key=frame_time)
    minimum = min_skies or 0
    within = sum(1 for dt_, _ in pool if dt_ <= time)
    n = max(minimum, within)
    if max_skies is not None:
        n = min(n, max_skies)
    n = min(n, len(pool))
    if log is not None:
        _explain_choice(frame, pool, n, within, minimum, time, log)
    return sorted((s for _, s in pool[:n]), key=frame_time)


def _explain_choice(frame, pool, n, within, minimum, time, log) -> None:
    """Say when min_skies changed the choice or could not be honoured (never silently)."""
    if len(pool) < minimum:
        log.warning("associateSky: %s has only %d sky candidate(s) (min_skies=%d): using %s",
                    frame.filename, len(pool), minimum, f"all {len(pool)}" if pool else "none")
    elif within < minimum:
        log.info("associateSky: %s: %d sky frame(s) within %g s; min_skies=%d takes the %d nearest in time "
                 "(up to %.0f s away)", frame.filename, within, time, minimum, n, pool[n - 1][0])
    log.debug("associateSky: %s -> %d sky frame(s)", frame.filename, n)


def _unique(frames: Sequence[Frame]) -> list[Frame]:
    seen, out = set(), []
    for f in frames:
        if f.stem not in seen:
            seen.add(f.stem)
            out.append(f)
    return out


# ---------------------------------------------------------------------------
# skyCorrect
# ---------------------------------------------------------------------------
#: stackSkyFrames' parameters: the shared stack group with the sky's defaults.
_STACK_PARAMS = (
    *STACK(operation="median", reject_method="minmax", nlow=1, nhigh=1, scale=True, unsupported={
        "memory": "sky stacks are cut into row bands planned from the workers' memory "
                  "(the cluster's, or draconis.memory_limit), not from a per-combine figure",
        "separate_ext": "sky levels are always measured per array",
        "debug_old_normalization": "sky levels are always background modes",
    }),
    P("mask_objects", bool, True, "mask OBJMASK pixels in sky frames before stacking"),
    P("dilation", float, 2.0, "OBJMASK dilation radius (pix)", low=0.0),
)


@primitive("skyCorrect",
           suffix_param("_skyCorrected"),
           P("reset_sky", bool, False, "add back the original sky level after subtraction"),
           P("scale_sky", bool, True, "multiply sky stack to match the science background"),
           P("offset_sky", bool, False, "add a constant to the sky stack to match the science background"),
           P("sky", list, None, "explicit sky frame(s)", optional=True, opens="frames"),
           P("save_sky", bool, False, "write each stacked sky as <name>_sky.fits"),
           P("debug_threshold", float, 0.001, "convergence threshold of sky scaling iteration"),
           *_STACK_PARAMS,
           inherits=("stackSkyFrames", "subtractSky"))
def sky_correct(frames: list[Frame], p: Params, ctx: Context) -> list[Frame]:
    """Subtract from each frame the stack of its associated sky frames (lazy)."""
    builder = SkyBuilder(p, ctx.log, worker_memory=ctx.workers()[1])
    explicit = list(p.sky) if p.sky else None
    pool = _sky_pool([*ctx.stream("sky"), *frames, *ctx.stream("main")])
    lists = [explicit if explicit is not None else _skies_of(frame, pool, ctx.log) for frame in frames]
    windowed = sky_window.windowed(builder, frames, lists, ctx)
    outputs, saved = [], []
    for i, (frame, skies) in enumerate(zip(frames, lists)):
        if skies is None:
            outputs.append(frame)
            continue
        out, sky_frame = windowed[i] if i in windowed else builder.subtract(frame, skies)
        outputs.append(out.with_suffix(p.suffix))
        if p.save_sky and sky_frame is not None:  # every path makes the sky frame when save_sky asks for it
            saved.append(sky_frame)
    ctx.log.info("skyCorrect: %d frame(s): %d by the sliding window, %d distinct sky stack(s) combined directly%s",
                 len(frames), len(windowed), len(builder.stacks),
                 f" (bands of {'/'.join(map(str, sorted(builder.band_rows)))} rows)" if builder.band_rows else "")
    if p.save_sky:
        ctx.set_stream("sky_stacks", saved)
    return outputs


def _sky_pool(frames: Sequence[Frame]) -> dict[str, Frame]:
    """Frames by file name and by stem; earlier streams win (the sky stream carries the OBJMASKs)."""
    pool: dict[str, Frame] = {}
    for f in frames:
        pool.setdefault(f.filename, f)
        pool.setdefault(f.stem, f)
    return pool


def _lookup(name: str, pool: dict[str, Frame]) -> Frame | None:
    base = os.path.splitext(os.path.basename(name))[0]
    for key in (os.path.basename(name), base, base.split("_")[0]):
        if key in pool:
            return pool[key]
    return None


def _skies_of(frame: Frame, pool: dict[str, Frame], log) -> list[Frame] | None:
    table = frame.tables.get("SKYTABLE")
    if table is None or len(table) == 0:
        log.warning("skyCorrect: %s has no associated sky frames (run associateSky first); left unchanged",
                    frame.filename)
        return None
    skies = []
    for name in table["SKYNAME"]:
        sky = _lookup(str(name), pool)
        if sky is None:
            raise ParameterError(f"skyCorrect: sky frame {name} of {frame.filename} is not in the 'sky' stream")
        skies.append(sky)
    return skies


class SkyBuilder:
    """Builds sky stacks and sky-subtracted frames, sharing work between frames.

    ``stacks`` maps the tuple of sky names to, per extension, the lazy stack
    ``(cube, have_var, level)``: ``cube`` is float32 ``(3, y, x)`` holding
    SCI, VAR and DQ, ``level`` a lazy 0-d background level. Identical sky
    lists reuse one graph.

    ``worker_memory`` (bytes, from ``ctx.workers()``) sizes the row bands of
    the direct combine (:func:`direct_rows`); None keeps the bands of the
    inputs' row chunks.
    """

    def __init__(self, p, log, *, worker_memory: int | None = None):
        self.p = p
        self.log = log
        self.worker_memory = worker_memory
        #: band heights the direct stacks were cut into (for the log)
        self.band_rows: set[int] = set()
        self._warned_fit: set[int] = set()
        self.stacks: dict[tuple[str, ...], list[tuple[da.Array, bool, da.Array]]] = {}
        self._prepared: dict[tuple[str, int], tuple[da.Array, da.Array | None, da.Array, da.Array]] = {}
        self._warned_no_mask = False
        self._warned_counts: set[int] = set()
        self.combine = CombineSpec.from_params(p)
        self.section = parse_section(p.statsec).as_slices() if p.statsec else None

    # -- per-sky preparation (shared by every window the sky appears in) --------
    def prepared(self, sky: Frame, index: int):
        """Array ``index`` of a sky frame made ready to stack: planes, object mask in DQ, lazy level."""
        key = (sky.stem, index)
        if key not in self._prepared:
            ext = sky[index]
            sci, var, dq = ext.plane("SCI"), ext.plane("VAR"), ext.plane("DQ")
            dq = da.zeros(sci.shape, dtype=np.uint16, chunks=sci.chunks) if dq is None else dq
            objmask = ext.plane("OBJMASK")
            if self.p.mask_objects:
                if objmask is None:
                    self._warn_no_mask(sky)
                else:
                    mask = dilate_lazy(objmask, self.p.dilation)
                    dq = dq | (mask.astype(np.uint16) * np.uint16(OBJECT_DQ_BIT))
            # the stored planes (and stored object mask) the level task can read itself
            sci_reader, _, dq_reader = sky_window.sky_readers(self, sky, index, have_var=False)
            level = lazy_level(sci, dq, None, step=sample_step(sky), threshold=self.p.debug_threshold,
                               section=self.section, readers=(sci_reader, dq_reader, None))
            self._prepared[key] = (sci, var, dq, level)
        return self._prepared[key]

    def _warn_no_mask(self, sky: Frame) -> None:
        if not self._warned_no_mask:
            self.log.warning("skyCorrect: mask_objects=True but sky frame %s has no OBJMASK "
                             "(run detectSources on the skies first); its objects are not masked", sky.filename)
            self._warned_no_mask = True

    # -- stacks ---------------------------------------------------------------
    def stack(self, skies: Sequence[Frame]):
        """The lazy sky stack of these sky frames, per array (built once per distinct list)."""
        key = tuple(s.filename for s in skies)
        if key not in self.stacks:
            self.stacks[key] = [self._stack_ext(skies, i) for i in range(len(skies[0]))]
        return self.stacks[key]

    def _stack_ext(self, skies: Sequence[Frame], index: int):
        parts = [self.prepared(s, index) for s in skies]
        sci0 = parts[0][0]
        have_var = all(q[1] is not None for q in parts)
        levels = da.stack([q[3] for q in parts])
        mode = "scale" if self.p.scale else ("zero" if self.p.zero else None)
        combine = self._fit_rejection(len(parts))
        stack_level = levels[0] if mode else _median_level(levels)
        exts = [s[index] for s in skies]
        sources = self._stored_sources(exts, have_var)
        if sources is not None:
            lazy_masks = self.p.mask_objects and "OBJMASK" not in sources and any(
                e.plane("OBJMASK") is not None for e in exts)
            # masks that are not checkpoints are dilated by Dask in the chunks of their input, held whole
            rows = self._band_rows(sci0, len(parts), DIRECT_STORED_SKY_BYTES, 1 if lazy_masks else 0)
            masks = [self._dilated(e, rows) for e in exts] if lazy_masks else None
            cube = self._stack_stored(sources, masks, sci0.shape, rows, [q[3] for q in parts], combine, mode)
            return cube, have_var, stack_level
        rows = self._band_rows(sci0, len(parts), DIRECT_SKY_BYTES, DIRECT_HELD_BYTES)
        ny = sci0.shape[0]
        chunks = (tuple(min(rows, ny - y) for y in range(0, ny, rows)), sci0.chunks[1])
        scis = [q[0].rechunk(chunks) for q in parts]
        dqs = [q[2].rechunk(chunks) for q in parts]
        var = da.stack([q[1].rechunk(chunks) for q in parts]) if have_var else None
        args = [da.stack(scis), "kyx", var, "kyx" if have_var else None, da.stack(dqs), "kyx", levels, "k"]
        token = dask.base.tokenize(*[a for a in args[::2]], mode, combine)
        out = da.blockwise(ksky.stack_sky_tile, "pyx", *args, new_axes={"p": 3}, concatenate=True,
                           dtype=np.float32, name=f"sky-stack-{token}", mode=mode, spec=combine)
        return out, have_var, stack_level

    def _stored_sources(self, exts, have_var: bool) -> dict[str, list] | None:
        """The checkpoint planes the band tasks read themselves, or None (then Dask reads and stacks the bands).

        Every sky's SCI and DQ, and VAR when every sky has one, must be read
        unchanged from a checkpoint; OBJMASK is read too when objects are
        masked and every sky's is a checkpoint.
        """
        names = ["SCI", "DQ"] + (["VAR"] if have_var else [])
        sources = {n: [stored_source(e.plane(n)) for e in exts] for n in names}
        if any(src is None for srcs in sources.values() for src in srcs):
            return None
        if self.p.mask_objects:
            masks = [stored_source(e.plane("OBJMASK")) for e in exts]
            if all(m is not None for m in masks):
                sources["OBJMASK"] = masks
        return sources

    def _dilated(self, ext, rows: int) -> da.Array:
        """The dilated object mask of a sky (the graph :meth:`prepared` ORs into DQ), in bands of ``rows``."""
        objmask = ext.plane("OBJMASK")
        if objmask is None:
            return da.zeros(ext.shape, dtype=np.uint8, chunks=(rows, ext.shape[1]))
        return dilate_lazy(objmask, self.p.dilation).rechunk((rows, ext.shape[1]))

    def _stack_stored(self, sources: dict[str, list], masks: list[da.Array] | None, shape: tuple[int, int],
                      rows: int, levels: list[da.Array], combine: CombineSpec, mode: str | None) -> da.Array:
        """Band tasks that read their rows of every sky straight from the checkpoints, mask objects and combine.

        Each task reads ``rows`` rows of the skies' planes (and of their
        stored object masks with the rows the dilation reaches) into its own
        cubes: nothing but the band is held, whatever the stored chunks.
        The object masks dilated in the band equal :func:`dilate_lazy`'s;
        ``masks``, when given, are the skies' masks already dilated, by Dask,
        in bands of ``rows``.
        """
        ny, nx = shape
        radius = float(self.p.dilation)
        depth = ksky.dilation_reach(radius)
        token = dask.base.tokenize(sources, [m.name for m in masks or ()], rows, [lv.name for lv in levels],
                                   combine, mode, radius)
        name = f"sky-stack-{token}"
        dsk, keys = source_keys(sources, "sky-stack-sources", token)
        level_keys = [(lv.name,) for lv in levels]
        bands = tuple(min(rows, ny - y) for y in range(0, ny, rows))
        for b, y0 in enumerate(range(0, ny, rows)):
            y1 = min(y0 + rows, ny)
            var = (read_stack, keys["VAR"], y0, y1) if "VAR" in keys else None
            mask: tuple | None = None
            top, reach = 0, 0.0
            if "OBJMASK" in keys:
                m0, m1 = max(0, y0 - depth), min(ny, y1 + depth)
                mask, top, reach = (read_stack, keys["OBJMASK"], m0, m1), y0 - m0, radius
            elif masks is not None:  # dilated already: stack_sky_band only ORs them
                mask = (np.stack, [(m.name, b, 0) for m in masks])
            dsk[(name, 0, b, 0)] = (ksky.stack_sky_band, (read_stack, keys["SCI"], y0, y1), var,
                                    (read_stack, keys["DQ"], y0, y1), level_keys, combine, mode, mask, top, reach,
                                    OBJECT_DQ_BIT)
        deps: list = [*levels, *(masks or ())]
        graph = HighLevelGraph.from_collections(name, dsk, dependencies=deps)
        return da.Array(graph, name, ((3,), bands, (nx,)), dtype=np.float32, meta=np.empty((0, 0, 0), np.float32))

    def _band_rows(self, sci: da.Array, k: int, sky_bytes: int, held_bytes: int) -> int:
        """Rows per band of the direct combine of ``k`` skies shaped like ``sci``, from the workers' memory."""
        if self.worker_memory is None:
            return sci.chunks[0][0]
        budget = sky_window.task_budget(self.worker_memory)
        width = max(sci.chunks[1])
        chunk_rows = min(sci.chunks[0][0], sci.shape[0])
        rows, fits = direct_rows(k, chunk_rows, sci.shape[0], width, budget, sky_bytes, held_bytes)
        if not fits and k not in self._warned_fit:  # once per count of skies
            self._warned_fit.add(k)
            self.log.warning(
                "skyCorrect: a direct stack of %d skies needs %.0f MiB per task even in bands of %d rows, over the "
                "%.0f MiB a task may use (%.0f MiB workers)%s: going on with %d-row bands", k,
                direct_task_bytes(k, rows, width, sky_bytes, chunk_rows, held_bytes) / 2 ** 20, rows,
                budget / 2 ** 20, self.worker_memory / 2 ** 20,
                "; its skies are not checkpoints, so whole input chunks are held (flushPixels before skyCorrect "
                "lets the band tasks read their rows)" if held_bytes >= DIRECT_HELD_BYTES else "", rows)
        self.band_rows.add(rows)
        return rows

    def _fit_rejection(self, k: int) -> CombineSpec:
        """Min/max rejection needs nlow + nhigh < k: reduced (with a warning) for short sky lists."""
        spec = self.combine.for_inputs(k)
        if spec is not self.combine and k not in self._warned_counts:  # once per count, not once per frame
            self._warned_counts.add(k)
            self.log.warning("skyCorrect: only %d sky frame(s): min/max rejection reduced to nlow=%d, nhigh=%d",
                             k, spec.nlow, spec.nhigh)
        return spec

    def fit_rejection(self, k: int) -> tuple[int, int]:
        """(nlow, nhigh) of min/max rejection for ``k`` skies (0, 0 without min/max rejection)."""
        spec = self._fit_rejection(k)
        return (spec.nlow, spec.nhigh) if spec.reject_method == "minmax" else (0, 0)

    # -- subtraction ------------------------------------------------------------
    def subtract(self, frame: Frame, skies: Sequence[Frame]) -> tuple[Frame, Frame | None]:
        """``frame`` minus the direct combine of ``skies``, and that sky as a frame."""
        if any(len(s) != len(frame) for s in skies):
            raise ParameterError(f"skyCorrect: sky frames of {frame.filename} have a different number of arrays")
        stacks = self.stack(skies)
        parts = []
        for ext, (cube, have_var, sky_level) in zip(frame.extensions, stacks):
            out = self._subtract_ext(frame, ext, cube, have_var, sky_level)
            parts.append(((out[0], out[1], out[2].astype(np.uint16)),
                          (cube[0], cube[1] if have_var else None, cube[2].astype(np.uint16))))
        return self.assemble(frame, parts)

    def frame_level(self, frame: Frame, ext) -> da.Array:
        """The lazy background level subtractSky matches the sky to (0 when neither matched nor reset)."""
        p = self.p
        if p.scale_sky or p.offset_sky or p.reset_sky:
            return lazy_level(ext.plane("SCI"), ext.plane("DQ"), ext.plane("OBJMASK"), step=sample_step(frame),
                              threshold=p.debug_threshold, section=self.section)
        return da.zeros((), dtype=np.float64)

    def _subtract_ext(self, frame, ext, cube, have_var, sky_level) -> da.Array:
        """One fused task per tile: match the sky to the frame, subtract, propagate VAR and DQ."""
        p = self.p
        sci, var, dq = ext.plane("SCI"), ext.plane("VAR"), ext.plane("DQ")
        mode = "scale" if p.scale_sky else ("offset" if p.offset_sky else None)
        args = [sci, "yx", cube.rechunk({1: sci.chunks[0], 2: sci.chunks[1]}), "pyx", self.frame_level(frame, ext),
                (), sky_level, (), var, None if var is None else "yx", dq, None if dq is None else "yx"]
        return da.blockwise(ksky.subtract_sky_tile, "pyx", *args, new_axes={"p": 3}, concatenate=True,
                            dtype=np.float32, mode=mode, reset=p.reset_sky, sky_has_var=have_var)

    def assemble(self, frame: Frame, parts) -> tuple[Frame, Frame | None]:
        """The sky-subtracted frame (and its sky) from, per array, ``(planes, sky)``.

        ``planes`` and ``sky`` are ``(SCI, VAR, DQ)`` lazy planes, DQ as
        uint16 (``sky`` may be None: no sky frame is made; its VAR may be
        None). The frame keeps no VAR if it had none.
        """
        exts, sky_exts = [], []
        for ext, (planes, sky) in zip(frame.extensions, parts):
            sci, var, dq = planes
            exts.append(ext.with_planes(SCI=sci, VAR=var if ext.plane("VAR") is not None else None, DQ=dq))
            if sky is not None:
                sky_exts.append(ext.with_planes(SCI=sky[0], VAR=sky[1], DQ=sky[2], OBJMASK=None).replace(objcat=None))
        tables = {k: v for k, v in frame.tables.items() if k != "SKYTABLE"}
        stamp = utc_timestamp()
        out_frame = frame.with_extensions(exts).replace(tables=tables).with_phu(
            SUBSKY=(stamp, "UT time stamp for skyCorrect"))
        if len(sky_exts) != len(exts):
            return out_frame, None
        sky_frame = frame.with_extensions(sky_exts).replace(tables={}, filename=f"{frame.stem}_sky.fits")
        return out_frame, sky_frame


#: Bytes per pixel of a direct stack task, per sky, when Dask reads and stacks the bands: the task's input bands
#: (SCI, VAR float32, DQ uint16: 10) and the (k, rows, width) cubes Dask concatenates them into (10.1 more,
#: measured with tracemalloc on band tasks of 8 and 40 skies).
DIRECT_SKY_BYTES = 21
#: Bytes per pixel of a whole input chunk, per sky, held while its bands are combined when Dask reads the
#: inputs: a chunk is read (or computed) whole and its bands are slices of it.
DIRECT_HELD_BYTES = 10
#: Bytes per pixel of a band, per sky, when the task reads the bands from checkpoints into its cubes itself,
#: with the object mask (uint8) of the band and the rows its dilation reaches (11.1 measured).
DIRECT_STORED_SKY_BYTES = 12
#: Bytes per output pixel of a direct stack task: combine_block's SCI, VAR, DQ and count buffers and
#: stack_sky_tile's float32 (3, rows, width) result (24-25 measured; the dilation of one sky's mask at a time).
DIRECT_OUT_BYTES = 28


def direct_task_bytes(k: int, rows: int, width: int, sky_bytes: int = DIRECT_SKY_BYTES, chunk_rows: int = 0,
                      held_bytes: int = 0) -> int:
    """Bytes a direct stack task of ``k`` skies holds for a band of ``rows`` x ``width`` pixels.

    ``sky_bytes`` per pixel of each sky's band, :data:`DIRECT_OUT_BYTES` per
    output pixel, and ``held_bytes`` per pixel of each sky's whole input
    chunk (``chunk_rows`` rows) when the inputs are read in chunks.
    """
    return rows * width * (k * sky_bytes + DIRECT_OUT_BYTES) + k * chunk_rows * width * held_bytes


def direct_rows(k: int, chunk_rows: int, ny: int, width: int, budget: int, sky_bytes: int = DIRECT_SKY_BYTES,
                held_bytes: int = 0) -> tuple[int, bool]:
    """Band height of the direct combine of ``k`` skies, and whether a band task fits ``budget`` bytes.

    The height is the input chunk height or a divisor of it (a band never
    straddles two chunks), at least :data:`~draconis.primitives.sky_window.MIN_ROWS`
    (or the chunk height, if smaller): the tallest of those whose task
    (:func:`direct_task_bytes`) fits ``budget``; when none does, the
    smallest of them, and ``False``.
    """
    top = max(1, min(chunk_rows, ny))
    floor = min(sky_window.MIN_ROWS, top)
    heights = [r for r in range(top, floor - 1, -1) if top % r == 0]
    for rows in heights:
        if direct_task_bytes(k, rows, width, sky_bytes, top, held_bytes) <= budget:
            return rows, True
    return heights[-1], False


def _median_level(levels: da.Array) -> da.Array:
    median = dask.delayed(lambda v: np.asarray(np.median(v), dtype=np.float64), pure=True)(levels)
    return da.from_delayed(median, shape=(), dtype=np.float64)


def sample_step(frame: Frame) -> int:
    """Column step of the level sample: every 10th column, every column for keyhole imaging."""
    return 1 if frame.tags & _FULL_SAMPLING_TAGS else _SAMPLE_STEP


def lazy_level(sci: da.Array, dq: da.Array | None, objmask: da.Array | None, *, step: int,
               threshold: float = 0.001, section: tuple[slice, slice] | None = None,
               readers: tuple[Any, Any, Any] | None = None) -> da.Array:
    """The background level of a plane as a lazy 0-d array (pixels flagged in dq/objmask ignored).

    ``section`` (numpy slices, from statsec) restricts the pixels measured.
    When every plane given is read unchanged from a checkpoint (or
    ``readers`` names, per plane, what reads it by rows: a
    :class:`~draconis.io._tasks.StoredPlane` or a ``MaskedDQ``), the level
    task reads its sample itself: no read task per chunk, no rechunk, nothing
    moved between workers (at 156 full-size frames those were ~9 % of a sky
    pass's worker time).
    """
    section = section or (slice(None), slice(None))
    size = len(range(*section[0].indices(sci.shape[0]))) * len(range(*section[1].indices(sci.shape[1])))
    # small arrays: sample more densely, so the level rests on enough pixels
    step = max(1, min(step, size // _MIN_SAMPLES))

    planes = (sci, dq, objmask)
    if readers is None:
        readers = (None, None, None)
    found = [None if a is None else (r if r is not None else stored_source(a)) for a, r in zip(planes, readers)]
    if all(r is not None for a, r in zip(planes, found) if a is not None):
        name = "sky-level-" + dask.base.tokenize(*[a.name for a in planes if a is not None], threshold, section, step)
        graph = HighLevelGraph.from_collections(name, {(name,): (_level_stored, *found, section, step, threshold)},
                                                dependencies=[])
        return da.Array(graph, name, chunks=(), dtype=np.float64)

    samples = [None if a is None else a[section][:, ::step].rechunk({1: -1}) for a in (sci, dq, objmask)]
    present = [a for a in samples if a is not None]
    name = "sky-level-" + dask.base.tokenize(*present, threshold)
    # one task over the sample's row blocks, written directly: dask.delayed would finalise (concatenate)
    # each sample in a task of its own, and took half of the graph construction of a long sequence
    blocks = [None if a is None else [k[0] for k in a.__dask_keys__()] for a in samples]
    graph = HighLevelGraph.from_collections(name, {(name,): (_level_array, *blocks, threshold)}, dependencies=present)
    return da.Array(graph, name, chunks=(), dtype=np.float64)


#: Rows a level task reads at a time when its reader has no chunk height of its own.
_LEVEL_READ_ROWS = 256


def _level_stored(sci, dq, objmask, section: tuple[slice, slice], step: int, threshold: float) -> np.ndarray:
    """Level of the sample of planes read here (row readers, or None): the sample :func:`lazy_level` takes."""
    def sample(reader):
        return None if reader is None else _read_sample(reader, section, step)
    return np.asarray(ksky.sampled_level(sample(sci), sample(dq), sample(objmask), threshold=threshold),
                      dtype=np.float64)


def _read_sample(reader, section: tuple[slice, slice], step: int) -> np.ndarray:
    """Every ``step``-th column of ``section`` of the plane ``reader`` reads, read a chunk of rows at a time.

    The rows go through a buffer the process reuses: a level task needs a tenth
    of the columns, and reading each whole plane into new memory made the
    level tasks most of a sky pass's page faults outside its window tasks.
    """
    ny, nx = reader.shape
    y0, y1, ys = section[0].indices(ny)
    x0, x1, xs = section[1].indices(nx)
    columns = slice(x0, x1, xs * step)
    if ys != 1:
        return reader.rows(0, ny)[section][:, ::step]
    dtype = np.dtype(reader.dtype)
    sample = np.empty((max(0, y1 - y0), len(range(x0, x1, xs * step))), dtype)
    block = max(1, min(int(getattr(reader, "chunk_rows", 0) or _LEVEL_READ_ROWS), ny))
    buffer = reusable_buffer(block * nx * dtype.itemsize, "level").view(dtype)
    # blocks aligned on the reader's chunks: a compressed chunk is then decompressed once, straight into the buffer
    for b0 in range(y0 - y0 % block, y1, block):
        r0, r1 = max(b0, y0), min(b0 + block, y1)
        rows = buffer[:(r1 - r0) * nx].reshape(r1 - r0, nx)
        reader.read_rows_into(r0, r1, rows)
        sample[r0 - y0:r1 - y0] = rows[:, columns]
    return sample


def _level_array(sci, dq, objmask, threshold) -> np.ndarray:
    """Level of the sampled pixels, given as lists of row blocks (or None)."""
    def whole(blocks):
        return None if blocks is None else np.concatenate(blocks, axis=0)
    return np.asarray(ksky.sampled_level(whole(sci), whole(dq), whole(objmask), threshold=threshold),
                      dtype=np.float64)


def dilate_lazy(mask: da.Array, radius: float) -> da.Array:
    """Binary dilation of a lazy mask by a disc (overlapping blocks; zeros beyond the edges)."""
    if radius < 1:
        return (mask != 0).astype(np.uint8)
    # meta given: dask would otherwise call the numba kernel on an empty block to learn it,
    # compiling (or loading) it on the client (~0.3 s, once per process)
    return da.map_overlap(ksky.dilate_mask, mask, depth=ksky.dilation_reach(radius), boundary=0, dtype=np.uint8,
                          meta=np.empty((0, 0), np.uint8), radius=radius)


# ---------------------------------------------------------------------------
# cleanReadout
# ---------------------------------------------------------------------------
#: Why every cleanReadout parameter is refused unless at its default.
_NO_READOUT_CLEANING = "draconis does not remove readout patterns (clean='skip' only)"


@primitive("cleanReadout",
           suffix_param("_readoutCleaned"),
           *unsupported(
               _NO_READOUT_CLEANING,
               P("hsigma", float, 3.0, "upper clipping threshold (sigma)", low=0.0),
               P("lsigma", float, 3.0, "lower clipping threshold (sigma)", low=0.0),
               P("pattern_x_size", int, 16, "pattern box width (pix)"),
               P("pattern_y_size", int, 4, "pattern box height (pix)"),
               P("debug_subtract_background", bool, True, "remove box median before pattern fit"),
               P("level_bias_offset", bool, True, "level quadrant bias offsets"),
               P("smoothing_extent", int, 5, "smoothing width at quadrant boundary (pix)", low=1),
               P("intraquad_smooth", int, 50, "smoothing height at bias jump (pix)", low=1),
               P("sg_win_size", int, 25, "Savitzky-Golay window (pix)", low=3),
               P("simple_thres", float, 0.6, "pattern edge threshold", low=0.0),
               P("pat_strength_thres", float, 15.0, "minimum pattern strength to clean", low=0.0),
               P("clean", str, "skip", "'default' (clean if pattern strong), 'force', 'skip'",
                 choices=("default", "force", "skip")),
               P("debug_canny_sigma", float, 3.0, "Canny smoothing sigma", low=1.0)))
def clean_readout(frames: list[Frame], p: Params, ctx: Context) -> list[Frame]:
    """Remove readout pattern noise: not implemented.

    Only clean='skip' (the default) is accepted, and frames pass through unchanged.
    """
    ctx.log.info("cleanReadout: clean=%r; frames left unchanged", p.clean)
    return list(frames)
