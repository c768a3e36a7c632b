"""The run record: where a reduction's time and memory went, and what each frame went through.

One :class:`RunRecord` per :meth:`draconis.Reduce.runr`.  The runner makes it
current (:func:`recording`); three small hooks fill it:

- :func:`step` around every recipe step (``RunContext.run``): name, UTC start
  and end, wall time, frames in and out, warnings logged, parameters that
  differ from the instrument's defaults, and the facts the step left in the
  frames' headers and catalogues (:mod:`draconis.framefacts`);
- :func:`stage` around every pixel computation (:func:`draconis.progress.compute`);
- :func:`note_calibration` when a calibration is opened.

:class:`MemoryMonitor` samples the resident memory of every worker (or of this
process with the in-process schedulers).  :meth:`RunRecord.summary_table` is
the table printed and logged at the end of every reduce.

Without a current record every hook does nothing, so primitives and
:class:`~draconis.reduce.RunContext` work the same outside a reduce.
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import datetime as dt
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

log = logging.getLogger("draconis")

_CURRENT: contextvars.ContextVar[RunRecord | None] = contextvars.ContextVar("draconis_record", default=None)


def utcnow() -> dt.datetime:
    """The current UTC time (timezone-aware)."""
    return dt.datetime.now(dt.UTC)


@dataclasses.dataclass
class StepRecord:
    """One recipe step (a primitive called by the recipe)."""

    name: str
    start: dt.datetime
    end: dt.datetime | None = None
    seconds: float = 0.0
    frames_in: int = 0
    frames_out: int = 0
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    warnings: list[str] = dataclasses.field(default_factory=list)
    failed: bool = False


@dataclasses.dataclass
class StageRecord:
    """One pixel computation (a checkpoint, a detection pass, the output write)."""

    label: str
    step: str | None
    seconds: float
    items: int
    #: bytes the workers wrote to their spill directories during the computation (0 without a cluster)
    spilled: int = 0


@dataclasses.dataclass
class CalibrationRecord:
    """A calibration the run used."""

    caltype: str
    path: str
    md5: str


class RunRecord:
    """What one reduction did, how long each part took and how much memory it used.

    Attributes
    ----------
    recipe, instrument, command, version
        What ran.
    inputs : list of str
        Input files.
    steps : list of StepRecord
        Recipe steps in order.
    stages : list of StageRecord
        Pixel computations in order (each inside a step, or the final write).
    memory_peak : dict
        Peak resident memory (bytes) per worker (``"this process"`` without a cluster).
    spilled : dict
        Bytes each worker wrote to its spill directory during the run (empty
        without a cluster): data the workers had to move to disk because
        their memory filled, which a run whose tasks plan their memory
        should not need.
    workers : dict
        Worker name -> ``{"threads": n, "memory_limit": bytes}``; empty without a cluster.
    scheduler : str
        ``synchronous``, ``threads``, ``LocalCluster`` or the scheduler address.
    checkpoint_bytes : int or None
        Bytes the run's checkpoints wrote.
    calibrations : list of CalibrationRecord
    frames : dict
        Raw stem -> facts (:mod:`draconis.framefacts`).
    outputs : list of str
    seconds : float
        Wall time of the whole run.
    """

    def __init__(self, *, recipe: str = "", instrument: str | None = None, inputs: Sequence[str] = (),
                 command: str | None = None, parameters: Sequence[tuple[str, Any]] = ()):
        from . import __version__

        self.recipe = recipe
        self.instrument = instrument
        self.inputs = [os.fspath(p) for p in inputs]
        self.command = command
        self.user_parameters = [(str(k), v) for k, v in parameters]
        self.version = __version__
        self.start = utcnow()
        self.end: dt.datetime | None = None
        self._t0 = time.monotonic()
        self.seconds = 0.0
        self.steps: list[StepRecord] = []
        self.stages: list[StageRecord] = []
        self.memory_peak: dict[str, int] = {}
        self.spilled: dict[str, int] = {}
        self.workers: dict[str, dict[str, Any]] = {}
        self.scheduler = "synchronous"
        self.checkpoint_bytes: int | None = None
        self.calibrations: list[CalibrationRecord] = []
        self.frames: dict[str, dict[str, Any]] = {}
        self.outputs: list[str] = []
        self.success = False
        self.stack_inputs: list[str] = []
        self.stacked: list[str] | None = None
        self.reference: str | None = None
        #: raw stem -> [(aligned celestial WCS, shape) per array], for the report's depth map
        self.footprints: dict[str, list] = {}
        #: what the report measured on the stack (set by draconis.report)
        self.report_stack: dict[str, Any] | None = None
        self._open: list[StepRecord] = []

    # -- filled by the hooks ----------------------------------------------------
    @property
    def current_step(self) -> str | None:
        """The primitive running now, or None."""
        return self._open[-1].name if self._open else None

    def add_calibration(self, caltype: str, path: str) -> None:
        """Record a calibration used (once per type and file)."""
        path = os.path.abspath(path)
        if any(c.path == path and c.caltype == caltype for c in self.calibrations):
            return
        self.calibrations.append(CalibrationRecord(caltype, path, file_md5(path)))

    def finish(self, outputs: Sequence[str], *, success: bool) -> None:
        """Close the record: outputs, success, wall time."""
        self.outputs = list(outputs)
        self.success = success
        self.end = utcnow()
        self.seconds = time.monotonic() - self._t0

    # -- derived figures ----------------------------------------------------------
    @property
    def n_frames(self) -> int:
        """How many input frames the run had."""
        return len(self.inputs)

    @property
    def frames_per_second(self) -> float:
        """Input frames per second of wall time (NaN before the run ends)."""
        return self.n_frames / self.seconds if self.seconds > 0 else float("nan")

    def primitive_times(self) -> list[dict[str, Any]]:
        """Per primitive name, in order of first call: calls, frames in/out of the first call, seconds."""
        rows: dict[str, dict[str, Any]] = {}
        for s in self.steps:
            row = rows.setdefault(s.name, {"name": s.name, "calls": 0, "frames_in": s.frames_in,
                                           "frames_out": s.frames_out, "seconds": 0.0})
            row["calls"] += 1
            row["seconds"] += s.seconds
        return list(rows.values())

    def stage_times(self) -> list[dict[str, Any]]:
        """Per (step, stage label): runs and seconds, in order of first run."""
        rows: dict[tuple, dict[str, Any]] = {}
        for s in self.stages:
            row = rows.setdefault((s.step, s.label), {"step": s.step, "label": s.label, "runs": 0, "seconds": 0.0,
                                                      "spilled": 0})
            row["runs"] += 1
            row["seconds"] += s.seconds
            row["spilled"] += s.spilled
        return list(rows.values())

    def summary_table(self) -> str:
        """The table printed at the end of a reduce: time per primitive and stage, frames/s, memory, bytes."""
        return format_summary(self)

    def to_dict(self) -> dict[str, Any]:
        """Everything in the record as JSON-friendly values."""
        def conv(obj):
            if isinstance(obj, dt.datetime):
                return obj.isoformat()
            if dataclasses.is_dataclass(obj):
                return {k: conv(v) for k, v in dataclasses.asdict(obj).items()}
            if isinstance(obj, dict):
                return {str(k): conv(v) for k, v in obj.items()}
            if isinstance(obj, (list, tuple)):
                return [conv(v) for v in obj]
            if isinstance(obj, (str, int, float, bool)) or obj is None:
                return obj
            return str(obj)

        keys = ("recipe", "instrument", "inputs", "command", "user_parameters", "version", "start", "end",
                "seconds", "steps", "stages", "memory_peak", "spilled", "workers", "scheduler", "checkpoint_bytes",
                "calibrations", "frames", "outputs", "success")
        out = {k: conv(getattr(self, k)) for k in keys}
        out["frames_per_second"] = self.frames_per_second
        return out


def human_bytes(n: float | None) -> str:
    """``1.5 GiB``-style size ('-' for None)."""
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def format_summary(record: RunRecord) -> str:
    """The end-of-run table: time per primitive (stages indented below it), frames/s, memory, checkpoints."""
    total = record.seconds or sum(s.seconds for s in record.steps) or 1.0
    width = max([len(r["name"]) for r in record.primitive_times()] +
                [len(s["label"]) + 2 for s in record.stage_times()] + [20])
    lines = [f"Summary: {record.recipe} on {record.n_frames} frame(s) in {record.seconds:.1f} s "
             f"({record.frames_per_second:.2f} frames/s)",
             f"  {'primitive / compute stage':<{width}}  calls  frames in>out  time (s)      %"]
    stages = record.stage_times()
    for row in record.primitive_times():
        lines.append(f"  {row['name']:<{width}}  {row['calls']:>5}  {row['frames_in']:>6}>{row['frames_out']:<6}  "
                     f"{row['seconds']:>8.2f}  {100 * row['seconds'] / total:>5.1f}")
        for st in (s for s in stages if s["step"] == row["name"]):
            lines.append(f"    {st['label']:<{width - 2}}  {st['runs']:>5}  {'':>13}  {st['seconds']:>8.2f}  "
                         f"{100 * st['seconds'] / total:>5.1f}{_spill_note(st['spilled'])}")
    for st in (s for s in stages if s["step"] is None):
        lines.append(f"  {st['label']:<{width}}  {st['runs']:>5}  {'':>13}  {st['seconds']:>8.2f}  "
                     f"{100 * st['seconds'] / total:>5.1f}{_spill_note(st['spilled'])}")
    peaks = ", ".join(f"{_short_worker(k)} {human_bytes(v)}" for k, v in sorted(record.memory_peak.items()))
    lines.append(f"  peak memory per worker: {peaks or '-'}")
    if record.spilled:
        spilled = ", ".join(f"{_short_worker(k)} {human_bytes(v)}" for k, v in sorted(record.spilled.items()))
        lines.append(f"  spilled to disk per worker: {spilled if any(record.spilled.values()) else 'none'}")
    per_frame = (f" ({human_bytes(record.checkpoint_bytes / record.n_frames)} per input frame)"
                 if record.checkpoint_bytes and record.n_frames else "")
    lines.append(f"  checkpoints written: {human_bytes(record.checkpoint_bytes)}{per_frame}")
    return "\n".join(lines)


def _spill_note(spilled: int) -> str:
    return f"  (spilled {human_bytes(spilled)})" if spilled else ""


def _short_worker(address: str) -> str:
    return address.rsplit("/", 1)[-1]


def file_md5(path: str) -> str:
    """MD5 of a file (as DRAGONS and the calibration database record), '' if unreadable."""
    from .provenance import md5sum  # one cached checksum per file and version: provenance hashes it too

    try:
        return md5sum(path)
    except OSError:
        return ""


# -- the current record and its hooks ---------------------------------------------
def current() -> RunRecord | None:
    """The record of the reduction running in this context, or None."""
    return _CURRENT.get()


@contextlib.contextmanager
def recording(record: RunRecord) -> Iterator[RunRecord]:
    """Make ``record`` current for the hooks."""
    token = _CURRENT.set(record)
    try:
        yield record
    finally:
        _CURRENT.reset(token)


class _WarningCatcher(logging.Handler):
    """Keeps the warnings logged while a step runs (they say what went wrong for which frame)."""

    def __init__(self, sink: list[str]):
        super().__init__(logging.WARNING)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.sink.append(record.getMessage())
        except Exception:  # noqa: BLE001 - a bad log call must not break the run
            pass


@contextlib.contextmanager
def step(name: str, frames: Sequence[Any], *, spec: Any = None, params: Any = None,
         ctx: Any = None) -> Iterator[StepRecord | None]:
    """Record one recipe step; the caller sets ``.frames_out``-producing output via :func:`step_done`.

    Parameters
    ----------
    name
        Primitive name.
    frames
        Its input frames.
    spec, params, ctx
        The primitive's declaration, resolved parameters and run context (for
        the parameters that differ from the instrument's defaults).
    """
    record = current()
    if record is None:
        yield None
        return
    from . import logutils

    logutils.step_started()
    entry = StepRecord(name=name, start=utcnow(), frames_in=len(frames))
    entry.params = _non_default(spec, params, ctx)
    catcher = _WarningCatcher(entry.warnings)
    logger = logging.getLogger("draconis")
    logger.addHandler(catcher)
    record._open.append(entry)
    t0 = time.monotonic()
    try:
        yield entry
    except BaseException:
        entry.failed = True
        raise
    finally:
        entry.seconds = time.monotonic() - t0
        entry.end = utcnow()
        record._open.pop()
        logger.removeHandler(catcher)
        record.steps.append(entry)
        logutils.step_ended()


def step_done(entry: StepRecord | None, frames_in: Sequence[Any], frames_out: Sequence[Any]) -> None:
    """Note a step's output frames and the facts they carry (no pixel is read)."""
    record = current()
    if entry is None or record is None:
        return
    entry.frames_out = len(frames_out)
    from .framefacts import observe

    try:
        observe(record, entry, list(frames_in), list(frames_out))
    except Exception as err:  # noqa: BLE001 - the record must never break a reduction
        log.debug("run record: could not read the facts of %s (%s)", entry.name, err)


