"""Runs that resume: a snapshot of every stream at recipe-step boundaries, and where a resumed run continues.

After a recipe step that wrote pixels (a checkpoint, or output files) the
runner takes a **snapshot** under the run directory, ``step-NNN/``:

* every plane of every stream that is read straight from storage (a zarr
  checkpoint, or an input file) is referenced; any other plane (an object
  mask, a stack not yet written) is written to ``planes.zarr`` in one
  computation, and the run continues from that copy (same values, same
  chunks: an uninterrupted run and a resumed one compute the same graph);
* the streams (headers, catalogues, and the Dask arrays that read the
  planes) are pickled to ``streams.pkl``;
* ``manifest.json``, written last (its presence marks the snapshot
  complete), records what the run was: the inputs' SHA-256 checksums, the
  recipe and its calls, the user's parameters, each step's resolved
  parameters, the calibrations used so far (with checksums), the outputs
  written so far (with checksums) and the versions of draconis and its
  libraries, plus a key chaining all of it step by step.

A checkpoint written inside a primitive (detectSources, stackFrames...) is
indexed the same way, by the chain key of its step, so a resumed run reuses
it instead of computing it again.

``Reduce(resume=True)`` (``--resume``) finds the most recent unfinished run of
the same inputs and recipe in the work directory, checks that nothing changed
(refusing, with what changed, otherwise), restores the streams of its last
complete snapshot and runs the recipe's remaining steps.  With ``"auto"``
(``--resume=auto``) a change is not an error: the run continues from the last
snapshot taken before the first step whose inputs changed, or from the raw
files.  A snapshot is used only if every store it reads is still there.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from .. import __version__
from ..errors import DraconisError
from ..frame import Frame
from ..io import is_url
from ..primitives.registry import get_primitive
from ..recipes.caller import PrimitiveCaller
from .context import RunContext
from .resume_point import (
    MANIFEST,
    ResumeError,
    ResumePoint,
    _complete_snapshots,
    find_resume_point,
)
from .rundir import RunDir, filesystem, join, read_text, remove_tree, write_text
from .snapshot import (
    STREAMS,
    _dump,
    _fetch_file,
    _freeze,
    _load,
    plane_ref,
    record_streams,
    restore_streams,
    snapshot_bytes,
)

log = logging.getLogger("draconis")

CHECKPOINT_INDEX = "checkpoints.json"
_STREAM_ARGS = ("stream", "instream", "outstream")


# -- checksums and canonical values --------------------------------------------
def sha256_file(path: str, *, block: int = 1 << 22) -> str:
    """The SHA-256 of a file's content (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            digest.update(chunk)
    return digest.hexdigest()


class Checksums:
    """SHA-256 of files, computed in background threads while the run works, cached by path."""

    def __init__(self, threads: int = 2):
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="draconis-sha256")
        self._futures: dict[str, Future] = {}

    def start(self, paths: Iterable[str]) -> None:
        """Start checksumming ``paths`` (those not started yet)."""
        for path in paths:
            if path and path not in self._futures:
                self._futures[path] = self._pool.submit(sha256_file, path)

    def get(self, path: str) -> str | None:
        """The checksum of ``path`` (waiting for it), None if it cannot be read."""
        self.start([path])
        try:
            return self._futures[path].result()
        except OSError:
            return None

    def close(self) -> None:
        """Stop the threads (checksums still running are abandoned)."""
        self._pool.shutdown(wait=False, cancel_futures=True)


