"""The calibration-database configuration: which databases, in which order.

The file is INI, in the spirit of DRAGONS' ``dragonsrc``::

    [calibs]
    databases = ~/.dragons/dragons.db get store
                postgresql+psycopg2://me@dbhost/cals get

Each line of ``databases`` is a location and optional flags.  ``get``: search
this database for calibrations; ``store``: add the processed calibrations that
``reduce`` makes.  No flag means ``get`` only; once any flag is given ``get``
must be listed explicitly; an unknown flag is an error.  A location that is an
existing directory means ``cal_manager.db`` inside it; a URL
(:func:`draconis.io.is_url`) is SQLAlchemy's, or ``http(s)`` for the Gemini
archive, which is skipped offline; anything else, ``file://`` URLs included,
is a local SQLite file.  The older key ``database_dir``
(one directory) is still read, with a deprecation warning.

Which file is read, first found wins:

1. the ``--config`` option / ``config=`` argument;
2. ``$DRACONISRC``;
3. ``~/.draconis/draconisrc``;
4. ``$DRAGONSRC``;
5. ``~/.dragons/dragonsrc``;
6. ``~/.geminidr/rsys.cfg`` (the old DRAGONS file some tutorials still show).

A file named explicitly (1, 2, 4) must exist.
"""
from __future__ import annotations

import configparser
import dataclasses
import os
import shlex
import warnings
from pathlib import Path

from ..errors import ConfigError
from ..io import is_url, local_path

__all__ = ["DatabaseSpec", "CalibConfig", "ConfigDeprecationWarning", "find_config_file", "load_config",
           "parse_config_text", "database_spec", "hide_password", "DEFAULT_DB_NAME", "KNOWN_FLAGS"]

#: SQLite file used when a configured location is a directory
DEFAULT_DB_NAME = "cal_manager.db"
KNOWN_FLAGS = ("get", "store")
_REMOTE_SCHEMES = ("http://", "https://")


class ConfigDeprecationWarning(FutureWarning):
    """A configuration key still works but will go away (shown to users by default)."""


@dataclasses.dataclass(frozen=True)
class DatabaseSpec:
    """One configured calibration database.

    Attributes
    ----------
    location : str
        The text as configured (after ``~`` and ``$VAR`` expansion).
    url : str
        SQLAlchemy URL (``sqlite:////abs/path.db``, ``postgresql+psycopg2://...``),
        or the archive URL for remote databases.
    kind : str
        ``'sqlite'``, ``'sql'`` (any other SQLAlchemy URL) or ``'remote'`` (archive, not used offline).
    get, store : bool
        The flags.
    path : str or None
        The SQLite file, for ``kind == 'sqlite'``.
    """

    location: str
    url: str
    kind: str
    get: bool = True
    store: bool = False
    path: str | None = None

    @property
    def is_local(self) -> bool:
        """True for databases draconis manages itself (SQLite file or SQLAlchemy URL)."""
        return self.kind in ("sqlite", "sql")

    def describe(self) -> str:
        """One line for ``caldb config``."""
        flags = " ".join(f for f, on in (("get", self.get), ("store", self.store)) if on) or "(no flags)"
        where = self.path if self.kind == "sqlite" else hide_password(self.url)
        return f"{where}  [{self.kind}]  {flags}"


@dataclasses.dataclass(frozen=True)
class CalibConfig:
    """The parsed ``[calibs]`` section.

    Attributes
    ----------
    databases : tuple of DatabaseSpec
        In cascade order.
    source : str or None
        File read, or None when no configuration file exists.
    """

    databases: tuple[DatabaseSpec, ...] = ()
    source: str | None = None

    @property
    def get_databases(self) -> list[DatabaseSpec]:
        """Databases searched for calibrations, in order."""
        return [d for d in self.databases if d.get]

    @property
    def store_databases(self) -> list[DatabaseSpec]:
        """Databases that processed calibrations are added to."""
        return [d for d in self.databases if d.store]

    @property
    def local_database(self) -> DatabaseSpec | None:
        """The first database draconis manages itself (what ``caldb`` commands act on)."""
        return next((d for d in self.databases if d.is_local), None)


