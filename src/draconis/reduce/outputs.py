"""Output files of a run, written all-or-nothing, and zarr checkpoints.

:class:`OutputLedger` records every file the run writes.  Each output is
written to a temporary name and renamed when complete (``draconis.io``); an
existing file about to be replaced is first hard-linked to a backup, so
:meth:`OutputLedger.rollback` can remove what this run wrote and put back what
it replaced.  Inputs are never written over.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import fsspec
import numpy as np

from .. import progress
from ..errors import InputError
from ..frame import Frame
from ..io import is_url, local_path
from ..io.fits import discard_partial, open_fits, write_fits_delayed
from ..io.zarr import (
    attach_summaries,
    finish_all,
    live_stores,
    open_stored_plane,
    open_zarr,
    prepare_planes,
    prepare_zarr,
)

log = logging.getLogger("draconis")


class OutputLedger:
    """Files written by one run, with backups of the files they replaced.

    Parameters
    ----------
    protected
        Paths that must never be written (the run's inputs).
    backup_dir
        Where backups of replaced files go until the run commits.
    """

    def __init__(self, protected: Iterable[str] = (), backup_dir: str | None = None):
        self.protected = {os.path.realpath(p) for p in protected}
        self.backup_dir = backup_dir
        self.written: list[str] = []
        self._backups: dict[str, str] = {}

    def claim(self, path: str) -> None:
        """Register ``path`` as an output of this run (backing up an existing file)."""
        real = os.path.realpath(path)
        if real in self.protected:
            raise InputError(path, "output would overwrite an input file; inputs are never modified")
        if path in self.written:
            return
        if os.path.exists(path) and path not in self._backups:
            self._backups[path] = self._backup(path)
        self.written.append(path)

    def _backup(self, path: str) -> str:
        directory = self.backup_dir or os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        backup = os.path.join(directory, f".{os.path.basename(path)}.{uuid.uuid4().hex[:8]}.bak")
        try:
            os.link(path, backup)
        except OSError:
            shutil.copy2(path, backup)
        return backup

    def write(self, frames: Sequence[Frame], directory: str, label: str = "writing") -> list[str]:
        """Write ``frames`` as ``directory/<frame.filename>`` in one computation."""
        paths = [os.path.join(directory, f.filename) for f in frames]
        if len(set(paths)) != len(paths):
            dup = next(p for p in paths if paths.count(p) > 1)
            raise InputError(dup, "two outputs of this run would have the same name")
        for path in paths:
            self.claim(path)
        try:
            progress.compute([write_fits_delayed(f, p) for f, p in zip(frames, paths)], label)
        except BaseException:
            for path in paths:
                discard_partial(path)
            raise
        for path in paths:
            log.info("Wrote %s", path)
        return paths

    def rollback(self) -> None:
        """Remove what this run wrote and restore the files it replaced."""
        for path in reversed(self.written):
            if os.path.exists(path):
                os.unlink(path)
                log.debug("Removed %s (run failed)", path)
            backup = self._backups.pop(path, None)
            if backup and os.path.exists(backup):
                os.replace(backup, path)
        self.written.clear()

    def commit(self) -> None:
        """Keep the outputs; drop the backups."""
        for backup in self._backups.values():
            if os.path.exists(backup):
                os.unlink(backup)
        self._backups.clear()


def reopen_written(frames: Sequence[Frame], paths: Sequence[str]) -> list[Frame]:
    """Frames read back (lazily) from the files just written: later steps start from disk."""
    return [open_fits(p).replace(filename=f.filename) for f, p in zip(frames, paths)]


@dataclasses.dataclass(frozen=True)
class CheckpointRecord:
    """One checkpoint write: its label and directory, frames, bytes written and seconds taken."""

    label: str
    directory: str
    frames: int
    bytes: int
    seconds: float


class Checkpoints:
    """Zarr checkpoints of one run under ``root``.

    Each :meth:`write` is a directory ``NN_<label>``.  :meth:`release`
    deletes the directories no live frame reads any more (as soon as the
    run has moved past them), :meth:`cleanup` the rest at the end of the run;
    with ``keep`` nothing is deleted.  What each write cost is recorded
    (:attr:`records`, :attr:`bytes_written`).
    """

    def __init__(self, root: str, keep: bool = False):
        # workers may not share the client's current directory; URLs (s3://, memory://) are absolute, and a
        # file:// root is the local directory it names (written with the os functions below)
        self.root = root if is_url(root) else os.path.abspath(local_path(root))
        self.keep = keep
        self.count = 0
        self.records: list[CheckpointRecord] = []
        self._live: list[str] = []

    @property
    def bytes_written(self) -> int:
        """Bytes written by every checkpoint of the run (per label: :attr:`bytes_by_label`)."""
        return sum(r.bytes for r in self.records)

    @property
    def bytes_by_label(self) -> dict[str, int]:
        """Bytes written per label (checkpoints of one label added up), in the order first written."""
        out: dict[str, int] = {}
        for r in self.records:
            out[r.label] = out.get(r.label, 0) + r.bytes
        return out

    def write(self, frames: Sequence[Frame], label: str = "checkpoint", *, chunks: tuple[int, int] | None = None,
              samples: tuple[int, int, int, int, int] | None = None) -> list[Frame]:
        """Persist ``frames`` to zarr in one computation and reopen them lazily.

        ``chunks`` and ``samples`` are those of :func:`draconis.io.zarr.prepare_zarr`; the
        reopened frames carry the write's summaries (:func:`draconis.io.zarr.stored_summary`).
        """
        if not frames:
            return []
        start = time.perf_counter()
        directory = self._new_directory(label)
        if is_url(self.root):
            return self._write_url(frames, label, directory, chunks, start)
        stores = [_store_path(directory, i, f) for i, f in enumerate(frames)]
        pending = [prepare_zarr(f, s, chunks=chunks, samples=samples) for f, s in zip(frames, stores)]
        computed = progress.compute([r for p in pending for r in p.records], f"checkpoint {label}")
        reports = finish_all(pending, computed)
        reopened = []
        for frame, report in zip(frames, reports):
            again = open_zarr(report.store).replace(filename=frame.filename, path=frame.path)
            attach_summaries(again, report)
            reopened.append(again)
        record = CheckpointRecord(label, directory, len(frames), sum(r.bytes for r in reports),
                                  time.perf_counter() - start)
        self.records.append(record)
        log.info("Checkpointed %d frame(s) to %s (%.1f MB, %.1f MB per frame, %.1f s)", len(frames), directory,
                 record.bytes / 1e6, record.bytes / 1e6 / len(frames), record.seconds)
        return reopened

    def write_computed(self, frames: Sequence[Frame], name: str, values: Iterable[Sequence[Any]],
                       label: str) -> list[list[Any]] | None:
        """Store plane ``name`` of each frame's arrays (``values[frame][array]``: computed, or lazy arrays).

        Returns the planes reopened lazily (chunked like each array's SCI
        rows), or None where checkpoints live on an fsspec URL (the caller
        then keeps the values in its graphs).  Like :meth:`write`, the
        directory is released once no live array reads it.
        """
        if not frames or is_url(self.root):
            return None
        start = time.perf_counter()
        directory = self._new_directory(label)
        written, out, pending = 0, [], []
        for i, (frame, arrays) in enumerate(zip(frames, values)):
            store = _store_path(directory, i, frame)
            rows = [ext.plane("SCI").chunks[0][0] for ext in frame.extensions]
            now, lazy = prepare_planes(store, [{name: v} for v in arrays], rows)
            written += now
            pending += lazy
            out.append([open_stored_plane(store, j, name) for j in range(len(arrays))])
        if pending:  # lazy planes: computed and written band by band, in one computation
            records = progress.compute(pending, f"checkpoint {label}")
            written += sum(int(rec["bytes"]) for block in records for rec in np.asarray(block).ravel())
        record = CheckpointRecord(label, directory, len(frames), written, time.perf_counter() - start)
        self.records.append(record)
        log.info("Stored %s of %d frame(s) in %s (%.1f MB, %.1f s)", name, len(frames), directory,
                 written / 1e6, record.seconds)
        return out

    def _new_directory(self, label: str) -> str:
        """The next checkpoint directory (``NN_<label>``); a local one is created and tracked for :meth:`release`."""
        self.count += 1
        if is_url(self.root):
            return f"{self.root}/{self.count:02d}_{label}"
        directory = os.path.join(self.root, f"{self.count:02d}_{label}")
        os.makedirs(directory, exist_ok=True)
        self._live.append(directory)
        return directory

    def note(self, label: str, directory: str, frames: int, nbytes: int, seconds: float) -> None:
        """Count a write made outside :meth:`write` (a resumable run's snapshot) in the run's checkpoint figures.

        The directory is not managed here: its owner deletes it.
        """
        self.records.append(CheckpointRecord(label, directory, frames, int(nbytes), seconds))

    def _write_url(self, frames: Sequence[Frame], label: str, directory: str, chunks, start: float) -> list[Frame]:
        """:meth:`write` on an fsspec URL: through zarr, no write summaries (the stack computes its own)."""
        from ..io.zarr import write_zarr_url_delayed

        stores = [_store_path(directory, i, f) for i, f in enumerate(frames)]
        progress.compute([write_zarr_url_delayed(f, s, chunks=chunks) for f, s in zip(frames, stores)],
                         f"checkpoint {label}")
        fs, path = fsspec.core.url_to_fs(directory)
        record = CheckpointRecord(label, directory, len(frames), int(fs.du(path, total=True)),
                                  time.perf_counter() - start)
        self.records.append(record)
        log.info("Checkpointed %d frame(s) to %s (%.1f MB, %.1f s)", len(frames), directory, record.bytes / 1e6,
                 record.seconds)
        return [open_zarr(s).replace(filename=f.filename, path=f.path) for f, s in zip(frames, stores)]

    def release(self) -> list[str]:
        """Delete the checkpoints nothing can read any more (nothing when keeping them); the deleted directories.

        A checkpoint is still needed while any array alive in this process reads one of its stores
        (:func:`draconis.io.zarr.live_stores`): streams, calibrations, frames a primitive holds.
        """
        if self.keep or not self._live or is_url(self.root):
            # (on a URL the arrays read stores through zarr, untracked: everything goes at the end)
            return []
        used = {os.path.dirname(store) for store in live_stores()}
        gone = [d for d in self._live if d not in used]
        for directory in gone:
            shutil.rmtree(directory, ignore_errors=True)
            self._live.remove(directory)
            log.debug("Removed checkpoint %s (nothing reads it any more)", directory)
        return gone

    def cleanup(self) -> None:
        """Remove the checkpoints (unless kept)."""
        if self.keep:
            if self.count:
                log.info("Checkpoints kept in %s", self.root)
            return
        if is_url(self.root):
            fs, path = fsspec.core.url_to_fs(self.root)
            if fs.exists(path):
                fs.rm(path, recursive=True)
        else:
            shutil.rmtree(self.root, ignore_errors=True)
        self._live.clear()


def _store_path(directory: str, index: int, frame: Frame) -> str:
    """Where a checkpoint directory keeps frame number ``index`` (its order and name, for a reader)."""
    return f"{directory}/{index:04d}_{os.path.splitext(frame.filename)[0]}.zarr"