def versions() -> dict[str, str]:
    """Versions of draconis and of the libraries whose objects the snapshots pickle."""
    import importlib.metadata as md

    out = {"draconis": __version__}
    for name in ("dask", "distributed", "xarray", "zarr", "astropy", "numpy"):
        with contextlib.suppress(md.PackageNotFoundError):
            out[name] = md.version(name)
    return out


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def canonical(value: Any) -> Any:
    """``value`` as JSON-able data that is the same in every process (for manifests and keys)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, Mapping):
        return {str(k): canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(canonical(v) for v in value)
    if isinstance(value, Frame):
        return f"Frame({value.path or value.filename})"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"type": type(value).__name__, **canonical(dataclasses.asdict(value))}
    return _ADDRESS.sub("", repr(value))


def digest(data: Any) -> str:
    """SHA-256 of ``data`` (JSON-able, canonical order)."""
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


# -- the recipe's steps --------------------------------------------------------
@dataclasses.dataclass
class StepPlan:
    """The recipe's calls, each with its resolved parameters, and the chain of keys over them."""

    identity: dict[str, Any]
    steps: list[dict[str, Any]]
    chain: list[str]  # chain[k]: key after step k (chain[0]: the identity alone)

    @classmethod
    def build(cls, identity: dict[str, Any], calls: Sequence[Any], ctx: RunContext) -> StepPlan:
        """The plan of ``calls`` (recorded recipe calls), parameters resolved by ``ctx``."""
        steps = []
        for call in calls:
            spec = get_primitive(call.name)
            args = {k: v for k, v in call.arguments.items() if k not in _STREAM_ARGS}
            params = ctx.resolve(spec, args, warn=False)
            steps.append({"name": call.name, "arguments": canonical(call.arguments), "params": canonical(dict(params))})
        chain = [digest(identity)]
        for step in steps:
            chain.append(digest([chain[-1], step]))
        return cls(identity, steps, chain)


