"""Benchmark: stackFrames alone against ccdproc.combine, on the same resampled frames, at several N and sizes.

For each run ``SIZExN`` (default 2048x100, 2048x300, 1024x100, 1024x300,
1024x1000) the script

1. makes N synthetic resampled frames of SIZE x SIZE
   (:func:`draconis.testing.resampled_sequence`: a common grid, dithered
   coverage, noise, stars, cosmic rays, bad pixels) and writes them, untimed,
   as stackFrames' checkpoint (zarr, in the row chunks stackFrames chooses for
   N and its memory budget) and as CCDData FITS files (SCI + mask) for ccdproc;
2. on a fresh LocalCluster (``--workers`` x ``--mem``), times stackFrames
   (mean of 3/3 sigma-clipped values about the median, with VAR and DQ) from
   opening the checkpoints to the stack's FITS file written (writeOutputs),
   and separately the graph construction (the stackFrames call, lazy); counts
   the tasks of the stack's graph and its pickled size; samples every
   worker's peak RSS (VmHWM, since it started) and checks that no worker
   was restarted and nothing was spilled;
3. runs ``ccdproc.combine`` (average, sigma clipping 3/3 about the median,
   ``mem_limit`` = ``--mem``) on the FITS copies in a separate single-threaded
   process, timed with its peak RSS;

and prints, per run, the times, frames per second, peak memory per worker,
the graph figures and the ratios draconis/ccdproc, then per size how memory
and time per frame change with N (flat memory, linear time are the targets).

Usage::

    python benchmarks/bench_stack.py                               # the full set (the lead's figures)
    python benchmarks/bench_stack.py --runs 256x20 256x60 --mem 1GiB    # a quick check that it runs
    python benchmarks/bench_stack.py --runs 1024x100 --profile stack.prof   # cProfile of one run, in-process

Disk: each run needs ~15 bytes per input pixel (SCI + VAR + DQ checkpoint, FITS
copies for ccdproc): 300 frames of 2048^2 ~ 19 GB, 1000 of 1024^2 ~ 16 GB;
the script checks free space first and removes each run's files after it.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import pickle
import resource
import shutil
import sys
import tempfile
import time

MIB = 2 ** 20
DEFAULT_RUNS = ["2048x100", "2048x300", "1024x100", "1024x300", "1024x1000"]
BYTES_PER_INPUT_PIXEL = 15


def _parse_run(text: str) -> tuple[int, int]:
    size, n = text.lower().split("x")
    return int(size), int(n)


def write_inputs(n: int, size: int, workdir: str, stack_memory: float, address: str) -> tuple[list[str], list[str]]:
    """Synthetic resampled frames as stackFrames' checkpoint (zarr) and as CCDData FITS; both path lists."""
    import dask

    from draconis.cluster import execution
    from draconis.io.zarr import write_zarr_many
    from draconis.primitives.stack import checkpoint_rows
    from draconis.testing import resampled_sequence

    rows = checkpoint_rows(n, (size, size), stack_memory)
    frames = resampled_sequence(n, (size, size), chunk_rows=rows, seed=5)
    stores = [os.path.join(workdir, "zarr", f"{i:04d}_{f.filename[:-5]}.zarr") for i, f in enumerate(frames)]
    fits_paths = [os.path.join(workdir, "ccd", f"{f.filename[:-5]}.fits") for f in frames]
    os.makedirs(os.path.join(workdir, "ccd"))
    with execution(address):
        for start in range(0, n, 50):  # in batches: one graph per 50 frames stays small
            write_zarr_many(frames[start:start + 50], stores[start:start + 50], chunks=(rows, size))
        # the FITS copies from the frames as written (generated once), each task opening its own store: a
        # graph of the stores' read tasks was 79 MB at 1000 frames of 1024^2 (10-row chunks)
        dask.compute(*[dask.delayed(_write_ccd)(s, p) for s, p in zip(stores, fits_paths)])
    return stores, fits_paths


def _write_ccd(store: str, path: str) -> None:
    from astropy.nddata import CCDData

    from draconis.io.zarr import open_zarr

    ext = open_zarr(store)[0]
    sci, dq = (ext.plane(name).compute(scheduler="synchronous") for name in ("SCI", "DQ"))
    CCDData(sci, unit="electron", mask=dq != 0).write(path, overwrite=True)


