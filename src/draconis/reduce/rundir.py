"""A run's directory under the work directory, its record, and the runs a later run finds there.

Every reduction writes its checkpoints under ``<workdir>/run-<id>/`` and
keeps there a small record, ``run.json``: who runs it (host, process id and
the process' start time, so a dead run is told from a live one), which
reduction it is (inputs and recipe), its state (``running``, ``interrupted``,
``failed``) and the output files it has written so far (with the backups of
the files they replaced).  A run that ends normally removes its directory
(unless checkpoints are kept); a killed run cannot, so the next run of the
same reduction in the same work directory does it, rolling back the killed
run's outputs, or continues it (``--resume``).

The work directory is a local path or an fsspec URL (``memory://``,
``s3://bucket/prefix``...; a ``file://`` URL is a local path: see
:func:`draconis.io.is_url`); outputs and their backups are always local files.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import json
import logging
import os
import socket
import uuid
from collections.abc import Iterable
from typing import Any

import fsspec

from ..io import is_url, local_path

log = logging.getLogger("draconis")

RECORD = "run.json"
PREFIX = "run-"
#: record format version (a run directory from an incompatible version is reported, never resumed)
FORMAT = 1


def filesystem(location: str) -> tuple[Any, str]:
    """The fsspec filesystem of ``location`` and the path within it."""
    return fsspec.core.url_to_fs(location)


def join(location: str, *parts: str) -> str:
    """``location/part/...`` for a path or a URL."""
    return "/".join([location.rstrip("/"), *parts]) if is_url(location) else os.path.join(location, *parts)


def absolute(location: str) -> str:
    """A local path made absolute (on the client: a worker's current directory is not the user's); URLs as given."""
    if is_url(location):
        return location
    return os.path.abspath(os.path.expanduser(local_path(location)))


def write_text(location: str, text: str) -> None:
    """Write ``text`` at ``location`` in one step: a reader sees the old content or the new, never a part."""
    fs, path = filesystem(location)
    if is_url(location):
        with fs.open(path, "w", encoding="utf-8") as fh:  # one PUT: atomic on object stores
            fh.write(text)
        return
    tmp = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def read_text(location: str) -> str | None:
    """The text at ``location``, None if there is none."""
    fs, path = filesystem(location)
    try:
        with fs.open(path, "r", encoding="utf-8") as fh:
            return fh.read()
    except (FileNotFoundError, OSError):
        return None


def remove_tree(location: str) -> None:
    """Remove ``location`` and everything under it (nothing if it is gone)."""
    fs, path = filesystem(location)
    with contextlib.suppress(FileNotFoundError, OSError):
        fs.rm(path, recursive=True)


def tree_size(location: str) -> int:
    """Bytes under ``location`` (0 if it is gone)."""
    fs, path = filesystem(location)
    try:
        return int(fs.du(path, total=True))
    except (FileNotFoundError, OSError):
        return 0


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _process_start(pid: int) -> float | None:
    try:
        import psutil

        return psutil.Process(pid).create_time()
    except Exception:  # noqa: BLE001 - no such process, or no permission: unknown
        return None


@dataclasses.dataclass
class RunDir:
    """One run directory and its record."""

    location: str
    record: dict[str, Any]

    @property
    def name(self) -> str:
        """``run-<id>``."""
        return self.location.rstrip("/").rsplit("/", 1)[-1]

    @classmethod
    def create(cls, location: str, *, inputs: Iterable[str], recipe: str, command: str = "",
               adopted: Iterable[str] = ()) -> RunDir:
        """The run directory at ``location``, recording this process as its owner."""
        fs, path = filesystem(location)
        fs.makedirs(path, exist_ok=True)
        pid = os.getpid()
        record = {"format": FORMAT, "state": "running", "host": socket.gethostname(), "pid": pid,
                  "process_start": _process_start(pid), "started": _now(), "updated": _now(),
                  "inputs": sorted(inputs), "recipe": recipe, "command": command, "outputs": [],
                  "adopted": list(adopted)}
        run = cls(location, record)
        run.save()
        return run

    @classmethod
    def load(cls, location: str) -> RunDir | None:
        """The run directory at ``location``, None without a readable record."""
        text = read_text(join(location, RECORD))
        if text is None:
            return None
        try:
            record = json.loads(text)
        except ValueError:
            return None
        return cls(location, record) if isinstance(record, dict) else None

    def save(self) -> None:
        """Write the record (atomically)."""
        self.record["updated"] = _now()
        write_text(join(self.location, RECORD), json.dumps(self.record, indent=1))

    def update(self, **changes: Any) -> None:
        """Change fields of the record and write it."""
        self.record.update(changes)
        self.save()

    # -- liveness ------------------------------------------------------------
    def alive(self) -> bool | None:
        """True if its process runs, False if it is dead, None if it ran on another host (unknown)."""
        rec = self.record
        if rec.get("host") != socket.gethostname():
            return None
        pid = rec.get("pid")
        if not isinstance(pid, int):
            return False
        start = _process_start(pid)
        if start is None:
            return False
        recorded = rec.get("process_start")
        # a recycled process id belongs to a process started later
        return recorded is None or abs(start - float(recorded)) < 1.0

    def same_reduction(self, inputs: Iterable[str], recipe: str) -> bool:
        """Whether this run reduced ``inputs`` (resolved paths) with ``recipe``."""
        return self.record.get("inputs") == sorted(inputs) and self.record.get("recipe") == recipe

    def describe(self) -> str:
        """One line naming the run, its process and state, for messages."""
        rec = self.record
        return (f"{self.name} (pid {rec.get('pid')} on {rec.get('host')}, {rec.get('state')}, "
                f"started {rec.get('started')} UTC)")

    # -- outputs -------------------------------------------------------------
    def record_outputs(self, outputs: list[dict[str, Any]]) -> None:
        """Record the outputs written so far (path, backup, step)."""
        self.update(outputs=outputs)

    def rollback_outputs(self, keep: Iterable[str] = (), busy: Iterable[str] = ()) -> list[str]:
        """Remove the outputs this (dead) run wrote and put back the files they replaced.

        ``keep``: outputs to leave as they are (a resumed run adopts them);
        ``busy``: paths a live run has written too (left alone).
        """
        keep, busy = set(keep), set(busy)
        removed = []
        for entry in reversed(self.record.get("outputs", [])):
            path, backup = entry.get("path"), entry.get("backup")
            if not path or path in keep or path in busy:
                continue
            if os.path.exists(path):
                os.unlink(path)
                removed.append(path)
            if backup and os.path.exists(backup):
                os.replace(backup, path)
        self.update(outputs=[e for e in self.record.get("outputs", []) if e.get("path") in keep])
        return removed

    def remove(self) -> None:
        """Delete the run directory and those of the runs it took over."""
        for adopted in self.record.get("adopted", []):
            remove_tree(adopted)
        remove_tree(self.location)


def runs_in(workdir: str) -> list[RunDir]:
    """The run directories under ``workdir`` that have a record, oldest first."""
    fs, path = filesystem(workdir)
    try:
        entries = fs.ls(path, detail=False)
    except (FileNotFoundError, OSError):
        return []
    runs = []
    for entry in entries:
        name = entry.rstrip("/").rsplit("/", 1)[-1]
        if not name.startswith(PREFIX):
            continue
        run = RunDir.load(join(workdir, name))
        if run is not None:
            runs.append(run)
    return sorted(runs, key=lambda r: str(r.record.get("started", "")))


def busy_outputs(runs: Iterable[RunDir]) -> set[str]:
    """Output paths recorded by the live runs among ``runs`` (or runs on other hosts)."""
    return {e.get("path") for r in runs if r.alive() is not False for e in r.record.get("outputs", [])}


def sweep(workdir: str, *, inputs: Iterable[str], recipe: str, exclude: Iterable[str] = ()) -> None:
    """Remove what dead runs of this reduction left in ``workdir``; report dead runs of others.

    A dead run of the same inputs and recipe is superseded by this run: its
    checkpoints are deleted and the outputs it had written rolled back. A
    dead run of another reduction is kept (it can still be resumed) and named
    once, with its size.
    """
    inputs = sorted(inputs)
    runs = [r for r in runs_in(workdir) if r.location not in set(exclude)]
    adopted = {a for r in runs for a in r.record.get("adopted", [])}
    busy = busy_outputs(runs)
    for run in runs:
        if run.location in adopted or run.record.get("state") == "done" or run.alive() is not False:
            continue
        size = tree_size(run.location)
        if run.same_reduction(inputs, recipe):
            # a run killed while storing its calibrations had written all its outputs: they stay
            removed = [] if run.record.get("state") == "storing" else run.rollback_outputs(busy=busy)
            run.remove()
            rolled = f"; its output(s) {', '.join(os.path.basename(p) for p in removed)} rolled back" if removed else ""
            log.info("Removed %s left by an earlier run of these inputs that did not finish (%s of checkpoints%s)",
                     run.describe(), _mb(size), rolled)
        else:
            log.info("The work directory holds %s of checkpoints of %s, an unfinished reduction of other inputs: "
                     "continue it with its command and --resume, or delete it", _mb(size), run.describe())


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MB"