# -- the context that snapshots and restores ------------------------------------------
class ResumableContext(RunContext):
    """The run context of a :class:`~draconis.reduce.Reduce` run: snapshots, restores, indexed checkpoints.

    Takes the arguments of :class:`RunContext`, plus ``checksums`` (the
    run's file checksums); :meth:`attach` gives it its run directory before
    the recipe runs.
    """

    ledger: Any  # an OutputLedger, then (attach) a RecordedLedger wrapping it

    def __init__(self, *args: Any, checksums: Checksums, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.run_dir: RunDir | None = None
        self.checksums = checksums
        self.step_index = 0
        self.step_name: str | None = None
        self.step_key: str | None = None
        self.checkpoints_written = 0
        self.snapshots_taken = 0
        self.used_calibrations: list[dict[str, Any]] = []
        self.input_paths = {os.path.realpath(f.path) for f in self.inputs if f.path}
        self._ckpt_ordinal = 0
        self._reusable: dict[str, dict] = {}  # checkpoints of the runs resumed, by key
        self._index: dict[str, dict] = {}  # this run's checkpoints: key -> step, label, frames' pickle, complete
        self._pinned: dict[str, list[Frame]] = {}
        if is_url(self.workdir):
            # backups of replaced outputs are local files: next to the outputs
            self.ledger.backup_dir = None

    @property
    def run_location(self) -> str:
        """Where this run's checkpoints go: ``<workdir>/run-<id>``."""
        return join(self.workdir, f"run-{self.run_id}")

    def attach(self, run: RunDir) -> None:
        """Record outputs in ``run``'s record from now on, and snapshot under it."""
        self.run_dir = run
        self.ledger = RecordedLedger(self.ledger, run, self)

    def close(self, success: bool = True) -> None:
        """Commit or roll back outputs; remove the run directory unless it can resume or checkpoints are kept."""
        if success:
            self.ledger.commit()
        else:
            self.ledger.rollback()
        resumable = not success and (self.snapshots_taken or self.checkpoints_written)
        if resumable or self.checkpoints.keep:
            if success and self.run_dir is not None:
                self.run_dir.update(state="done")
                log.info("Checkpoints kept in %s", self.run_location)
            return
        if self.run_dir is not None:
            self.run_dir.remove()
        else:
            remove_tree(self.run_location)

    # -- steps -------------------------------------------------------------
    def begin_step(self, index: int, name: str, key: str) -> None:
        """Recipe step ``index`` (``name``, chain key ``key``) starts."""
        self.step_index, self.step_name, self.step_key = index, name, key
        self._ckpt_ordinal = 0

    # -- calibrations ------------------------------------------------------
    def calibration(self, caltype: str, frame: Frame) -> Frame | None:
        """The calibration :meth:`RunContext.calibration` gives, recorded for the manifests."""
        cal = super().calibration(caltype, frame)
        if cal is not None and cal.path:
            path = os.path.realpath(cal.path)
            if not any(c["caltype"] == caltype and c["path"] == path for c in self.used_calibrations):
                self.checksums.start([path])
                self.used_calibrations.append({"caltype": caltype, "path": path, "step": self.step_index,
                                               "source": "user" if self.ucals.get(caltype) is not None else "caldb",
                                               "frame": frame.orig_filename})
        return cal

    # -- checkpoints ---------------------------------------------------------
    def checkpoint(self, frames: Sequence[Frame], label: str = "flushPixels", **options: Any) -> list[Frame]:
        """Checkpoint ``frames`` (:meth:`RunContext.checkpoint`), or reuse the resumed run's same checkpoint."""
        self._ckpt_ordinal += 1
        key = digest([self.step_key, label, self._ckpt_ordinal])
        reused = self._reuse(key, len(frames))
        if reused is not None:
            log.info("Reusing the %s checkpoint of the interrupted run (%d frame(s))", label, len(reused))
            self.checkpoints_written += 1  # the step has its checkpoint: a snapshot follows, as in the first run
            return reused
        # the index says which checkpoints are complete: one interrupted while written is listed as not
        self._index[key] = {"step": self.step_index, "label": label, "frames": None, "complete": False}
        self._save_index()
        out = super().checkpoint(frames, label, **options)
        self.checkpoints_written += 1
        location = join(self.run_location, f"checkpoint-{self.step_index:03d}-{self._ckpt_ordinal}.pkl")
        # the frames as records: where each plane is stored (nothing computed, nothing written here)
        _dump(location, record_streams({"main": out}, location.removesuffix(".pkl"), self.input_paths, label))
        self._index[key].update(frames=location, complete=True)
        self._save_index()
        return out

    def _save_index(self) -> None:
        write_text(join(self.run_location, CHECKPOINT_INDEX), json.dumps(self._index, indent=1))

    def _reuse(self, key: str, count: int) -> list[Frame] | None:
        entry = self._reusable.get(key)
        if not entry or not entry.get("complete"):
            log.debug("No checkpoint to reuse for %s (%d known)", key[:12], len(self._reusable))
            return None
        location = entry["frames"]
        try:
            frames = restore_streams(_load(location))["main"]
        except Exception as err:  # noqa: BLE001 - a store deleted (nothing read it) or damaged: compute it again
            log.debug("Not reusing the checkpoint %s: %s", location, err)
            return None
        return frames if len(frames) == count else None

    def offer_checkpoints(self, run: RunDir) -> None:
        """Let this run reuse the indexed checkpoints of ``run`` (the run it resumes)."""
        text = read_text(join(run.location, CHECKPOINT_INDEX))
        if text:
            with contextlib.suppress(ValueError):
                for key, entry in json.loads(text).items():
                    # the newest run is offered first; an older run's entry never replaces a complete one
                    if entry.get("complete") and key not in self._reusable:
                        self._reusable[key] = entry

    # -- snapshots -------------------------------------------------------------
    def pixels_stored(self) -> bool:
        """Whether every SCI, VAR and DQ plane of every stream is read straight from storage."""
        return all(plane_ref(ext.plane(p), self.input_paths) is not None for name in self.stream_names
                   for f in self.stream(name) for ext in f.extensions for p in ("SCI", "VAR", "DQ")
                   if ext.plane(p) is not None)

    def snapshot(self, plan: StepPlan, index: int) -> None:
        """Snapshot every stream after step ``index``."""
        start = time.perf_counter()
        location = join(self.run_location, f"step-{index:03d}")
        fs, path = filesystem(location)
        fs.makedirs(path, exist_ok=True)
        streams = {name: self.stream(name) for name in self.stream_names}
        disk = {(name, i): self.path_of(f) for name, frames in streams.items() for i, f in enumerate(frames)
                if self.is_on_disk(f)}
        label = f"checkpoint after {plan.steps[index - 1]['name']}"
        records = record_streams(streams, location, self.input_paths, label)
        _dump(join(location, STREAMS), {"streams": records, "pending": list(self.pending_calibrations),
                                         "on_disk": disk})
        manifest = self._manifest(plan, index)
        manifest["outputs"] = self._freeze_outputs(location)
        write_text(join(location, MANIFEST), json.dumps(manifest, indent=1))
        # the run goes on from what a resumed run would restore (same stores, same arrays)
        self._adopt_streams(restore_streams(records), disk)
        self.snapshots_taken += 1
        self.checkpoints.note(label, location, sum(len(f) for f in streams.values()), snapshot_bytes(location),
                              time.perf_counter() - start)
        log.info("Snapshot after step %d/%d (%s) in %s", index, len(plan.steps), plan.steps[index - 1]["name"],
                 location)

    def _manifest(self, plan: StepPlan, index: int) -> dict[str, Any]:
        identity = dict(plan.identity)
        identity["inputs"] = {p: self.checksums.get(p) for p in identity["inputs"]}
        cals = [dict(c, sha256=self.checksums.get(c["path"])) for c in self.used_calibrations]
        return {"format": 1, "step": index, "name": plan.steps[index - 1]["name"], "steps_total": len(plan.steps),
                "chain": plan.chain[index], "identity": identity, "steps": plan.steps[:index],
                "calibrations": cals}

    def _freeze_outputs(self, location: str) -> list[dict[str, Any]]:
        """The outputs written so far, each frozen in the snapshot as it is now."""
        frozen = []
        for i, entry in enumerate(self.ledger.entries()):
            if os.path.exists(entry["path"]):
                copy = join(location, "outputs", f"{i:04d}-{os.path.basename(entry['path'])}")
                _freeze(entry["path"], copy)
                frozen.append({"path": entry["path"], "copy": copy, "step": entry["step"]})
        return frozen

    def _adopt_streams(self, streams: dict[str, list[Frame]], disk: dict) -> None:
        # Held until the next snapshot: checkpoints are deleted once no live array reads them
        # (Checkpoints.release), and a resume needs what the last complete snapshot reads.
        self._pinned = streams
        for name, frames in streams.items():
            self.set_stream(name, frames)
            for i, frame in enumerate(frames):
                if (name, i) in disk:
                    self._on_disk[id(frame)] = (frame, disk[(name, i)])

    def restore(self, location: str) -> None:
        """Set every stream (and the pending calibrations) from the snapshot at ``location``."""
        state = _load(join(location, STREAMS))
        for name in list(self.stream_names):
            self.set_stream(name, [])
        self._adopt_streams(restore_streams(state["streams"]), state.get("on_disk", {}))
        self.pending_calibrations[:] = list(state.get("pending", []))


class RecordedLedger:
    """The run's :class:`~draconis.reduce.outputs.OutputLedger`, with every output recorded in ``run.json``.

    The record is written before the files are, so the next run can roll
    back the outputs of a run that was killed while writing.
    """

    def __init__(self, ledger: Any, run: RunDir, ctx: ResumableContext):
        self._ledger, self._run, self._ctx = ledger, run, ctx
        self._steps: dict[str, int] = {}
        self.files_written = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ledger, name)

    def write(self, frames: Sequence[Frame], directory: str, label: str = "writing") -> list[str]:
        """Record the outputs in the run's record, then write them (:meth:`OutputLedger.write`)."""
        for frame in frames:
            path = os.path.join(directory, frame.filename)
            self._ledger.claim(path)
            self._steps[path] = self._ctx.step_index
        self._run.record_outputs(self.entries())
        paths = self._ledger.write(frames, directory, label)
        self.files_written += len(paths)
        return paths

    def entries(self) -> list[dict[str, Any]]:
        """The outputs written so far: path, backup of the file replaced, recipe step."""
        backups = getattr(self._ledger, "_backups", {})
        return [{"path": p, "backup": backups.get(p), "step": self._steps.get(p, 0)} for p in self._ledger.written]

    def put_back(self, path: str, copy: str, step: int) -> None:
        """Write ``path`` from ``copy`` as an output of this run (what a resumed run had written before)."""
        self._ledger.claim(path)
        self._steps[path] = step
        self._run.record_outputs(self.entries())
        tmp = f"{path}.{os.getpid()}.tmp"
        _fetch_file(copy, tmp)
        os.replace(tmp, path)

    def rollback(self) -> None:
        """Remove the outputs and restore what they replaced; the record lists none."""
        self._ledger.rollback()
        self._run.record_outputs([])

    def commit(self) -> None:
        """Keep the outputs, drop the backups; the record lists none."""
        self._ledger.commit()
        self._run.record_outputs([])