@contextlib.contextmanager
def stage(label: str, items: int = 0) -> Iterator[None]:
    """Time one pixel computation of the current record (no-op without one)."""
    record = current()
    t0 = time.monotonic()
    before = spilled_bytes() if record is not None else None
    try:
        yield
    finally:
        if record is not None:
            after = spilled_bytes() if before is not None else None
            spilled = sum(_spilled_since(before, after).values())
            record.stages.append(StageRecord(label, record.current_step, time.monotonic() - t0, items, spilled))
            if spilled:  # in the log at the time, so a stage run several times says which run spilled
                log.info("%s: the workers spilled %s to disk (their memory filled)", label, human_bytes(spilled))


def note_calibration(caltype: str, path: str | None) -> None:
    """Record that the run uses calibration ``path`` as ``caltype``."""
    record = current()
    if record is not None and path:
        record.add_calibration(caltype, os.fspath(path))


def _non_default(spec: Any, params: Any, ctx: Any) -> dict[str, Any]:
    if spec is None or params is None:
        return {}
    try:
        instrument, kind = (ctx.instrument, ctx.kind) if ctx is not None else (None, None)
        defaults = spec.resolve(instrument, kind, {}, {})
        return {k: v for k, v in params.items() if k not in defaults or defaults[k] != v}
    except Exception:  # noqa: BLE001 - informative only
        return {}


