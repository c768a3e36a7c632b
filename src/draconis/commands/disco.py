"""``draconis disco``: stack GSAOI frames onto one distortion-corrected grid (disco_stu's ``disco``)."""
from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    """Register the ``disco`` sub-command."""
    from ..disco_stu.lookups import general_parameters as d

    p = subparsers.add_parser(
        "disco", help="distortion-corrected stack of GSAOI frames (as disco_stu's disco)",
        description="Align the four arrays of every GSAOI frame through the static distortion, resample them "
                    "onto one grid and stack them (out-of-core). Give it the _skyCorrected frames of "
                    "'draconis reduce'.")
    p.add_argument("files", nargs="+", metavar="FILE", help="GSAOI frames, or @listfiles")
    p.add_argument("-o", "--output", default=d.OUTPUT, help=f"output file (default {d.OUTPUT})")
    p.add_argument("--refcat", default=None, metavar="FILE",
                   help="reference catalogue (a table with RA/Dec in degrees) for absolute astrometry")
    p.add_argument("--pixel_scale", type=float, default=d.PIXEL_SCALE,
                   help=f"output pixel scale in arcsec (default {d.PIXEL_SCALE})")
    p.add_argument("--order", type=int, default=d.OBJCAT_POLY_DEGREE,
                   help=f"highest polynomial order of the frame-to-frame fit (default {d.OBJCAT_POLY_DEGREE})")
    p.add_argument("--refcat_order", type=int, default=d.REFCAT_POLY_DEGREE,
                   help=f"highest polynomial order of the fit to the reference catalogue "
                        f"(default {d.REFCAT_POLY_DEGREE})")
    p.add_argument("--offset_radius", type=float, default=d.OBJCAT_ALIGN_RADIUS[0],
                   help=f"initial search radius between frames, arcsec (default {d.OBJCAT_ALIGN_RADIUS[0]})")
    p.add_argument("--match_radius", type=float, default=d.OBJCAT_ALIGN_RADIUS[1],
                   help=f"matching radius between frames, arcsec (default {d.OBJCAT_ALIGN_RADIUS[1]})")
    p.add_argument("--combine", default="mean", choices=("mean", "wtmean", "median", "lmedian"),
                   help="how the frames are combined (default mean)")
    p.add_argument("--reject", default="sigclip", choices=("none", "minmax", "sigclip", "varclip"),
                   help="pixel rejection (default sigclip)")
    p.add_argument("--scale", action="store_true", help="scale each frame's counts to the reference frame's")
    p.add_argument("-p", "--param", nargs="+", action="extend", default=[], metavar="P=V",
                   help="other parameter overrides, primitive:param=value")
    p.add_argument("--logfile", default="disco.log", help="log file (default disco.log)")
    p.add_argument("--logmode", default="standard", choices=("standard", "quiet", "debug"), help="verbosity")
    p.add_argument("--scheduler", default=None,
                   help="Dask scheduler address, 'synchronous' or 'threads' (default: a LocalCluster)")
    p.add_argument("--workdir", default=None, help="directory for checkpoints")
    p.add_argument("--report", action=argparse.BooleanOptionalAction, default=None,
                   help="write the HTML report beside the output (default: yes)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``draconis disco``."""
    from .. import logutils
    from ..disco_stu.disco import MatchInfo, disco
    from ..reduce.uparms import parse_uparms
    from .reduce import expand_at_files

    logutils.config(mode=args.logmode, file_name=args.logfile)
    parse_uparms(list(args.param))  # a malformed -p fails here, before any file is opened
    out = disco(expand_at_files(args.files), output=args.output, refcat=args.refcat,
                objmatch_info=MatchInfo(args.offset_radius, args.match_radius, None, args.order),
                refmatch_info=MatchInfo(None, None, None, args.refcat_order), pixel_scale=args.pixel_scale,
                combine=args.combine, reject=args.reject, scale=args.scale, uparms=list(args.param),
                scheduler=args.scheduler, workdir=args.workdir, report=args.report)
    print(out)
    return 0