# -- the recipe's caller -------------------------------------------------------
class StepCaller(PrimitiveCaller):
    """Runs the recipe's steps: skips those a resumed run restored, snapshots after those that wrote pixels."""

    def __init__(self, ctx: ResumableContext, plan: StepPlan, *, resume_at: int = 0,
                 restore: Callable[[], None] | None = None):
        super().__init__(ctx)
        self.plan = plan
        self.index = 0
        self.current: str | None = None
        self.resume_at = resume_at
        self._restore = restore
        self._following = True  # the live calls match the recorded ones

    def __getattr__(self, name: str):
        run = super().__getattr__(name)

        def call(**arguments: Any):
            return self._step(name, run, arguments)

        return call

    def _step(self, name: str, run: Callable[..., Any], arguments: dict[str, Any]):
        ctx: ResumableContext = self._ctx
        self.index += 1
        self.current = name
        k = self.index
        recorded = self.plan.steps[k - 1] if k <= len(self.plan.steps) else None
        matches = recorded is not None and recorded["name"] == name and recorded["arguments"] == canonical(arguments)
        self._following = self._following and matches
        if k <= self.resume_at:
            if not matches:
                raise ResumeError(f"cannot resume: the recipe's step {k} is now {name}, it was "
                                  f"{recorded['name'] if recorded else 'nothing'}")
            if k == self.resume_at and self._restore is not None:
                self._restore()
            return ctx.stream(arguments.get("outstream") or arguments.get("stream") or "main")
        from ..cluster import computations

        ctx.begin_step(k, name, self.plan.chain[k - 1] if self._following else f"unplanned-{k}")
        written, outputs, computed = ctx.checkpoints_written, ctx.ledger.files_written, computations()
        out = run(**arguments)
        wrote = ctx.checkpoints_written > written or ctx.ledger.files_written > outputs
        # a step that measured something (sources, offsets) is worth a snapshot when it costs no pixel writes
        measured = computations() > computed and ctx.pixels_stored()
        if (wrote or measured) and self._following and k < len(self.plan.steps):
            ctx.snapshot(self.plan, k)
        return out