# -- memory ------------------------------------------------------------------------
def _worker_spilled_bytes(dask_worker=None) -> int:
    """Runs on a worker: the bytes it has written to its spill directory since it started."""
    metrics = getattr(getattr(dask_worker, "data", None), "cumulative_metrics", None)
    return int(metrics.get(("disk-write", "bytes"), 0)) if metrics is not None else 0


def spilled_bytes(client: Any = None) -> dict[str, int] | None:
    """Bytes each worker of ``client`` (default: the active one) has spilled since it started; None without one.

    One round trip to the workers (distributed's own counter, no task added).
    """
    if client is None:
        from .cluster import active_client

        client = active_client()
    if client is None:
        return None
    try:
        return {k: int(v) for k, v in client.run(_worker_spilled_bytes).items()}
    except Exception as err:  # noqa: BLE001 - a lost worker must not break the run
        log.debug("spill count failed: %s", err)
        return None


def _spilled_since(before: dict[str, int] | None, after: dict[str, int] | None) -> dict[str, int]:
    """Bytes each worker spilled between two :func:`spilled_bytes` readings ({} when either failed)."""
    # a worker that joined in between counts from 0; one restarted in between has a smaller counter
    if before is None or after is None:
        return {}
    return {k: max(0, v - before.get(k, 0)) for k, v in after.items()}


