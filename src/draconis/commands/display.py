"""``draconis display``: a quick-look PNG of a FITS file (the DRAGONS ``-d``/ds9 habit, without ds9).

zscale (or ``--limits``), the arrays of a mosaic (GSAOI) in their physical
layout, DQ-flagged pixels painted magenta, OBJCAT sources circled green.
"""
from __future__ import annotations

import argparse
import os

from ..errors import InputError


def add_parser(subparsers) -> None:
    """Register the ``display`` sub-command."""
    p = subparsers.add_parser("display", help="write a quick-look PNG of a file (zscale, DQ, sources)",
                              description="Write a quick-look PNG of a FITS file (the DRAGONS -d/ds9 habit, "
                                          "without ds9): zscale or --limits, a mosaic's arrays in their "
                                          "physical layout, DQ-flagged pixels in magenta, OBJCAT sources "
                                          "circled in green.")
    p.add_argument("file", metavar="FILE", help="raw or processed FITS file")
    p.add_argument("-o", "--output", default=None, metavar="PNG",
                   help="picture to write (default: <FILE stem>.png in the current directory)")
    p.add_argument("--limits", nargs=2, type=float, default=None, metavar=("LOW", "HIGH"),
                   help="display limits (default: zscale of the unflagged pixels)")
    p.add_argument("--no-dq", action="store_true", help="do not paint DQ-flagged pixels")
    p.add_argument("--no-sources", action="store_true", help="do not circle the OBJCAT sources")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write the quick-look picture of a file; return the exit status."""
    from .. import open as open_frame
    from ..report.quicklook import render_frame

    if args.limits is not None and not args.limits[1] > args.limits[0]:
        raise InputError(None, f"--limits: HIGH ({args.limits[1]}) must be above LOW ({args.limits[0]})")
    frame = open_frame(args.file)
    out = args.output or f"{os.path.splitext(os.path.basename(args.file))[0]}.png"
    if not out.lower().endswith(".png"):
        raise InputError(out, "the picture is written as PNG: give a name ending in .png")
    drawn = render_frame(frame, out, limits=args.limits, show_dq=not args.no_dq,
                         show_sources=not args.no_sources)
    lo, hi = drawn["limits"]
    print(f"{out}: {os.path.basename(args.file)} ({len(frame)} array(s), {drawn['width']}x{drawn['height']} "
          f"pixels) at limits {lo:.4g}..{hi:.4g}; {drawn['flagged']} flagged pixel(s) in magenta, "
          f"{len(drawn['sources'])} source(s) circled in green")
    return 0