# -- the start and the end of a run ----------------------------------------------------
def start_run(ctx: ResumableContext, recipe: Any, user: Any, *, resume: bool | str,
              command: str = "") -> tuple[StepPlan, ResumePoint | None]:
    """Plan the run's steps, find what to resume (or sweep dead runs of this reduction), create its directory.

    Parameters
    ----------
    ctx
        The run's context (not yet attached to a run directory).
    recipe
        The recipe (its calls are recorded without running them).
    user
        The parsed user parameters.
    resume
        False, True/``"strict"`` or ``"auto"``.
    """
    from ..recipes.caller import record
    from .rundir import sweep

    calls = record(recipe.func)
    inputs = sorted(os.path.realpath(f.path) for f in ctx.inputs if f.path)
    identity = {"inputs": inputs, "recipe": {"name": recipe.name, "library": recipe.library,
                                             "calls": [canonical([c.name, c.arguments]) for c in calls]},
                "uparms": canonical({"generic": getattr(user, "generic", {}),
                                     "specific": getattr(user, "specific", {})}),
                "ucals": canonical(ctx.ucals), "mode": ctx.mode, "versions": versions()}
    ctx.checksums.start(inputs)
    plan = StepPlan.build(identity, calls, ctx)
    point = None
    if resume:
        mode = "auto" if resume == "auto" else "strict"
        point = find_resume_point(ctx.workdir, plan, mode=mode, inputs=inputs, recipe=recipe.name,
                                  checksums=ctx.checksums, current_calibration=_calibration_finder(ctx))
        if point is None:
            log.warning("Nothing to resume in %s (no unfinished run of these inputs and recipe): "
                        "starting from the raw files", ctx.workdir)
    else:
        sweep(ctx.workdir, inputs=inputs, recipe=recipe.name)
    # a run resumed twice reads checkpoints of every run before it
    adopted = [point.run.location, *point.run.record.get("adopted", [])] if point else []
    run = RunDir.create(ctx.run_location, inputs=inputs, recipe=recipe.name, command=command, adopted=adopted)
    ctx.attach(run)
    if point is not None:
        _take_over(ctx, point, plan)
    return plan, point


