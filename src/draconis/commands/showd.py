"""``draconis showd``: a table of descriptor values, one row per file.

draconis showd -d filter_name,exposure_time ../playdata/*.fits
draconis dataselect --tags DARK ../playdata/*.fits | draconis showd -d exposure_time
"""
from __future__ import annotations

import argparse
import csv
import io
from collections.abc import Sequence

from ..errors import DescriptorError
from .dataselect import emit, input_names, split_list, stderr_reporter

PROG = "draconis showd"
#: cells longer than this are shortened unless --long is given
SHORT_WIDTH = 40
SEPARATOR = "   "


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``showd`` sub-command."""
    parser = subparsers.add_parser(
        "showd",
        help="show descriptor values of files",
        description="Print a table of descriptor values, one row per file. With no FILES, names are read "
                    "from standard input (e.g. piped from dataselect).",
    )
    parser.add_argument("files", nargs="*", metavar="FILE", help="FITS files")
    parser.add_argument("-d", "--descriptors", required=True, metavar="DESC1,DESC2",
                        help="comma-separated descriptor names, e.g. object,exposure_time")
    parser.add_argument("--csv", action="store_true", help="print comma-separated values instead of a table")
    parser.add_argument("--long", action="store_true", help=f"never shorten values (default: at {SHORT_WIDTH} chars)")
    parser.add_argument("--adpkg", help=argparse.SUPPRESS)  # DRAGONS option, accepted and unused
    parser.set_defaults(func=run)
    return parser


def check_descriptors(names: Sequence[str]) -> None:
    """Refuse descriptor names no instrument knows (nothing could be shown)."""
    from ..select import known_descriptor_names

    if not names:
        raise DescriptorError(None, "no descriptor names given to -d")
    known = known_descriptor_names()
    unknown = [n for n in names if known and n not in known]
    if unknown:
        raise DescriptorError(None, f"unknown descriptor {', '.join(map(repr, unknown))}")


def format_value(value: object, *, long: bool) -> str:
    """A descriptor value as shown in a cell (str(); shortened unless ``long``)."""
    text = " ".join(str(value).split()) if not long else str(value)
    if not long and len(text) > SHORT_WIDTH:
        text = text[:SHORT_WIDTH - 3] + "..."
    return text


def cell(frame, name: str, *, long: bool, problems: list[str]) -> str:
    """The cell of descriptor ``name`` for ``frame``; a failure shows its error text."""
    from ..dataselect import descriptor_problem

    try:
        return format_value(frame.descriptor(name), long=long)
    except Exception as err:  # noqa: BLE001 - one bad descriptor must not stop the table
        problem = descriptor_problem(name, err)
        problems.append(f"{name} failed ({problem})")
        return f"ERROR: {problem}" if long else format_value(f"ERROR: {problem}", long=False)


def table_lines(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """The table: dashed frame around the header, first column left-aligned, others right-aligned."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        parts = [cells[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(cells[1:], widths[1:])]
        return SEPARATOR.join(parts).rstrip()

    rule = "-" * (sum(widths) + len(SEPARATOR) * (len(widths) - 1))
    return [rule, line(header), rule, *(line(r) for r in rows)]


def run(args: argparse.Namespace) -> int:
    """Run ``draconis showd``; returns the exit status."""
    from ..dataselect import open_frames

    descriptors = split_list(args.descriptors)
    check_descriptors(descriptors)
    names = input_names(args.files)
    report = stderr_reporter(PROG)
    rows = []
    for name, frame in open_frames(names, report=report):
        problems: list[str] = []
        rows.append([name] + [cell(frame, d, long=args.long or args.csv, problems=problems) for d in descriptors])
        if problems:
            report(name, f"{name}: descriptor " + "; ".join(problems))
    header = ["filename", *descriptors]
    if args.csv:
        return emit(csv_lines(header, rows))
    return emit(table_lines(header, rows))


def csv_lines(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """The rows as comma-separated lines (quoted where a value holds a comma)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().splitlines()
