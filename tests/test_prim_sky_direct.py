"""skyCorrect's direct combine in row bands planned from the workers' memory.

The band height changes where the work is cut, never a pixel: stacks built
with a small worker budget (16-row bands, and object-mask dilations that
cross band edges) equal those in the bands of the input chunks, bit for bit,
for min/max and sigma-clipping rejection, with Dask reading the bands and
with the band tasks reading checkpoints themselves. For a long sky list the
planned band task holds what the task budget allows (measured on the arrays
the kernel gets), where the unplanned one held several times more.
"""
from __future__ import annotations

import logging

import dask
import dask.array as da
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from draconis.frame import Frame, make_extension
from draconis.kernels import sky as ksky
from draconis.kernels.combine import CombineSpec
from draconis.primitives.sky import (
    DIRECT_HELD_BYTES,
    DIRECT_SKY_BYTES,
    DIRECT_STORED_SKY_BYTES,
    direct_rows,
    direct_task_bytes,
)
from draconis.primitives.sky_window import MIN_ROWS, task_budget

MiB = 2 ** 20


def make_frame(i: int, shape: tuple[int, int], chunk_rows: int, *, level: float = 1000.0, masked: bool = True,
               lazy: bool = False) -> Frame:
    """NIRI-like frame ``i`` (30 s apart, 5" dithers): sky with noise, a few NaNs, DQ bits, VAR, an OBJMASK."""
    ny, nx = shape
    phu = fits.Header()
    phu.update(INSTRUME="NIRI", TELESCOP="Gemini-North", OBSTYPE="OBJECT", EXPTIME=20.0, COADDS=1,
               FILTER1="Kprime_G0206", FILTER2="open", FILTER3="f6-cam_G5212", RA=150.0, DEC=2.0,
               ORIGNAME=f"N20160102S{i:04d}.fits", UT=f"10:{(30 * i) // 60:02d}:{(30 * i) % 60:02d}.0")
    phu["DATE-OBS"] = "2016-01-02"
    hdr = fits.Header()
    hdr.update(CTYPE1="RA---TAN", CTYPE2="DEC--TAN", CRPIX1=nx / 2, CRPIX2=ny / 2, CRVAL1=150.0 + 5.0 * i / 3600,
               CRVAL2=2.0, CD1_1=-0.117 / 3600, CD1_2=0.0, CD2_1=0.0, CD2_2=0.117 / 3600)
    chunks = (chunk_rows, nx)
    if lazy:  # long lists: planes made in the tasks that read them
        rng = da.random.default_rng(i)
        sci = (rng.normal(level * (1 + 0.01 * i), 30.0, shape, chunks=chunks)).astype(np.float32)
        var = da.full(shape, 900.0, dtype=np.float32, chunks=chunks)
        dq = (rng.random(shape, chunks=chunks) < 0.01).astype(np.uint16) * np.uint16(4)
        mask = (rng.random(shape, chunks=chunks) < 0.001).astype(np.uint8)
    else:
        rng = np.random.default_rng(i)
        image = rng.normal(level * (1 + 0.01 * i), 30.0, shape).astype(np.float32)
        image[rng.integers(0, ny, 3), rng.integers(0, nx, 3)] = np.nan
        bits = np.where(rng.random(shape) < 0.02, rng.choice([1, 4, 64], size=shape), 0).astype(np.uint16)
        mask = np.zeros(shape, np.uint8)
        for y, x in rng.integers(0, [ny, nx], size=(4, 2)):  # objects near band edges too
            mask[max(0, y - 2):y + 3, max(0, x - 2):x + 3] = 1
        sci, var, dq = (da.from_array(a, chunks=chunks) for a in (image, np.abs(image) + 25.0, bits))
        mask = da.from_array(mask, chunks=chunks)
    ext = make_extension(hdr, sci, var.astype(np.float32), dq, mask if masked else None)
    return Frame(phu=phu, extensions=(ext,), filename=phu["ORIGNAME"])


def with_skies(frame: Frame, skies) -> Frame:
    return frame.replace(tables={"SKYTABLE": Table({"SKYNAME": [s.filename for s in skies]})})


def run_direct(runner, targets, skies, memory_limit, **params):
    """skyCorrect by the direct combine with workers of ``memory_limit``: the output and sky-stack frames."""
    ctx = runner.context(streams={"main": targets, "sky": skies})
    with dask.config.set({"draconis.sky_combine": "direct", "draconis.memory_limit": memory_limit,
                          "scheduler": "synchronous"}):
        out = ctx.run("skyCorrect", save_sky=True, **params)
    return out, ctx.stream("sky_stacks")


def planes(frames):
    return da.compute(*[(f[0].plane("SCI"), f[0].plane("VAR"), f[0].plane("DQ")) for f in frames],
                      scheduler="synchronous")


def assert_identical(a, b):
    for pa, pb in zip(a, b):
        for x, y in zip(pa, pb):
            np.testing.assert_array_equal(x, y)


