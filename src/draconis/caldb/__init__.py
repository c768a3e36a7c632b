"""The calibration manager: configured databases, ``caldb`` operations, association.

DRAGONS users write::

    from draconis import caldb
    db = caldb.set_local_database()      # the first local database of the configuration
    db.init()                            # create it (wipe=True to empty it)
    db.add_cal("N20160102S0423_dark.fits")
    db.list_files(); db.remove_cal("N20160102S0423_dark.fits")

The same operations exist as module functions (``caldb.init()``,
``caldb.add_cal(path)``, ``caldb.remove_cal(name)``, ``caldb.list_files()``)
acting on the database :func:`set_local_database` chose (or, if it was never
called, the configuration's first local database).

The runner uses :func:`get_calibration` (search the ``get`` databases in
order) and :func:`store_calibration` (cache a new processed calibration under
``./calibrations/processed_<type>/`` and add it to every ``store`` database).
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, NamedTuple

from ..errors import CalDBError, CalibrationNotFoundError
from ..io.fits import new_file_mode
from . import journal as journal_mod
from .config import CalibConfig, ConfigDeprecationWarning, DatabaseSpec, database_spec, load_config
from .ingest import (
    CALTYPES,
    caltype_from_tags,
    check_caltype,
    describe_file,
    descriptor_failure,
    frame_descriptors,
    open_any,
)
from .manager import CalFile, CalibrationDatabase, open_database
from .rules import RULES, build_query, rule_for

__all__ = [
    "set_local_database", "init", "add_cal", "remove_cal", "list_files",
    "get_calibration", "find_calibration", "store_calibration", "validate_calibration", "CalMatch",
    "load_config", "database_spec", "CalibConfig", "DatabaseSpec", "ConfigDeprecationWarning",
    "CalibrationDatabase", "CalFile", "CALTYPES", "RULES", "rule_for", "caltype_from_tags",
]

log = logging.getLogger("draconis.caldb")

_current: CalibrationDatabase | None = None
_current_lock = threading.Lock()


def _local_spec(path: str | os.PathLike | None, config: Any) -> DatabaseSpec:
    if path is not None:
        return database_spec(os.fspath(path), ("get", "store"))
    cfg = load_config(config)
    spec = cfg.local_database
    if spec is None:
        where = cfg.source or "no configuration file found (~/.draconis/draconisrc, ~/.dragons/dragonsrc)"
        raise CalDBError(f"{where}: no local calibration database configured; add a [calibs] section with "
                         f"'databases = /path/to/cal_manager.db get store', or pass -d/--database")
    return spec


def set_local_database(path: str | os.PathLike | None = None, *, config: Any = None) -> CalibrationDatabase:
    """Choose the local calibration database the ``caldb`` functions act on.

    Parameters
    ----------
    path : str or path, optional
        SQLite file, directory (``cal_manager.db`` inside) or SQLAlchemy URL.
        Default: the first local database in the configuration.
    config : str or CalibConfig, optional
        Configuration file to read instead of the default search.

    Returns
    -------
    CalibrationDatabase
        With ``init(wipe=False)``, ``add_cal(path)``, ``remove_cal(name)``, ``list_files()``.

    Raises
    ------
    CalDBError, ConfigError
        No database configured, or a malformed configuration.
    """
    global _current
    db = open_database(_local_spec(path, config))
    with _current_lock:
        _current = db
    return db


def _database(database: Any = None, config: Any = None) -> CalibrationDatabase:
    if database is not None:
        return database if isinstance(database, CalibrationDatabase) else open_database(_local_spec(database, None))
    if config is None and _current is not None:
        return _current
    return open_database(_local_spec(None, config))


def init(wipe: bool = False, *, database: Any = None, config: Any = None) -> CalibrationDatabase:
    """Create the local calibration database (kept if it exists, emptied with ``wipe``).

    See :meth:`CalibrationDatabase.init`.
    """
    db = _database(database, config)
    db.init(wipe=wipe)
    return db


def add_cal(path: str | os.PathLike, *, database: Any = None, config: Any = None) -> CalFile:
    """Add a processed calibration or BPM to the local database (``caldb add``)."""
    return _database(database, config).add_cal(path)


def remove_cal(name: str | os.PathLike, *, database: Any = None, config: Any = None) -> int:
    """Forget a calibration (``caldb remove``); the file is not deleted."""
    return _database(database, config).remove_cal(name)


def list_files(*, database: Any = None, config: Any = None) -> list[CalFile]:
    """Every calibration in the local database (``caldb list``)."""
    return _database(database, config).list_files()


# -- association ---------------------------------------------------------------
class CalMatch(NamedTuple):
    """A calibration chosen for a frame."""

    path: str
    caltype: str
    md5: str
    database: str


def _get_databases(cfg: CalibConfig) -> list[DatabaseSpec]:
    specs = cfg.get_databases
    if not cfg.databases and _current is not None:
        # API users who only called set_local_database(path) expect it to be searched.
        specs = [_current.spec]
    return specs


def find_calibration(frame_or_path: Any, caltype: str, *, config: Any = None) -> CalMatch | None:
    """Like :func:`get_calibration`, also saying which database answered and the file's md5."""
    check_caltype(caltype)
    cfg = load_config(config)
    frame = open_any(frame_or_path)
    sci = frame_descriptors(frame)
    stmt = build_query(caltype, sci, frame.tags)
    if stmt is None:
        log.debug("no %s association rule for %s", caltype, sci["instrument"])
        return None
    for spec in _get_databases(cfg):
        if not spec.is_local:
            log.warning("skipping remote calibration database %s (no network access)", spec.url)
            continue
        db = open_database(spec)
        for row in db.query(stmt):
            if os.path.isfile(row.path):
                return CalMatch(row.path, row.caltype, row.md5, db.name)
            log.warning("%s: listed in %s but no longer on disk; skipped", row.path, db.name)
    _explain_no_match(frame, caltype, sci)
    return None


