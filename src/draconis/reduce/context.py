"""The run context primitives see: streams, calibrations, internal calls.

:class:`RunContext` implements :class:`draconis.primitives.registry.Context`.
It also runs primitives the way a recipe does (:meth:`RunContext.run`:
parameter resolution, ``stream``/``instream``/``outstream``, suffixes,
``skip_primitive``, ``write_outputs``) and offers the runner's services
primitives need for I/O: :meth:`checkpoint` (flushPixels),
:meth:`write_outputs` (writeOutputs) and :meth:`store_calibration`.

It is constructible on its own for testing primitives::

    ctx = RunContext(streams={"main": frames}, ucals={"processed_dark": dark}, workdir=tmp_path)
    out = ctx.run("darkCorrect")            # as a recipe would call it
    out = ctx.call("stackFrames", frames, operation="median")   # as a primitive would
"""
from __future__ import annotations

import logging
import os
import tempfile
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .. import runrecord
from ..cluster import active_client
from ..cluster_plan import machine_plan
from ..errors import DraconisError, InputError, ParameterError
from ..frame import Frame
from ..io import local_path
from ..parameters import Param, Params, parameter_kind
from ..primitives.registry import PrimitiveSpec, get_primitive
from ..provenance import Provenance, changed_values, utc_timestamp
from .outputs import Checkpoints, OutputLedger, reopen_written
from .uparms import UserParams, parse_uparms

log = logging.getLogger("draconis")

INSTRUMENTS = ("F2", "NIRI", "GNIRS", "GSAOI")


def instrument_name(frame: Frame) -> str | None:
    """The instrument of ``frame`` as parameter overlays name it (``F2``, ``NIRI``...)."""
    try:
        tags = set(frame.tags)
    except Exception:  # noqa: BLE001 - frames without a known instrument (hand-built)
        tags = set()
    for name in INSTRUMENTS:
        if name in tags:
            return name
    value = str(frame.phu.get("INSTRUME", "")).strip().upper()
    return value or None


def frame_kind(frame: Frame) -> str | None:
    """``IMAGE`` or ``DARK``: which instrument class the frame's tags select."""
    try:
        return parameter_kind(frame.tags)
    except Exception:  # noqa: BLE001
        return None


def apply_suffix(frame: Frame, suffix: str) -> Frame:
    """``frame`` renamed ``<stem><suffix>.fits`` unless its name already ends with the suffix.

    Primitives that name their outputs themselves (writeOutputs, storeProcessed*)
    are left alone, and a frame already written keeps its identity.
    """
    if frame.filename.removesuffix(".fits").endswith(suffix):
        return frame
    return frame.with_suffix(suffix)


def _paths(given: Any, opened: Any) -> list[str | None]:
    """The files behind an opened parameter value (for provenance): the frames' paths, or the table's file."""
    if isinstance(opened, Frame):
        return [opened.path]
    if isinstance(opened, list):
        return [f.path for f in opened]
    return [os.fspath(given)] if isinstance(given, (str, os.PathLike)) else [None]


