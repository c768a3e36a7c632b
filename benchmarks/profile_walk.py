"""Profile: the sliding-window walk alone (``walk_pixels``), in ns per target pixel, on the layout of a real pass.

A window task hands the walk views of its ``(F, rows, width)`` cubes, a
few rows at a time, so each frame's row lies a whole band (1 MB at full
size) from the next frame's; a synthetic ``(F, P)`` C-contiguous block
hides that, and a change measured only on one can be 2x slower in the
pass (``load_tile`` copying pixel by pixel was). This times both layouts on
the same values (median, min/max 1/1, windows of 70 of ``--frames`` skies
sliding over ``--targets`` frames, 20 % of the pixels flagged in every
frame, 1 % of values with a DQ bit) and checks they give the same skies.

Usage::

    python benchmarks/profile_walk.py [--frames 122] [--targets 52] [--repeat 3]
"""
from __future__ import annotations

import argparse
import time


def main(argv=None) -> None:
    """The command line: see the module docstring."""
    import numpy as np

    from draconis.kernels import _sky_walk as walk
    from draconis.kernels._combine_core import MEDIAN

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=122, help="skies of the segment (F)")
    parser.add_argument("--targets", type=int, default=52, help="frames walked (S)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    F, S, band, nx, rows, width = args.frames, args.targets, 128, 2048, 13, min(70, args.frames - 2)

    rng = np.random.default_rng(0)
    sci = (1000 + rng.normal(size=(F, band, nx)) * 10).astype(np.float32)
    var = (100 + rng.random((F, band, nx))).astype(np.float32)
    dq = np.zeros((F, band, nx), np.uint16)
    dq[:, :, : nx // 5] = 64
    dq[rng.random(dq.shape) < 0.01] |= 1
    mul, add = 1.0 / (1000 + rng.random(F)), np.zeros(F)
    lo = np.clip(np.arange(S) * (F - width) // max(1, S - 1), 0, F - width).astype(np.int64)
    hi = lo + width
    excluded = [np.array([a + width // 2, a + width // 2 + 1], np.int64) for a in lo]
    xptr = np.zeros(S + 1, np.int64)
    xptr[1:] = np.cumsum([e.size for e in excluded])
    xidx = np.concatenate(excluded)
    fixed = (lo, hi, xptr, xidx, np.full(S, width - 2, np.int64), np.ones(S, np.int64), np.ones(S, np.int64),
             np.zeros(S, bool), np.full(S, 1000.0), np.zeros(S), MEDIAN, True, True)

    def run(blocks) -> tuple[float, np.ndarray]:
        out = np.zeros((3, S, band * nx), np.float32)
        best = float("inf")
        for _ in range(args.repeat + 1):  # the first run compiles or loads the kernels
            t0 = time.perf_counter()
            for r0 in range(0, band, rows):
                r1 = min(band, r0 + rows)
                s, v, d = blocks(r0, r1)
                parts = [np.empty((S, s.shape[1]), t) for t in (np.float32, np.float32, np.uint16)]
                walk.walk_pixels(s, v, d, mul, add, *fixed[:10], *fixed[10:], *parts)
                for o, p in zip(out, parts):
                    o[:, r0 * nx:r1 * nx] = p
            best = min(best, time.perf_counter() - t0)
        return best / (S * band * nx) * 1e9, out

    def views(r0, r1):  # as window_sky_subtract walks a task's cubes
        return tuple(c[:, r0:r1].reshape(F, -1) for c in (sci, var, dq))

    def copies(r0, r1):  # C-contiguous (F, P) blocks
        return tuple(np.ascontiguousarray(c[:, r0:r1].reshape(F, -1)) for c in (sci, var, dq))

    real, a = run(views)
    block, b = run(copies)
    print(f"walk, {F} skies, {S} targets, windows of {width}: {real:.1f} ns per target pixel on views of the "
          f"task's cubes (a real pass), {block:.1f} on C-contiguous blocks; same skies: {np.array_equal(a, b)}")


if __name__ == "__main__":
    main()
