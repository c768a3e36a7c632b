"""The graphs of a 10 000-frame night stay within the plan of docs/scaling.md (issue 12 item 7).

Synthetic F2 frames: the simulator's headers (times, dithers, WCS) for a
10 000-frame sequence and lazy 2048² planes in 512-row bands, no pixel data.
Graphs are built through the real primitives and never computed (the
laziness guard fails the test if anything is):

* the calibration checkpoint (prepare ... flatCorrect and the zarr write) of
  one batch: tasks and pickled bytes per frame such that the plan's batches
  of 1 000 frames stay under 10^5 tasks and 10 MB;
* one sky pass (separateSky, associateSky, skyCorrect) of one batch taken
  from the middle of the night (its frames have their full ±600 s sky
  windows): per frame within the plan's budget for today's sky combine;
* the stack, the one computation that reads every frame of the night, of
  100 and of 1 000 checkpointed frames: the same number of tasks, and
  pickled bytes that, extrapolated to 10 000 frames, stay under 5 MB.

The graph of all 10 000 frames is not built at once: that is ~30 min of
client CPU today (docs/scaling.md), the reason the plan batches the night.
Construction times (client CPU) are printed, never asserted.
"""
from __future__ import annotations

import pickle
import tempfile
import time

import dask
import dask.array as da
import numpy as np
import pytest

from draconis import testing
from draconis.frame import Frame, make_extension
from draconis.io import write_zarr_delayed
from draconis.reduce import RunContext

NIGHT = 10_000
ROWS = 512
#: the plan (docs/scaling.md): tasks and graph bytes of one computation
MAX_TASKS, MAX_BYTES = 100_000, 10e6
CALIBRATION_BATCH, SKY_BATCH = 1000, 500


@pytest.fixture(scope="module")
def night():
    """The simulator's frame list, model and headers of a 10 000-frame F2 sequence (no pixels)."""
    from draconis.simulate.datasets import DATASETS, dataset_frames
    from draconis.simulate.instruments import instrument_model

    start = time.process_time()
    specs = [f for f in dataset_frames("f2-deep", None, NIGHT, 0) if f.role == "science"]
    assert len(specs) == NIGHT
    print(f"\n{NIGHT} frame specs in {time.process_time() - start:.1f} s CPU")
    return DATASETS["f2-deep"], instrument_model("F2", None), specs


def _frames(night, first: int, count: int, *, calibrated: bool) -> list[Frame]:
    """Frames ``first``..``first+count`` of the night: real headers, lazy zero planes (raw: SCI only)."""
    from draconis.simulate.geometry import offset_pointing
    from draconis.simulate.headers import extension_header, primary_header

    spec, model, specs = night
    array = model.arrays[0]
    frames = []
    for index in range(first, first + count):
        f = specs[index]
        phu = primary_header(spec, model, f, index, spec.target, 1.02)
        header = extension_header("F2", array, offset_pointing(*spec.target, f.p, f.q, 0.0), 0.0, None)

        def plane(dtype):
            return da.zeros(array.shape, chunks=(ROWS, array.shape[1]), dtype=dtype)

        planes = (plane(np.float32), plane(np.float32), plane(np.uint16)) if calibrated else (plane(np.float32),)
        frames.append(Frame(phu=phu, extensions=(make_extension(header, *planes),), filename=f"{f.stem}.fits"))
    return frames


def _size(collections) -> tuple[int, int]:
    """Tasks and pickled bytes of the optimised graph that computing ``collections`` submits."""
    from dask._expr import FinalizeCompute

    # as dask.compute builds it: the collections' graphs merged, then optimised together (optimising each
    # collection on its own would fuse a task shared by several collections into a copy in each of them)
    expr = FinalizeCompute(dask.base.collections_to_expr(list(collections), optimize_graph=True)).optimize()
    graph = expr.__dask_graph__()
    return len(graph), len(pickle.dumps(dict(graph)))


def _flat(results) -> list:
    out = []
    for r in results:
        out.extend(r if isinstance(r, (tuple, list)) else [r])
    return out


