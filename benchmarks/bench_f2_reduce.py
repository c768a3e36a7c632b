"""Benchmark: the F2 deep-field science recipe on full-size simulated sequences, against ccdproc.combine.

For each sequence length (default 20 and 156 frames of 2048x2048, the seed
tutorial's count) the script

1. simulates the F2 deep field (``draconis.simulate.make_dataset('f2-deep')``:
   science frames, darks, lamp flats) — untimed;
2. makes the master dark and flat with ``draconis.Reduce`` — timed apart; and,
   timed as DRAGONS was (DESIGN.md), a master dark from 5 darks and a master
   flat from 5 flats (cited DRAGONS times: it is not installed here);
3. runs the F2 default science recipe on a LocalCluster (``--workers`` x
   ``--mem``): prepare ... flatCorrect, two-pass sky subtraction, detection,
   alignment, resampling, count scaling (checkpointed to zarr), then
   stackFrames (mean, sigma clipping) and the FITS write; the phases are timed;
4. combines the same resampled, scaled frames with ``ccdproc.combine``
   (average, 3/3 sigma clipping, ``mem_limit`` = ``--mem``) in a separate,
   single-threaded process, as ccdproc runs;

and prints wall time, frames per second, peak memory per worker and in
total, and the ratios draconis/ccdproc for the stacking step (the step
ccdproc does) and for the whole draconis reduction.

Usage::

    python benchmarks/bench_f2_reduce.py [--frames 20 156] [--size 2048] [--mem 2GiB] [--workers 2] [--recipe ultradeep]
"""
from __future__ import annotations

import argparse
import glob
import os
import resource
import shutil
import tempfile
import time

MIB = 2 ** 20


def _by_tags(paths, want, exclude=frozenset()):
    import draconis

    return [p for p in paths if want <= draconis.open(p).tags and not (exclude & draconis.open(p).tags)]


def _calibration_inputs(files) -> tuple[list[str], list[str], list[str]]:
    """The darks of the science exposure time, the flats, and the darks of the flats' exposure time."""
    import draconis

    darks, flats = _by_tags(files, {"DARK"}), _by_tags(files, {"FLAT"})
    t_sci = draconis.open(_by_tags(files, {"IMAGE"}, {"FLAT", "DARK", "CAL"})[0]).exposure_time()
    t_flat = draconis.open(flats[0]).exposure_time()

    def exposed(t):
        return [d for d in darks if abs(draconis.open(d).exposure_time() - t) < 0.01]

    return exposed(t_sci), flats, exposed(t_flat)


def _reduce(paths, address: str) -> str:
    """One draconis.Reduce of ``paths`` on the cluster at ``address``; its first output."""
    from draconis.reduce import Reduce

    r = Reduce()
    r.files, r.scheduler = list(paths), address
    r.runr()
    return r.output_filenames[0]


def calibrations(files, address: str, workdir: str) -> tuple[str, str, float]:
    """Master dark (science exposure time) and flat through draconis.Reduce; their paths and the time taken."""
    sci_darks, flats, flat_darks = _calibration_inputs(files)
    t0 = time.perf_counter()
    dark = _reduce(sci_darks, address)
    flat = _reduce(flats + flat_darks, address)
    return dark, flat, time.perf_counter() - t0


#: DRAGONS v4.2.2 on this machine kind, single process, same simulated files (DESIGN.md, "The bar"): a
#: master dark from 5 darks, a master flat from 5 flats. DRAGONS is not installed here, so these are cited.
DRAGONS_DARK_5, DRAGONS_FLAT_5 = 14.1, 15.5


def calibrations_as_dragons(files, address: str, workdir: str) -> tuple[float, float]:
    """Times (s) of a master dark from 5 darks and a master flat from 5 flats, as DRAGONS was timed.

    The flat uses 5 darks of its exposure too; each reduction runs in its own directory (its own
    calibrations/ and outputs).
    """
    sci_darks, flats, flat_darks = _calibration_inputs(files)
    times = []
    for label, paths in (("dark5", sci_darks[:5]), ("flat5", flats[:5] + flat_darks[:5])):
        where = os.path.join(workdir, label)
        os.makedirs(where)
        old = os.getcwd()
        os.chdir(where)
        try:
            t0 = time.perf_counter()
            _reduce(paths, address)
            times.append(time.perf_counter() - t0)
        finally:
            os.chdir(old)
    return times[0], times[1]


