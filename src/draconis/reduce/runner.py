"""The :class:`Reduce` runner: inputs -> recipe -> outputs, all or nothing.

Order of a run: open the inputs (headers only) and check them; choose the
recipe from the first input's tags; validate every user parameter and every
recipe argument (before any graph exists); open the user calibrations; start
or attach to a Dask cluster; run the recipe (primitives extend the graph;
flushPixels checkpoints, writeOutputs and storeProcessed* write); write the
final stream; store the processed calibrations.  On any error the files this
run wrote are removed (replaced files restored) and the error re-raised.
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from typing import Any

from .. import config as _config
from .. import framefacts, logutils, runrecord
from ..errors import InputError, ParameterError
from ..frame import Frame
from ..io import open_frame
from ..primitives.registry import get_primitive
from ..recipes import Recipe, find_recipe
from ..recipes.caller import record
from .context import RunContext, frame_kind, instrument_name
from .resume import Checksums, ResumableContext, ResumePoint, StepCaller, StepPlan, start_run, stopped
from .rundir import absolute
from .ucals import open_ucals
from .uparms import parse_uparms, validate

log = logging.getLogger("draconis")


class Reduce:
    """Reduce a list of files with a recipe (the DRAGONS ``Reduce`` API).

    Attributes
    ----------
    files : list of str
        Input files; the first decides the recipe.
    recipename : str
        ``_default``, a recipe of the selected library, ``file.py:func`` or a primitive name.
    uparms : list of (key, value) or dict
        Parameter overrides, key ``primitive:param`` or ``param``.
    ucals : dict
        User calibrations ``{"processed_dark": "x_dark.fits"}``.
    mode, suffix, config_file, scheduler, workdir
        Mode (``sq``), suffix of final outputs, calibration configuration file,
        Dask scheduler (None, ``synchronous``, ``threads`` or an address),
        checkpoint directory (a local path or an fsspec URL such as
        ``s3://bucket/prefix``; default ``draconis.workdir``).
    resume : bool or "auto"
        Continue the unfinished run of the same inputs and recipe in the
        work directory from its last complete checkpoint; True refuses if
        anything changed since, ``"auto"`` recomputes from the first step
        whose inputs changed.
    keep_checkpoints : bool or None
        Keep the checkpoints of a finished run (default: ``draconis.keep_checkpoints``).
    output_filenames, processed_filenames : list of str
        After :meth:`runr`: the final outputs and the stored calibrations.
    report : bool or None
        Write the HTML report beside the outputs (None: for science recipes only).
    report_stem : str or None
        Name the report ``<report_stem>_report.html`` (None: after the first input); with a
        directory part, the report goes there instead of beside the outputs.
    summary : draconis.runrecord.RunRecord or None
        After :meth:`runr`: time per primitive and stage, memory, checkpoint bytes, per-frame facts.
    report_filename : str or None
        After :meth:`runr`: the HTML report written, if any.
    """

    def __init__(self, files: Iterable[str] | None = None, *, recipename: str = "_default",
                 uparms: Any = None, ucals: dict[str, Any] | None = None, mode: str = "sq",
                 suffix: str | None = None, config_file: str | None = None, scheduler: str | None = None,
                 workdir: str | None = None, resume: bool | str = False, keep_checkpoints: bool | None = None):
        self.files: list[str] = list(files or [])
        self.recipename = recipename
        self.uparms: Any = list(uparms) if isinstance(uparms, (list, tuple)) else (uparms if uparms else [])
        self.ucals: dict[str, Any] = dict(ucals or {})
        self.mode = mode
        self.suffix = suffix
        self.config_file = config_file
        self.scheduler = scheduler
        self.workdir = workdir
        self.resume = resume
        self.keep_checkpoints = keep_checkpoints
        self.drpkg = "draconis"
        self.upload = None
        self.output_filenames: list[str] = []
        self.processed_filenames: list[str] = []
        self.report: bool | None = None
        self.report_stem: str | None = None
        self.report_filename: str | None = None
        self.command: str | None = None
        self.summary: runrecord.RunRecord | None = None

    # -- preparation (no graph yet) --------------------------------------------
    def open_inputs(self) -> list[Frame]:
        """Open every input (headers only) and check they form one reduction.

        ``files`` may also hold frames already opened from files (``draconis.open``), which are used as
        they are.
        """
        files = [self.files] if isinstance(self.files, (str, os.PathLike, Frame)) else list(self.files)
        if not files:
            raise InputError(None, "no input files given")
        frames = [f if isinstance(f, Frame) else open_frame(os.fspath(f)) for f in files]
        first = instrument_name(frames[0])
        for frame in frames[1:]:
            inst = instrument_name(frame)
            if inst != first:
                raise InputError(frame.path or frame.filename,
                                 f"instrument {inst} differs from {first} of the first input {frames[0].filename}")
        return frames

    def choose_recipe(self, first: Frame) -> Recipe:
        """The recipe for the run (from the first input's tags and ``recipename``)."""
        return find_recipe(self.recipename or "_default", first.tags, self.mode, filename=first.filename)

    def validate(self, recipe: Recipe, instrument: str | None, kind: str | None):
        """Check user parameters and recipe arguments; return the parsed user parameters."""
        user = parse_uparms(self.uparms)
        validate(user, instrument, kind)
        for call in record(recipe.func):
            spec = get_primitive(call.name)
            args = {k: v for k, v in call.arguments.items() if k not in ("stream", "instream", "outstream")}
            try:
                spec.resolve(instrument, kind, {}, args)
            except ParameterError as err:
                raise ParameterError(f"recipe {recipe.name}: {err}") from err
        return user

    # -- the run -----------------------------------------------------------
    def runr(self) -> list[str]:
        """Run the reduction; return (and keep in ``output_filenames``) the outputs."""
        logutils.ensure_configured()
        start = time.monotonic()
        self.output_filenames, self.processed_filenames = [], []
        from ..cluster import scheduler_address

        scheduler_address(self.scheduler)  # a misspelt scheduler is an error now, not after the inputs are read
        _check_suffix(self.suffix)
        _recover_interrupted_stores()
        frames = self.open_inputs()
        recipe = self.choose_recipe(frames[0])
        instrument, kind = instrument_name(frames[0]), frame_kind(frames[0])
        user = self.validate(recipe, instrument, kind)
        _check_one_setup(recipe, frames)
        ucals = open_ucals(self.ucals)
        log.info("RECIPE: %s (%s) on %d file(s)", recipe.name, recipe.library, len(frames))
        # Resolved here, on the client: the workers of an external cluster run in their own directory.
        workdir = absolute(os.fspath(self.workdir or _config.get("workdir", ".draconis")))
        keep = self.keep_checkpoints
        keep = bool(_config.get("keep_checkpoints", False)) if keep is None else bool(keep)
        ctx = ResumableContext({"main": frames}, ucals, self.config_file, self.mode, workdir, uparms=user,
                               use_caldb=True, instrument=instrument, kind=kind, keep_checkpoints=keep,
                               protected=[f.path for f in frames if f.path], checksums=Checksums())
        # each processed calibration is journaled as soon as it is written (see caldb.journal)
        ctx.pending_calibrations = _JournaledStores(self.config_file)
        from ..cluster import check_workers_see, execution, warm_workers
        from ..primitives.registry import worker_imports

        record = self.summary = runrecord.RunRecord(
            recipe=recipe.name, instrument=instrument, inputs=[f.path or f.filename for f in frames],
            command=self.command or _api_command(), parameters=_user_items(user))
        success, finals, plan = False, [], None
        try:
            plan, point = start_run(ctx, recipe, user, resume=self.resume, command=self.command or "")
            with runrecord.recording(record), execution(self.scheduler) as client:
                check_workers_see(client, workdir, [f.path for f in frames if f.path])
                # the workers import what the recipe's tasks will need while the first graph is built
                with warm_workers(client, worker_imports(step["name"] for step in plan.steps)), \
                        runrecord.watching(record, ctx, self.scheduler):
                    _run_recipe(recipe, ctx, plan, point)
                    with logutils.condensed():
                        finals = self._write_finals(ctx)
            # from here the run has its outputs: a later run completes the store rather than roll them back
            if ctx.run_dir is not None:
                ctx.run_dir.update(state="storing")
            self.processed_filenames = self._store_calibrations(ctx)
            success = True
        except BaseException as err:
            stopped(ctx, err, plan)
            raise
        finally:
            ctx.close(success)
            if not success:  # its outputs are rolled back: nothing left to store
                ctx.pending_calibrations.discard()
            ctx.checksums.close()
            _remove_if_empty(workdir)
            record.finish(finals if success else [], success=success)
        self.output_filenames = finals
        log.info("Outputs: %s", " ".join(finals) if finals else "(none)")
        self.report_filename = self._write_report(record, frames[0], ctx.outdir) if finals else None
        for line in framefacts.frame_table(record):
            log.debug(line)
        for line in record.summary_table().splitlines():
            log.info(line)
        log.info("reduce completed in %.1f s", time.monotonic() - start)
        return finals

    def _write_report(self, record: runrecord.RunRecord, first: Frame, outdir: str) -> str | None:
        """The HTML report beside the outputs, when asked (default: science recipes).

        A run that wrote no output writes no report; the report never fails the run.
        """
        wanted = self.report if self.report is not None else is_science(first)
        if not wanted:
            return None
        try:
            from ..report import write_report

            stem = self.report_stem or first.stem
            path = write_report(record, os.path.join(outdir, os.path.dirname(stem)), stem=os.path.basename(stem))
        except Exception as err:  # noqa: BLE001 - the reduction succeeded; say why its report is missing
            log.warning("The report could not be written: %s: %s", type(err).__name__, err)
            log.debug("report failure", exc_info=True)
            return None
        log.info("Report: %s", _display(path))
        return path

    def _write_finals(self, ctx: RunContext) -> list[str]:
        # frames still exactly as read (e.g. after checkWCS) are not outputs: inputs are never rewritten
        inputs = {id(f) for f in ctx.inputs}
        finals = [f for f in ctx.stream("main") if id(f) not in inputs]
        if self.suffix:
            finals = [f.with_suffix(self.suffix) for f in finals]
        written = ctx.write_outputs(finals)
        return [_display(ctx.path_of(f)) for f in written]

    def _store_calibrations(self, ctx: RunContext) -> list[str]:
        from ..caldb import store_calibration

        stored: list[str] = []
        pending = ctx.pending_calibrations
        for (path, caltype), entry in zip(pending, getattr(pending, "entries", [None] * len(pending))):
            stored.extend(store_calibration(path, caltype, config=self.config_file, journal=entry))
            log.info("Stored %s as %s", os.path.basename(path), caltype)
        return stored


#: tags of calibration inputs: their reductions write a report only when asked
CALIBRATION_TAGS = frozenset({"DARK", "FLAT", "BPM", "BIAS", "ARC", "TWILIGHT"})


def is_science(frame: Frame) -> bool:
    """Whether ``frame`` is reduced by a science recipe (no calibration tag)."""
    try:
        return not (set(frame.tags) & CALIBRATION_TAGS)
    except Exception:  # noqa: BLE001 - unknown instrument: treat as science
        return True


def _user_items(user: Any) -> list[tuple[str, Any]]:
    """The user's ``-p`` values as ``(key, value)``, ``primitive:param`` for specific ones."""
    items = [(k, v) for k, v in getattr(user, "generic", {}).items()]
    for prim, values in getattr(user, "specific", {}).items():
        items.extend((f"{prim}:{k}", v) for k, v in values.items())
    return items


def _api_command() -> str:
    import sys

    return f"draconis.Reduce (Python API) from {' '.join(sys.argv) or 'python'}"


class _JournaledStores(list):
    """The run's ``(path, caltype)`` calibrations to store, each journaled when added.

    A run killed after writing a processed calibration but before storing it
    leaves the journal entry; the next run in the directory (or ``draconis
    caldb``) completes the store (:func:`draconis.caldb.journal.recover`).
    """

    def __init__(self, config: Any):
        super().__init__()
        self.config = config
        self.entries: list[Any] = []

    def append(self, item: tuple[str, str]) -> None:
        from ..caldb import journal

        path, caltype = item
        self.entries.append(journal.begin(path, caltype, self.config))
        super().append(item)

    def discard(self) -> None:
        from ..caldb import journal

        for entry in self.entries:
            journal.finish(entry)
        self.entries.clear()
        self.clear()


def _recover_interrupted_stores() -> None:
    """Store the calibrations runs killed in this directory wrote but did not store."""
    from ..caldb import journal

    journal.recover()


def _run_recipe(recipe: Recipe, ctx: ResumableContext, plan: StepPlan, point: ResumePoint | None) -> None:
    """The recipe's steps (those after ``point``'s snapshot when resuming); clear errors for dead workers."""
    from ..cluster import explain_killed_worker

    restore = None
    if point is not None and point.snapshot is not None:
        def restore():
            ctx.restore(point.snapshot)

    caller = StepCaller(ctx, plan, resume_at=point.index if point else 0, restore=restore)
    try:
        recipe.func(caller)
    except Exception as err:
        clear = explain_killed_worker(err, caller.current)
        if clear is not err:
            raise clear from err
        raise


def _check_one_setup(recipe: Recipe, frames: list[Frame]) -> None:
    """A recipe that aligns frames needs one instrument and filter: say so now, not after the sky work."""
    from ..primitives.align import check_same_setup

    if any(call.name == "adjustWCSToReference" for call in record(recipe.func)):
        check_same_setup(frames)


def _check_suffix(suffix: str | None) -> None:
    """An output suffix is a non-empty part of a file name (an empty one would name outputs like their inputs)."""
    if suffix is None:
        return
    if not str(suffix).strip():
        raise ParameterError("--suffix '': the suffix of the final outputs cannot be empty "
                             "(omit --suffix for the recipe's own)")
    if os.sep in suffix or (os.altsep and os.altsep in suffix):
        raise ParameterError(f"--suffix {suffix!r}: a suffix is part of a file name; it cannot contain {os.sep!r}")


def _display(path: str | None) -> str:
    """Output names as DRAGONS shows them: bare names in the current directory."""
    if path is None:
        return ""
    return os.path.basename(path) if os.path.dirname(os.path.abspath(path)) == os.getcwd() else path


def _remove_if_empty(directory: str) -> None:
    from ..io import is_url

    if is_url(directory):
        return
    try:
        os.rmdir(directory)
    except OSError:
        pass
