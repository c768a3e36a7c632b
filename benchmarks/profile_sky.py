"""Profile: where a sliding-window sky pass spends its time, piece by piece, inside the workers.

Runs ``bench_sky.py`` (same arguments; ``--window-only --passes 1`` is the
usual choice) with timers installed in every worker before the pass: the
thread CPU time, wall time and minor page faults of each piece of a window
task (its reads, the walk, the subtraction), of the level tasks and of the
checkpoint writes, and of Python's garbage collections, summed over the workers, plus each worker's whole
user/system time and page faults over the pass. The pieces are found by
name in their modules, so a renamed function shows up as missing, not as
zero.

Usage::

    python benchmarks/profile_sky.py --frames 156 --passes 1 --window-only
"""
from __future__ import annotations

import functools
import os
import resource
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
#: (module, attribute, label): what is timed; indented labels run inside the one above.
PIECES = [
    ("draconis.primitives.sky_window", "_window_band", "window task"),
    ("draconis.primitives.sky_window", "_filled", "  reads into cubes"),
    ("draconis.io._tasks", "StoredPlane.read_rows_into", "    stored-plane reads"),
    ("draconis.primitives.sky_window", "MaskedDQ.read_rows_into", "    masked-DQ reads"),
    ("draconis.primitives.sky_window", "window_sky_subtract", "  window_sky_subtract"),
    ("draconis.kernels.sky_window", "_gather", "    gathers"),
    ("draconis.kernels._sky_walk", "walk_pixels", "    walk"),
    ("draconis.kernels.sky_window", "subtract_sky_block", "    subtraction"),
    ("draconis.primitives.sky", "_level_stored", "level task"),
    ("draconis.io._tasks", "write_band_block", "checkpoint write"),
]

_stats: dict[str, list] = {}
_lock = threading.Lock()


def _timed(fn, label):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        c0, t0 = time.thread_time(), time.perf_counter()
        f0 = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
        try:
            return fn(*args, **kwargs)
        finally:
            row = [1, time.thread_time() - c0, time.perf_counter() - t0,
                   resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - f0]
            with _lock:
                old = _stats.setdefault(label, [0, 0.0, 0.0, 0])
                for i, v in enumerate(row):
                    old[i] += v
    wrapper._profiled = True  # type: ignore[attr-defined]
    return wrapper


_gc_started = threading.local()


def _gc_timer(phase: str, info: dict) -> None:
    """Python's garbage collections, by generation: they run in whichever thread triggers them."""
    if phase == "start":
        _gc_started.at = (time.thread_time(), time.perf_counter())
        return
    c0, t0 = getattr(_gc_started, "at", (time.thread_time(), time.perf_counter()))
    label = f"gc generation {info.get('generation')}"
    with _lock:
        old = _stats.setdefault(label, [0, 0.0, 0.0, 0])
        old[0] += 1
        old[1] += time.thread_time() - c0
        old[2] += time.perf_counter() - t0


def install() -> list[str]:
    """In a worker: wrap every piece (once); start the worker's totals. The pieces not found."""
    import importlib

    missing = []
    for module, name, label in PIECES:
        owner = importlib.import_module(module)
        *path, attr = name.split(".")
        for part in path:
            owner = getattr(owner, part, None)
        fn = getattr(owner, attr, None) if owner is not None else None
        if fn is None:
            missing.append(f"{module}.{name}")
        elif not getattr(fn, "_profiled", False):
            setattr(owner, attr, _timed(fn, label))
    _stats.clear()
    import gc

    if _gc_timer not in gc.callbacks:
        gc.callbacks.append(_gc_timer)
    r = resource.getrusage(resource.RUSAGE_SELF)
    _stats["_start"] = [r.ru_utime, r.ru_stime, r.ru_minflt]
    return missing


def collect() -> dict:
    """In a worker: the pieces' totals and the worker's user/system time and faults since :func:`install`."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    u0, s0, f0 = _stats.get("_start", [0, 0, 0])
    found = {k: v for k, v in _stats.items() if k != "_start"}
    found["_worker"] = [r.ru_utime - u0, r.ru_stime - s0, r.ru_minflt - f0]
    return found


def _report(results: dict) -> None:
    total: dict[str, list] = {}
    for worker, found in results.items():
        user, system, faults = found.pop("_worker")
        print(f"worker {worker}: user {user:.1f} s, system {system:.1f} s, {faults / 1e6:.2f} M minor faults")
        for label, row in found.items():
            old = total.setdefault(label, [0, 0.0, 0.0, 0])
            for i, v in enumerate(row):
                old[i] += v
    print(f"{'piece (both workers)':<28}{'calls':>8}{'CPU s':>9}{'wall s':>9}{'faults M':>10}")
    for label in [p[2] for p in PIECES] + sorted(k for k in total if k.startswith("gc ")):
        if label in total:
            n, cpu, wall, faults = total[label]
            print(f"{label:<28}{n:>8}{cpu:>9.1f}{wall:>9.1f}{faults / 1e6:>10.2f}")


def main(argv=None) -> None:
    """The command line: see the module docstring."""
    # the workers import this module to run install/collect: they must find it
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (HERE, os.environ.get("PYTHONPATH")) if p)
    sys.path.insert(0, HERE)
    import bench_sky
    import profile_sky  # by name, not as __main__: the workers get the functions by reference

    passes = bench_sky.sky_passes

    def profiled(frames, workdir, mode, n_passes, client, *args, **kwargs):
        missing = set().union(*client.run(profile_sky.install).values())
        if missing:
            print("profile_sky: not found (renamed?): " + ", ".join(sorted(missing)))
        out = passes(frames, workdir, mode, n_passes, client, *args, **kwargs)
        _report(client.run(profile_sky.collect))
        return out

    bench_sky.sky_passes = profiled
    bench_sky.main(argv)


if __name__ == "__main__":
    main()