def science(files, dark: str, flat: str, address: str, workdir: str, recipe: str = "reduce") -> dict:
    """The F2 default (or ultradeep) recipe, phase by phase; timings, the stack's path and the frames before stacking.

    The phases of ``ultradeep`` (parts 1-3 in one run) are reported as: calibration, the first two-pass
    sky subtraction, the deep stack and the transfer of its object mask ("calibrate + sky"); the masked
    sky subtraction, detection, alignment, resampling and scaling ("detect + align + resample + scale");
    the final stack and its write.
    """
    import draconis
    from draconis import runrecord
    from draconis.cluster import execution, warm_workers
    from draconis.primitives.registry import worker_imports
    from draconis.recipes import image_f2
    from draconis.recipes.caller import PrimitiveCaller
    from draconis.recipes.caller import record as record_calls
    from draconis.recipes.image_common import part2_mask_transfer, two_pass_sky
    from draconis.reduce.context import RunContext

    frames = [draconis.open(p) for p in _by_tags(files, {"IMAGE"}, {"FLAT", "DARK", "CAL"})]
    ctx = RunContext({"main": frames}, {"processed_dark": dark, "processed_flat": flat}, workdir=workdir,
                     outdir=workdir, instrument="F2", kind="IMAGE", keep_checkpoints=True)
    p = PrimitiveCaller(ctx)
    times = {}
    record = runrecord.RunRecord(recipe=f"bench_f2_reduce (F2 {recipe} recipe)", instrument="F2",
                                 inputs=[f.path for f in frames])
    # as Reduce does at the start of a run: the workers import what the recipe's tasks need
    recipe_func = image_f2.ultradeep if recipe == "ultradeep" else image_f2.reduce
    imports = worker_imports(call.name for call in record_calls(recipe_func))
    with runrecord.recording(record), execution(address) as client, warm_workers(client, imports):
        # the steps of image_f2.reduce, timed in phases
        t0 = time.perf_counter()
        image_f2.ultradeep_part1(p)  # prepare ... flatCorrect
        if recipe == "ultradeep":  # image_f2.ultradeep without its storeProcessedScience (no database here)
            p.flushPixels()  # as image_f2.ultradeep: main and flat_corrected read the checkpoint
            p.copyInputs(outstream="flat_corrected")
            part2_mask_transfer(p, dilate=False)
            t1 = time.perf_counter()
            p.separateSky()
            p.associateSky()
            p.skyCorrect(mask_objects=True)
        else:
            p.flushPixels()
            two_pass_sky(p, flush=True)
            t1 = time.perf_counter()
        p.detectSources()
        p.adjustWCSToReference()
        p.resampleToCommonFrame()
        p.scaleCountsToReference()
        p.flushPixels()
        scaled = ctx.stream("main")
        t2 = time.perf_counter()
        p.stackFrames()
        p.writeOutputs()
        t3 = time.perf_counter()
    times.update(calibrate_sky=t1 - t0, align_resample=t2 - t1, stack=t3 - t2, total=t3 - t0)
    record.seconds = t3 - t0
    record.checkpoint_bytes = ctx.checkpoints.bytes_written
    return {"times": times, "scaled": scaled, "ctx": ctx, "shape": scaled[0][0].shape, "record": record}


def ccdproc_stack(scaled, workdir: str, mem: int) -> dict:
    """The scaled frames written as CCDData FITS (untimed), then ccdproc.combine timed in a child process."""
    import numpy as np
    from astropy.nddata import CCDData

    paths = []
    for frame in scaled:
        sci = np.asarray(frame[0].plane("SCI"))
        dq = np.asarray(frame[0].plane("DQ"))
        path = os.path.join(workdir, f"{frame.stem}_ccd.fits")
        CCDData(sci, unit="electron", mask=dq != 0).write(path, overwrite=True)
        paths.append(path)
    from bench_stack import ccdproc_stack as ccdproc_combine  # (benchmarks/ is the script's folder: on sys.path)

    timed = ccdproc_combine(paths, workdir, mem)
    return {"stack": timed["total"], "peak": timed["peak"]}


