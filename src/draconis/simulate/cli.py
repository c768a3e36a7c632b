"""``draconis simulate DATASET OUTDIR``: write a simulated raw dataset."""
from __future__ import annotations

import argparse
import time


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``simulate`` sub-command."""
    from .datasets import DATASETS

    parser = subparsers.add_parser(
        "simulate", help="write a simulated raw dataset shaped like a seed tutorial's data, with its truth",
        description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=sorted(DATASETS), help="dataset to simulate")
    parser.add_argument("outdir", help="output directory (truth goes to OUTDIR/truth)")
    parser.add_argument("--size", type=int, default=None, help="array size in pixels (default: full size)")
    parser.add_argument("--nframes", type=int, default=None, help="number of science frames (default: the seed's)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--no-effect", action="append", default=[], metavar="EFFECT",
                        help="switch an effect off (repeatable), e.g. nonlinearity, cosmic_rays")
    parser.add_argument("-q", "--quiet", action="store_true", help="do not list the files written")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``draconis simulate``."""
    from .build import make_dataset

    start = time.perf_counter()
    info = make_dataset(args.dataset, args.outdir, size=args.size, nframes=args.nframes, seed=args.seed,
                        effects={name: False for name in args.no_effect}, progress=not args.quiet)
    n = sum(len(v) for k, v in info.files.items() if k in ("science", "sky", "dark", "flat", "standard", "bpm"))
    print(f"{args.dataset}: {n} files in {info.outdir} ({time.perf_counter() - start:.1f} s); "
          f"truth in {info.truth_dir}")
    return 0
