"""Output files of a run, written all-or-nothing, and zarr checkpoints.

:class:`OutputLedger` records every file the run writes.  Each output is
written to a temporary name and renamed when complete (``draconis.io``); an
existing file about to be replaced is first hard-linked to a backup, so
:meth:`OutputLedger.rollback` can remove what this run wrote and put back what
it replaced.  Inputs are never written over.
"""
from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Iterable, Sequence

from ..errors import InputError
from ..frame import Frame
from ..io import open_fits, open_zarr, write_fits_delayed, write_zarr_delayed
from .. import progress

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
        progress.compute([write_fits_delayed(f, p) for f, p in zip(frames, paths)], label)
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


class Checkpoints:
    """Zarr checkpoints of one run under ``root`` (removed by :meth:`cleanup` unless kept)."""

    def __init__(self, root: str, keep: bool = False):
        self.root = root
        self.keep = keep
        self.count = 0

    def write(self, frames: Sequence[Frame], label: str = "checkpoint") -> list[Frame]:
        """Persist ``frames`` to zarr in one computation and reopen them lazily."""
        if not frames:
            return []
        self.count += 1
        directory = os.path.join(self.root, f"{self.count:02d}_{label}")
        os.makedirs(directory, exist_ok=True)
        stores = [os.path.join(directory, f"{i:04d}_{os.path.splitext(f.filename)[0]}.zarr")
                  for i, f in enumerate(frames)]
        progress.compute([write_zarr_delayed(f, s) for f, s in zip(frames, stores)], f"checkpoint {label}")
        log.info("Checkpointed %d frame(s) to %s", len(frames), directory)
        return [open_zarr(s).replace(filename=f.filename, path=f.path) for f, s in zip(frames, stores)]

    def cleanup(self) -> None:
        if self.keep:
            if self.count:
                log.info("Checkpoints kept in %s", self.root)
            return
        shutil.rmtree(self.root, ignore_errors=True)
