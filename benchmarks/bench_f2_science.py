"""Benchmark: align, resample and stack full-size F2-like sequences; draconis against ccdproc.combine.

For each sequence length (default 20 and 156 frames of 2048x2048) the script

1. writes sky-subtracted, dithered star fields (SCI/VAR/DQ, header WCS with
   pointing errors) — the input of the ``alignAndStack`` recipe;
2. runs draconis on a LocalCluster (2 workers, ``--mem`` per worker):
   detectSources → adjustWCSToReference → resampleToCommonFrame →
   scaleCountsToReference → zarr checkpoint → stackFrames (mean, sigclip);
3. runs ``ccdproc.combine`` (average, sigma clipping 3/3, ``mem_limit`` =
   the same per-worker memory) on the same resampled frames in a separate
   process, single-threaded as ccdproc runs;

and prints wall times, frames/s, peak memory per worker and in total, and the
ratios draconis/ccdproc. ccdproc only combines: the comparison that matters
is its time against draconis' stack phase; draconis' full time also includes
detection, alignment and resampling.

Usage::

    python benchmarks/bench_f2_science.py [--frames 20 156] [--size 2048] [--mem 2GiB]
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

from test_out_of_core import make_sequence, run, write_stack  # noqa: E402  (the same generator and recipe steps)


def _parse_bytes(text: str) -> int:
    from dask.utils import parse_bytes

    return int(parse_bytes(text))


def draconis_run(paths, workdir, mem: int, workers: int) -> dict:
    """alignAndStack on a LocalCluster; phase times and peak memory."""
    import distributed

    from draconis.io.fits import open_fits
    from draconis.io.zarr import open_zarr, write_zarr_many
    from draconis.primitives.stack import tile_rows

    stack_gb = max(0.05, (mem - 400 * 2 ** 20) / 2 ** 30 / 3)  # a third of what is left after imports
    out = {}
    with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, memory_limit=mem, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        pids = client.run(os.getpid)
        t0 = time.perf_counter()
        frames = [open_fits(p) for p in paths]
        frames = run("detectSources", frames)
        frames = run("adjustWCSToReference", frames)
        t1 = time.perf_counter()
        frames = run("resampleToCommonFrame", frames)
        frames = run("scaleCountsToReference", frames)
        shape = frames[0][0].shape
        rows = tile_rows(len(frames), shape, stack_gb, 256)
        stores = [os.path.join(workdir, f"{f.stem}_align.zarr") for f in frames]
        write_zarr_many(frames, stores, chunks=(rows, shape[1]))
        t2 = time.perf_counter()
        frames = [open_zarr(s) for s in stores]
        stacked = run("stackFrames", frames, memory=stack_gb)
        write_stack(stacked[0], os.path.join(workdir, "draconis_stack.fits"))
        t3 = time.perf_counter()
        peaks = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
        restarted = client.run(os.getpid) != pids
    out.update(detect_align=t1 - t0, resample_checkpoint=t2 - t1, stack=t3 - t2, total=t3 - t0,
               worker_peaks=peaks, restarted=restarted, stores=stores, shape=shape)
    return out


def _ccdproc_child(stores, mem: int, out_path: str, queue) -> None:
    """Resampled frames to FITS (untimed), then ccdproc.combine timed; puts (seconds, peak RSS)."""
    import numpy as np
    from astropy.nddata import CCDData
    from ccdproc import combine

    from draconis.io.zarr import open_zarr

    files = []
    for store in stores:
        frame = open_zarr(store)
        sci = np.asarray(frame[0].plane("SCI"))
        dq = np.asarray(frame[0].plane("DQ"))
        path = store.replace(".zarr", "_ccd.fits")
        CCDData(sci, unit="electron", mask=dq != 0).write(path, overwrite=True)
        files.append(path)
    t0 = time.perf_counter()
    combine(files, method="average", sigma_clip=True, sigma_clip_low_thresh=3, sigma_clip_high_thresh=3,
            sigma_clip_func=np.ma.median, mem_limit=mem, unit="electron", output_file=out_path, overwrite_output=True)
    queue.put((time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024))


def ccdproc_run(stores, workdir, mem: int) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_ccdproc_child, args=(stores, mem, os.path.join(workdir, "ccdproc_stack.fits"), queue))
    proc.start()
    seconds, peak = queue.get()
    proc.join()
    return {"stack": seconds, "peak": peak}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[20, 156])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--mem", default="2GiB", help="memory limit per draconis worker and ccdproc mem_limit")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-ccdproc", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    mem = _parse_bytes(args.mem)
    mib = 2 ** 20
    for n in args.frames:
        workdir = tempfile.mkdtemp(prefix=f"bench_f2_{n}_")
        try:
            t0 = time.perf_counter()
            paths = make_sequence(workdir, n=n, size=args.size)
            made = time.perf_counter() - t0
            size_mb = sum(os.path.getsize(p) for p in paths) / mib
            d = draconis_run(paths, workdir, mem, args.workers)
            peaks = d["worker_peaks"]
            print(f"\n== {n} frames of {args.size}x{args.size} ({size_mb:.0f} MiB of inputs; made in {made:.0f} s); "
                  f"{args.workers} workers x {mem / mib:.0f} MiB")
            print(f"draconis: total {d['total']:.1f} s ({n / d['total']:.2f} frames/s): detect+align "
                  f"{d['detect_align']:.1f} s, resample+checkpoint {d['resample_checkpoint']:.1f} s, stack "
                  f"{d['stack']:.1f} s ({n / d['stack']:.2f} frames/s); output {d['shape'][1]}x{d['shape'][0]}")
            print("draconis: peak RSS per worker (MiB): " + ", ".join(f"{v / mib:.0f}" for v in peaks.values())
                  + f"; total {sum(peaks.values()) / mib:.0f} MiB; client "
                  f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB; "
                  f"workers restarted: {d['restarted']}")
            if not args.no_ccdproc:
                c = ccdproc_run(d["stores"], workdir, mem)
                print(f"ccdproc.combine (average, sigma clip, mem_limit={mem / mib:.0f} MiB): {c['stack']:.1f} s "
                      f"({n / c['stack']:.2f} frames/s), peak RSS {c['peak'] / mib:.0f} MiB")
                print(f"ratios draconis/ccdproc: stack time {d['stack'] / c['stack']:.3f} "
                      f"(speed-up {c['stack'] / d['stack']:.1f}x), full draconis time {d['total'] / c['stack']:.2f}, "
                      f"peak memory (all workers) {sum(peaks.values()) / c['peak']:.2f}, "
                      f"(largest worker) {max(peaks.values()) / c['peak']:.2f}")
        finally:
            if not args.keep:
                shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
