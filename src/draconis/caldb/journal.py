"""Storing a processed calibration so that a killed process never leaves it half-stored.

A calibration is stored in three steps: its copy under
``calibrations/<caltype>/`` (a temporary name, then a rename), then a row in
every ``store`` database.  A process killed between them (SIGKILL, power
loss) would leave a calibration outside ``calibrations/`` and the databases,
a copy no database lists, or a row whose md5 describes the previous file.

So the intent is written first, as a small journal entry under
``calibrations/.pending/``, from the moment the runner writes a processed
calibration until every database has its row.  A later run in the same
directory, or ``draconis caldb``, finds the entries of processes that are
gone (:func:`recover`) and completes them: the file, still complete on disk
(outputs are written atomically), is copied and added, exactly as the killed
run would have done.  An entry whose file is gone (its run was rolled back,
or the user removed it) is dropped.  Temporary copies left by dead
processes are removed.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import uuid
from pathlib import Path
from typing import Any

from ..errors import DraconisError

log = logging.getLogger("draconis.caldb")

PENDING = ".pending"


def calibrations_dir(cwd: str | os.PathLike | None = None) -> Path:
    """``<cwd>/calibrations``: where processed calibrations are cached and journaled."""
    return Path(cwd or os.getcwd()) / "calibrations"


def _config_source(config: Any) -> str | None:
    if config is None:
        return None
    if isinstance(config, (str, os.PathLike)):
        return os.path.abspath(os.fspath(config))
    source = getattr(config, "source", None)
    return os.path.abspath(source) if source else None


def begin(path: str | os.PathLike, caltype: str, config: Any = None, *, cwd: str | os.PathLike | None = None) -> Path:
    """Record that ``path`` is to be stored as ``caltype``; return the entry (give it to :func:`finish`)."""
    directory = calibrations_dir(cwd) / PENDING
    entry = directory / f"{os.getpid()}-{uuid.uuid4().hex[:12]}.json"
    record = {"path": os.path.abspath(os.fspath(path)), "caltype": caltype, "config": _config_source(config),
              "pid": os.getpid(), "host": socket.gethostname()}
    tmp = entry.with_suffix(".part")
    for attempt in range(3):  # another process's finish() may remove the empty directory meanwhile
        directory.mkdir(parents=True, exist_ok=True)
        try:
            tmp.write_text(json.dumps(record), encoding="utf-8")
            break
        except FileNotFoundError:
            if attempt == 2:
                raise
    os.replace(tmp, entry)
    return entry


def finish(entry: Path | None) -> None:
    """The calibration of ``entry`` is stored (or will not be): forget it.

    The journal directory, and ``calibrations/`` itself, are removed when
    that leaves them empty (a failed run leaves nothing behind).
    """
    if entry is None:
        return
    entry.unlink(missing_ok=True)
    for directory in (entry.parent, entry.parent.parent):
        try:
            directory.rmdir()
        except OSError:  # not empty (other entries, stored calibrations), or already gone
            break


def part_name(dest: Path) -> str:
    """Prefix of a temporary copy of ``dest``, naming this process so a later run can tell it is orphaned."""
    return f".{dest.name}.{os.getpid()}."


def _alive(pid: int, host: str) -> bool:
    if host != socket.gethostname():
        return True  # another host's process: not ours to judge
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover(cwd: str | os.PathLike | None = None) -> list[str]:
    """Complete the stores that processes now gone left unfinished under ``<cwd>/calibrations``.

    Returns
    -------
    list of str
        The calibrations stored now (paths of their copies).
    """
    from . import store_calibration

    root = calibrations_dir(cwd)
    stored: list[str] = []
    for entry in sorted((root / PENDING).glob("*.json")) if (root / PENDING).is_dir() else []:
        try:
            record = json.loads(entry.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # being written, or not ours
        if _alive(int(record.get("pid", -1)), str(record.get("host", ""))):
            continue
        if not os.path.isfile(record["path"]):
            log.debug("%s: not stored by the killed process %s and gone since; forgotten",
                      record["path"], record["pid"])
            finish(entry)
            continue
        try:
            copies = store_calibration(record["path"], record["caltype"], config=record.get("config"),
                                       journal=entry, cwd=root.parent)
        except DraconisError as err:  # e.g. its database is gone: say so, keep the entry for later
            log.warning("%s: a process that ended (pid %s) left it to be stored as %s, and that fails: %s",
                        record["path"], record["pid"], record["caltype"], err)
            continue
        log.warning("%s: stored as %s now; the process that wrote it (pid %s) ended before storing it",
                    os.path.basename(record["path"]), record["caltype"], record["pid"])
        stored.extend(copies)
    _remove_dead_parts(root)
    return stored


def _remove_dead_parts(root: Path) -> None:
    """Temporary copies (``.<name>.<pid>.<random>.part``) of processes that are gone."""
    for part in root.glob("processed_*/.*.part"):
        try:
            pid = int(part.name.rsplit(".", 3)[-3])
        except (IndexError, ValueError):
            continue
        if not _alive(pid, socket.gethostname()):
            part.unlink(missing_ok=True)