class RunContext:
    """Streams, calibrations and services of one reduction.

    Parameters
    ----------
    streams
        Initial streams, e.g. ``{"main": frames}``.
    ucals
        User calibrations ``{caltype: Frame or path}``; asked first.
    config
        Calibration configuration handed to :mod:`draconis.caldb`.
    mode
        Reduction mode (``sq``).
    workdir
        Directory for checkpoints (a temporary one if None).
    uparms
        User parameter overrides (see :func:`draconis.reduce.uparms.parse_uparms`).
    use_caldb
        Ask the calibration database when no user calibration is given.
    outdir
        Where outputs are written (default: the current directory).
    instrument, kind
        Parameter overlay to use (default: from the first frame of ``main``).
    keep_checkpoints
        Leave checkpoints on disk after :meth:`close`.
    protected
        Paths never to be written (the inputs).
    """

    def __init__(self, streams: Mapping[str, Sequence[Frame]] | None = None, ucals: Mapping[str, Any] | None = None,
                 config: Any = None, mode: str = "sq", workdir: str | os.PathLike | None = None, *,
                 uparms: Any = None, use_caldb: bool = False, outdir: str | os.PathLike | None = None,
                 instrument: str | None = None, kind: str | None = None, keep_checkpoints: bool = False,
                 protected: Sequence[str] = ()):
        self.log = log
        self.mode = mode
        self.config = config
        self.use_caldb = use_caldb
        self._streams: dict[str, list[Frame]] = {k: list(v) for k, v in (streams or {}).items()}
        self.ucals: dict[str, Any] = dict(ucals or {})
        self.user = uparms if isinstance(uparms, UserParams) else parse_uparms(uparms)
        self.outdir = os.fspath(outdir) if outdir is not None else os.getcwd()
        # a file:// work directory is the local one it names (checkpoints and backups are written with os calls)
        self.workdir = local_path(os.fspath(workdir)) if workdir is not None else tempfile.mkdtemp(prefix="draconis-")
        self.run_id = uuid.uuid4().hex[:8]
        run_dir = os.path.join(self.workdir, f"run-{self.run_id}")
        self.checkpoints = Checkpoints(run_dir, keep=keep_checkpoints)
        self.ledger = OutputLedger(protected, backup_dir=os.path.join(run_dir, "backups"))
        self.pending_calibrations: list[tuple[str, str]] = []
        self._cal_cache: dict[tuple[str, str], Frame] = {}
        self._file_cache: dict[tuple[str, str, str | None], Any] = {}
        self._on_disk: dict[int, tuple[Frame, str]] = {}
        self._running: list[PrimitiveSpec] = []
        self._provenance: list[Provenance] = []
        main = self._streams.get("main") or []
        self.inputs: list[Frame] = list(main)
        self.instrument = instrument if instrument is not None else (instrument_name(main[0]) if main else None)
        self.kind = kind if kind is not None else (frame_kind(main[0]) if main else None)

    # -- streams -------------------------------------------------------------
    def stream(self, name: str) -> list[Frame]:
        """Frames of stream ``name`` (a new list; empty if the stream does not exist)."""
        return list(self._streams.get(name, ()))

    def set_stream(self, name: str, frames: Sequence[Frame]) -> None:
        """Replace stream ``name``."""
        self._streams[name] = list(frames)

    @property
    def stream_names(self) -> list[str]:
        """The names of the streams that exist."""
        return list(self._streams)

    # -- parameters ----------------------------------------------------------
    def resolve(self, spec: PrimitiveSpec, arguments: Mapping[str, Any] | None = None, *,
                by: str = "the recipe", warn: bool = True) -> Params:
        """``spec``'s parameters: default < instrument < user < ``arguments`` (given ``by`` a recipe or caller).

        ``warn=False`` for a look ahead (a resumable run's plan): the warning
        about a user value the caller overrides comes when the step runs.
        """
        user = self.user.for_primitive(spec)
        arguments = dict(arguments or {})
        for key in (user.keys() & arguments.keys()) if warn else ():
            log.warning("%s: %s sets %s=%r; the user value %r is ignored",
                        spec.name, by, key, arguments[key], user[key])
        return spec.resolve(self.instrument, self.kind, user, arguments)

    # -- calibrations --------------------------------------------------------
    def calibration(self, caltype: str, frame: Frame) -> Frame | None:
        """The processed ``caltype`` for ``frame``: user calibration first, then the database."""
        source = self.ucals.get(caltype)
        if source is None and self.use_caldb:
            source = self._from_caldb(caltype, frame)
        if source is None:
            return None
        cal = source if isinstance(source, Frame) else self._open_cal(caltype, os.fspath(source))
        runrecord.note_calibration(caltype, cal.path)
        if self._provenance:
            self._provenance[-1].used(caltype, cal.path, stem=frame.stem)
        return cal

    def _from_caldb(self, caltype: str, frame: Frame) -> str | None:
        try:
            from .. import caldb
        except ImportError:
            return None
        getter = getattr(caldb, "get_calibration", None)
        if getter is None:
            return None
        return getter(frame, caltype, config=self.config)

    def _open_cal(self, caltype: str, path: str) -> Frame:
        key = (caltype, os.path.abspath(path))
        if key not in self._cal_cache:
            from ..io import open_frame

            self._cal_cache[key] = open_frame(path)
            log.info("Using %s %s", caltype, path)
        return self._cal_cache[key]

    # -- files named by parameters -------------------------------------------
    def open_files(self, spec: PrimitiveSpec, params: Params, frames: Sequence[Frame] = ()) -> Params:
        """``params`` with the value of every ``opens`` parameter opened (files are the runner's job).

        ``frame``: a Frame, one of ``frames`` named by file name or stem, else a
        file; ``frames``: Frames or files; ``stream``: the frames of the stream
        of that name, else of the file(s); ``table``: an astropy Table read with
        the primitive's ``format`` parameter when it has one.  None and the
        parameter's ``passthrough`` values are left as they are.  Each file is
        opened once per run.

        Raises
        ------
        InputError
            A named file is missing or cannot be read (the message names the
            file and the parameter).
        """
        opened = {}
        for prm in spec.params:
            value = params.get(prm.name)
            if prm.opens is None or value is None or any(value == v for v in prm.passthrough):
                continue
            opened[prm.name] = self._open_value(prm, value, params, frames, where=f"{spec.name}:{prm.name}")
            # a stream of this run is no file the runner opened: its value card says which one, and
            # checksums of the raw files behind its frames would describe data it does not hold
            if self._provenance and not self._names_stream(prm, value):
                self._provenance[-1].opened(prm.name, _paths(value, opened[prm.name]))
        return params.replace(**opened) if opened else params

    def _names_stream(self, prm: Param, value: Any) -> bool:
        """Whether ``value`` of a ``stream`` parameter names a (non-empty) stream of this run."""
        return prm.opens == "stream" and isinstance(value, str) and bool(self._streams.get(value))

    def _open_value(self, prm: Param, value: Any, params: Params, frames: Sequence[Frame], where: str) -> Any:
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        if prm.opens == "table":
            return self._open_table(value, params.get("format"), where)
        if prm.opens == "stream":
            if self._names_stream(prm, value):
                return self.stream(value)
            return [self._open_frame(v, where) for v in items]
        if prm.opens == "frames":
            return [self._open_frame(v, where) for v in items]
        if len(items) != 1:
            raise ParameterError(f"{where}: one file expected, got {len(items)}")
        by_name = {key: f for f in frames for key in (f.filename, f.stem, f.orig_filename)}
        item = items[0]
        return by_name.get(item) if isinstance(item, str) and item in by_name else self._open_frame(item, where)

    def _open_frame(self, item: Any, where: str) -> Frame:
        if isinstance(item, Frame):
            return item
        from ..io import open_frame

        return self._cached("frame", os.fspath(item), None, where, open_frame)

    def _open_table(self, item: Any, fmt: str | None, where: str) -> Any:
        from astropy.io.registry import IORegistryError
        from astropy.table import Table

        if isinstance(item, Table):
            return item

        def read(path: str) -> Table:
            try:
                return Table.read(path, format=fmt)
            except IORegistryError as err:  # unknown or undetectable format
                raise ValueError(str(err)) from err

        # primitives receive a copy: an astropy Table is mutable and the cached one is shared
        return self._cached("table", os.fspath(item), fmt, where, read).copy()

    def _cached(self, kind: str, path: str, fmt: str | None, where: str, opener: Any) -> Any:
        key = (kind, os.path.abspath(path), fmt)
        if key not in self._file_cache:
            if not os.path.exists(path):
                raise InputError(path, f"no such file (given as {where})")
            try:
                self._file_cache[key] = opener(path)
            except InputError as err:
                raise InputError(path, f"{err.problem} (given as {where})") from err
            except (OSError, ValueError, TypeError, KeyError) as err:
                raise InputError(path, f"cannot be read as a {kind} ({where}): {err}") from err
            log.info("%s: using %s", where, path)
        return self._file_cache[key]

    # -- running primitives -------------------------------------------------
    def run(self, name: str, *, stream: str | None = None, instream: str | None = None,
            outstream: str | None = None, **arguments: Any) -> list[Frame]:
        """Run primitive ``name`` as a recipe step.

        ``stream`` sets both ``instream`` and ``outstream`` (default ``main``).
        The primitive reads ``instream`` and its output replaces ``outstream``;
        with different streams, ``instream`` is left intact.  Arguments given
        here win over user values (with a warning).
        """
        spec = get_primitive(name)
        if stream is not None and spec.has_param("stream"):
            arguments.setdefault("stream", stream)
        params = self.resolve(spec, arguments)
        if spec.has_param("stream"):
            stream = params["stream"]  # a primitive declaring `stream` (clearStream) works on the one it names
        instream = instream or stream or "main"
        outstream = outstream or stream or instream
        frames = self.stream(instream)
        if params["skip_primitive"]:
            log.info("Skipping %s (skip_primitive=True)", name)
            self.set_stream(outstream, frames)
            return frames
        log.info("PRIMITIVE: %s", name)
        log.info("-" * (11 + len(name)))
        with runrecord.step(name, frames, spec=spec, params=params, ctx=self) as step:
            out = self._invoke(spec, frames, params)
            suffix = params.get("suffix")
            if suffix:
                out = [apply_suffix(f, suffix) for f in out]
            if params["write_outputs"]:
                out = self.write_outputs(out)
            runrecord.step_done(step, frames, out)
        self.set_stream(outstream, out)
        del frames
        self.checkpoints.release()
        return out

    def call(self, name: str, frames: Sequence[Frame], **arguments: Any) -> list[Frame]:
        """Run another primitive from inside a primitive.

        The callee gets its own defaults (with the instrument's), then the
        user's values for it (``-p callee:param``), then only ``arguments``:
        nothing of the calling primitive's own values is passed down.  A
        primitive declares what it calls and which parameters it sets
        (``@primitive(..., calls={"stackDarks": ()})``, shown by showpars);
        a call outside that declaration is a bug and fails.  A ``suffix``
        given explicitly renames the outputs.
        """
        spec = get_primitive(name)
        caller = self._running[-1] if self._running else None
        if caller is not None:
            caller.check_call(name, arguments)
        params = self.resolve(spec, arguments, by=caller.name if caller else "the caller")
        log.debug("  (internal) %s", name)
        out = self._invoke(spec, list(frames), params)
        if arguments.get("suffix"):
            out = [apply_suffix(f, arguments["suffix"]) for f in out]
        return out

    def _invoke(self, spec: PrimitiveSpec, frames: list[Frame], params: Params) -> list[Frame]:
        from .. import __version__

        prov = Provenance(spec.name, changed_values(params, spec.defaults(self.instrument, self.kind)), __version__)
        self._provenance.append(prov)
        self._running.append(spec)
        try:
            params = self.open_files(spec, params, frames)
            out = spec.func(list(frames), params, self)
        finally:
            self._running.pop()
            self._provenance.pop()
        if out is None:
            raise DraconisError(f"primitive {spec.name} returned no frames (a bug: it must return a list)")
        return self._stamp(prov, frames, list(out))

    def _stamp(self, prov: Provenance, inputs: Sequence[Frame], out: list[Frame]) -> list[Frame]:
        """Outputs the primitive made or changed, stamped (time, version, parameters, files used).

        A frame returned as it came in was not touched; one already written
        (storeProcessed*, writeOutputs) is left exactly as on disk.
        """
        when = utc_timestamp()
        untouched = {id(f) for f in inputs}
        return [f if id(f) in untouched or self.is_on_disk(f) else f.replace(phu=prov.stamp(f.phu, f.stem, when))
                for f in out]

    # -- runner services (I/O) ---------------------------------------------
    def workers(self) -> tuple[int, int]:
        """The workers this run plans for: how many, and each one's memory budget in bytes.

        From :func:`draconis.cluster_plan.machine_plan`, asked at each call
        (settings and workers may change within a run).  When the run
        computes on a distributed client (an external scheduler, the
        LocalCluster draconis started, an existing client), the workers that
        cluster has now: their number and the smallest one's memory limit;
        with the in-process schedulers, the default LocalCluster of this
        machine.  ``draconis.n_workers`` and ``draconis.memory_limit`` win
        when set.

        Returns
        -------
        tuple of int
            ``(number of workers, memory budget of each in bytes)``.
        """
        client = active_client()
        plan = machine_plan(workers=runrecord.describe_workers(client)[1] if client is not None else None)
        return plan.n_workers, plan.memory_limit

    def checkpoint(self, frames: Sequence[Frame], label: str = "flushPixels", **options: Any) -> list[Frame]:
        """Persist ``frames`` to zarr under the work directory and reopen them lazily.

        ``options`` (``chunks``, ``samples``) go to :meth:`Checkpoints.write`.  A checkpoint is
        deleted once no stream reads it any more (after the recipe step that moved past it).
        """
        return self.checkpoints.write(list(frames), label, **options)

    def keep_computed(self, frames: Sequence[Frame], plane: str, values: Iterable[Sequence[Any]],
                      label: str) -> list[list[Any]] | None:
        """Plane ``plane`` of ``frames``' arrays (computed, or lazy: computed now), stored under the work directory.

        Lazy arrays reading it back, or None when checkpoints are on an fsspec URL
        (:meth:`Checkpoints.write_computed`).
        """
        return self.checkpoints.write_computed(list(frames), plane, values, label)

    def write_outputs(self, frames: Sequence[Frame], outdir: str | None = None, *,
                      overwrite: bool = True) -> list[Frame]:
        """Write ``frames`` as FITS (atomically, in one computation); return them reopened from disk.

        Raises
        ------
        InputError
            ``overwrite`` is False and a file of that name exists (nothing is written).
        """
        frames = list(frames)
        todo = [f for f in frames if not self.is_on_disk(f)]
        if not overwrite:
            for f in todo:
                path = os.path.join(outdir or self.outdir, f.filename)
                if os.path.exists(path):
                    raise InputError(path, "exists and overwrite=False: not replaced")
        if todo:
            paths = self.ledger.write(todo, outdir or self.outdir)
            reopened = reopen_written(todo, paths)
            mapping = {id(f): r for f, r in zip(todo, reopened)}
            for r, p in zip(reopened, paths):
                self._on_disk[id(r)] = (r, p)
            frames = [mapping.get(id(f), f) for f in frames]
        return frames

    def is_on_disk(self, frame: Frame) -> bool:
        """Whether ``frame`` is exactly what this run last wrote to a file."""
        return id(frame) in self._on_disk

    def path_of(self, frame: Frame) -> str | None:
        """The file this run wrote ``frame`` to (None if it is not exactly what was written)."""
        entry = self._on_disk.get(id(frame))
        return entry[1] if entry else None

    def store_calibration(self, path: str, caltype: str) -> None:
        """Queue ``path`` for storage as ``caltype`` when the run completes."""
        self.pending_calibrations.append((path, caltype))

    def close(self, success: bool = True) -> None:
        """End of the run: commit or roll back outputs, remove checkpoints."""
        if success:
            self.ledger.commit()
        else:
            self.ledger.rollback()
        self.checkpoints.cleanup()
