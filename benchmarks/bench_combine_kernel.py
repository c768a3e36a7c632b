"""Throughput of the frame-axis combine kernel against NumPy/astropy baselines.

Run: ``python benchmarks/bench_combine_kernel.py [--frames 50 --ny 512 --nx 2048]``.
Prints M input values per second (N * y * x / wall time) for each case, on
all numba threads (and on one thread for comparison), and the ratio to the
baseline: ``np.mean``, a DQ-masked ``np.ma`` mean of SCI and VAR and
``np.median`` along axis 0 on the same block, astropy's
``sigma_clip`` along axis 0 on a smaller block (it is too slow for the full one).
"""
from __future__ import annotations

import argparse
import os
import time
import warnings

import numba
import numpy as np
from astropy.stats import sigma_clip

from draconis.kernels import CombineSpec, combine_block


def _best_time(func, repeat: int) -> float:
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        func()
        best = min(best, time.perf_counter() - t0)
    return best


def _data(n: int, ny: int, nx: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    sci = rng.normal(1000.0, 30.0, (n, ny, nx)).astype(np.float32)
    # cosmic rays in ~0.5 % of the values, so clipping has something to do
    hits = rng.random(sci.shape) < 0.005
    sci[hits] += rng.uniform(500, 5000, hits.sum()).astype(np.float32)
    var = np.full(sci.shape, 900.0, np.float32)
    dq = np.zeros(sci.shape, np.uint16)
    dq[rng.random(sci.shape) < 0.001] = 1
    return sci, var, dq


def _masked_mean(sci, var, dq):
    """What the kernel's mean/none does, minus the DQ hierarchy: a DQ-masked mean and VAR."""
    mask = dq != 0
    n = (~mask).sum(axis=0)
    return (np.ma.masked_array(sci, mask).mean(axis=0),
            np.ma.masked_array(var, mask).mean(axis=0) / n)


def _astropy_sigclip_mean(sci):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clipped = sigma_clip(sci, sigma=3.0, maxiters=3, axis=0, cenfunc="median", stdfunc="std")
    return clipped.mean(axis=0)


def main() -> None:
    """The command line: see the module docstring."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=50)
    ap.add_argument("--ny", type=int, default=512)
    ap.add_argument("--nx", type=int, default=2048)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    n, ny, nx = args.frames, args.ny, args.nx
    sci, var, dq = _data(n, ny, nx)
    small = sci[:, : max(ny // 16, 1)]  # astropy baseline block
    nvals, nsmall = sci.size, small.size
    cases = [
        ("mean/none", dict(operation="mean", reject_method="none"),
         "np.mean", lambda: np.mean(sci, axis=0), nvals),
        ("mean/none", dict(operation="mean", reject_method="none"),
         "np.ma mean SCI+VAR", lambda: _masked_mean(sci, var, dq), nvals),
        ("median/none", dict(operation="median", reject_method="none"),
         "np.median", lambda: np.median(sci, axis=0), nvals),
        ("median/minmax(1,1)", dict(operation="median", reject_method="minmax", nlow=1, nhigh=1),
         "np.median", lambda: np.median(sci, axis=0), nvals),
        ("mean/sigclip(3 iters)", dict(operation="mean", reject_method="sigclip", max_iters=3),
         "astropy sigma_clip", lambda: _astropy_sigclip_mean(small), nsmall),
        ("mean/sigclip(converge)", dict(operation="mean", reject_method="sigclip"),
         "astropy sigma_clip", lambda: _astropy_sigclip_mean(small), nsmall),
        ("mean/varclip(converge)", dict(operation="mean", reject_method="varclip"),
         "astropy sigma_clip", lambda: _astropy_sigclip_mean(small), nsmall),
    ]
    # compile (or load from cache) before timing
    combine_block(sci[:, :4], var[:, :4], dq[:, :4], parallel=True)
    combine_block(sci[:, :4], var[:, :4], dq[:, :4], parallel=False)
    threads = numba.get_num_threads()
    print(f"block: {n} frames x {ny} x {nx} = {nvals / 1e6:.1f} M values, SCI+VAR+DQ; "
          f"numba {numba.__version__}, {threads} threads, layer {numba.threading_layer()}, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'case':<24}{'threads':>8}{'s':>8}{'Mval/s':>9}   {'baseline':<20}{'Mval/s':>9}{'ratio':>8}")
    for name, kw, bname, baseline, bvals in cases:
        t_base = _best_time(baseline, 1 if "astropy" in bname else args.repeat)
        base_rate = bvals / t_base / 1e6
        for par in (True, False):
            def run(kw=kw, par=par):
                return combine_block(sci, var, dq, CombineSpec(**kw), parallel=par)

            t = _best_time(run, args.repeat)
            rate = nvals / t / 1e6
            print(f"{name:<24}{threads if par else 1:>8}{t:>8.3f}{rate:>9.1f}   "
                  f"{bname:<20}{base_rate:>9.1f}{rate / base_rate:>7.1f}x")


if __name__ == "__main__":
    main()
