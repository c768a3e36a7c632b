"""skyCorrect's sliding-window path: every frame's sky from one walk along the time-ordered skies.

The direct path (:class:`draconis.primitives.sky.SkyBuilder`) combines, for
every frame, the ``k`` sky frames of its SKYTABLE: with associateSky's 600 s
window an F2 frame of a long sequence has ~70 skies, so a pass reads and
combines ~70 bands per frame. Here the skies of all frames are put in time
order; each frame's skies are a window of that order less a few excluded
frames (itself, skies closer than ``distance``), and
:func:`draconis.kernels.sky_window.window_sky_subtract` walks the frames of
a *segment* keeping each pixel's window sorted, so a frame costs a few
insertions per pixel and each sky band is read once per segment.

Graph: per detector array, one task per (segment, row band). A task reads
the band of the skies of the union of its frames' windows (~S + k frames)
and returns its S frames' sky-subtracted SCI/VAR/DQ bands (the sky itself
is never materialised per frame unless ``save_sky``). S and the band height
come from the worker memory budget (``ctx.workers()``: the cluster's
smallest worker, ``draconis.memory_limit`` when set, else the machine's
plan; at most :data:`TASK_MEMORY_CAP`):
memory per task does not grow with the sequence, and tasks per pass are
~(N / S) x bands.

The direct path remains: for modes the window does not compute
(wtmean, sigclip/varclip rejection), for frames whose SKYTABLE is not a
window of the time order, and where the direct path is cheaper (few
frames sharing few distinct sky lists: :func:`window_is_cheaper`).
The dask setting ``draconis.sky_combine`` ("auto", "window", "direct")
overrides the choice.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dask
import dask.array as da
import numpy as np
from dask._task_spec import Task, convert_legacy_task  # the data-producer mark (dask >= 2025.1, pinned)
from dask.core import flatten
from dask.highlevelgraph import HighLevelGraph
from dask.typing import Key

from ..errors import DescriptorError, ParameterError
from ..frame import Frame
from ..io._tasks import StoredPlane
from ..io.zarr import stored_source
from ..kernels import sky as ksky
from ..kernels.combine import CombineSpec
from ..kernels.sky_window import (
    WINDOW_OPERATIONS,
    WINDOW_REJECTIONS,
    SkySubtractSpec,
    SkyWindows,
    window_sky_subtract,
)
from .registry import Context
from .sky_pointing import frame_time

__all__ = ["WindowPlan", "plan_windows", "window_is_cheaper", "subtract_windowed", "supported_mode", "windowed"]

# Worker time per pixel of a band, in ns, of the two paths (measured with benchmarks/bench_sky.py on
# simulated full-size F2 frames, 2 workers; CPU time of both passes including levels, reads and writes):
# the window costs ~140 ns per frame at 2 skies, ~140 at 9 and ~450 at 56 (a step is linear in the window
# width); a direct stack ~310 ns at 2 skies and ~530 at 9 (the stack's own cube is made, moved between
# workers and read again by the subtraction, whatever its size), ~25 ns per sky and pixel at 50-70 skies.
#: The window: per frame (its step, query, subtraction and write), plus per sky in its window.
WINDOW_FRAME_NS = 125.0
WINDOW_SKY_NS = 6.0
#: The window: per sky entering a segment (read, inserted into the sorted window).
WINDOW_FILL_NS = 25.0
#: The direct combine: per distinct sky list (its stack and the subtraction of it), plus per sky in the list.
DIRECT_STACK_NS = 260.0
DIRECT_SKY_NS = 24.0
#: Fraction of a worker's memory one sky task may plan for (inputs, outputs and work buffers).
TASK_MEMORY_FRACTION = 0.3
#: Fraction a window task plans for, with its result held until the checkpoint writes have taken it: views
#: of the task's skies' planes. Measured at 156 full-size frames on 2 GiB workers, with the band tasks
#: queued by the scheduler (:func:`_queued`): 0.5 (one segment of 128-row bands) a 56 s pass, peak RSS
#: 1116 MiB a worker, nothing spilled; 0.38 (64-row bands) 62 s, 940 MiB. Before the queuing a worker ran
#: its band tasks ahead of the writes and held 4-6 results: 0.5 spilled ~177 writes a worker. With one band
#: per worker at a time (worker-saturation 1.0, draconis.cluster.SCHEDULER_SETTINGS): 52.8 s, 726 MiB, and
#: in the recipes no spill (at saturation 1.1 a recipe's worker held 2-3 results and spilled 0.4-2 GiB).
WINDOW_MEMORY_FRACTION = 0.5
#: Most bytes one window (or direct) sky task plans for, whatever the worker budget (skyCorrect's ``memory``
#: parameter is declared unsupported: both paths plan their bands from the workers' memory).
TASK_MEMORY_CAP = 1024 ** 3
#: Bytes per pixel held per sky of a task (SCI, VAR, DQ).
SKY_BYTES = 10
#: Bytes per pixel held per frame of a task beyond its skies': a frame that is a sky of its segment too
#: is read once, as a sky, and its results written over those planes; it keeps a DQ plane of its own when
#: the skies' DQ carries the object masks, and the walk's buffers hold its sky (SCI, VAR, DQ) for a few
#: rows. A frame that is not among the skies has its planes (10 bytes) on top; one whose sky is saved too,
#: the (S, 6) float32 output cube (24).
FRAME_BYTES = 4
OWN_PLANES_BYTES = 10
SAVED_SKY_BYTES = 24
#: Smallest band height tried when memory is short.
MIN_ROWS = 16
#: Fewest tasks per array wanted (when the image allows), per worker: each has a couple to run, while
#: every extra task costs a window fill and re-reads of skies.
TASKS_PER_WORKER = 2


def windowed(builder, frames: Sequence[Frame], lists, ctx: Context) -> dict[int, tuple[Frame, Frame | None]]:
    """The frames the sliding window sky-subtracts: ``{index: (frame, sky frame or None)}``.

    ``builder`` is skyCorrect's :class:`~draconis.primitives.sky.SkyBuilder`
    (parameters, per-sky preparation, frame assembly); ``lists`` the sky
    frames of each frame (None: no skies); ``ctx`` the run's context (its
    log, and the workers whose memory the tasks are planned for).

    Empty when the setting ``draconis.sky_combine`` is "direct", the
    parameters ask for a combine the window does not do, or (setting
    "auto") the direct combine is cheaper.
    """
    p, log = builder.p, ctx.log
    choice = str(dask.config.get("draconis.sky_combine", "auto"))
    if choice not in ("auto", "window", "direct"):
        raise ParameterError(f"skyCorrect: setting draconis.sky_combine={choice!r} is not auto, window or direct")
    if choice == "direct" or not any(lists):
        return {}
    reason = supported_mode(builder.combine)
    if reason:
        log.info("skyCorrect: %s: skies combined directly (the sliding window does %s with %s rejection)", reason,
                 "/".join(WINDOW_OPERATIONS), "/".join(WINDOW_REJECTIONS))
        return {}
    plan = plan_windows(frames, lists)
    if not plan.order:
        return {}
    first = frames[plan.order[0]][0]
    chunk_rows = first.plane("SCI").chunks[0][0]
    width = int((plan.hi - plan.lo).max())
    shared = _among_skies([frames[i] for i in plan.order], plan.skies)
    sky_bytes = SKY_BYTES + _given_bytes(builder, plan.skies)
    frame_bytes = FRAME_BYTES + (SAVED_SKY_BYTES if p.save_sky else 0) + (0 if shared else OWN_PLANES_BYTES)
    # the workers the run plans for (the cluster's, or the settings draconis.n_workers / memory_limit when set)
    n_workers, worker_memory = ctx.workers()
    rows, segment = band_and_segment(width, len(plan.order), chunk_rows, *first.shape,
                                     task_budget(worker_memory, WINDOW_MEMORY_FRACTION), frame_bytes,
                                     min_tasks=TASKS_PER_WORKER * n_workers, n_skies=len(plan.skies),
                                     shared=shared, sky_bytes=sky_bytes)
    if segment == 0:
        log.info("skyCorrect: windows of %d skies do not fit the memory budget of a task: skies combined directly",
                 width)
        return {}
    if choice == "auto" and not window_is_cheaper(plan, lists, segment):
        log.debug("skyCorrect: the direct combine is cheaper for these sky lists")
        return {}
    fitted = {k: builder.fit_rejection(k) for k in sorted(set(plan.counts.tolist()))}
    if plan.direct:
        log.info("skyCorrect: %d frame(s) combined directly (their skies are not a window of the time order): %s",
                 len(plan.direct), ", ".join(frames[i].filename for i in plan.direct[:5]))
    return subtract_windowed(builder, frames, plan, rows=rows, segment=segment,
                                        fitted=[fitted[k] for k in plan.counts.tolist()], log=log)


def supported_mode(combine: CombineSpec) -> str | None:
    """Why the sliding window cannot compute this combine (None: it can)."""
    if combine.operation not in WINDOW_OPERATIONS:
        return f"operation={combine.operation}"
    if combine.reject_method not in WINDOW_REJECTIONS:
        return f"reject_method={combine.reject_method}"
    return None


@dataclass
class WindowPlan:
    """Frames whose skies are windows of the time-ordered skies.

    ``skies`` are in time order; ``order`` lists indices of the planned
    frames (into the frame list given to :func:`plan_windows`) in walk
    order, with, aligned, their windows ``lo``/``hi`` over ``skies`` and
    their ``excluded`` frames. ``direct`` are the other frames' indices.
    """

    skies: list[Frame]
    order: list[int]
    lo: np.ndarray
    hi: np.ndarray
    excluded: list[np.ndarray]
    direct: list[int]

    @property
    def counts(self) -> np.ndarray:
        """Number of skies of each planned frame."""
        return self.hi - self.lo - np.array([e.size for e in self.excluded], dtype=np.int64)


def plan_windows(frames: Sequence[Frame], sky_lists: Sequence[Sequence[Frame] | None]) -> WindowPlan:
    """Each frame's skies as a window of the time-ordered union of all skies.

    A frame goes to ``direct`` when its list is missing, not in time order,
    or its skies differ in number of arrays or shape from it; every frame
    does when a sky has no time (ut_datetime).
    """
    skies: dict[str, Frame] = {}
    for lst in sky_lists:
        for s in lst or ():
            skies.setdefault(s.filename, s)

    def when(f: Frame) -> tuple[dt.datetime, str] | None:
        try:
            t = frame_time(f)
        except DescriptorError:
            return None
        return None if t is None else (t, f.filename)

    times: dict[str, tuple[dt.datetime, str]] = {}
    for name, sky in skies.items():
        t = when(sky)
        if t is None:  # no time order to walk: every frame direct
            return WindowPlan([], [], np.zeros(0, np.int64), np.zeros(0, np.int64), [], list(range(len(frames))))
        times[name] = t
    ordered = sorted(skies.values(), key=lambda f: times[f.filename])
    index = {s.filename: i for i, s in enumerate(ordered)}
    layouts: dict[int, tuple] = {}

    def layout(f: Frame) -> tuple:  # array shapes, looked up once per frame (each lookup goes through xarray)
        if id(f) not in layouts:
            layouts[id(f)] = tuple(ext.shape for ext in f.extensions)
        return layouts[id(f)]

    order, lo, hi, excluded, direct = [], [], [], [], []
    for i, (frame, lst) in enumerate(zip(frames, sky_lists)):
        if not lst or any(layout(s) != layout(frame) for s in lst):
            direct.append(i)
            continue
        idx = np.array([index[s.filename] for s in lst], dtype=np.int64)
        if np.any(np.diff(idx) <= 0):
            direct.append(i)
            continue
        window = np.arange(idx[0], idx[-1] + 1)
        order.append(i)
        lo.append(idx[0])
        hi.append(idx[-1] + 1)
        excluded.append(window[~np.isin(window, idx)])
    walk = sorted(range(len(order)), key=lambda j: (lo[j], hi[j], when(frames[order[j]])))
    return WindowPlan(ordered, [order[j] for j in walk], np.array([lo[j] for j in walk], dtype=np.int64),
                      np.array([hi[j] for j in walk], dtype=np.int64), [excluded[j] for j in walk], direct)


def window_is_cheaper(plan: WindowPlan, sky_lists: Sequence[Sequence[Frame] | None], segment: int) -> bool:
    """Whether walking the planned frames costs less than the direct combine of their distinct sky lists.

    Direct: one stack per distinct sky list (frames with identical lists
    share it), its cost growing with the list. Window: a step per frame
    growing with its window, plus the skies entering each segment of
    ``segment`` frames. The window wins whenever frames have lists of their
    own, even short ones (2 skies: 1.5x less time, measured); the direct
    combine wins when many frames share few lists (dedicated sky frames).
    """
    if not plan.order:
        return False
    distinct = {tuple(s.filename for s in sky_lists[i] or ()) for i in plan.order}
    direct = sum(DIRECT_STACK_NS + DIRECT_SKY_NS * len(key) for key in distinct)
    n = len(plan.order)
    union = 0
    for a in range(0, n, max(1, segment)):
        b = min(n, a + max(1, segment))
        union += int(plan.hi[a:b].max() - plan.lo[a:b].min())
    window = (WINDOW_FRAME_NS * n + WINDOW_SKY_NS * float((plan.hi - plan.lo).sum())
              + WINDOW_FILL_NS * union)
    return window < direct


def _among_skies(targets: Sequence[Frame], skies: Sequence[Frame]) -> bool:
    """Whether every target's stored SCI is a sky's too: its task reads it once, as a sky (see ``_filled``)."""
    def path(f: Frame) -> str | None:
        plane = stored_source(f[0].plane("SCI"))
        return None if plane is None else plane.path

    paths = {path(s) for s in skies} - {None}
    return all(path(t) in paths for t in targets)


def _given_bytes(builder, skies: Sequence[Frame]) -> int:
    """Bytes per pixel of a sky that its task is given as dependencies, the most of any sky.

    A plane the task cannot read itself (not a stored checkpoint, e.g. a mask still to be computed) is
    held twice: as the dependency's result and in the task's cube.
    """
    most = 0
    for sky in skies:
        sci, var, dq = sky_readers(builder, sky, 0, have_var=True)
        planes = sky[0].plane("SCI"), sky[0].plane("VAR"), sky[0].plane("DQ")
        most = max(most, sum(size for reader, plane, size in zip((sci, var, dq), planes, (4, 4, 2))
                             if reader is None and plane is not None))
    return most


def task_budget(worker_memory: int, fraction: float = TASK_MEMORY_FRACTION) -> int:
    """Bytes one sky task may use: ``fraction`` of a worker's ``worker_memory``, at most :data:`TASK_MEMORY_CAP`."""
    return int(min(fraction * worker_memory, TASK_MEMORY_CAP))


