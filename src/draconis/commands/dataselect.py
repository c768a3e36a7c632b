"""``draconis dataselect``: print the files having some tags and satisfying an expression.

draconis dataselect ../playdata/*.fits --tags DARK --expr 'exposure_time==5' -o darks_5s.list
draconis dataselect --xtags CAL ../playdata/*.fits | draconis showd -d exposure_time
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import TextIO

from ..errors import InputError

PROG = "draconis dataselect"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``dataselect`` sub-command."""
    parser = subparsers.add_parser(
        "dataselect",
        help="select files by tags and descriptor values",
        description="Print the names of the FILES that have all --tags, none of --xtags, and satisfy --expr. "
                    "With no FILES, names are read from standard input (one per line).",
    )
    parser.add_argument("files", nargs="*", metavar="FILE", help="FITS files to select from")
    parser.add_argument("--tags", default="", metavar="T1,T2",
                        help="comma-separated tags that every selected file must have")
    parser.add_argument("--xtags", default="", metavar="X1,X2",
                        help="comma-separated tags that no selected file may have")
    parser.add_argument("--expr", default="True", metavar="EXPR",
                        help="descriptor expression, e.g. 'exposure_time==5 and filter_name==\"K-red\"'")
    parser.add_argument("--strict", action="store_true",
                        help="compare raw descriptor values with plain equality")
    parser.add_argument("-o", "--output", metavar="FILE", help="write the selected names to FILE")
    parser.add_argument("-v", "--verbose", action="store_true", help="with -o, also print the names")
    parser.add_argument("--adpkg", help=argparse.SUPPRESS)  # DRAGONS option, accepted and unused
    parser.set_defaults(func=run)
    return parser


def split_list(text: str) -> list[str]:
    """``'DARK, RAW'`` -> ``['DARK', 'RAW']``."""
    return [item.strip() for item in (text or "").split(",") if item.strip()]


def input_names(files: Sequence[str], stdin: TextIO | None = None) -> list[str]:
    """The file names from the command line, else from piped standard input.

    Piped input is read one name per line; blank lines and ``#`` comments are
    skipped (so a ``dataselect -o`` list can be piped too).

    Raises
    ------
    InputError
        No names given and nothing piped in.
    """
    if files:
        return list(files)
    stdin = sys.stdin if stdin is None else stdin
    if stdin is None or _is_tty(stdin):
        raise InputError(None, "no input files given (name them, or pipe names in)")
    names = [line.strip() for line in stdin]
    names = [n for n in names if n and not n.startswith("#")]
    if not names:
        raise InputError(None, "no input files given (standard input was empty)")
    return names


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, OSError, ValueError):
        return True


def stderr_reporter(prog: str) -> Callable[[str, str], None]:
    """A reporter printing each file problem as one line on standard error."""
    def report(name: str, message: str) -> None:
        print(f"{prog}: {message}", file=sys.stderr, flush=True)
    return report


def emit(lines: Iterable[str]) -> int:
    """Print ``lines`` to standard output; a reader that went away is not an error.

    Returns 0, or 141 (as a shell reports SIGPIPE) when the pipe was closed,
    e.g. by ``| head``.
    """
    try:
        for line in lines:
            print(line)
        sys.stdout.flush()
    except BrokenPipeError:
        # Point stdout at /dev/null so the interpreter's final flush is quiet.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    return 0


def write_list(path: str, names: Sequence[str], header: Sequence[str]) -> None:
    """Write ``#``-prefixed ``header`` lines then one name per line to ``path``."""
    try:
        with open(path, "w", encoding="utf-8") as out:
            for line in header:
                out.write(f"# {line}\n")
            for name in names:
                out.write(f"{name}\n")
    except OSError as err:
        raise InputError(path, f"cannot write the list: {err.strerror or err}") from err


def run(args: argparse.Namespace) -> int:
    """Run ``draconis dataselect``; returns the exit status."""
    from ..dataselect import expr_parser, select_data

    expression = expr_parser(args.expr, strict=args.strict)  # a bad expression stops before any file
    tags, xtags = split_list(args.tags), split_list(args.xtags)
    names = input_names(args.files)
    selected = select_data(names, tags, xtags, expression, report=stderr_reporter(PROG))
    if args.output:
        header = [f"Includes tags: {tags}", f"Excludes tags: {xtags}", f"Descriptor expression: {args.expr}"]
        write_list(args.output, selected, header)
    if not args.output or args.verbose:
        return emit(selected)
    return 0