def _take_over(ctx: ResumableContext, point: ResumePoint, plan: StepPlan) -> None:
    """Adopt the stopped run: its outputs up to the snapshot stay, the later ones are rolled back."""
    # the stopped run's outputs go (replaced files come back); those written before the snapshot are
    # put back from the snapshot's copies
    point.run.rollback_outputs()
    point.run.update(state="adopted", adopted_by=ctx.run_location)
    for out in (point.manifest or {}).get("outputs", []):
        ctx.ledger.put_back(out["path"], out["copy"], int(out.get("step", 0)))
    if point.snapshot is None:
        log.info("Resuming %s: no step had completed a snapshot; starting from the raw files", point.run.describe())
        return
    latest = _complete_snapshots(point.run)[-1][0] == point.snapshot
    if latest:
        # nothing changed since the snapshot: checkpoints written inside later steps are valid too
        ctx.offer_checkpoints(point.run)
        for location in point.run.record.get("adopted", []):
            ctx.offer_checkpoints(RunDir(location, {}))
    log.info("Resuming %s from its snapshot after step %d/%d (%s); steps 1-%d are not run again",
             point.run.describe(), point.index, len(plan.steps), plan.steps[point.index - 1]["name"], point.index)


def _calibration_finder(ctx: ResumableContext) -> Callable[[str, str], str | None]:
    """What calibration this run would use now, for an input file: the user's, else the database's."""
    by_name = {f.orig_filename: f for f in ctx.inputs}

    def find(caltype: str, orig_filename: str) -> str | None:
        given = ctx.ucals.get(caltype)
        if given is not None:
            return given.path if isinstance(given, Frame) else os.fspath(given)
        frame = by_name.get(orig_filename)
        if frame is None or not ctx.use_caldb:
            return None
        try:
            return ctx._from_caldb(caltype, frame)
        except DraconisError:
            return None

    return find


def stopped(ctx: ResumableContext, err: BaseException, plan: StepPlan | None) -> None:
    """Record how the run stopped and, when it can resume, say how."""
    interrupted = isinstance(err, KeyboardInterrupt)
    if ctx.run_dir is not None:
        with contextlib.suppress(Exception):
            ctx.run_dir.update(state="interrupted" if interrupted else "failed")
    if not (ctx.snapshots_taken or ctx.checkpoints_written):
        return
    done = f"step {ctx.step_index} of {len(plan.steps)} ({ctx.step_name})" if plan and ctx.step_name else "a step"
    command = (ctx.run_dir.record.get("command") if ctx.run_dir else "") or ""
    again = (f"run `{command} --resume`" if command.startswith("draconis ")
             else "run the same reduction again with --resume (Reduce(..., resume=True))")
    log.warning("%s during %s; outputs rolled back, checkpoints kept in %s. To continue from the last complete "
                "checkpoint, %s", "Interrupted" if interrupted else "Stopped", done, ctx.run_location, again)