def _explain_no_match(frame: Any, caltype: str, sci: dict[str, Any]) -> None:
    """Say which descriptor the rule needs and the frame cannot give (e.g. EXPTIME missing), if that is why."""
    rule = rule_for(sci["instrument"], caltype)
    if rule is None:
        return
    for name in (*rule.match, *rule.tolerance):
        if sci.get(name) is None and (problem := descriptor_failure(frame, name)):
            raise CalibrationNotFoundError(f"a {caltype} is matched on {name}, which cannot be computed: {problem}")


def get_calibration(frame_or_path: Any, caltype: str, *, config: Any = None) -> str | None:
    """The best processed calibration of ``caltype`` for a frame.

    The ``get`` databases of the configuration are searched in order; the
    first that has a match answers.

    Parameters
    ----------
    frame_or_path : Frame or str or path
        The frame needing a calibration.
    caltype : str
        ``'processed_dark'``, ``'processed_flat'``, ``'processed_bpm'`` or ``'processed_standard'``.
    config : str or CalibConfig, optional
        Configuration file (``-c/--config``) instead of the default search.

    Returns
    -------
    str or None
        Absolute path of the calibration, or None when nothing matches
        (including instruments without a rule for the type, e.g. GSAOI darks).

    Raises
    ------
    CalDBError
        Unknown type, a configured database missing / unreachable, the frame unreadable.
    ConfigError
        Malformed configuration.
    """
    match = find_calibration(frame_or_path, caltype, config=config)
    return match.path if match else None


def validate_calibration(path: str | os.PathLike, caltype: str) -> str:
    """Check a calibration given by the user (``--user_cal TYPE:FILE``) is of that type.

    Parameters
    ----------
    path : str or path
        The file.
    caltype : str
        e.g. ``'processed_dark'``: the file must be tagged PROCESSED and DARK.

    Returns
    -------
    str
        The absolute path.

    Raises
    ------
    CalDBError
        Unknown type, missing or unreadable file, or tags of another kind.
    """
    check_caltype(caltype)
    full = os.path.abspath(os.fspath(path))
    if not os.path.isfile(full):
        raise CalDBError(f"{full}: no such file (given as {caltype})")
    tags = open_any(full).tags
    if caltype_from_tags(tags) != caltype:
        raise CalDBError(f"{full}: not a {caltype} (tags: {' '.join(sorted(tags))}; expected PROCESSED and "
                         f"{CALTYPES[caltype]})")
    return full


def _copy_atomic(source: str, dest: Path) -> None:
    if dest.exists() and os.path.samefile(source, dest):
        return
    fd, tmp = tempfile.mkstemp(prefix=journal_mod.part_name(dest), suffix=".part", dir=dest.parent)
    os.close(fd)
    try:
        os.chmod(tmp, new_file_mode())  # not mkstemp's 0600: others sharing the database read the copies
        shutil.copyfile(source, tmp)
        os.replace(tmp, dest)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def store_calibration(path: str | os.PathLike, caltype: str, *, config: Any = None,
                      journal: Path | None = None, cwd: str | os.PathLike | None = None) -> list[str]:
    """Keep a processed calibration the runner just wrote.

    Copies it to ``./calibrations/<caltype>/`` (relative to the current
    directory) and adds that copy to every database configured with ``store``.
    The intent is journaled first (:mod:`draconis.caldb.journal`), so a
    process killed half-way is completed by the next one.

    Parameters
    ----------
    path : str or path
        The processed calibration (e.g. ``S20200107S0049_dark.fits``).
    caltype : str
        Its type; must agree with its tags (DARK+PROCESSED for ``processed_dark``...).
    config : str or CalibConfig, optional
        Configuration file instead of the default search.
    journal : Path, optional
        The journal entry recording this store (from :func:`journal.begin`),
        removed once done; default: one is made here.
    cwd : path, optional
        Directory holding ``calibrations/`` (default: the current directory).

    Returns
    -------
    list of str
        The files written: ``[<abs path of the copy under calibrations/>]``.

    Raises
    ------
    CalDBError
        Not a processed calibration of that type, a ``store`` database
        missing or unreachable (nothing is copied or added then).
    """
    check_caltype(caltype)
    cfg = load_config(config)
    values = describe_file(path, caltype)
    for spec in cfg.store_databases:
        if not spec.is_local:
            log.warning("not storing %s in remote database %s (no network access)", values["filename"], spec.url)
    targets = [open_database(spec) for spec in cfg.store_databases if spec.is_local]
    for db in targets:  # fail before writing anything
        db.check_ready()
    dest_dir = journal_mod.calibrations_dir(cwd) / caltype
    entry = None
    try:
        entry = journal or journal_mod.begin(values["path"], caltype, config, cwd=cwd)
        dest = _copy_into(values, dest_dir)
        values.update(path=str(dest), directory=str(dest_dir))
        for db in targets:
            db.add_values(values)
            log.info("stored %s in %s", dest, db.name)
    except BaseException:
        if journal is None:  # ours: the caller sees the error; nothing is left to complete later
            journal_mod.finish(entry)
        raise
    journal_mod.finish(entry)
    return [str(dest)]


def _copy_into(values: dict[str, Any], dest_dir: Path) -> Path:
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
        dest = dest_dir / values["filename"]
        _copy_atomic(values["path"], dest)
    except OSError as err:
        raise CalDBError(f"{dest_dir}: cannot store {values['filename']} ({err.strerror or err})") from err
    return dest