def band_and_segment(width: int, n_targets: int, chunk_rows: int, ny: int, nx: int, budget: int,
                     frame_bytes: int = FRAME_BYTES, min_tasks: int = 4,
                     n_skies: int | None = None, shared: bool = True,
                     sky_bytes: int = SKY_BYTES) -> tuple[int, int]:
    """Band height and frames per segment for ``n_targets`` frames with windows of ``width`` skies.

    A task holds ``sky_bytes`` per pixel of its segment's skies (``S + width`` of them, at
    most the ``n_skies`` of the whole sequence) and ``frame_bytes`` per
    pixel of each of its ``S`` frames. Its result is then held until it is
    written: the frames' planes, which are views of the skies' cube (the
    whole cube stays alive) when the frames are ``shared`` with the skies.
    Task and result must fit in ``budget`` bytes. Bands follow the input
    chunks (the chunk height or a divisor of it). Among the choices that
    fit and give at least ``min_tasks`` tasks (when the image allows), the
    one reading the sky chunks the fewest times is taken: each segment
    reads its skies, and a chunk is read once per band cut from it.
    ``(0, 0)`` when not even ``MIN_ROWS`` rows fit.
    """
    total = n_targets + width if n_skies is None else n_skies
    heights = {min(chunk_rows, ny)}
    rows = min(chunk_rows, ny)
    while rows // 2 >= MIN_ROWS:
        rows //= 2
        heights.add(rows)
    best, best_key = (0, 0), None
    for rows in sorted(heights, reverse=True):
        pix = rows * nx
        # the task's skies and frames, and its result until it is written: the frames' planes, which are
        # views of the skies' cube (held whole) when the frames are skies too, else their own cubes
        per_sky = sky_bytes + (SKY_BYTES if shared else 0)
        per_frame = frame_bytes + (0 if shared else OWN_PLANES_BYTES)
        fit = (budget - width * pix * per_sky) // (pix * (per_sky + per_frame))
        if n_targets and pix * (total * per_sky + n_targets * per_frame) <= budget:
            fit = n_targets  # the whole sequence's skies fit: one segment
        if fit < 1:
            continue
        bands = -(-ny // rows)
        segs = -(-n_targets // int(fit))
        while segs * bands < min_tasks and segs < n_targets:
            segs += 1
        size = -(-n_targets // segs)
        reads = segs * min(size + width, total) * max(chunk_rows, rows) / rows
        key = (segs * bands < min_tasks, reads)  # enough tasks first, then the fewest reads
        if best_key is None or key < best_key:
            best, best_key = (rows, size), key
    return best


def segments(plan: WindowPlan, size: int) -> list[slice]:
    """Consecutive groups of at most ``size`` planned frames, in walk order."""
    n = len(plan.order)
    return [slice(a, min(n, a + size)) for a in range(0, n, max(1, size))]


def subtract_windowed(builder, frames: Sequence[Frame], plan: WindowPlan, *, rows: int, segment: int,
                      fitted: Sequence[tuple[int, int]], log) -> dict[int, tuple[Frame, Frame | None]]:
    """The planned frames sky-subtracted through the window kernel: ``{index: (frame, sky frame or None)}``.

    ``fitted`` are the (nlow, nhigh) of each planned frame, in walk order.
    """
    p, combine = builder.p, builder.combine
    spec = SkySubtractSpec(
        operation=combine.operation, reject_method=combine.reject_method, apply_dq=combine.apply_dq,
        normalise="scale" if p.scale else ("zero" if p.zero else None),
        match="scale" if p.scale_sky else ("offset" if p.offset_sky else None),
        reset=p.reset_sky, with_sky=p.save_sky)
    groups = segments(plan, segment)
    parts: dict[int, list] = {i: [] for i in plan.order}
    for e in range(len(plan.skies[0])):
        for group, (cube, sky_has_var) in zip(groups, _window_graphs(builder, frames, plan, e, groups, rows, spec,
                                                                     fitted)):
            for s, i in enumerate(plan.order[group]):
                planes = tuple(_plane(cube, s, k) for k in range(3))
                sky = None
                if spec.with_sky:
                    sky = (_plane(cube, s, 3), _plane(cube, s, 4) if sky_has_var else None, _plane(cube, s, 5))
                parts[i].append((planes, sky))
    results = {i: builder.assemble(frames[i], parts[i]) for i in plan.order}
    log.info("skyCorrect: sliding-window sky for %d frame(s) (%.1f skies each on average; %d segment(s) "
             "x %d-row bands per array)", len(plan.order), float(plan.counts.mean()), len(groups), rows)
    return results


def _window_graphs(builder, frames, plan: WindowPlan, e: int, groups: list[slice], rows: int,
                   spec: SkySubtractSpec, fitted) -> list[tuple[da.Array, bool]]:
    """Per segment, array ``e``'s ``(S, 3 or 6, y, x)`` cube of sky-subtracted planes, and whether every sky has VAR.

    The cube has one task per row band. Planes read unchanged from a
    checkpoint (and skies' DQ whose object mask is a checkpoint too) are read
    by that task itself, just its rows: no task per input chunk, no rechunk
    into the band height, nothing moved between workers (at 156 full-size
    frames those tasks were ~18 % of a pass's worker time). Other planes are
    rechunked into the bands and given to the task as its dependencies.

    Each segment's cube depends only on its own skies and frames, so a
    frame's graph does not grow with the length of the sequence.
    """
    prepared = [builder.prepared(s, e) for s in plan.skies]
    ny, nx = prepared[0][0].shape
    bands = tuple(min(rows, ny - r) for r in range(0, ny, rows))
    have_var = all(q[1] is not None for q in prepared)

    def banded(a: da.Array | None, reader) -> da.Array | None:
        return None if a is None or reader is not None else a.rechunk((rows, nx))

    def key(a: da.Array | None, r: int) -> Key | None:  # row band r of a banded plane
        return None if a is None else (a.name, r, 0)

    readers_of = [sky_readers(builder, s, e, have_var) for s in plan.skies]
    skies = [(banded(q[0], rd[0]), banded(q[1], rd[1]) if have_var else None, banded(q[2], rd[2]), q[3])
             for q, rd in zip(prepared, readers_of)]
    out = []
    for group in groups:
        a, b = int(plan.lo[group].min()), int(plan.hi[group].max())
        targets, target_readers = [], []
        for i in plan.order[group]:
            ext = frames[i][e]
            planes = [ext.plane(n) for n in ("SCI", "VAR", "DQ")]
            stored = tuple(None if x is None else stored_source(x) for x in planes)
            targets.append((*(banded(x, rd) for x, rd in zip(planes, stored)), builder.frame_level(frames[i], ext)))
            target_readers.append(stored)
        deps = [x for q in skies[a:b] + targets for x in q if x is not None]
        windows = SkyWindows(plan.lo[group] - a, plan.hi[group] - a, tuple(x - a for x in plan.excluded[group]),
                             np.array([fitted[t][0] for t in range(group.start, group.stop)], dtype=np.int64),
                             np.array([fitted[t][1] for t in range(group.start, group.stop)], dtype=np.int64))
        token = dask.base.tokenize([d.name for d in deps], readers_of[a:b], target_readers, windows.lo, windows.hi,
                                   [x.tolist() for x in windows.excluded], windows.nlow, windows.nhigh, spec, rows)
        name = f"sky-window-{token}"
        window_skies = skies[a:b]
        sky_levels = [(q[3].name,) for q in window_skies]  # the levels are 0-d arrays: one key each
        tgt_levels = [(q[3].name,) for q in targets]
        # the segment's readers are one graph key, not copied into each band's task
        sources = f"sky-sources-{token}"  # not the window tasks' prefix (see _plane)
        # every key a band task may refer to: the segment's readers and its dependencies' blocks
        known = {sources} | {k for d in deps for k in flatten(d.__dask_keys__())}
        layer: dict[Key, Any] = {sources: (_BandReaders, [list(rd) for rd in readers_of[a:b]],
                                           [list(rd) for rd in target_readers])}
        y0 = 0
        for r, height in enumerate(bands):
            layer[(name, 0, 0, r, 0)] = _queued((name, 0, 0, r, 0), known, (
                _window_band, sources, y0, y0 + height,
                [key(q[0], r) for q in window_skies],
                [key(q[1], r) for q in window_skies] if have_var else None,
                [key(q[2], r) for q in window_skies],
                sky_levels,
                [key(q[0], r) for q in targets],
                [key(q[1], r) for q in targets],
                [key(q[2], r) for q in targets],
                tgt_levels,
                windows, spec))
            y0 += height
        graph = HighLevelGraph.from_collections(name, layer, dependencies=deps)
        chunks = ((group.stop - group.start,), (6 if spec.with_sky else 3,), bands, (nx,))
        out.append((da.Array(graph, name, chunks=chunks, dtype=np.float32), have_var))
    return out


def _queued(key: Key, known: set, task: tuple) -> Task:
    """The band task ``task`` marked as a data producer, which distributed queues like a root task.

    Why: a band task's result (its skies' planes, the targets' results
    written over them) is held until the checkpoint writes have taken every
    frame's band.  Distributed's heuristic does not queue a band task (it
    depends on every frame's level), so once the levels were in, every band
    task was sent to the workers, and dask's order ran them before the
    writes: at 156 full-size frames a 2 GiB worker held 4-6 band results
    and spilled.  Queued, a worker is sent a band task only while it has a
    free slot (distributed's ``worker-saturation``), and the writes of a
    finished band take its slots. With the saturation draconis' clusters
    run with (1.0, :data:`draconis.cluster.SCHEDULER_SETTINGS`) a worker
    holds one band at a time, made or waiting for its writes; with
    distributed's default (1.1, two slots for one thread) it was sent a
    second band while making one and ran it first, and held two or three.
    :func:`band_and_segment` plans for the task and one held result.

    The mark is part of the task itself (dask's task spec), so it survives
    the graph optimisation that drops layer annotations such as priorities.
    """
    legacy = convert_legacy_task(key, task, known)  # ``known``: which values in ``task`` are keys
    assert isinstance(legacy, Task)
    return Task(legacy.key, legacy.func, *legacy.args, _data_producer=True, **legacy.kwargs)


def sky_readers(builder, sky: Frame, e: int, have_var: bool) -> tuple[Any, Any, Any]:
    """What reads array ``e`` of a sky frame's SCI, VAR and stack-ready DQ inside a window task (None: a dependency).

    Mirrors :meth:`~draconis.primitives.sky.SkyBuilder.prepared`: the DQ the
    window combines is the stored DQ with, when objects are masked, the
    stored OBJMASK dilated and OR-ed in.
    """
    from .sky import OBJECT_DQ_BIT  # sky imports this module

    ext = sky[e]
    sci, var, dq, objmask = (ext.plane(n) for n in ("SCI", "VAR", "DQ", "OBJMASK"))
    dq_source = None if dq is None else stored_source(dq)
    dq_reader: Any
    if builder.p.mask_objects and objmask is not None:
        mask_source = stored_source(objmask)
        dq_reader = (None if mask_source is None or (dq is not None and dq_source is None) else
                     MaskedDQ(dq_source, mask_source, float(builder.p.dilation), OBJECT_DQ_BIT))
    else:
        dq_reader = dq_source
    return stored_source(sci), stored_source(var) if have_var else None, dq_reader


class MaskedDQ:
    """A sky's DQ with its object mask dilated and OR-ed in (``dq | dilated(mask) * bit``), read by row band.

    Gives what :meth:`~draconis.primitives.sky.SkyBuilder.prepared` computes
    lazily, from the stored planes: the mask's rows are read with the
    dilation's reach on either side (dilation sees zeros beyond the
    image edges, as ``dilate_lazy`` pads them), dilated and cut back to
    the band.
    """

    def __init__(self, dq: StoredPlane | None, mask: StoredPlane, radius: float, bit: int):
        self.dq, self.mask, self.radius, self.bit = dq, mask, radius, bit

    def __reduce__(self):
        return (MaskedDQ, (self.dq, self.mask, self.radius, self.bit))

    @property
    def shape(self) -> tuple[int, int]:
        """The plane's (ny, nx)."""
        return self.mask.shape

    dtype = np.dtype(np.uint16)

    def rows(self, y0: int, y1: int) -> np.ndarray:
        """The band's DQ rows ``y0:y1`` (uint16)."""
        out = np.empty((y1 - y0, self.mask.shape[1]), np.uint16)
        self.read_rows_into(y0, y1, out)
        return out

    def read_rows_into(self, y0: int, y1: int, out: np.ndarray) -> None:
        """Fill ``out`` (uint16, ``(y1 - y0, nx)``) with the band's DQ rows ``y0:y1``."""
        reach = ksky.dilation_reach(self.radius)
        ny, nx = self.mask.shape
        m0, m1 = max(0, y0 - reach), min(ny, y1 + reach)
        if self.dq is None:
            out[...] = 0
        else:
            self.dq.read_rows_into(y0, y1, out)
        ksky.or_object_mask(out, self.mask.rows(m0, m1), y0 - m0, self.radius, self.bit)


@dataclass(frozen=True)
class _BandReaders:
    """A segment's in-task readers: per sky and per target, (SCI, VAR, DQ) readers or None."""

    skies: list[list[Any]]
    targets: list[list[Any]]


class _Views(list):
    """Planes that are views of a window task's own cube (its skies'): the task may write over them."""


def _filled(readers: Sequence[Any], given: Sequence[np.ndarray | None], y0: int, y1: int, dtype,
            read: tuple[Sequence[Any], Any] | None = None) -> np.ndarray | list[np.ndarray | None]:
    """Rows ``y0:y1`` of every plane: read by its reader, else the given block; one ``(n, rows, nx)`` cube.

    One cube, not a block per plane: a large array is mapped in huge pages, where ~100 blocks of 1 MB
    were each written to memory the system had to map page by page (page faults were ~35 % of a sky
    pass's CPU time on a VM). A list as given when a plane is absent.

    ``read``: readers and the cube they already filled in this task. A frame is usually both a
    target and a sky of its segment. When every plane is one of those (the same stored plane), the
    result is :class:`_Views` of the cube: the targets' planes cost no memory of their own (copying
    them was ~8 % of a pass's CPU time). Otherwise a plane one of them reads is copied from there
    instead of read again.
    """
    if any(rd is None and g is None for rd, g in zip(readers, given)):
        return [given[j] if rd is None else rd.rows(y0, y1) for j, rd in enumerate(readers)]
    done: dict[str, int] = {}
    if read is not None and isinstance(read[1], np.ndarray) and read[1].dtype == dtype:
        done = {rd.path: i for i, rd in enumerate(read[0]) if isinstance(rd, StoredPlane)}
        if all(isinstance(rd, StoredPlane) and rd.path in done for rd in readers):
            return _Views(read[1][done[rd.path]] for rd in readers)
    width = next(rd.shape[1] if rd is not None else np.shape(g)[1] for rd, g in zip(readers, given))  # type: ignore[arg-type]
    cube = np.empty((len(readers), y1 - y0, width), dtype)
    for j, rd in enumerate(readers):
        if rd is None:
            cube[j] = given[j]
        elif isinstance(rd, StoredPlane) and rd.path in done:
            cube[j] = read[1][done[rd.path]]  # type: ignore[index]  # done is empty unless read is given
        elif np.dtype(rd.dtype) == cube.dtype:
            rd.read_rows_into(y0, y1, cube[j])
        else:
            cube[j] = rd.rows(y0, y1)
    return cube


def _window_band(sources: _BandReaders, y0: int, y1: int, sky_sci, sky_var, sky_dq, sky_levels, tgt_sci, tgt_var,
                 tgt_dq, tgt_levels, windows: SkyWindows,
                 spec: SkySubtractSpec) -> np.ndarray | tuple[np.ndarray, ...]:
    """One band task: read the planes the task reads itself, then :func:`window_sky_subtract`.

    Returns the targets' (SCI, VAR, DQ) cubes, or the kernel's float32 cube when they are not all
    present or the skies are kept too.
    """
    def column(rows: list[list[Any]], k: int, given, read=None):
        return _filled([rd[k] for rd in rows], given, y0, y1, np.uint16 if k == 2 else np.float32, read)

    skies = [column(sources.skies, 0, sky_sci), None if sky_var is None else column(sources.skies, 1, sky_var),
             column(sources.skies, 2, sky_dq)]
    t_sci, t_var, t_dq = (column(sources.targets, k, given, ([rd[k] for rd in sources.skies], skies[k]))
                          for k, given in enumerate((tgt_sci, tgt_var, tgt_dq)))
    # the targets' planes, when this task's own (its cubes, or views of the skies': see _filled), are
    # overwritten with their results, no new cube; window_sky_subtract reads a band's skies before it
    # writes its targets. Blocks given as dependencies are not this task's to write over.
    cubes = (t_sci, t_var, t_dq)
    in_place = all(isinstance(c, (np.ndarray, _Views)) for c in cubes) and not spec.with_sky
    result = window_sky_subtract(skies[0], skies[1], skies[2], sky_levels, t_sci, t_var, t_dq, tgt_levels, windows,
                                 spec, out=cubes if in_place else None)
    if in_place:
        return cubes
    assert result is not None
    return result


def _plane(cube: da.Array, s: int, k: int) -> da.Array:
    """Plane ``k`` of frame ``s`` of a segment's cube, one task per band (DQ planes, 2 and 5, as uint16).

    Written as its own small layer: slicing through dask (getitem, astype)
    cost more than the rest of the graph construction of a long sequence.
    Its keys have a name of their own ("sky-plane-..."): distributed
    estimates a task's duration from the tasks of the same name prefix, and
    when these millisecond copies shared the window tasks' prefix, a
    window task (seconds) looked too short to be worth stealing, so a
    segment whose tasks were all placed on one worker ran there alone
    while the other worker sat idle (156 full-size frames: ~45 s of a
    140 s pass).
    """
    dtype = np.uint16 if k in (2, 5) else np.float32
    name = f"sky-plane-{cube.name.removeprefix('sky-window-')}-{s}-{k}"
    layer: dict[Key, Any] = {(name, r, 0): (_pick, (cube.name, 0, 0, r, 0), s, k, dtype)
                             for r in range(len(cube.chunks[2]))}
    graph = HighLevelGraph.from_collections(name, layer, dependencies=[cube])  # type: ignore[list-item]
    return da.Array(graph, name, chunks=cube.chunks[2:], dtype=dtype)


def _pick(block: np.ndarray | tuple[np.ndarray, ...], s: int, k: int, dtype) -> np.ndarray:
    # a view of the band task's result (its SCI, VAR, DQ cubes, or one float32 cube), which a checkpoint
    # writes straight away; a copy of each plane was ~1/3 of the pass's page faults
    plane = block[k][s] if isinstance(block, tuple) else block[s, k]
    return plane if plane.dtype == dtype else plane.astype(dtype)
