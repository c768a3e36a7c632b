"""Benchmark: the nearest-good-pixel fill of ``resample.clean`` against SciPy's distance transform.

The input is a float32 region whose bad pixels are the outside of a centred
circle of radius 0.48 * width (F2's unilluminated corners, cut by a band)
plus ~0.5 % isolated bad pixels, flagged in DQ.  Timed per size, best of
``--repeat`` calls after one untimed call (numba compilation or cache load):

* the fill alone: SciPy's ``distance_transform_edt(bad, return_indices=True)``
  and the gather ``sci[tuple(idx)]`` (what ``clean`` did before), against
  ``draconis.kernels._fill.fill_nearest`` (numba);
* the whole ``clean(sci, dq)`` as the resampler calls it (the bad mask from
  DQ and non-finite values included), the previous version (re-created
  here: the same mask, then SciPy's fill) against the current one.

It prints ns per pixel of each, the ratios old / new, and checks that both
fills put every bad pixel at the same (minimal) distance.

Usage::

    python benchmarks/bench_clean.py                              # 300x2048 and 2048x2048 bands
    python benchmarks/bench_clean.py --sizes 300x512 --repeat 3   # a quick check that it runs
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import ndimage

from draconis.kernels._fill import fill_nearest
from draconis.kernels.resample import CLEAN_BITS, clean


def make_region(ny: int, nx: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Noise-like float32 values and a DQ plane flagging the circle's outside and ~0.5 % random pixels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:ny, :nx]
    bad = (yy - (ny - 1) / 2) ** 2 + (xx - (nx - 1) / 2) ** 2 > (0.48 * nx) ** 2
    bad |= rng.random((ny, nx)) < 0.005
    sci = rng.normal(1000.0, 30.0, (ny, nx)).astype(np.float32)
    return sci, np.where(bad, 64, 0).astype(np.uint16)


def _best(fn, repeat: int) -> tuple[float, np.ndarray]:
    out = fn()  # untimed: compilation, caches
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def _distance2(out: np.ndarray) -> np.ndarray:
    """Squared distance from each pixel to the pixel whose index it holds."""
    ny, nx = out.shape
    sy, sx = np.divmod(out.astype(np.int64), nx)
    yy, xx = np.mgrid[:ny, :nx]
    return (sy - yy) ** 2 + (sx - xx) ** 2


def _scipy_fill(sci: np.ndarray, bad: np.ndarray) -> np.ndarray:
    idx = ndimage.distance_transform_edt(bad, return_distances=False, return_indices=True)
    return sci[tuple(idx)]


def _old_clean(sci: np.ndarray, dq: np.ndarray) -> np.ndarray:
    """clean() before the numba fill, on a region with more than 1 % bad pixels."""
    bad = ~np.isfinite(sci)
    bad |= (dq & CLEAN_BITS) != 0
    if not bad.any() or bad.all() or bad.mean() < 0.01:
        raise ValueError("the benchmark region must have between 1 % and 100 % bad pixels")
    return _scipy_fill(sci, bad)


def _numba_fill(sci: np.ndarray, bad: np.ndarray) -> np.ndarray:
    out = np.empty_like(sci)
    fill_nearest(sci, bad, out)
    return out


def run(ny: int, nx: int, repeat: int) -> None:
    """Time the four fills on one ``ny`` x ``nx`` region and print one line."""
    sci, dq = make_region(ny, nx)
    bad = dq != 0
    n = ny * nx
    t = {name: _best(fn, repeat)[0] / n * 1e9 for name, fn in [
        ("scipy fill", lambda: _scipy_fill(sci, bad)), ("numba fill", lambda: _numba_fill(sci, bad)),
        ("old clean", lambda: _old_clean(sci, dq)), ("new clean", lambda: clean(sci, dq))]}
    # same distances: fill a map of pixel indices (exact in float32 up to 2**24 pixels) both ways
    same = None
    if n <= 2 ** 24:
        index = np.arange(n, dtype=np.float32).reshape(ny, nx)
        same = np.array_equal(_distance2(clean(index, dq)), _distance2(_scipy_fill(index, bad)))
    print(f"{ny}x{nx} (bad {bad.mean():.1%}), ns/pixel:  fill: scipy {t['scipy fill']:.1f}  "
          f"numba {t['numba fill']:.1f}  ratio {t['scipy fill'] / t['numba fill']:.1f}x   "
          f"clean(): old {t['old clean']:.1f}  new {t['new clean']:.1f}  "
          f"ratio {t['old clean'] / t['new clean']:.1f}x   same distances: {same}")


def main() -> None:
    """Parse the sizes and run each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["300x2048", "2048x2048"], help="NYxNX regions")
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per size (best kept)")
    args = parser.parse_args()
    for size in args.sizes:
        ny, nx = (int(v) for v in size.lower().split("x"))
        run(ny, nx, args.repeat)


if __name__ == "__main__":
    main()
