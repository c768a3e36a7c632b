"""Out-of-core: a stack whose inputs are several times the cluster's memory runs on workers whose baseline is a
small part of their budget, without any worker restarted, paused into a hang, or spilling, and gives the same
stack as a direct in-process combine.

310 synthetic resampled frames of 2048x2048 (:func:`draconis.testing.resampled_sequence`) go through
stackFrames and writeOutputs exactly as in a reduction, on 2 workers of 1.5 GiB: the stack checkpoints them
(the frames are generated inside the checkpoint's write tasks) and its band tasks read every pixel back, 12.1
GiB of SCI, VAR and DQ read through the stack: 4x the cluster's memory.  A worker's baseline (Python, Dask,
numba and the compiled kernel, measured here) is ~1/5 of its budget: what a task may hold is planned by
stackFrames:memory (0.5 GB) and Dask's pause threshold (80 %) is never approached.

~3-4 min on an idle 2-core machine (DRACONIS_OOC_FRAMES / DRACONIS_OOC_SIZE for a smaller run); nothing here
measures time, the timeout only guards against a hang.
"""
from __future__ import annotations

import logging
import os
import shutil
import sys

import dask
import numpy as np
import pytest

from draconis import testing
from draconis.kernels.combine import CombineSpec, combine_block

N_FRAMES = int(os.environ.get("DRACONIS_OOC_FRAMES", 310))
SIZE = int(os.environ.get("DRACONIS_OOC_SIZE", 2048))
N_WORKERS = 2
WORKER_MEMORY = int(1.5 * 2 ** 30)
STACK_MEMORY_GB = 0.5  # stackFrames:memory, what one band task may hold
BYTES_PER_PIXEL = 10  # SCI, VAR (float32) and DQ (uint16), as the stack reads them
#: Modules a stack's tasks never need; a worker that imports them carries ~100 MiB more than it should.
#: (xarray and pandas are not among them: dask.array imports them itself, optionally, when a worker first
#: unpickles any array task.)
HEAVY = ("astropy.table", "astropy.wcs", "photutils", "skimage", "sqlalchemy", "scipy.ndimage", "draconis.frame",
         "draconis.primitives")