def _worker_peak(dask_worker=None, since: float = 0.0) -> int:
    """Runs on a worker: its peak RSS since ``since`` from distributed's system monitor."""
    monitor = getattr(dask_worker, "monitor", None)
    if monitor is None:
        import psutil

        return int(psutil.Process().memory_info().rss)
    mem, times = list(monitor.quantities["memory"]), list(monitor.quantities["time"])
    values = [m for m, t in zip(mem, times) if t >= since]
    if not values:
        values = mem[-1:]
    import psutil

    return int(max(values + [psutil.Process().memory_info().rss]))


class MemoryMonitor:
    """Peak resident memory per worker during a run.

    With a distributed client the workers' own system monitors (sampled every
    0.5 s by distributed) are read every ``interval`` seconds and at the end,
    so no task is added to the graph; with the in-process schedulers this
    process's RSS is sampled by a background thread.
    """

    def __init__(self, client: Any = None, *, interval: float | None = None):
        self.client = client
        self.interval = interval if interval is not None else (30.0 if client is not None else 0.2)
        self.peaks: dict[str, int] = {}
        self._since = time.time()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> MemoryMonitor:
        self._sample()
        self._thread = threading.Thread(target=self._loop, name="draconis-memory", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._sample()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self) -> None:
        try:
            if self.client is None:
                import psutil

                found = {"this process": int(psutil.Process().memory_info().rss)}
            else:
                found = self.client.run(_worker_peak, since=self._since)
        except Exception as err:  # noqa: BLE001 - a lost worker must not break the run
            log.debug("memory sample failed: %s", err)
            return
        for name, value in found.items():
            self.peaks[name] = max(self.peaks.get(name, 0), int(value))