def reads_checkpoints(frame: Frame) -> bool:
    """Whether the frame's sky was combined by band tasks reading checkpoints themselves."""
    return any(str(k).startswith("sky-stack-sources") for k in frame[0].plane("SCI").__dask_graph__())


SHAPE, CHUNK = (128, 96), 64
K = 8
#: Workers so small that a band of 16 rows is all a task of K skies read from checkpoints may hold; with Dask
#: reading the skies' whole chunks, not even that fits.
SMALL = MiB


@pytest.fixture(scope="module")
def sequence(module_run_primitive):
    """K skies and two targets, in memory, and the same frames checkpointed (planes read from zarr)."""
    skies = [make_frame(i, SHAPE, CHUNK) for i in range(K)]
    targets = [with_skies(make_frame(100 + j, SHAPE, CHUNK, masked=False), skies) for j in range(2)]
    ctx = module_run_primitive.context(streams={})
    with dask.config.set(scheduler="synchronous"):
        stored = ctx.checkpoint(skies + targets, "inputs")
    dask_masks = [f.with_extensions([e.with_planes(OBJMASK=e.plane("OBJMASK").map_blocks(np.copy))
                                     for e in f.extensions]) for f in stored[:K]]
    return (targets, skies), (stored[K:], stored[:K]), dask_masks


