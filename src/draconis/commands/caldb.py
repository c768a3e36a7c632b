"""``draconis caldb``: manage the local calibration database (DRAGONS' caldb).

::

    draconis caldb init [-w]
    draconis caldb add FILE... [-k]
    draconis caldb list
    draconis caldb remove NAME...
    draconis caldb config

Common options (before or after the action): ``-c/--config FILE``,
``-d/--database PATH_OR_URL``, ``-v/--verbose``.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator, Sequence

ACTIONS = ("init", "add", "list", "remove", "config")


def _common() -> argparse.ArgumentParser:
    # SUPPRESS defaults let the options sit before or after the action
    # without the inner parser resetting what the outer one read.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-c", "--config", default=argparse.SUPPRESS, metavar="FILE",
                        help="configuration file instead of ~/.draconis/draconisrc or ~/.dragons/dragonsrc")
    common.add_argument("-d", "--database", default=argparse.SUPPRESS, metavar="DB",
                        help="SQLite file, directory or SQLAlchemy URL instead of the configured local database")
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="say what is done")
    return common


def add_parser(subparsers) -> argparse.ArgumentParser:  # noqa: ANN001 - argparse's private type
    """Register ``caldb`` on the ``draconis`` command."""
    common = _common()
    parser = subparsers.add_parser("caldb", parents=[common], help="manage the local calibration database",
                                   description="Manage the local calibration database.")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    p = actions.add_parser("init", parents=[common], help="create the database")
    p.add_argument("-w", "--wipe", action="store_true", help="empty an existing database")
    p = actions.add_parser("add", parents=[common], help="add processed calibrations and BPMs")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("-k", "--walk", action="store_true", help="recurse into directories")
    actions.add_parser("list", parents=[common], help="list stored calibrations")
    p = actions.add_parser("remove", parents=[common], help="forget calibrations (files are kept)")
    p.add_argument("files", nargs="+", metavar="NAME")
    actions.add_parser("config", parents=[common], help="show the configuration and databases")
    parser.set_defaults(func=run, _parser=parser)
    return parser


def _fits_files(paths: Sequence[str], walk: bool) -> Iterator[tuple[str, bool]]:
    """(path, found_by_walking) for every file to add."""
    for path in paths:
        if os.path.isdir(path):
            if not walk:
                raise _error(f"{path}: is a directory (use -k/--walk to add the files inside)")
            for root, dirs, files in os.walk(path):
                dirs.sort()
                for name in sorted(files):
                    if name.lower().endswith((".fits", ".fit")):
                        yield os.path.join(root, name), True
        else:
            yield path, False


def _error(message: str):
    from ..errors import CalDBError

    return CalDBError(message)


def run(args: argparse.Namespace) -> int:
    """Carry out one ``caldb`` action."""
    from .. import caldb
    from ..errors import DraconisError

    action = getattr(args, "action", None)
    if action is None:
        args._parser.print_help()
        return 2
    config = getattr(args, "config", None)
    verbose = getattr(args, "verbose", False)
    if action == "config":
        return _show_config(config, getattr(args, "database", None))
    db = caldb.set_local_database(getattr(args, "database", None), config=config)
    if action != "init":
        caldb.journal.recover()  # stores a killed run left unfinished in this directory
    if action == "init":
        db.init(wipe=args.wipe, exist_ok=False)
        print(f"{'Wiped and initialised' if args.wipe else 'Initialised'} calibration database {db.name}")
        return 0
    if action == "list":
        for item in db.list_files():
            print(f"{item.name:<30} {item.directory}" + (f"   ({item.caltype})" if verbose else ""))
        return 0
    failures = 0
    if action == "add":
        files = list(_fits_files(args.files, args.walk))
        for path, walked in files:
            try:
                stored = db.add_cal(path)
            except DraconisError as err:
                if walked and "not a processed calibration" in str(err):
                    # a walk meets raw frames too; only explicit names must be calibrations
                    if verbose:
                        print(f"skipped {path}: not a processed calibration")
                    continue
                failures += 1
                print(f"draconis caldb: error: {err}", file=sys.stderr)
                continue
            if verbose:
                print(f"added {stored.path} ({stored.caltype})")
    else:  # remove
        for name in args.files:
            try:
                count = db.remove_cal(name)
            except DraconisError as err:
                failures += 1
                print(f"draconis caldb: error: {err}", file=sys.stderr)
                continue
            if verbose:
                print(f"removed {name} ({count} entr{'y' if count == 1 else 'ies'})")
    return 1 if failures else 0


def _show_config(config: str | None, database: str | None) -> int:
    from .. import caldb

    cfg = caldb.load_config(config)
    print(f"configuration file: {cfg.source or '(none found)'}")
    if database is not None:
        print(f"database given with -d: {caldb.database_spec(database, ('get', 'store')).describe()}")
    if not cfg.databases:
        print("databases: none configured")
    else:
        print("databases (searched in this order):")
        for spec in cfg.databases:
            state = ""
            if spec.kind == "sqlite":
                state = "" if spec.path and os.path.isfile(spec.path) else "  (not created yet: caldb init)"
            print(f"  {spec.describe()}{state}")
    local = cfg.local_database
    if database is None and local is not None:
        print(f"caldb acts on: {local.path or local.describe()}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point for a bare ``caldb`` command (DRAGONS' name)."""
    from ..cli import main as draconis_main

    return draconis_main(["caldb", *(sys.argv[1:] if argv is None else argv)])
