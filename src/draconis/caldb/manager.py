"""Opening calibration databases and running statements on them safely.

Many processes may add and look up calibrations at once (a cluster reducing
several targets).  SQLite copes with that in WAL mode (readers never block
the writer) with a busy timeout; writes open ``BEGIN IMMEDIATE`` so two
writers queue on the lock instead of deadlocking on a lock upgrade; and any
"database is locked" / serialization failure left over is retried with
jittered exponential backoff.  Adding the same file twice updates its row
(an upsert on the unique path), so retries and races never duplicate.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import create_engine, delete, event, insert, inspect, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError

try:  # POSIX only; elsewhere SQLite's own busy handling is all there is
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

from ..errors import CalDBError
from .config import DatabaseSpec, database_spec, hide_password
from .ingest import describe_file
from .models import SCHEMA_VERSION, Base, Calibration, SchemaInfo

__all__ = ["CalibrationDatabase", "CalFile", "open_database"]

log = logging.getLogger("draconis.caldb")
T = TypeVar("T")

#: how long a statement keeps retrying on lock contention before giving up
RETRY_SECONDS = 120.0
_SQLITE_BUSY_MS = 30000
_TRANSIENT_PGCODES = {"40001", "40P01", "55P03"}  # serialization failure, deadlock, lock not available


class CalFile(NamedTuple):
    """One stored calibration as ``list_files`` reports it."""

    name: str
    directory: str
    caltype: str
    path: str


def _is_transient(err: DBAPIError) -> bool:
    """Lock contention that a retry resolves (never a connection or schema problem)."""
    orig = getattr(err, "orig", None)
    if getattr(orig, "pgcode", None) in _TRANSIENT_PGCODES:
        return True
    text = str(orig or err).lower()
    return "database is locked" in text or "database table is locked" in text or "busy" in text


def _first_line(err: BaseException) -> str:
    orig = getattr(err, "orig", None) or err
    text = str(orig).strip().splitlines()
    return text[0] if text else type(orig).__name__


def _sqlite_engine(path: str) -> Engine:
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": _SQLITE_BUSY_MS / 1000})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # noqa: ANN001
        # We issue BEGIN ourselves (below) so writes can take the lock up front.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {_SQLITE_BUSY_MS}")
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
        except Exception:  # noqa: BLE001 - switching needs a moment alone; init already did it
            pass
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("draconis_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def _server_engine(url: str) -> Engine:
    connect_args: dict[str, Any] = {}
    if url.startswith("postgresql"):
        connect_args["connect_timeout"] = 10
    try:
        return create_engine(url, pool_pre_ping=True, connect_args=connect_args)
    except (ArgumentError, NoSuchModuleError, ImportError, ValueError) as err:
        raise CalDBError(f"{url}: not a usable database URL ({_first_line(err)})") from err


class CalibrationDatabase:
    """One calibration database (an SQLite file or an SQLAlchemy URL).

    This is the object :func:`draconis.caldb.set_local_database` returns; it
    has DRAGONS' local-database method names (``init``, ``add_cal``,
    ``remove_cal``, ``list_files``).

    Parameters
    ----------
    spec : DatabaseSpec or str
        Configured database, or a path / URL.
    """

    def __init__(self, spec: DatabaseSpec | str):
        self.spec = spec if isinstance(spec, DatabaseSpec) else database_spec(str(spec), ("get", "store"))
        if not self.spec.is_local:
            raise CalDBError(f"{self.spec.url}: remote (archive) databases cannot be used offline")
        self._engine: Engine | None = None
        self._engine_pid: int | None = None
        self._ready = False
        self._lock = threading.Lock()

    # -- identity ------------------------------------------------------------
    @property
    def name(self) -> str:
        """The file (SQLite) or URL without password, for messages."""
        return self._file if self.spec.kind == "sqlite" else hide_password(self.spec.url)

    @property
    def _file(self) -> str:
        """The SQLite database file (databases of kind 'sqlite' always have one)."""
        if self.spec.path is None:
            raise CalDBError(f"{hide_password(self.spec.url)}: not an SQLite database file")
        return self.spec.path

    def __repr__(self) -> str:
        return f"<CalibrationDatabase {self.name}>"

    # -- engine --------------------------------------------------------------
    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine, made per process (connections must not cross a fork)."""
        with self._lock:
            if self._engine is None or self._engine_pid != os.getpid():
                if self._engine is not None:
                    self._engine.dispose(close=False)
                self._engine = (_sqlite_engine(self._file) if self.spec.kind == "sqlite"
                                else _server_engine(self.spec.url))
                self._engine_pid = os.getpid()
                self._ready = False
        return self._engine

    def _retry(self, func: Callable[[], T], what: str) -> T:
        delay, deadline = 0.01, time.monotonic() + RETRY_SECONDS
        while True:
            try:
                return func()
            except DBAPIError as err:
                if not _is_transient(err) or time.monotonic() > deadline:
                    raise self._error(err, what) from err
                log.debug("%s: %s busy, retrying in %.2fs", what, self.name, delay)
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 1.0)

    def _error(self, err: BaseException, what: str) -> CalDBError:
        text = _first_line(err)
        if self.spec.kind != "sqlite" and any(s in text.lower() for s in ("connect", "connection", "resolve",
                                                                         "timeout", "refused", "host")):
            return CalDBError(f"{self.name}: cannot connect to the calibration database ({text})")
        return CalDBError(f"{self.name}: {what} failed ({text})")

    @contextlib.contextmanager
    def _writer_turn(self) -> Iterator[None]:
        """For SQLite, queue writers on a lock file beside the database.

        SQLite's busy handler polls with sleeps of up to 100 ms, so under
        heavy contention writers spend most of their time asleep; an flock
        wakes the next writer as soon as the lock is released.
        """
        if self.spec.kind != "sqlite" or fcntl is None:
            yield
            return
        try:
            fd = os.open(self._file + ".lock", os.O_RDWR | os.O_CREAT, 0o666)
        except OSError:  # read-only location: rely on SQLite's locking alone
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _write(self, func: Callable[[Connection], T], what: str) -> T:
        def attempt() -> T:
            with self._writer_turn(), self.engine.connect().execution_options(draconis_write=True) as conn, \
                    conn.begin():
                return func(conn)
        return self._retry(attempt, what)

    def _read(self, func: Callable[[Connection], T], what: str) -> T:
        def attempt() -> T:
            with self.engine.connect() as conn, conn.begin():
                return func(conn)
        return self._retry(attempt, what)

    # -- state ---------------------------------------------------------------
    def exists(self) -> bool:
        """True when the database has been initialised (its tables exist)."""
        if self.spec.kind == "sqlite" and not os.path.isfile(self._file):
            return False
        return self._retry(lambda: inspect(self.engine).has_table(Calibration.__tablename__), "inspection")

    def check_ready(self) -> None:
        """Raise a clear :class:`CalDBError` unless the database can be used.

        Raises
        ------
        CalDBError
            SQLite file missing, not initialised, server unreachable.
        """
        if self.spec.kind == "sqlite" and not os.path.isfile(self._file):
            raise CalDBError(f"{self._file}: calibration database does not exist; "
                             f"create it with 'draconis caldb init'")
        if self._ready and self._engine_pid == os.getpid():
            return
        if not self.exists():
            raise CalDBError(f"{self.name}: not an initialised calibration database; "
                             f"run 'draconis caldb init'")
        self._ready = True

    def init(self, wipe: bool = False, *, exist_ok: bool = True) -> None:
        """Create the database (its tables); with ``wipe``, empty an existing one.

        Parameters
        ----------
        wipe : bool
            Empty an existing database.
        exist_ok : bool
            An existing database is left as it is (True, the API default, so
            a script that starts with ``caldb.init()`` can be run again) or
            is an error (False: the ``caldb init`` command).

        Raises
        ------
        CalDBError
            It exists, ``wipe`` and ``exist_ok`` are False; the location
            cannot be written; the server cannot be reached.
        """
        created_file = False
        if self.spec.kind == "sqlite":
            created_file = self._prepare_sqlite_file(wipe)
        try:
            if not created_file and self.exists():
                if not wipe:
                    if not exist_ok:
                        raise CalDBError(f"{self.name}: calibration database already exists "
                                         f"(use -w/--wipe to empty it)")
                    self._ready = True
                    log.info("calibration database %s already exists; kept as it is", self.name)
                    return
                self._retry(lambda: Base.metadata.drop_all(self.engine), "wiping")
            self._create_tables()
        except BaseException:
            if created_file:
                self._remove_sqlite_files()
            raise
        self._ready = True
        log.info("initialised calibration database %s", self.name)

    def _prepare_sqlite_file(self, wipe: bool) -> bool:
        path = self._file
        parent = os.path.dirname(path) or "."
        if os.path.isdir(path):
            raise CalDBError(f"{path}: is a directory, not a database file")
        if not os.path.isdir(parent):
            raise CalDBError(f"{path}: cannot create the calibration database: directory {parent} does not exist")
        if os.path.exists(path):
            return False
        if not os.access(parent, os.W_OK):
            raise CalDBError(f"{path}: cannot create the calibration database: directory {parent} is not writable")
        return True

    def _remove_sqlite_files(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
        for suffix in ("", "-wal", "-shm", "-journal", ".lock"):
            try:
                os.unlink(self._file + suffix)
            except OSError:
                pass

    def _create_tables(self) -> None:
        def create(conn: Connection) -> None:
            Base.metadata.create_all(conn)
            conn.execute(delete(SchemaInfo))
            conn.execute(insert(SchemaInfo).values(id=1, version=SCHEMA_VERSION, created=_now()))

        if self.spec.kind == "sqlite":
            try:
                with self.engine.connect() as conn:
                    conn.exec_driver_sql("PRAGMA journal_mode = WAL")
            except SQLAlchemyError as err:
                raise CalDBError(f"{self._file}: cannot create the calibration database "
                                 f"({_first_line(err)})") from err
        self._write(create, "initialisation")

    # -- contents ------------------------------------------------------------
    def add_cal(self, path: str | os.PathLike, caltype: str | None = None) -> CalFile:
        """Add (or update) one processed calibration file.

        Parameters
        ----------
        path : str or path
            A processed dark, flat, standard, or a BPM; the file stays where it is.
        caltype : str, optional
            Expected type (checked against the tags).

        Returns
        -------
        CalFile
            What was stored.

        Raises
        ------
        CalDBError
            Not a processed calibration, descriptors missing, database unusable.
        """
        self.check_ready()
        values = describe_file(path, caltype)
        self.add_values(values)
        log.info("added %s (%s) to %s", values["path"], values["caltype"], self.name)
        return CalFile(values["filename"], values["directory"], values["caltype"], values["path"])

    def add_values(self, values: dict[str, Any]) -> None:
        """Upsert one row (column values as :func:`~draconis.caldb.ingest.describe_file` returns)."""
        self.check_ready()
        values = {**values, "ingested": _now()}
        unknown = set(values) - set(_ROW_COLUMNS)
        if unknown:
            raise CalDBError(f"{values.get('path')}: unknown column(s) {', '.join(sorted(unknown))}")
        row = {key: values.get(key) for key in _ROW_COLUMNS}
        self._write(lambda conn: self._upsert(conn, row), f"adding {values['path']}")

    @staticmethod
    def _upsert(conn: Connection, row: dict[str, Any]) -> None:
        stmt = _upsert_statement(conn.dialect.name)
        if stmt is None:  # other servers: delete-then-insert inside the same transaction
            conn.execute(delete(Calibration).where(Calibration.path == row["path"]))
            stmt = insert(Calibration)
        conn.execute(stmt, row)

    def remove_cal(self, name: str | os.PathLike) -> int:
        """Forget a calibration; the file on disk is never touched.

        Parameters
        ----------
        name : str or path
            A path (removes that entry) or a file name (removes every entry
            with that name, in any directory).

        Returns
        -------
        int
            Number of entries removed.

        Raises
        ------
        CalDBError
            Nothing by that name is stored.
        """
        self.check_ready()
        name = os.fspath(name)
        full = os.path.abspath(name)
        base = os.path.basename(name)

        def remove(conn: Connection) -> int:
            count = conn.execute(delete(Calibration).where(Calibration.path == full)).rowcount
            if not count and base:
                count = conn.execute(delete(Calibration).where(Calibration.filename == base)).rowcount
            return count

        count = self._write(remove, f"removing {name}")
        if not count:
            raise CalDBError(f"{name}: not in the calibration database {self.name}")
        log.info("removed %s from %s", name, self.name)
        return count

    def list_files(self) -> list[CalFile]:
        """Every stored calibration, sorted by type then name."""
        self.check_ready()
        stmt = (select(Calibration.filename, Calibration.directory, Calibration.caltype, Calibration.path)
                .order_by(Calibration.caltype, Calibration.filename, Calibration.directory))
        return self._read(lambda conn: [CalFile(*row) for row in conn.execute(stmt)], "listing")

    def query(self, stmt) -> list[Any]:
        """Run a SELECT and return its rows (with retries)."""
        self.check_ready()
        return self._read(lambda conn: list(conn.execute(stmt)), "query")


_ROW_COLUMNS = tuple(c.name for c in Calibration.__table__.columns if c.name != "id")
_UPSERTS: dict[str, Any] = {}


def _upsert_statement(dialect: str):
    """INSERT ... ON CONFLICT (path) DO UPDATE, built once per dialect (None if unsupported)."""
    if dialect not in _UPSERTS:
        if dialect == "sqlite":
            from sqlalchemy.dialects import sqlite as module
        elif dialect == "postgresql":
            from sqlalchemy.dialects import postgresql as module  # type: ignore[no-redef]
        else:
            return None
        stmt = module.insert(Calibration)
        changes = {key: stmt.excluded[key] for key in _ROW_COLUMNS if key != "path"}
        _UPSERTS[dialect] = stmt.on_conflict_do_update(index_elements=["path"], set_=changes)
    return _UPSERTS[dialect]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


_OPEN: dict[str, CalibrationDatabase] = {}
_OPEN_LOCK = threading.Lock()


def open_database(spec: DatabaseSpec | str) -> CalibrationDatabase:
    """The (per-process shared) :class:`CalibrationDatabase` for a spec, path or URL."""
    db = CalibrationDatabase(spec)
    with _OPEN_LOCK:
        return _OPEN.setdefault(db.spec.url, db)