@pytest.mark.parametrize("params", [
    {},  # skyCorrect's defaults: median, min/max 1/1, skies scaled, object masks dilated by 2 px
    {"operation": "mean", "reject_method": "sigclip", "lsigma": 2.0, "hsigma": 2.0, "scale": False, "zero": True},
])
def test_bands_change_no_pixel(run_primitive, sequence, params, caplog):
    (targets, skies), (stored_targets, stored_skies), dask_masks = sequence
    budget = task_budget(SMALL)
    assert direct_rows(K, CHUNK, SHAPE[0], SHAPE[1], budget, DIRECT_STORED_SKY_BYTES) == (MIN_ROWS, True)
    assert direct_rows(K, CHUNK, SHAPE[0], SHAPE[1], budget, DIRECT_SKY_BYTES, DIRECT_HELD_BYTES) == (MIN_ROWS, False)
    whole, whole_sky = run_direct(run_primitive, targets, skies, "4GiB", **params)
    with caplog.at_level(logging.INFO, logger="draconis"):
        banded, banded_sky = run_direct(run_primitive, targets, skies, SMALL, **params)
    messages = [r.getMessage() for r in caplog.records]
    stored, stored_sky = run_direct(run_primitive, stored_targets, stored_skies, SMALL, **params)
    # the checkpoints read by the band tasks, the object masks dilated by Dask (not checkpoints)
    mixed, mixed_sky = run_direct(run_primitive, stored_targets, dask_masks, SMALL, **params)
    assert whole_sky[0][0].plane("SCI").chunks[0] == (CHUNK, CHUNK)  # the bands of the input chunks
    assert mixed_sky[0][0].plane("SCI").chunks[0][0] < CHUNK
    for sky in banded_sky, stored_sky:
        assert sky[0][0].plane("SCI").chunks[0] == (MIN_ROWS,) * (SHAPE[0] // MIN_ROWS)
    assert any(f"bands of {MIN_ROWS} rows" in m for m in messages)
    # not even the floor fits when Dask reads whole chunks: said once, and the floor is taken
    assert sum("over the" in m and "not checkpoints" in m for m in messages) == 1
    assert reads_checkpoints(stored_sky[0]) and reads_checkpoints(mixed_sky[0])
    assert not reads_checkpoints(banded_sky[0])
    reference = planes(whole)
    dq = np.array([p[2] for p in reference])
    assert (dq & 1).any() and (dq & 4).any()  # masked objects and flagged pixels reach the sky
    assert_identical(planes(banded), reference)
    assert_identical(planes(stored), reference)
    assert_identical(planes(banded_sky), planes(whole_sky))
    assert_identical(planes(stored_sky), planes(whole_sky))
    assert_identical(planes(mixed), reference)
    assert_identical(planes(mixed_sky), planes(whole_sky))


def test_whole_frames_through_the_kernel(run_primitive):
    """One band the height of the frame equals the kernel on the whole frames (no masks, no normalisation)."""
    skies = [make_frame(i, SHAPE, SHAPE[0], masked=False) for i in range(5)]
    targets = [with_skies(make_frame(100, SHAPE, SHAPE[0], masked=False), skies)]
    memory = 3 * MiB  # the five skies' whole frames, and 16-row bands of them
    assert direct_rows(5, SHAPE[0], SHAPE[0], SHAPE[1], task_budget(memory), DIRECT_SKY_BYTES,
                       DIRECT_HELD_BYTES) == (MIN_ROWS, True)
    _, sky = run_direct(run_primitive, targets, skies, memory, scale=False, reject_method="minmax", nlow=1, nhigh=1)
    cube = [np.stack([np.asarray(s[0].plane(n)) for s in skies]) for n in ("SCI", "VAR", "DQ")]
    spec = CombineSpec(operation="median", reject_method="minmax", nlow=1, nhigh=1)
    expected = ksky.stack_sky_tile(*cube, np.ones(5), spec, mode=None)
    (got,) = planes(sky)
    assert sky[0][0].plane("SCI").chunks[0] == (MIN_ROWS,) * (SHAPE[0] // MIN_ROWS)  # the same pixels
    for k in range(3):
        np.testing.assert_array_equal(got[k], expected[k])


class Spy:
    """Records the bytes of the sky bands each direct band task's kernel gets."""

    def __init__(self, func):
        self.func, self.calls = func, []

    def __call__(self, sci, var, dq, *args, **kwargs):
        if sci.size == 0:  # Dask's meta of the graph, not a task
            return self.func(sci, var, dq, *args, **kwargs)
        mask = args[3] if len(args) > 3 else None  # stack_sky_band's objmask
        self.calls.append((sci.shape, sum(a.nbytes for a in (sci, var, dq, mask) if a is not None)))
        return self.func(sci, var, dq, *args, **kwargs)


LONG, LONG_SHAPE = 60, (512, 128)
#: Workers whose task budget (30 %: 15.7 MB) takes 128 rows of 60 skies read from checkpoints, 64 when the
#: object masks are dilated by Dask (their whole 512-row chunks held), and not even the floor when Dask reads
#: all the skies' planes (their whole chunks: 39 MB).
LONG_MEMORY = 50 * MiB


@pytest.fixture(scope="module")
def long_sequence(module_run_primitive):
    skies = [make_frame(i, LONG_SHAPE, 512, lazy=True) for i in range(LONG)]
    target = with_skies(make_frame(1000, LONG_SHAPE, 512, masked=False, lazy=True), skies)
    ctx = module_run_primitive.context(streams={})
    with dask.config.set(scheduler="synchronous"):
        stored = ctx.checkpoint(skies + [target], "long")
    # the same stored skies with object masks that are not checkpoints (a copy made by Dask)
    unstored = [f.with_extensions([e.with_planes(OBJMASK=e.plane("OBJMASK").map_blocks(np.copy))
                                   for e in f.extensions]) for f in stored[:LONG]]
    return {"dask-reads": ([target], skies), "task-reads": (stored[LONG:], stored[:LONG]),
            "task-reads-dask-masks": (stored[LONG:], unstored)}


@pytest.mark.parametrize("case,rows,sky_bytes,held", [
    ("task-reads", 128, DIRECT_STORED_SKY_BYTES, 0),
    ("task-reads-dask-masks", 64, DIRECT_STORED_SKY_BYTES, 1),
    ("dask-reads", MIN_ROWS, DIRECT_SKY_BYTES, DIRECT_HELD_BYTES),
])
def test_long_sky_lists_fit_the_task_budget(run_primitive, long_sequence, monkeypatch, caplog, case, rows,
                                            sky_bytes, held):
    targets, skies = long_sequence[case]
    budget, nx = task_budget(LONG_MEMORY), LONG_SHAPE[1]
    stored = case.startswith("task-reads")
    spy = Spy(ksky.stack_sky_band if stored else ksky.stack_sky_tile)
    monkeypatch.setattr(ksky, "stack_sky_band" if stored else "stack_sky_tile", spy)
    masked = case != "dask-reads"
    with caplog.at_level(logging.WARNING, logger="draconis"):
        _, sky = run_direct(run_primitive, targets, skies, LONG_MEMORY, mask_objects=masked)
    cut = sky[0][0].plane("SCI").chunks[0]
    sky[0][0].plane("SCI")[:cut[0]].compute(scheduler="synchronous")  # the first band task
    assert cut == (rows,) * (LONG_SHAPE[0] // rows)
    fits = direct_task_bytes(LONG, rows, nx, sky_bytes, 512, held) <= budget
    assert fits == (case != "dask-reads")
    assert any("not checkpoints" in r.getMessage() for r in caplog.records) == (not fits)
    (shape, nbytes), = spy.calls
    assert shape == (LONG, rows, nx)
    # what the kernel got: 10 bytes a sky pixel of the band, 11 with the masks (and the rows the dilation reaches)
    assert LONG * rows * nx * (11 if masked else 10) <= nbytes <= LONG * rows * nx * sky_bytes
    # unplanned (bands of the 512-row input chunks, as before), a band task's inputs alone exceed the budget
    spy.calls.clear()
    _, unplanned = run_direct(run_primitive, targets, skies, "64GiB", mask_objects=masked)
    unplanned[0][0].plane("SCI")[:1].compute(scheduler="synchronous")
    assert unplanned[0][0].plane("SCI").chunks[0] == (512,)
    assert spy.calls[0][1] >= LONG * 512 * nx * 10 > 2 * budget