def main(argv=None) -> None:
    """The command line: see the module docstring."""
    import dask
    import distributed
    from bench_stack import _worker_spilled  # (benchmarks/ is the script's folder: on sys.path, the workers' too)
    from dask.utils import parse_bytes

    from draconis.simulate import make_dataset

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[20, 156])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--mem", default="2GiB",
                        help="memory limit per worker (and draconis.memory_limit), and ccdproc's mem_limit")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--recipe", choices=("reduce", "ultradeep"), default="reduce",
                        help="the F2 default recipe (reduce) or ultradeep (parts 1-3 in one run)")
    parser.add_argument("--no-ccdproc", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    if not args.no_ccdproc:
        import importlib.util

        if importlib.util.find_spec("ccdproc") is None:  # found out before the draconis half, not after it
            parser.error('ccdproc is not installed: pip install -e ".[bench]", or pass --no-ccdproc')
    from draconis.cluster import SCHEDULER_SETTINGS

    mem = int(parse_bytes(args.mem))
    for n in args.frames:
        workdir = tempfile.mkdtemp(prefix=f"bench_f2_reduce_{n}_")
        old = os.getcwd()
        os.chdir(workdir)  # Reduce writes its outputs and calibrations/ here
        try:
            t0 = time.perf_counter()
            make_dataset("f2-deep", os.path.join(workdir, "raw"), size=args.size, nframes=n, seed=1)
            made = time.perf_counter() - t0
            files = sorted(glob.glob(os.path.join(workdir, "raw", "*.fits")))
            # the run plans its tasks for these workers (as for any cluster it is given the address of):
            # without the settings it planned for this machine's default LocalCluster (~10 GiB workers)
            # and with the scheduler settings of the LocalClusters draconis starts itself
            with dask.config.set({"draconis.memory_limit": args.mem, "draconis.n_workers": args.workers,
                                  **SCHEDULER_SETTINGS}), \
                    distributed.LocalCluster(n_workers=args.workers, threads_per_worker=1, memory_limit=mem,
                                             processes=True, dashboard_address=None) as cluster, \
                    distributed.Client(cluster) as client:
                pids = client.run(os.getpid)
                dark, flat, t_cal = calibrations(files, cluster.scheduler_address, workdir)
                t_dark5, t_flat5 = calibrations_as_dragons(files, cluster.scheduler_address, workdir)
                result = science(files, dark, flat, cluster.scheduler_address, workdir, args.recipe)
                peaks = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
                restarted = client.run(os.getpid) != pids
                spilled = client.run(_worker_spilled)
            t = result["times"]
            ny, nx = result["shape"]
            print(f"\n== F2 deep field, recipe {args.recipe}, {n} science frames of {args.size}x{args.size} "
                  f"(simulated in {made:.0f} s); "
                  f"{args.workers} workers x {mem / MIB:.0f} MiB")
            print(f"draconis: master dark + flat {t_cal:.1f} s (all the simulated darks and flats)")
            print(f"draconis: as DRAGONS was timed, master dark from 5 darks {t_dark5:.1f} s (DRAGONS "
                  f"{DRAGONS_DARK_5} s: {DRAGONS_DARK_5 / t_dark5:.1f}x), master flat from 5 flats {t_flat5:.1f} s "
                  f"(DRAGONS {DRAGONS_FLAT_5} s: {DRAGONS_FLAT_5 / t_flat5:.1f}x)")
            print(f"draconis: science total {t['total']:.1f} s ({n / t['total']:.3f} frames/s): calibrate + sky "
                  f"{t['calibrate_sky']:.1f} s, detect + align + resample + scale {t['align_resample']:.1f} s, "
                  f"stack + write {t['stack']:.1f} s ({n / t['stack']:.2f} frames/s); stack {nx}x{ny}")
            print("draconis: peak RSS per worker (MiB): " + ", ".join(f"{v / MIB:.0f}" for v in peaks.values())
                  + f"; all workers {sum(peaks.values()) / MIB:.0f} MiB; client "
                  f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB; workers restarted: "
                  f"{restarted}; writes to the spill directory: " + ", ".join(str(v) for v in spilled.values()))
            print("draconis: time per primitive and compute stage (the end-of-run table of a reduce):")
            # the benchmark records the run itself, without the runner's memory monitor: the table gets the
            # peaks measured above (over the workers' lives, calibrations included)
            result["record"].memory_peak = dict(peaks)
            print(result["record"].summary_table())
            if not args.no_ccdproc:
                c = ccdproc_stack(result["scaled"], workdir, mem)
                print(f"ccdproc.combine (average, sigma clip 3/3, mem_limit {mem / MIB:.0f} MiB): {c['stack']:.1f} s "
                      f"({n / c['stack']:.2f} frames/s), peak RSS {c['peak'] / MIB:.0f} MiB")
                print(f"ratios draconis/ccdproc: stack time {t['stack'] / c['stack']:.3f} (speed-up "
                      f"{c['stack'] / t['stack']:.2f}x); whole science reduction / ccdproc stack "
                      f"{t['total'] / c['stack']:.2f}; peak memory all workers / ccdproc "
                      f"{sum(peaks.values()) / c['peak']:.2f}, largest worker / ccdproc "
                      f"{max(peaks.values()) / c['peak']:.2f}")
            result["ctx"].close(True)
        finally:
            os.chdir(old)
            if not args.keep:
                shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
