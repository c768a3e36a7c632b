"""Out-of-core: a sequence whose pixels exceed the workers' total memory several times reduces without any
worker being killed or restarted, and gives the same stack as an unconstrained (in-process) run.

The sequence is aligned and stacked as the ``alignAndStack`` recipe does for sky-subtracted frames:
detectSources → adjustWCSToReference → resampleToCommonFrame → scaleCountsToReference → checkpoint to zarr
(chunked in the stack's tiles) → stackFrames. Per-frame work is fused (one detection task per array, one
resampling task per output row band), the checkpoint chunks are the stack's tiles, and each stack task reads
exactly one chunk of every input.
"""
from __future__ import annotations

import logging
import os
import resource

import dask
import numpy as np
import pytest
from astropy.io import fits
from scipy.special import erf

from draconis.io.fits import open_fits
from draconis.io.zarr import open_zarr, write_zarr_many
from draconis.primitives.registry import get_primitive

N_FRAMES = int(os.environ.get("DRACONIS_OOC_FRAMES", 60))
#: 60 frames of 1024x1024: 0.6 GiB of inputs (SCI, VAR, DQ) and 0.62 GiB of checkpoints, written and read
#: again by the stack, 1.8 GiB through 2 workers of 600 MiB each (1.2 GiB) of which ~370 MiB each are imports
#: and compiled kernels: the data are 1.6x the cluster's memory limit and ~4x the memory the workers have for
#: data. ~3-5 min on 2 cores (DRACONIS_OOC_SIZE=256 for a quick run).
SIZE = int(os.environ.get("DRACONIS_OOC_SIZE", 1024))
#: Per-worker memory limit. A worker holds ~270 MiB of imports and ~100 MiB more once numba has compiled
#: the combine kernel; below ~600 MiB Dask's pause threshold (80%) can be crossed by that alone and a paused
#: worker never resumes (seen at 450 MiB).
WORKER_MEMORY = int(os.environ.get("DRACONIS_OOC_WORKER_MIB", 600)) * 2 ** 20
N_WORKERS = 2
STACK_MEMORY_GB = 0.05  # stackFrames:memory, what one combine may hold
PIXSCALE = 0.117
SIGMA = 1.5


class Ctx:
    def __init__(self):
        self.log = logging.getLogger("draconis.test.ooc")
        self.mode = "sq"

    def stream(self, name):
        return []

    def set_stream(self, name, frames):
        pass


def run(name, frames, **user):
    spec = get_primitive(name)
    return spec.func(frames, spec.resolve("NIRI", "IMAGE", user=user), Ctx())


def _stamp(image, x, y, flux, half=8):
    x0, y0 = int(round(x)) - half, int(round(y)) - half
    ex, ey = np.arange(x0, x0 + 2 * half + 2) - 0.5, np.arange(y0, y0 + 2 * half + 2) - 0.5
    fx = np.diff(0.5 * erf((ex - x) / (np.sqrt(2) * SIGMA)))
    fy = np.diff(0.5 * erf((ey - y) / (np.sqrt(2) * SIGMA)))
    ys, xs = slice(max(y0, 0), y0 + 2 * half + 1), slice(max(x0, 0), x0 + 2 * half + 1)
    block = flux * np.outer(fy, fx)[ys.start - y0:, xs.start - x0:]
    target = image[ys, xs]
    target += block[:target.shape[0], :target.shape[1]]


def make_sequence(outdir, n=N_FRAMES, size=SIZE, seed=3) -> list[str]:
    """Sky-subtracted, dithered star fields with SCI/VAR/DQ and slightly wrong header WCSs, as FITS files."""
    rng = np.random.default_rng(seed)
    nstar = size * size // 6000
    sx, sy = rng.uniform(-20, size + 20, nstar), rng.uniform(-20, size + 20, nstar)
    flux = 10 ** rng.uniform(3.3, 4.7, nstar)
    paths = []
    for k in range(n):
        dx, dy = rng.uniform(-15, 15, 2)
        err = rng.normal(0, 0.7, 2)
        image = rng.normal(0, 15.0, (size, size)).astype(np.float32)
        for x, y, f in zip(sx + dx, sy + dy, flux):
            if -8 < x < size + 8 and -8 < y < size + 8:
                _stamp(image, x, y, f)
        dq = np.zeros((size, size), np.uint16)
        dq[rng.integers(0, size, 50), rng.integers(0, size, 50)] = 1
        phu = fits.Header()
        phu.update(INSTRUME="NIRI", TELESCOP="Gemini-North", OBSTYPE="OBJECT", EXPTIME=10.0,
                   ORIGNAME=f"N20160102S{k + 1:04d}.fits")
        phu["DATE-OBS"], phu["UT"] = "2016-01-02", f"10:{k // 60:02d}:{k % 60:02d}.0"
        hdr = fits.Header()
        hdr.update(EXTNAME="SCI", EXTVER=1, CTYPE1="RA---TAN", CTYPE2="DEC--TAN", CRVAL1=150.0, CRVAL2=2.0,
                   CRPIX1=size / 2 + dx + err[0], CRPIX2=size / 2 + dy + err[1], CD1_1=-PIXSCALE / 3600,
                   CD1_2=0.0, CD2_1=0.0, CD2_2=PIXSCALE / 3600)
        hdus = [fits.PrimaryHDU(header=phu), fits.ImageHDU(image, header=hdr),
                fits.ImageHDU(np.full((size, size), 225.0, np.float32), name="VAR"),
                fits.ImageHDU(dq, name="DQ")]
        for h in hdus[2:]:
            h.header["EXTVER"] = 1
        path = os.path.join(outdir, f"N20160102S{k + 1:04d}_skyCorrected.fits")
        fits.HDUList(hdus).writeto(path, overwrite=True)
        paths.append(path)
    return paths


