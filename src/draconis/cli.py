"""The ``draconis`` command: sub-commands named as DRAGONS' tools.

User errors (:class:`~draconis.errors.DraconisError`) print one line on stderr
and exit non-zero, with no traceback; ``--debug`` shows the traceback.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import signal
import sys
import threading
from collections.abc import Sequence

from .errors import DraconisError

#: sub-command modules, in the order ``--help`` lists them
COMMAND_MODULES = (
    "draconis.commands.demo",
    "draconis.simulate.cli",
    "draconis.commands.typewalk",
    "draconis.commands.dataselect",
    "draconis.commands.showd",
    "draconis.commands.showpars",
    "draconis.commands.reduce",
    "draconis.commands.disco",
    "draconis.commands.caldb",
    "draconis.commands.display",
)


def build_parser() -> argparse.ArgumentParser:
    """The ``draconis`` argument parser, one sub-command per module of COMMAND_MODULES."""
    parser = argparse.ArgumentParser(
        prog="draconis",
        description="Reduce Gemini near-infrared imaging (F2, NIRI, GNIRS, GSAOI) on Dask.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    from . import __version__

    parser.add_argument("--version", action="version", version=f"draconis {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(subparsers)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would be so that a run stops the same clean way."""


def _on_sigterm(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the clean-up short
    raise Terminated()


@contextlib.contextmanager
def _sigterm_as_interrupt():
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``draconis`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # the command line, for the run's report
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        with _sigterm_as_interrupt():
            status = args.func(args)
    except DraconisError as err:
        if args.debug:
            raise
        print(f"draconis {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as err:
        term = isinstance(err, Terminated)
        print(f"draconis {args.command}: {'terminated (SIGTERM)' if term else 'interrupted'}", file=sys.stderr)
        return 128 + (signal.SIGTERM if term else signal.SIGINT)
    return int(status or 0)


if __name__ == "__main__":
    sys.exit(main())