def describe_workers(client: Any) -> tuple[str, dict[str, dict[str, Any]]]:
    """The scheduler's address and each worker's threads and memory limit.

    Every worker (``n_workers=-1``): some distributed releases of 2025-2026
    list only the first five by default.
    """
    try:
        info = client.scheduler_info(n_workers=-1)
    except Exception:  # noqa: BLE001
        return str(getattr(client, "scheduler", "")), {}
    workers = {addr: {"threads": w.get("nthreads"), "memory_limit": w.get("memory_limit")}
               for addr, w in info.get("workers", {}).items()}
    return str(info.get("address", "")), workers


@contextlib.contextmanager
def watching(record: RunRecord, ctx: Any, scheduler: str | None) -> Iterator[None]:
    """Inside the runner's execution context: scheduler, workers, memory and checkpoint bytes of the run."""
    from .cluster import active_client, scheduler_address

    client = active_client()
    requested = scheduler_address(scheduler)
    if client is not None:
        address, record.workers = describe_workers(client)
        record.scheduler = address if requested else f"LocalCluster at {address}"
    else:
        record.scheduler = requested or "synchronous"
    monitor = MemoryMonitor(client)
    spilled_at_start = spilled_bytes(client) if client is not None else None
    try:
        with monitor:
            yield
    finally:
        record.memory_peak = dict(monitor.peaks)
        if spilled_at_start is not None:
            record.spilled = _spilled_since(spilled_at_start, spilled_bytes(client))
        record.checkpoint_bytes = checkpoint_bytes(ctx.checkpoints if ctx is not None else None)


def checkpoint_bytes(checkpoints: Any) -> int | None:
    """Bytes written by a run's checkpoints: the count they keep, else what is on disk under their root."""
    if checkpoints is None:
        return None
    counted = getattr(checkpoints, "bytes_written", None)
    if counted is not None:
        return int(counted)
    root = getattr(checkpoints, "root", None)
    if not root or not os.path.isdir(root):
        return 0
    total = 0
    for folder, _dirs, files in os.walk(root):
        if os.path.basename(folder) == "backups":
            continue
        for name in files:
            with contextlib.suppress(OSError):
                total += os.path.getsize(os.path.join(folder, name))
    return total