def hide_password(url: str) -> str:
    """The URL with any password replaced by ``***``."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - display only
        return url


def database_spec(location: str, flags: tuple[str, ...] = ("get",), *, source: str | None = None) -> DatabaseSpec:
    """Interpret one database location (path, directory or URL).

    Parameters
    ----------
    location : str
        ``~`` and environment variables are expanded; relative paths are
        taken from the current directory.
    flags : tuple of str
        Any of ``get``, ``store``; empty means ``get``.
    source : str, optional
        The configuration file, for error messages.

    Raises
    ------
    ConfigError
        Unknown flag or empty location.
    """
    where = f"{source}: " if source else ""
    location = os.path.expandvars(os.path.expanduser(location.strip()))
    if not location:
        raise ConfigError(f"{where}empty database location")
    unknown = [f for f in flags if f not in KNOWN_FLAGS]
    if unknown:
        raise ConfigError(f"{where}unknown flag(s) {', '.join(unknown)} for database {location!r} "
                          f"(allowed: {', '.join(KNOWN_FLAGS)})")
    get = "get" in flags or not flags
    store = "store" in flags
    if is_url(location):
        kind = "remote" if location.lower().startswith(_REMOTE_SCHEMES) else "sql"
        if location.lower().startswith("sqlite:"):
            path = location.split("://", 1)[1]
            path = path[1:] if path.startswith("/") else path
            if not path:  # in-memory: nothing for draconis to manage as a file
                return DatabaseSpec(location, location, "sql", get, store)
            return DatabaseSpec(location, location, "sqlite", get, store, os.path.abspath(path))
        return DatabaseSpec(location, location, kind, get, store)
    path = os.path.abspath(local_path(location))
    if os.path.isdir(path):
        path = os.path.join(path, DEFAULT_DB_NAME)
    return DatabaseSpec(location, f"sqlite:///{path}", "sqlite", get, store, path)


def _parse_line(line: str, source: str | None) -> DatabaseSpec | None:
    try:
        words = shlex.split(line, comments=True)
    except ValueError as err:
        raise ConfigError(f"{source}: cannot parse database line {line!r} ({err})") from err
    if not words:
        return None
    return database_spec(words[0], tuple(w.lower() for w in words[1:]), source=source)


def parse_config_text(text: str, source: str | None = None) -> CalibConfig:
    """Parse the text of a configuration file (see the module docstring).

    Raises
    ------
    ConfigError
        Malformed INI text, unknown flag.
    """
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text, source=source or "<string>")
    except configparser.Error as err:
        first = str(err).splitlines()[0]
        raise ConfigError(f"{source}: malformed configuration file ({first})") from err
    if not parser.has_section("calibs"):
        return CalibConfig((), source)
    section = parser["calibs"]
    specs: list[DatabaseSpec] = []
    if "databases" in section:
        for line in section["databases"].splitlines():
            spec = _parse_line(line, source) if line.strip() else None
            if spec is not None:
                specs.append(spec)
    if "database_dir" in section:
        warnings.warn(f"{source}: [calibs] database_dir is deprecated; write 'databases = <path> get store' "
                      f"instead", ConfigDeprecationWarning, stacklevel=3)
        value = section["database_dir"].strip()
        if value:
            # the old key meant one local database used for both retrieval and storage
            specs.append(database_spec(value, ("get", "store"), source=source))
    return CalibConfig(tuple(specs), source)


def find_config_file(explicit: str | os.PathLike | None = None) -> str | None:
    """The configuration file to read (see the module docstring for the order).

    Raises
    ------
    ConfigError
        A file named explicitly (argument, ``$DRACONISRC``, ``$DRAGONSRC``) does not exist.
    """
    candidates: list[tuple[str, bool, str]] = []
    if explicit:
        candidates.append((str(explicit), True, "--config"))
    if os.environ.get("DRACONISRC"):
        candidates.append((os.environ["DRACONISRC"], True, "$DRACONISRC"))
    candidates.append(("~/.draconis/draconisrc", False, ""))
    if os.environ.get("DRAGONSRC"):
        candidates.append((os.environ["DRAGONSRC"], True, "$DRAGONSRC"))
    candidates.append(("~/.dragons/dragonsrc", False, ""))
    candidates.append(("~/.geminidr/rsys.cfg", False, ""))
    for text, must_exist, origin in candidates:
        path = os.path.expandvars(os.path.expanduser(text))
        if os.path.isfile(path):
            return path
        if must_exist:
            raise ConfigError(f"{path}: configuration file (from {origin}) does not exist")
    return None


def load_config(config: str | os.PathLike | CalibConfig | None = None) -> CalibConfig:
    """Read the calibration configuration.

    Parameters
    ----------
    config : str, path, CalibConfig or None
        A configuration file to read, an already-parsed configuration
        (returned unchanged), or None for the default search.

    Returns
    -------
    CalibConfig
        Empty (no databases) when no configuration file exists.

    Raises
    ------
    ConfigError
        The file is missing (when named), unreadable or malformed.
    """
    if isinstance(config, CalibConfig):
        return config
    path = find_config_file(config)
    if path is None:
        return CalibConfig((), None)
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read configuration file ({err})") from err
    return parse_config_text(text, path)
