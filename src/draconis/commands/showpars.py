"""``draconis showpars FILE PRIMITIVE``: a primitive's parameters as they apply to a file."""
from __future__ import annotations

import argparse

NAME_WIDTH = 20
VALUE_WIDTH = 20


def add_parser(subparsers) -> None:
    """Register the ``showpars`` sub-command."""
    p = subparsers.add_parser("showpars", help="show a primitive's parameters for a file",
                              description="Show the settable parameters of a primitive, with the defaults "
                                          "that apply to FILE (instrument and data type).")
    p.add_argument("file", metavar="FILE")
    p.add_argument("primitive", metavar="PRIMITIVE")
    p.add_argument("-a", "--all", action="store_true", help="also show debug_* parameters")
    p.add_argument("-d", "--doc", action="store_true", help="also show the primitive's docstring")
    p.set_defaults(func=run)


def format_showpars(tags, spec, values: dict, *, show_all: bool = False, doc: bool = False) -> str:
    """The showpars text for primitive ``spec`` with current ``values``."""
    lines = [f"Dataset tagged as {{{', '.join(repr(t) for t in sorted(tags))}}}",
             f"Settable parameters on '{spec.name}':",
             "=" * 40,
             f"{'Name':<{NAME_WIDTH}}{'Current setting':<{VALUE_WIDTH}}Description",
             "-" * 40]
    for prm in spec.params:
        if prm.name.startswith("debug") and not show_all:
            continue
        value = repr(values[prm.name])
        lines.append(f"{prm.name:<{NAME_WIDTH}}{value:<{VALUE_WIDTH}}{prm.doc}".rstrip())
        if prm.choices is not None:
            lines.append(" " * NAME_WIDTH + "Allowed values = " + ", ".join(repr(c) for c in prm.choices))
        elif prm.range_text():
            lines.append(" " * NAME_WIDTH + f"Valid Range = {prm.range_text()}")
        if prm.unsupported:
            lines.append(" " * NAME_WIDTH + f"Not supported by draconis ({prm.unsupported}): only the default")
    lines += _call_lines(spec)
    if doc and spec.doc:
        lines += ["", spec.doc]
    return "\n".join(lines)


def _call_lines(spec) -> list[str]:
    """Which primitives call this one, and which it calls, with the parameters set there (issue 14)."""
    from ..primitives.registry import callers_of

    def names(sets):
        return ", ".join(sets) if sets else "none"

    lines = []
    for caller, sets in callers_of(spec.name):
        lines.append(f"Called by {caller}, which sets {names(sets)} of these"
                     + (f"; the others are as above, with your -p {spec.name}:..." if sets else
                        f"; all are as above, with your -p {spec.name}:..."))
    for callee, sets in spec.calls:
        lines.append(f"Calls {callee}, setting {names(sets)} of its parameters (see showpars FILE {callee})")
    return [""] + lines if lines else []


def run(args: argparse.Namespace) -> int:
    """Print the parameters of a primitive as they apply to a file; return the exit status."""
    from ..io import open_frame
    from ..primitives.registry import get_primitive
    from ..reduce.context import frame_kind, instrument_name

    frame = open_frame(args.file)
    spec = get_primitive(args.primitive)
    values = spec.defaults(instrument_name(frame), frame_kind(frame))
    print(format_showpars(frame.tags, spec, values, show_all=args.all, doc=args.doc))
    return 0