def peak_rss() -> int:
    """The peak RSS of this process since it started (VmHWM; ``ru_maxrss`` would include its parent's at fork)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _warm_up() -> float:
    """Worker start-up, untimed: the imports, and the stack's kernel run once.

    The imports any array task makes (dask.array, which imports xarray and pandas) and the checkpoint
    reader's; the kernel run loads numba's cached machine code.
    """
    t0 = time.perf_counter()
    import dask.array  # noqa: F401
    import numcodecs  # noqa: F401
    import numpy as np

    import draconis.io._tasks  # noqa: F401
    from draconis.kernels.combine import CombineSpec
    from draconis.kernels.stack import combine_tile

    cube = np.ones((3, 4, 4), np.float32)
    combine_tile(cube, cube, np.zeros(cube.shape, np.uint16), {"spec": CombineSpec(reject_method="sigclip")})
    return time.perf_counter() - t0


def _worker_spilled(dask_worker) -> int:
    """How many times this worker wrote data to its spill directory (all its life)."""
    return int(sum(v for k, v in dask_worker.digests_total.items()
                   if isinstance(k, tuple) and "disk-write" in k and "count" in k))


def _graph_figures(frame) -> tuple[int, int]:
    """Tasks and pickled bytes of the graph of the stack's planes (what writeOutputs sends)."""
    from dask.highlevelgraph import HighLevelGraph

    planes = [frame[0].plane(n) for n in ("SCI", "VAR", "DQ")]
    graph = dict(HighLevelGraph.merge(*[p.__dask_graph__() for p in planes]))
    return len(graph), len(pickle.dumps(graph, protocol=5))


def draconis_stack(stores: list[str], workdir: str, stack_memory: float, address: str) -> dict:
    """Time stackFrames + writeOutputs on the checkpoints; graph figures."""
    from draconis.cluster import execution
    from draconis.io.zarr import open_zarr
    from draconis.primitives.stack import BYTES_PER_PIXEL_STORED
    from draconis.recipes.caller import PrimitiveCaller
    from draconis.reduce.context import RunContext

    out = os.path.join(workdir, "out")
    os.makedirs(out)
    with execution(address):
        t0 = time.perf_counter()
        frames = [open_zarr(s) for s in stores]
        ctx = RunContext({"main": frames}, workdir=os.path.join(workdir, "work"), outdir=out,
                         instrument="NIRI", kind="IMAGE", uparms=[("stackFrames:memory", str(stack_memory))])
        p = PrimitiveCaller(ctx)
        t1 = time.perf_counter()
        p.stackFrames()
        t2 = time.perf_counter()
        stack = ctx.stream("main")[0]
        tasks, nbytes = _graph_figures(stack)
        rows = stack[0].plane("SCI").chunks[0][0]
        ny, nx = stack[0].shape
        t3 = time.perf_counter()
        p.writeOutputs()
        t4 = time.perf_counter()
        ctx.close(True)
    return {"open": t1 - t0, "graph": t2 - t1, "compute": t4 - t3, "total": (t4 - t3) + (t2 - t0),
            "tasks": tasks, "graph_bytes": nbytes, "checkpoints": ctx.checkpoints.bytes_written, "rows": rows,
            "task_bytes": len(frames) * rows * nx * BYTES_PER_PIXEL_STORED}


def _ccdproc_child(paths, mem: int, out_path: str, queue) -> None:
    import numpy as np
    from ccdproc import combine

    t0 = time.perf_counter()
    combine(paths, method="average", sigma_clip=True, sigma_clip_low_thresh=3, sigma_clip_high_thresh=3,
            sigma_clip_func=np.ma.median, mem_limit=mem, unit="electron", output_file=out_path,
            overwrite_output=True)
    queue.put((time.perf_counter() - t0, peak_rss()))