def test_calibration_checkpoint_graph_of_a_batch(night):
    n = 200
    frames = _frames(night, 0, n, calibrated=False)
    ctx = RunContext({"main": frames}, uparms=[("darkCorrect:do_cal", "skip"), ("flatCorrect:do_cal", "skip")])
    start = time.process_time()
    with testing.raise_if_dask_computes():
        for name in ("prepare", "addDQ", "ADUToElectrons", "addVAR", "nonlinearityCorrect", "darkCorrect",
                     "flatCorrect"):
            ctx.run(name)
        with tempfile.TemporaryDirectory() as where:
            writes = _flat([write_zarr_delayed(f, f"{where}/{i}.zarr") for i, f in enumerate(ctx.stream("main"))])
            built = time.process_time() - start
            tasks, size = _size(writes)
    bands = 2048 // ROWS
    print(f"calibration checkpoint: {tasks / n:.1f} tasks and {size / n / 1e3:.1f} KB per frame; "
          f"built in {built / n * 1e3:.0f} ms CPU per frame")
    # every frame and band: its raw band read, the fused calibration and one write per plane (SCI, VAR, DQ)
    assert tasks <= n * bands * 3.5
    assert tasks / n * CALIBRATION_BATCH < MAX_TASKS and size / n * CALIBRATION_BATCH < MAX_BYTES


def test_sky_pass_graph_of_a_batch_in_the_middle_of_the_night(night):
    n = 120
    frames = _frames(night, NIGHT // 2, n, calibrated=True)
    ctx = RunContext({"main": frames})
    start = time.process_time()
    with testing.raise_if_dask_computes():
        ctx.run("prepare")
        ctx.run("separateSky")
        ctx.run("associateSky")
        ctx.run("skyCorrect", mask_objects=False)
        planes = [e.plane(p) for f in ctx.stream("main") for e in f.extensions for p in ("SCI", "VAR", "DQ")]
        built = time.process_time() - start
        tasks, size = _size(planes)
    print(f"sky pass: {tasks / n:.1f} tasks and {size / n / 1e3:.1f} KB per frame; built (with "
          f"optimisation) in {(time.process_time() - start) / n * 1e3:.0f} ms CPU per frame, "
          f"{built / n * 1e3:.0f} ms before it")
    assert tasks / n * SKY_BATCH < MAX_TASKS * 1.0
    assert size / n * SKY_BATCH < 2.5 * MAX_BYTES


def _stack_graph(n: int, where) -> tuple[int, int, float]:
    """Tasks, pickled bytes and client CPU seconds of the stack of ``n`` checkpointed frames (4 bands)."""
    import logging
    import warnings

    from astropy.io.fits.verify import VerifyWarning
    from dask.highlevelgraph import HighLevelGraph

    from draconis.io.zarr import open_zarr, prepare_zarr
    from draconis.primitives.stack import stack_frames_core

    shape, rows = (32, 48), 8  # 4 row bands, as a 2048² frame in 512-row bands
    frames = testing.resampled_sequence(n, shape, chunk_rows=rows, shift=4)
    stored = [open_zarr(prepare_zarr(f, where / f"{i:05d}.zarr", chunks=(rows, shape[1])).store)
              for i, f in enumerate(frames)]
    start = time.process_time()
    with testing.raise_if_dask_computes(), warnings.catch_warnings():
        warnings.simplefilter("ignore", VerifyWarning)  # IMCMB1000... are HIERARCH cards
        stack = stack_frames_core(stored, testing.stack_params(memory=0.01), logging.getLogger("test"))
    built = time.process_time() - start
    graph = dict(HighLevelGraph.merge(*[stack[0].plane(p).__dask_graph__() for p in ("SCI", "VAR", "DQ")]))
    return len(graph), len(pickle.dumps(graph)), built


def test_the_stack_graph_of_the_night_does_not_grow_with_it(tmp_path):
    """The one computation that sees every frame: its tasks do not grow with N, its bytes grow slowly."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    small, large = 100, 1000
    tasks_small, bytes_small, _ = _stack_graph(small, tmp_path / "a")
    tasks_large, bytes_large, built = _stack_graph(large, tmp_path / "b")
    per_frame = (bytes_large - bytes_small) / (large - small)
    night = bytes_large + per_frame * (NIGHT - large)
    print(f"stack graph: {tasks_large} tasks for {small} and {large} frames; {per_frame:.0f} bytes per frame, "
          f"{night / 1e6:.1f} MB for {NIGHT}; built in {built / large * 1e3:.1f} ms CPU per frame")
    assert tasks_small == tasks_large <= 5 * 4 + 3
    assert night < MAX_BYTES / 2
