"""``draconis demo``: simulate a small F2 deep field and reduce it like the tutorial.

The demo follows the F2 seed tutorial step by step on simulated data: make
the file lists with dataselect, set up a calibration database with the
``store`` flag, reduce the science darks, the K-red flats (flats first, then
their darks), and the science frames with the default recipe, then compare
the stack with the simulator's truth.
"""
from __future__ import annotations

import argparse
import contextlib
import os
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``demo`` sub-command."""
    parser = subparsers.add_parser(
        "demo", help="simulate a small F2 dataset and reduce it (the F2 tutorial, end to end)",
        description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="draconis-demo", help="working directory (default: ./draconis-demo)")
    parser.add_argument("--size", type=int, default=256, help="array size in pixels (default 256)")
    parser.add_argument("--nframes", type=int, default=10, help="science frames (default 10)")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the simulation")
    parser.add_argument("--scheduler", default="synchronous",
                        help="'synchronous' (default), or a Dask scheduler address; 'local' starts a LocalCluster")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the ``demo`` sub-command; return the exit status."""
    import draconis

    from .. import dataselect
    from ..simulate import make_dataset

    root = Path(args.dir).resolve()
    playdata, playground = root / "playdata", root / "playground"
    playground.mkdir(parents=True, exist_ok=True)
    print(f"Simulating f2-deep ({args.nframes} science frames of {args.size}x{args.size}) in {playdata}")
    info = make_dataset("f2-deep", playdata, size=args.size, nframes=args.nframes, seed=args.seed)
    all_files = sorted(str(p) for p in playdata.glob("*.fits"))
    print(f"  {len(all_files)} raw files, truth in {info.truth_dir}")

    darks_5s = dataselect.select_data(all_files, ["DARK"], [], dataselect.expr_parser("exposure_time==5"))
    darks_2s = dataselect.select_data(all_files, ["DARK"], [], dataselect.expr_parser("exposure_time==2"))
    flats = dataselect.select_data(all_files, ["FLAT"], [], dataselect.expr_parser('filter_name=="K-red"'))
    science = dataselect.select_data(all_files, ["F2"], [], dataselect.expr_parser(
        '(observation_class=="science" and filter_name=="K-red")'))
    print(f"  dataselect: {len(darks_5s)} darks 5 s, {len(darks_2s)} darks 2 s, {len(flats)} flats, "
          f"{len(science)} science")

    try:
        from ..reduce import Reduce
    except ImportError:
        print("The recipe system is not installed in this build: stopping after the simulation.")
        return 0

    rc = playground / "draconisrc"
    rc.write_text(f"[calibs]\ndatabases = {playground / 'cal_manager.db'} get store\n")
    os.environ["DRACONISRC"] = str(rc)
    from .. import caldb

    with contextlib.chdir(playground):
        db = caldb.set_local_database(str(playground / "cal_manager.db"))
        db.init()
        runs = {}
        for label, files in (("master dark", darks_5s), ("master flat", flats + darks_2s), ("science", science)):
            reduction = Reduce()
            reduction.files.extend(files)
            reduction.config_file = str(rc)
            if args.scheduler != "local":
                reduction.scheduler = args.scheduler
            print(f"Reducing the {label} from {len(files)} files ...")
            reduction.runr()
            runs[label] = reduction
            print(f"  -> {', '.join(os.path.basename(f) for f in reduction.output_filenames)}")
    science_run = runs["science"]
    stack = playground / science_run.output_filenames[-1]
    exptime = float(draconis.open(science[0]).exposure_time())
    _report(stack, info.truth_dir, exptime, science_run.report_filename)
    return 0


def _report(stack_path: Path, truth_dir: str | os.PathLike, exptime: float, report: str | None) -> None:
    """Print how the stack compares with the simulator's truth, and where to look at it."""
    import draconis

    from ..report.truth import compare_with_truth

    stack = draconis.open(str(stack_path))
    ny, nx = stack[0].shape
    print(f"Stack {stack_path.name}: {nx}x{ny} pixels, {int(stack.phu.get('NCOMBINE', 0))} frames combined")
    print("Compared with the simulator's truth:")
    for line in compare_with_truth(stack, truth_dir, exptime).lines():
        print(line)
    if report:
        picture = Path(report).with_suffix("") / "stack.png"
        print(f"Report: {report}")
        print(f"Stack picture: {picture}  (or: draconis display {stack_path})")
    print(f"Truth catalogue and per-frame truth: {truth_dir}")
