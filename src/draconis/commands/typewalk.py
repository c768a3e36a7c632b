"""``draconis typewalk``: walk a directory and print each FITS file's tags.

draconis typewalk -d ../playdata/example2/
draconis typewalk --tags DARK -o darks.list
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Iterator, Sequence

from ..errors import InputError
from .dataselect import emit, stderr_reporter, write_list

PROG = "draconis typewalk"
#: files looked at unless -f says otherwise
DEFAULT_MASK = r".*\.fits?(\.gz|\.bz2)?$"
#: width of "NAME ....." before the tags; longer names get a line of their own
NAME_FIELD = 35
INDENT = " " * 6


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``typewalk`` sub-command."""
    parser = subparsers.add_parser(
        "typewalk",
        help="list the tags of every FITS file under a directory",
        description="Walk a directory (recursively unless -n), open every FITS file and print its tags.",
    )
    parser.add_argument("-d", "--dir", default=".", metavar="DIR", help="directory to walk (default: .)")
    parser.add_argument("-n", "--norecurse", action="store_true", help="do not descend into sub-directories")
    parser.add_argument("-f", "--filemask", default=None, metavar="REGEX",
                        help=f"regular expression file names must match (default: {DEFAULT_MASK!r}, no case)")
    parser.add_argument("--tags", nargs="+", default=None, metavar="TAG",
                        help="list only files having all these tags (any of them with --or)")
    parser.add_argument("--xtags", nargs="+", default=None, metavar="TAG",
                        help="leave out files having any of these tags")
    parser.add_argument("--or", dest="use_or", action="store_true", help="--tags: any tag suffices")
    parser.add_argument("-o", "--out", metavar="FILE", help="write the absolute paths of the listed files to FILE")
    parser.add_argument("-b", "--batch", type=int, default=None, metavar="N",
                        help="flush the output every N files (accepted for DRAGONS compatibility)")
    parser.set_defaults(func=run)
    return parser


def walk(top: str, mask: re.Pattern[str], *, recurse: bool) -> Iterator[tuple[str, list[str]]]:
    """Yield ``(directory, sorted matching file names)`` for each directory with matches."""
    for directory, subdirs, files in os.walk(top):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith(".")) if recurse else []
        names = sorted(f for f in files if mask.search(f))
        if names:
            yield directory, names


def tag_line(name: str, tags: frozenset[str]) -> str:
    """``      NAME ....... (TAG) (TAG)`` with the tags sorted and the dots ending at a fixed column."""
    tag_text = " ".join(f"({t})" for t in sorted(tags))
    if len(name) + 4 > NAME_FIELD:
        # Too long to leave a few dots: the name gets its own line.
        return f"{INDENT}{name}\n{INDENT}{'.' * NAME_FIELD} {tag_text}"
    return f"{INDENT}{name} {'.' * (NAME_FIELD - len(name) - 1)} {tag_text}"


def wanted(tags: frozenset[str], required: Sequence[str], excluded: Sequence[str], *, any_of: bool) -> bool:
    """Whether a file with ``tags`` is listed."""
    if excluded and tags & set(excluded):
        return False
    if not required:
        return True
    return bool(tags & set(required)) if any_of else set(required) <= tags


def compile_mask(pattern: str | None) -> re.Pattern[str]:
    """The ``--mask`` regular expression (every file when None), or a ParameterError."""
    try:
        return re.compile(pattern) if pattern else re.compile(DEFAULT_MASK, re.IGNORECASE)
    except re.error as err:
        raise InputError(None, f"bad file mask {pattern!r}: {err}") from err


def run(args: argparse.Namespace) -> int:
    """Run ``draconis typewalk``; returns the exit status."""
    top = os.path.abspath(args.dir)
    if not os.path.isdir(top):
        raise InputError(args.dir, "no such directory")
    mask = compile_mask(args.filemask)
    required = [t.upper() for t in args.tags or []]
    excluded = [t.upper() for t in args.xtags or []]
    listed: list[str] = []
    status = emit(_listing(args, top, mask, required, excluded, listed))
    if args.out:
        logic = "any (OR)" if args.use_or else "all (AND)"
        header = [f"Written by draconis typewalk on {time.strftime('%Y-%m-%d %H:%M:%S')}",
                  f"Directory: {top}", f"Required tags: {' '.join(required) or '-'} ({logic})",
                  f"Excluded tags: {' '.join(excluded) or '-'}"]
        write_list(args.out, listed, header)
    return status


def _listing(args: argparse.Namespace, top: str, mask: re.Pattern[str], required: list[str],
             excluded: list[str], listed: list[str]) -> Iterator[str]:
    """The output lines, produced as files are opened (``listed`` collects the paths)."""
    from ..dataselect import open_frames

    report = stderr_reporter(PROG)
    batch = max(args.batch or 0, 0)
    for directory, names in walk(top, mask, recurse=not args.norecurse):
        printed_dir = False
        paths = [os.path.join(directory, n) for n in names]
        for path, frame in open_frames(paths, report=report):
            if not wanted(frame.tags, required, excluded, any_of=args.use_or):
                continue
            if not printed_dir:
                yield f"directory:  {directory}"
                printed_dir = True
            yield tag_line(os.path.basename(path), frame.tags)
            listed.append(path)
            if batch and len(listed) % batch == 0:
                sys.stdout.flush()
    yield "Done DataSpider.typewalk(..)"