#: Rows compared with the direct combine: first, middle and last row bands
CHECK_ROWS = ((0, 16), (SIZE // 2, SIZE // 2 + 16), (SIZE - 16, SIZE))
log = logging.getLogger("draconis.test.ooc")


def _peak_rss() -> int:
    """Peak RSS of this worker since it started (VmHWM: the kernel's own high-water mark)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


def _rss() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def _baseline() -> int:
    """A worker's RSS once it has imported what the stack's tasks need and run the compiled kernel once."""
    import dask.array  # noqa: F401 - every array task needs it (and it imports xarray, pandas)

    import draconis.io._tasks  # noqa: F401
    import draconis.kernels.stack
    import draconis.testing  # noqa: F401

    cube = np.ones((3, 4, 4), np.float32)
    draconis.kernels.stack.combine_tile(cube, cube, np.zeros(cube.shape, np.uint16), {"spec": CombineSpec(reject_method="sigclip")})
    return _rss()


def _heavy_imports() -> list[str]:
    return [m for m in HEAVY if m in sys.modules]


def _spills(dask_worker) -> int:
    """How many times this worker wrote data to its spill directory."""
    return int(sum(v for k, v in dask_worker.digests_total.items()
                   if isinstance(k, tuple) and "disk-write" in k and "count" in k))


def _direct_rows(y0: int, y1: int) -> list[np.ndarray]:
    """SCI, VAR, DQ of stack rows y0:y1 combined here, from the same synthetic frames (not from any checkpoint):
    only those rows are generated (the synthetic frames' rows do not depend on their chunking)."""
    frames = testing.resampled_sequence(N_FRAMES, (SIZE, SIZE), chunk_rows=y1 - y0)
    with dask.config.set(scheduler="threads"):
        cubes = [np.stack(dask.compute(*[f[0].plane(n)[y0:y1] for f in frames])) for n in ("SCI", "VAR", "DQ")]
    sci, var, dq, _ = combine_block(*cubes, CombineSpec(operation="mean", reject_method="sigclip"))
    return [sci, var, dq]


@pytest.mark.timeout(1800)  # a hang guard only
def test_stack_of_inputs_four_times_the_cluster_memory(tmp_path):
    distributed = pytest.importorskip("distributed")
    from draconis.recipes.caller import PrimitiveCaller
    from draconis.reduce.context import RunContext

    pixels = N_FRAMES * SIZE * SIZE * BYTES_PER_PIXEL
    need = 1.1 * pixels  # the checkpoint (DQ compressed) and the stack
    free = shutil.disk_usage(tmp_path).free
    assert free > need, (f"the out-of-core test needs {need / 2 ** 30:.1f} GiB free in {tmp_path}, "
                         f"{free / 2 ** 30:.1f} GiB are: free space or set DRACONIS_OOC_FRAMES lower")
    frames = testing.resampled_sequence(N_FRAMES, (SIZE, SIZE))
    (tmp_path / "out").mkdir()
    with distributed.LocalCluster(n_workers=N_WORKERS, threads_per_worker=1, memory_limit=WORKER_MEMORY,
                                  processes=True, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        before = client.run(os.getpid)
        baselines = client.run(_baseline)
        ctx = RunContext({"main": frames}, workdir=tmp_path / "work", outdir=tmp_path / "out", instrument="NIRI",
                         kind="IMAGE", uparms=[("stackFrames:memory", str(STACK_MEMORY_GB))])
        from draconis.cluster import execution

        with execution(cluster.scheduler_address):
            p = PrimitiveCaller(ctx)
            p.stackFrames()
            p.writeOutputs()
        (stack,) = ctx.stream("main")
        path = ctx.path_of(stack)
        after = client.run(os.getpid)
        peaks = client.run(_peak_rss)
        spills = client.run(_spills)
        heavy = client.run(_heavy_imports)
        ctx.close()
    log.info("worker baseline RSS (MiB) %s, peak RSS (MiB) %s; %.1f GiB of pixels through the stack, %.1f GB of "
             "checkpoint written", {k: v // 2 ** 20 for k, v in baselines.items()},
             {k: v // 2 ** 20 for k, v in peaks.items()}, pixels / 2 ** 30, ctx.checkpoints.bytes_written / 1e9)

    assert pixels >= 4 * N_WORKERS * WORKER_MEMORY or SIZE < 2048  # the claim, for the default size
    # the baseline is a small part of the budget: a task's data, not imports, fill the worker
    assert all(b < 0.4 * WORKER_MEMORY for b in baselines.values()), baselines
    assert all(not mods for mods in heavy.values()), heavy
    # no worker was killed or restarted, none went over its limit, nothing was spilled
    assert after == before and len(after) == N_WORKERS
    assert all(p < WORKER_MEMORY for p in peaks.values()), peaks
    assert not any(spills.values()), spills
    # one checkpoint, every frame in it, the stack of all of them
    (record,) = ctx.checkpoints.records
    assert record.frames == N_FRAMES and record.bytes >= N_FRAMES * SIZE * SIZE * 8
    from astropy.io import fits

    with fits.open(path) as hdul:
        assert hdul[0].header["NCOMBINE"] == N_FRAMES
        got = {n: [np.asarray(hdul[n].section[y0:y1]) for y0, y1 in CHECK_ROWS] for n in ("SCI", "VAR", "DQ")}
    for i, (y0, y1) in enumerate(CHECK_ROWS):
        for name, want in zip(("SCI", "VAR", "DQ"), _direct_rows(y0, y1)):
            np.testing.assert_allclose(got[name][i], want, rtol=1e-6, atol=0, err_msg=f"{name} rows {y0}:{y1}")
