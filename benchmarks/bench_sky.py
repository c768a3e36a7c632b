"""Benchmark: skyCorrect's sliding-window sky against the direct combine, on the same simulated F2 frames.

The F2 deep field is simulated (``draconis.simulate.make_dataset('f2-deep')``,
default 156 full-size frames, the seed's sequence), calibrated far enough to
carry DQ (with the F2 illumination mask) and VAR, and checkpointed to zarr —
all untimed. Then the sky step of the F2 default recipe runs twice on a
fresh LocalCluster each time, once per combine path
(``draconis.sky_combine`` = "window", then "direct"):

1. pass 1: associateSky on the sky stream, skyCorrect without object masks,
   its output written to a zarr checkpoint (timed);
2. detectSources on the pass-1 output, checkpointed, and the OBJMASKs
   attached to the skies (untimed; done once, on the window run, and reused
   by the direct run so both second passes use the same masks);
3. pass 2: associateSky, skyCorrect with object masks, flushPixels (timed).

It prints, per path and pass: wall time, frames per second, CPU time (client
and workers: on a shared machine the fairer comparison), the number of tasks
in the pass's graph and the time to build it, and the peak RSS of every
worker; then the ratios direct / window. ``--passes 1`` times the
first pass only.

Usage::

    python benchmarks/bench_sky.py [--frames 156] [--size 2048] [--mem 2GiB] [--workers 2] [--passes 2]
    python benchmarks/bench_sky.py --frames 40 --size 512 --mem 1GiB     # a quick check that it runs
    python benchmarks/bench_sky.py --frames 156 --direct-sample 12       # the direct path on 12 of 156, scaled
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


def calibrated(raw_dir: str, workdir: str):
    """The simulated science frames with DQ and VAR, checkpointed to zarr; the context holding them."""
    import draconis
    from draconis.reduce.context import RunContext

    paths = sorted(glob.glob(os.path.join(raw_dir, "*.fits")))
    frames = [draconis.open(p) for p in paths]
    science = [f for f in frames if "IMAGE" in f.tags and not (f.tags & {"FLAT", "DARK", "CAL"})]
    ctx = RunContext({"main": science}, workdir=workdir, outdir=workdir, instrument="F2", kind="IMAGE",
                     keep_checkpoints=True)
    ctx.run("prepare")
    ctx.run("addDQ", static_bpm=None)
    ctx.run("ADUToElectrons")
    ctx.run("addVAR", read_noise=True, poisson_noise=True)
    ctx.run("flushPixels")
    return ctx


def _tasks(frames) -> int:

    graphs = [ext.plane(n).__dask_graph__() for f in frames for ext in f.extensions for n in ("SCI", "VAR", "DQ")
              if ext.plane(n) is not None]
    keys = set()
    for g in graphs:
        keys.update(g.keys())
    return len(keys)


def _cpu(client) -> float:
    """CPU seconds used so far by the client process and every worker."""
    def used():
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime
    return used() + sum(client.run(used).values())


def sky_passes(frames, workdir: str, mode: str, passes: int, client, masks=None, max_skies=None,
               sample=None) -> dict:
    """The two sky passes of the F2 recipe with ``draconis.sky_combine = mode``; timings and the pass-1 output.

    ``sample``: indices of the only frames sky-subtracted (each with its whole sky list from the sequence).
    """
    import dask

    from draconis.reduce.context import RunContext

    out = {}
    with dask.config.set({"draconis.sky_combine": mode}):
        ctx = RunContext({"main": list(frames)}, workdir=workdir, outdir=workdir, instrument="F2", kind="IMAGE")
        ctx.run("separateSky")
        t0, c0 = time.perf_counter(), _cpu(client)
        limit = {} if max_skies is None else {"max_skies": max_skies}
        ctx.run("associateSky", stream="sky", **limit)
        ctx.set_stream("targets", ctx.stream("sky") if sample is None else [ctx.stream("sky")[i] for i in sample])
        ctx.run("skyCorrect", instream="targets", outstream="skysub", mask_objects=False)
        t1 = time.perf_counter()
        out["tasks1"] = _tasks(ctx.stream("skysub"))
        skysub = ctx.checkpoint(ctx.stream("skysub"), "skysub")
        out["pass1"], out["build1"], out["cpu1"] = time.perf_counter() - t0, t1 - t0, _cpu(client) - c0
        out["skysub"] = skysub
        if passes > 1:
            if masks is None:
                ctx.set_stream("skysub", skysub)
                ctx.run("detectSources", stream="skysub")
                # read back from a checkpoint, so pass 2 does not redo the detection; skyCorrect and
                # detectSources keep the order of the sky stream
                detected = ctx.checkpoint(ctx.stream("skysub"), "masks")
                masks = [[e.plane("OBJMASK") for e in f.extensions] for f in detected]
            skies = [f.with_extensions([e.with_planes(OBJMASK=m) for e, m in zip(f.extensions, fm)])
                     for f, fm in zip(ctx.stream("sky"), masks)]
            ctx.set_stream("sky", skies)
            t0, c0 = time.perf_counter(), _cpu(client)
            ctx.run("associateSky", **limit)
            if sample is not None:
                ctx.set_stream("main", [ctx.stream("main")[i] for i in sample])
            ctx.run("skyCorrect", mask_objects=True)
            t1 = time.perf_counter()
            out["tasks2"] = _tasks(ctx.stream("main"))
            ctx.run("flushPixels")
            out["pass2"], out["build2"], out["cpu2"] = time.perf_counter() - t0, t1 - t0, _cpu(client) - c0
        out["masks"] = masks
        out["ctx"] = ctx
    return out


def _warm_up() -> None:
    """Worker start-up: the imports of the sky tasks and their compiled kernels (numba's cache loaded)."""
    import dask.array  # noqa: F401
    import numpy as np

    import draconis.io._tasks  # noqa: F401
    from draconis.kernels import sky as ksky
    from draconis.kernels.combine import CombineSpec
    from draconis.kernels.sky_window import SkySubtractSpec, SkyWindows, window_sky_subtract

    cube = np.ones((4, 8, 8), np.float32)
    dq = np.zeros(cube.shape, np.uint16)
    levels = np.ones(4)
    ksky.stack_sky_tile(cube, cube, dq, levels, CombineSpec(operation="median", reject_method="minmax", nlow=1,
                                                            nhigh=1), mode="scale")
    ksky.sampled_level(cube[0], dq[0])
    windows = SkyWindows(np.array([0]), np.array([4]), (np.array([1]),), np.array([0]), np.array([0]))
    window_sky_subtract(list(cube), list(cube), list(dq), levels, [cube[1]], [cube[1]], [dq[1]], levels[:1],
                        windows, SkySubtractSpec())


def run_mode(frames, workdir, mode, args, mem, masks=None, sample=None):
    """One path on a fresh LocalCluster: timings and worker peaks."""
    import dask
    import distributed
    from bench_stack import _worker_spilled  # (benchmarks/ is the script's folder: on sys.path, the workers' too)

    from draconis.cluster import SCHEDULER_SETTINGS, execution

    with dask.config.set({"draconis.memory_limit": args.mem, **SCHEDULER_SETTINGS}), \
            distributed.LocalCluster(n_workers=args.workers, threads_per_worker=1, memory_limit=mem,
                                     processes=True, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client, execution(cluster.scheduler_address):
        pids = client.run(os.getpid)
        client.run(_warm_up)  # untimed, for both paths: a sampled direct run's time is scaled up, start-up included
        report = (distributed.performance_report(os.path.join(args.report, f"sky_{mode}.html"))
                  if args.report else _null())
        with report, distributed.get_task_stream(client) as stream:
            result = sky_passes(frames, os.path.join(workdir, mode), mode, args.passes, client, masks,
                                max_skies=args.max_skies, sample=sample)
        _print_task_times(mode, stream.data)
        result["peaks"] = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
        result["restarted"] = client.run(os.getpid) != pids
        result["spilled"] = client.run(_worker_spilled)
    return result


def _print_task_times(mode: str, records) -> None:
    """Worker time per kind of task (key prefix), largest first: where the passes spent their time."""
    from dask.utils import key_split

    spent: dict[str, list] = {}
    for rec in records:
        compute = sum(s["stop"] - s["start"] for s in rec.get("startstops", ()) if s["action"] == "compute")
        other = sum(s["stop"] - s["start"] for s in rec.get("startstops", ()) if s["action"] != "compute")
        row = spent.setdefault(key_split(rec["key"]), [0, 0.0, 0.0])
        row[0] += 1
        row[1] += compute
        row[2] += other
    total = sum(r[1] + r[2] for r in spent.values()) or 1.0
    print(f"{mode:>6}: worker time by task kind (tasks, compute s, transfer/disk s, % of all):")
    for name, (n, c, o) in sorted(spent.items(), key=lambda kv: -(kv[1][1] + kv[1][2]))[:12]:
        print(f"        {name:<40} {n:>7} {c:>9.1f} {o:>9.1f} {100 * (c + o) / total:>5.1f}")


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def main(argv=None) -> None:
    """The command line: see the module docstring."""
    from dask.utils import parse_bytes

    from draconis.cluster import execution
    from draconis.simulate import make_dataset

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=156)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--mem", default="2GiB", help="memory limit per worker (and draconis.memory_limit)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--passes", type=int, choices=(1, 2), default=2)
    parser.add_argument("--report", help="directory for dask performance reports (one HTML file per path)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--max-skies", type=int, default=None,
                        help="associateSky:max_skies (default: its own, unlimited): few skies per frame, where the "
                             "automatic choice between the paths is closest")
    parser.add_argument("--direct-sample", type=int, default=None,
                        help="the direct combine on this many evenly spaced frames only (each with its whole sky "
                             "list), its times scaled to all frames: at 156 full-size frames the whole direct "
                             "combine takes hours")
    parser.add_argument("--window-only", action="store_true",
                        help="time the sliding window alone (profiling; no direct combine, no ratios)")
    args = parser.parse_args(argv)
    mem = int(parse_bytes(args.mem))
    workdir = tempfile.mkdtemp(prefix=f"bench_sky_{args.frames}_")
    try:
        t0 = time.perf_counter()
        make_dataset("f2-deep", os.path.join(workdir, "raw"), size=args.size, nframes=args.frames, seed=1)
        with execution("threads"):
            setup = calibrated(os.path.join(workdir, "raw"), os.path.join(workdir, "calibrated"))
        frames = setup.stream("main")
        print(f"\n== sky step, F2 deep field, {args.frames} frames of {args.size}x{args.size} (simulated and "
              f"calibrated in {time.perf_counter() - t0:.0f} s); {args.workers} workers x {mem / MIB:.0f} MiB; "
              f"load average {os.getloadavg()[0]:.1f}")
        results = {}
        masks = None
        n = args.frames
        sample = None
        if args.direct_sample:
            sample = sorted({round(i * (n - 1) / max(1, args.direct_sample - 1))
                             for i in range(min(args.direct_sample, n))})
        for mode in ("window",) if args.window_only else ("window", "direct"):
            r = run_mode(frames, workdir, mode, args, mem, masks, sample if mode == "direct" else None)
            masks = r["masks"]
            results[mode] = r
            done = n if mode == "window" or sample is None else len(sample)
            line = (f"{mode:>6}: {done} frames: pass 1 {r['pass1']:.1f} s ({done / r['pass1']:.2f} frames/s, "
                    f"{r['cpu1']:.0f} CPU s, {r['tasks1']} tasks, graph built in {r['build1']:.1f} s)")
            if args.passes > 1:
                line += (f"; pass 2 {r['pass2']:.1f} s ({done / r['pass2']:.2f} frames/s, {r['cpu2']:.0f} CPU s, "
                         f"{r['tasks2']} tasks, graph built in {r['build2']:.1f} s)")
            print(line)
            print(f"{mode:>6}: peak RSS per worker (MiB): "
                  + ", ".join(f"{v / MIB:.0f}" for v in r["peaks"].values())
                  + f"; workers restarted: {r['restarted']}; writes to the spill directory: "
                  + ", ".join(str(v) for v in r["spilled"].values()))
        if args.window_only:
            results["window"]["ctx"].close(True)
            setup.close(True)
            return
        w, d = results["window"], results["direct"]
        # the direct combine of a sample: its time per frame (each frame's stack is its own) times n
        per = 1.0 if sample is None else n / len(sample)
        if sample is not None:
            print(f"direct: sampled {len(sample)} of {n} frames, each with its whole sky list; its times below "
                  f"are scaled by {per:.1f} to the {n} frames")
        total_w = w["pass1"] + w.get("pass2", 0.0)
        total_d = (d["pass1"] + d.get("pass2", 0.0)) * per
        cpu_w = w["cpu1"] + w.get("cpu2", 0.0)
        cpu_d = (d["cpu1"] + d.get("cpu2", 0.0)) * per
        print(f"ratios direct/window: pass 1 {d['pass1'] * per / w['pass1']:.1f}x"
              + (f", pass 2 {d['pass2'] * per / w['pass2']:.1f}x" if args.passes > 1 else "")
              + f", sky step {total_d / total_w:.1f}x faster with the window ({cpu_d / cpu_w:.1f}x less CPU time); "
              f"largest worker peak {max(w['peaks'].values()) / max(d['peaks'].values()):.2f} of the direct path's")
        window_out = w["skysub"] if sample is None else [w["skysub"][i] for i in sample]
        _compare(window_out, d["skysub"])
        for r in results.values():
            r["ctx"].close(True)
        setup.close(True)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def _compare(window, direct) -> None:
    """Largest difference between the two paths' pass-1 outputs, first 3 frames (a check they computed the same)."""
    import numpy as np

    worst = 0.0
    for a, b in zip(window[:3], direct[:3]):
        x, y = np.asarray(a[0].plane("SCI")), np.asarray(b[0].plane("SCI"))
        scale = np.nanmax(np.abs(y)) + 1.0
        worst = max(worst, float(np.nanmax(np.abs(x - y)) / scale))
    print(f"pass-1 SCI of the first 3 frames, window vs direct: largest difference {worst:.1e} of the largest value")


if __name__ == "__main__":
    main()