def ccdproc_stack(paths: list[str], workdir: str, mem: int) -> dict:
    """Time ccdproc.combine on the CCDData files in a spawned single-threaded process; its figures."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_ccdproc_child, args=(paths, mem, os.path.join(workdir, "ccdproc_stack.fits"), queue))
    proc.start()
    seconds, peak = queue.get()
    proc.join()
    return {"total": seconds, "peak": peak}


def one_run(size: int, n: int, args, mem: int) -> dict:
    """One N at one size: inputs written, then draconis on a fresh LocalCluster and ccdproc; their figures."""
    import distributed

    need = n * size * size * BYTES_PER_INPUT_PIXEL
    free = shutil.disk_usage(args.tmp).free
    if free < 1.2 * need:
        sys.exit(f"bench_stack: {size}x{n} needs ~{need / 1e9:.1f} GB in {args.tmp}, only {free / 1e9:.1f} GB free")
    workdir = tempfile.mkdtemp(prefix=f"bench_stack_{size}x{n}_", dir=args.tmp)
    try:
        with distributed.LocalCluster(n_workers=args.workers, threads_per_worker=1, memory_limit=mem,
                                      processes=True, dashboard_address=None) as cluster, \
                distributed.Client(cluster):
            t0 = time.perf_counter()
            stores, fits_paths = write_inputs(n, size, workdir, args.stack_memory, cluster.scheduler_address)
            made = time.perf_counter() - t0
        # a fresh cluster for the timed stack: its workers' peak RSS is the stack's
        with distributed.LocalCluster(n_workers=args.workers, threads_per_worker=1, memory_limit=mem,
                                      processes=True, dashboard_address=None) as cluster, \
                distributed.Client(cluster) as client:
            pids = client.run(os.getpid)
            warm = max(client.run(_warm_up).values())
            d = draconis_stack(stores, workdir, args.stack_memory, cluster.scheduler_address)
            d["peaks"] = list(client.run(peak_rss).values())
            d["spilled"] = sum(client.run(_worker_spilled).values())
            d["restarted"] = client.run(os.getpid) != pids
            d["warm_up"] = warm
        c = None if args.no_ccdproc else ccdproc_stack(fits_paths, workdir, mem)
        report(size, n, made, d, c, args, mem)
        return {"size": size, "n": n, "draconis": d, "ccdproc": c}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def report(size: int, n: int, made: float, d: dict, c: dict | None, args, mem: int) -> None:
    """Print one run's figures and the draconis/ccdproc ratios."""
    print(f"\n== stackFrames, {n} resampled frames of {size}x{size} (inputs written in {made:.0f} s); "
          f"{args.workers} workers x {mem / MIB:.0f} MiB, stackFrames:memory {args.stack_memory} GB")
    print(f"draconis: {d['total']:.1f} s ({n / d['total']:.2f} frames/s): open {d['open']:.2f} s, graph "
          f"construction {d['graph']:.2f} s, compute + write {d['compute']:.1f} s; graph {d['tasks']} tasks, "
          f"{d['graph_bytes'] / 1e6:.2f} MB pickled; checkpoints written {d['checkpoints'] / 1e6:.0f} MB; "
          f"(untimed: worker start-up, numba's cached kernels loaded, {d['warm_up']:.1f} s)")
    print(f"draconis: bands of {d['rows']} rows, {d['task_bytes'] / MIB:.0f} MiB planned per band task; "
          "peak RSS per worker (MiB): " + ", ".join(f"{p / MIB:.0f}" for p in d["peaks"])
          + f"; spilled {d['spilled']}; workers restarted: {d['restarted']}")
    if c:
        print(f"ccdproc.combine (average, sigma clip 3/3 about the median, mem_limit {mem / MIB:.0f} MiB): "
              f"{c['total']:.1f} s ({n / c['total']:.2f} frames/s), peak RSS {c['peak'] / MIB:.0f} MiB")
        print(f"ratios draconis/ccdproc: time {d['total'] / c['total']:.3f} (speed-up {c['total'] / d['total']:.2f}x, "
              f"draconis also makes VAR and DQ); peak memory largest worker / ccdproc "
              f"{max(d['peaks']) / c['peak']:.2f}")
    sys.stdout.flush()


def scaling(results: list[dict]) -> None:
    """Per size: peak memory per worker and time per frame against the smallest N of that size."""
    for size in sorted({r["size"] for r in results}):
        runs = sorted((r for r in results if r["size"] == size), key=lambda r: r["n"])
        if len(runs) < 2:
            continue
        base = runs[0]["draconis"]
        print(f"\n== scaling with N at {size}x{size} (against N={runs[0]['n']})")
        for r in runs:
            d = r["draconis"]
            print(f"N={r['n']:5d}: largest worker peak {max(d['peaks']) / MIB:.0f} MiB "
                  f"({max(d['peaks']) / max(base['peaks']):.3f}x); time per frame {d['total'] / r['n'] * 1e3:.1f} ms "
                  f"({d['total'] / r['n'] / (base['total'] / runs[0]['n']):.3f}x); graph {d['tasks']} tasks, "
                  f"construction {d['graph']:.2f} s")


def profile_run(size: int, n: int, args) -> None:
    """Profile (cProfile) stackFrames + writeOutputs, synchronous scheduler (inputs written first, untimed)."""
    import cProfile
    import pstats

    workdir = tempfile.mkdtemp(prefix=f"bench_stack_prof_{size}x{n}_", dir=args.tmp)
    try:
        stores, _ = write_inputs(n, size, workdir, args.stack_memory, "threads")
        prof = cProfile.Profile()
        prof.enable()
        d = draconis_stack(stores, workdir, args.stack_memory, "synchronous")
        prof.disable()
        prof.dump_stats(args.profile)
        print(f"profiled {size}x{n}: {d['total']:.1f} s; stats in {args.profile}")
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv=None) -> None:
    """The command line: see the module docstring."""
    from dask.utils import parse_bytes

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", default=DEFAULT_RUNS, help="SIZExN, e.g. 2048x100 1024x1000")
    parser.add_argument("--mem", default="2GiB", help="memory limit per worker, and ccdproc's mem_limit")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--stack-memory", type=float, default=0.125,
                        help="stackFrames:memory (GB per band task); the default binds at every default run, so the "
                             "band tasks hold the same memory at every N (at 1.0 the smaller runs are cut into "
                             "MIN_BANDS bands below the budget, for parallelism, and use less)")
    parser.add_argument("--no-ccdproc", action="store_true")
    parser.add_argument("--tmp", default=tempfile.gettempdir(), help="where inputs are written")
    parser.add_argument("--profile", default=None, help="cProfile the first run (synchronous scheduler) into this file")
    args = parser.parse_args(argv)
    mem = int(parse_bytes(args.mem))
    runs = [_parse_run(r) for r in args.runs]
    if args.profile:
        profile_run(*runs[0], args)
        return
    results = [one_run(size, n, args, mem) for size, n in runs]
    scaling(results)


if __name__ == "__main__":
    main()
