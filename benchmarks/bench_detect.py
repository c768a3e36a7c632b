"""Benchmark: CPU time of one detection (the detectSources task) on sky-subtracted simulated F2 frames.

The F2 deep field is simulated (``draconis.simulate.make_dataset('f2-deep')``,
default 4 full-size frames), calibrated (DQ with the F2 illumination mask,
VAR) and sky-subtracted (skyCorrect without object masks) in this process
with the synchronous scheduler, all untimed. Then the task detectSources
runs per array (``_detect_packed``: detection, catalogue, packed mask) is
timed on every frame, in one process on one core, ``--repeat`` times; the
fastest of the repeats counts (the machine is shared).

The baseline, in the same run on the same frames, is the kernel with the
two library paths it replaced put back: photutils' ``deblend_sources`` on
every segment (the kernel gives it only the segments that can split) and
``scipy.ndimage.convolve`` for the detection filter (the kernel's numba
loop sums in the same order). Both must give the same catalogues, to the
bit, and the same masks: the script says so or stops.

Usage::

    python benchmarks/bench_detect.py [--frames 4] [--size 2048] [--repeat 3]
    python benchmarks/bench_detect.py --frames 3 --size 512 --repeat 1    # a quick check that it runs
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

DEFAULTS = dict(detect_thresh=2.0, analysis_thresh=2.0, detect_minarea=8, deblend_mincont=0.005, back_size=32,
                back_filtersize=8, phot_min_radius=3.5, mask=False, replace_flags=249, saturation=None,
                pixel_scale=0.18)


def sky_subtracted(workdir: str, frames: int, size: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(SCI, VAR, DQ) of every simulated frame after the first sky pass of the F2 recipe."""
    import dask
    from bench_sky import calibrated

    from draconis.cluster import execution
    from draconis.reduce.context import RunContext
    from draconis.simulate import make_dataset

    make_dataset("f2-deep", os.path.join(workdir, "raw"), size=size, nframes=frames, seed=1)
    with execution("synchronous"):
        setup = calibrated(os.path.join(workdir, "raw"), os.path.join(workdir, "calibrated"))
        ctx = RunContext({"main": list(setup.stream("main"))}, workdir=os.path.join(workdir, "sky"),
                         outdir=os.path.join(workdir, "sky"), instrument="F2", kind="IMAGE")
        ctx.run("separateSky")
        ctx.run("associateSky", stream="sky")
        ctx.run("skyCorrect", instream="sky", outstream="skysub", mask_objects=False)
        return [dask.compute(e.plane("SCI"), e.plane("VAR"), e.plane("DQ"))
                for f in ctx.stream("skysub") for e in f.extensions]


def _photutils_deblend(convolved, segm, pixels, *, n_pixels, contrast):
    from photutils.segmentation import deblend_sources

    if contrast >= 1 or segm.n_labels == 0:
        return segm
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return deblend_sources(convolved, segm, n_pixels, contrast=contrast, progress_bar=False)
    except (ValueError, MemoryError):
        return segm


def _ndimage_smooth(image):
    from photutils.segmentation import make_2dgaussian_kernel
    from scipy import ndimage

    from draconis.kernels.detect import FILTER_FWHM

    kernel = make_2dgaussian_kernel(FILTER_FWHM, size=5).array
    return ndimage.convolve(image, kernel / kernel.sum(), mode="nearest")


@contextlib.contextmanager
def baseline():
    """The kernel with photutils' deblending of every segment and ndimage's convolution put back."""
    from draconis.kernels import detect as kdetect

    saved = kdetect.deblend, kdetect.smooth
    kdetect.deblend, kdetect.smooth = _photutils_deblend, _ndimage_smooth
    try:
        yield
    finally:
        kdetect.deblend, kdetect.smooth = saved


def timed(arrays, repeat: int) -> tuple[list[float], list]:
    """Fastest CPU time of each array's detection over ``repeat`` runs, and its outputs."""
    from draconis.primitives.detect import _detect_packed

    best = [np.inf] * len(arrays)
    outputs: list = [None] * len(arrays)
    for _ in range(repeat):
        for i, (sci, var, dq) in enumerate(arrays):
            t0 = time.process_time()
            outputs[i] = _detect_packed(sci, var, dq, **DEFAULTS)
            best[i] = min(best[i], time.process_time() - t0)
    return best, outputs


def same(a, b) -> bool:
    """The same catalogue (every column, to the bit; NaN where NaN) and the same packed mask."""
    (ta, pa), (tb, pb) = a, b
    if not np.array_equal(pa, pb) or ta.colnames != tb.colnames or len(ta) != len(tb) or ta.meta != tb.meta:
        return False
    return all(np.array_equal(np.asarray(ta[c]), np.asarray(tb[c]), equal_nan=ta[c].dtype.kind == "f")
               for c in ta.colnames)


def main(argv=None) -> None:
    """The command line: see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    workdir = tempfile.mkdtemp(prefix="bench_detect_")
    try:
        t0 = time.perf_counter()
        arrays = sky_subtracted(workdir, args.frames, args.size)
        from draconis.primitives.detect import _detect_packed

        _detect_packed(*arrays[0], **DEFAULTS)  # imports and numba compilation, untimed
        with baseline():
            _detect_packed(*arrays[0], **DEFAULTS)
        print(f"\n== detectSources task, {len(arrays)} sky-subtracted F2 frames of {args.size}x{args.size} "
              f"(made in {time.perf_counter() - t0:.0f} s); fastest of {args.repeat}; "
              f"load average {os.getloadavg()[0]:.1f}")
        with baseline():
            before, reference = timed(arrays, args.repeat)
        after, outputs = timed(arrays, args.repeat)
        print(f"{'frame':>5} {'sources':>8} {'baseline CPU s':>15} {'kernel CPU s':>13} {'ratio':>6}")
        for i, (b, a, (table, _)) in enumerate(zip(before, after, outputs)):
            print(f"{i:>5} {len(table):>8} {b:>15.3f} {a:>13.3f} {a / b:>6.2f}")
        b, a = float(np.median(before)), float(np.median(after))
        print(f"{'median':>5} {'':>8} {b:>15.3f} {a:>13.3f} {a / b:>6.2f}")
        identical = all(same(x, y) for x, y in zip(reference, outputs))
        print("catalogues and masks identical to the baseline's:", "yes" if identical else "NO")
        if not identical:
            raise SystemExit(1)
    finally:
        if args.keep:
            print("kept", workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