def detect_and_align(paths):
    """The catalogue stage: frames opened lazily, sources detected (one compute), WCSs aligned."""
    frames = [open_fits(p) for p in paths]
    frames = run("detectSources", frames)
    return run("adjustWCSToReference", frames)


def resample_and_stack(frames, workdir, *, stack_memory=STACK_MEMORY_GB) -> str:
    """The pixel stage: resample, scale, checkpoint to zarr in the stack's tiles, stack; the stack's FITS path."""
    from draconis.primitives.stack import combine_rows

    frames = run("resampleToCommonFrame", frames)
    frames = run("scaleCountsToReference", frames)
    shape = frames[0][0].shape
    rows = combine_rows(len(frames), shape, stack_memory or STACK_MEMORY_GB, 256)
    stores = [os.path.join(workdir, f"{f.stem}_align.zarr") for f in frames]
    write_zarr_many(frames, stores, chunks=(rows, shape[1]))
    frames = [open_zarr(s) for s in stores]
    assert all(f[0].plane("SCI").chunks[0][0] == rows for f in frames)  # one checkpoint chunk = one stack tile
    stacked = run("stackFrames", frames, memory=stack_memory)
    out = os.path.join(workdir, "stack_image.fits")
    write_stack(stacked[0], out)
    return out


def write_stack(frame, path) -> None:
    """Compute the stack's planes in one dask.compute and write them (atomically) as FITS."""
    from draconis.io.fits import build_hdulist, write_hdulist_atomic

    names = [n for n in ("SCI", "VAR", "DQ") if frame[0].plane(n) is not None]
    arrays = dask.compute(*(frame[0].plane(n) for n in names))
    write_hdulist_atomic(build_hdulist(frame, [dict(zip(names, arrays))]), path)


def align_and_stack(paths, workdir, *, stack_memory=STACK_MEMORY_GB) -> str:
    """The alignAndStack recipe with a zarr checkpoint after resampling; returns the stack's FITS path."""
    return resample_and_stack(detect_and_align(paths), workdir, stack_memory=stack_memory)


def _worker_state(client):
    pids = client.run(os.getpid)
    peaks = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return pids, peaks


@pytest.mark.timeout(1800)
def test_sequence_larger_than_cluster_memory(tmp_path):
    distributed = pytest.importorskip("distributed")
    inputs = tmp_path / "in"
    inputs.mkdir()
    paths = make_sequence(str(inputs))
    pixel_bytes = sum(os.path.getsize(p) for p in paths)

    (tmp_path / "tight").mkdir()
    with distributed.LocalCluster(n_workers=N_WORKERS, threads_per_worker=1, memory_limit=WORKER_MEMORY,
                                  processes=True, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        before, _ = _worker_state(client)
        aligned = detect_and_align(paths)
        result = resample_and_stack(aligned, str(tmp_path / "tight"))
        after, peaks = _worker_state(client)
    # The unconstrained run: the same aligned frames (same catalogues and WCSs), resampled and stacked
    # in-process at once (no memory limit, one combine for the whole image).
    (tmp_path / "free").mkdir()
    with dask.config.set(scheduler="synchronous"):
        reference = resample_and_stack(aligned, str(tmp_path / "free"), stack_memory=None)
    # no worker was killed or restarted (a restarted worker has a new address and process id)
    assert after == before and len(after) == N_WORKERS
    assert max(peaks.values()) < WORKER_MEMORY
    with fits.open(result) as res:
        checkpoint_bytes = N_FRAMES * res["SCI"].data.size * 10  # SCI + VAR float32, DQ uint16
    # the pixels read and written (inputs, checkpoints written, then read by the stack) exceed the workers'
    # total memory limit, and several times what they have beyond their imports
    moved = pixel_bytes + 2 * checkpoint_bytes
    if SIZE >= 1024:
        assert moved > 1.5 * N_WORKERS * WORKER_MEMORY
        assert moved > 3 * N_WORKERS * (WORKER_MEMORY - 370 * 2 ** 20)
    logging.getLogger("draconis.test.ooc").info(
        "peak RSS per worker (MiB): %s; inputs %.0f MiB, checkpoints %.0f MiB",
        {k: round(v / 2 ** 20) for k, v in peaks.items()}, pixel_bytes / 2 ** 20, checkpoint_bytes / 2 ** 20)
    with fits.open(reference) as ref, fits.open(result) as res:
        for name in ("SCI", "VAR", "DQ"):
            np.testing.assert_allclose(res[name].data, ref[name].data, rtol=1e-5, atol=1e-3, err_msg=name)
        assert res[0].header["NCOMBINE"] == N_FRAMES
