"""stackFrames on resampled frames is one pass: each frame computed once and checkpointed once, each checkpoint
chunk read once; usability flags and normalisation samples come from the checkpoint write; the stack equals a
direct combine of the same frames; checkpoints cost what they should and go once nothing reads them."""
from __future__ import annotations

import collections
import logging
import os

import dask
import numpy as np
import pytest
from astropy.io import fits

from draconis import testing
from draconis.io._tasks import StoredPlane
from draconis.kernels.combine import CombineSpec, combine_block
from draconis.primitives.stack import stack_frames_core
from draconis.recipes.caller import PrimitiveCaller
from draconis.reduce.context import RunContext

N, SHAPE, ROWS = 12, (96, 80), 16
#: stackFrames:memory small enough that the bands are 8 rows: the checkpoint is chunked to match
MEMORY = "0.01"


@pytest.fixture
def counted(monkeypatch):
    """(frame bands generated, checkpoint chunks read) counters, in this process (synchronous scheduler)."""
    made, reads = collections.Counter(), collections.Counter()
    real_band, real_read = testing.synthetic_band, StoredPlane.read_chunk_into

    def band(index, shape, shift, seed, sigma, rows, block_id=(0, 0, 0)):
        made[(index, block_id[1] * rows)] += 1
        return real_band(index, shape, shift, seed, sigma, rows, block_id=block_id)

    def read(self, k, out, skip=0):
        reads[(self.path, k, skip)] += 1
        return real_read(self, k, out, skip)

    monkeypatch.setattr(testing, "synthetic_band", band)
    monkeypatch.setattr(StoredPlane, "read_chunk_into", read)
    with dask.config.set(scheduler="synchronous"):
        yield made, reads


def _context(tmp_path, frames, **kw) -> RunContext:
    (tmp_path / "out").mkdir(exist_ok=True)
    uparms = [("stackFrames:memory", MEMORY)] + kw.pop("uparms", [])
    return RunContext({"main": frames}, workdir=tmp_path / "work", outdir=tmp_path / "out", instrument="NIRI",
                      kind="IMAGE", uparms=uparms, **kw)


def _direct_stack(frames, **options):
    cubes = [np.stack([np.asarray(f[0].plane(n)) for f in frames]) for n in ("SCI", "VAR", "DQ")]
    return combine_block(*cubes, CombineSpec(**options))


def test_each_frame_is_computed_once_and_each_chunk_read_once(tmp_path, counted):
    made, reads = counted
    ctx = _context(tmp_path, testing.resampled_sequence(N, SHAPE, chunk_rows=ROWS))
    p = PrimitiveCaller(ctx)
    with testing.raise_if_dask_computes(max_computes=1):  # the checkpoint write, nothing else
        p.stackFrames()
    (record,) = ctx.checkpoints.records
    assert record.label == "stackFrames" and record.frames == N
    p.writeOutputs()
    assert len(made) == N * SHAPE[0] // ROWS and set(made.values()) == {1}
    chunks = {(path, k) for path, k, _ in reads}
    assert all(n == 1 for n in reads.values()) and len(chunks) == len(reads)  # no chunk read twice, even in part
    stored_rows = {int(k) for _, k in chunks}
    assert len(chunks) == N * 3 * len(stored_rows)  # SCI, VAR, DQ of every frame, each band once
    # the checkpoint was deleted once nothing read it any more (the stream now reads the written stack)
    assert not os.path.exists(record.directory)

    (out,) = ctx.stream("main")
    with fits.open(ctx.path_of(out)) as hdul:
        assert hdul[0].header["NCOMBINE"] == N
        got = [hdul[n].data for n in ("SCI", "VAR", "DQ")]
    ref = _direct_stack(testing.resampled_sequence(N, SHAPE, chunk_rows=ROWS), operation="mean",
                        reject_method="sigclip")
    for name, a, b in zip(("SCI", "VAR", "DQ"), got, ref):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=0, err_msg=name)
    ctx.close()


def test_unusable_frame_left_out_from_the_write_summary(tmp_path, counted, caplog):
    made, reads = counted
    frames = testing.resampled_sequence(N, SHAPE, chunk_rows=ROWS)
    frames[4] = frames[4].map_extensions(lambda e: e.with_planes(DQ=e.plane("DQ") | np.uint16(1)))
    ctx = _context(tmp_path, frames)
    with caplog.at_level(logging.WARNING, logger="draconis"), testing.raise_if_dask_computes(max_computes=1):
        # draconis' logger does not propagate: collect its warnings here
        logging.getLogger("draconis").addHandler(caplog.handler)
        try:
            (stack,) = PrimitiveCaller(ctx).stackFrames()
        finally:
            logging.getLogger("draconis").removeHandler(caplog.handler)
    assert any(frames[4].filename in r.getMessage() and "left out" in r.getMessage() for r in caplog.records)
    assert stack.phu["NCOMBINE"] == N - 1
    np.asarray(stack[0].plane("SCI"))
    left_out = [k for k in reads if f"{os.sep}0004_" in k[0]]
    assert not left_out  # the combine never read the frame it left out
    ctx.close()


@pytest.mark.parametrize("statsec", [None, "[10:70,20:80]"])
def test_normalisation_samples_from_the_write_equal_the_lazy_ones(tmp_path, counted, statsec):
    frames = testing.resampled_sequence(6, SHAPE, chunk_rows=ROWS)
    frames = [f.map_extensions(lambda e, i=i: e.with_planes(SCI=e.plane("SCI") * np.float32(1 + 0.1 * i) + 5))
              for i, f in enumerate(frames)]
    extra = [("stackFrames:scale", "True")] + ([("stackFrames:statsec", statsec)] if statsec else [])
    ctx = _context(tmp_path, frames, uparms=extra, keep_checkpoints=True)
    (stack,) = PrimitiveCaller(ctx).stackFrames()
    (record,) = ctx.checkpoints.records
    # the same stored frames, normalised from samples computed lazily (the path without a checkpoint summary)
    from draconis.io.zarr import open_zarr

    stored = [open_zarr(os.path.join(record.directory, d)) for d in sorted(os.listdir(record.directory))]
    params = testing.stack_params(scale=True, statsec=statsec, memory=0.01)
    lazy = stack_frames_core(stored, params, logging.getLogger("test"), samples=None)
    np.testing.assert_array_equal(np.asarray(stack[0].plane("SCI")), np.asarray(lazy[0].plane("SCI")))
    # and the scaling did something: unscaled, the stack differs
    plain = stack_frames_core(stored, {**params, "scale": False}, logging.getLogger("test"))
    assert not np.allclose(np.asarray(plain[0].plane("SCI")), np.asarray(stack[0].plane("SCI")))
    ctx.close()


def test_stored_frames_are_not_checkpointed_again_and_dq_is_compressed(tmp_path, counted):
    ctx = _context(tmp_path, testing.resampled_sequence(N, SHAPE, chunk_rows=ROWS), keep_checkpoints=True)
    p = PrimitiveCaller(ctx)
    with dask.config.set({"draconis.chunk_rows": 8}):
        p.flushPixels()
    p.stackFrames()
    assert [r.label for r in ctx.checkpoints.records] == ["flushPixels"]
    (record,) = ctx.checkpoints.records
    raw_plane = N * SHAPE[0] * SHAPE[1] * 4
    assert ctx.checkpoints.bytes_by_label == {"flushPixels": record.bytes} and ctx.checkpoints.bytes_written == record.bytes

    def plane_bytes(name):
        return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(record.directory)
                   for f in fs if f"{os.sep}{name}{os.sep}c{os.sep}" in os.path.join(d, f))

    assert plane_bytes("SCI") == plane_bytes("VAR") == raw_plane  # float32, raw
    assert 0 < plane_bytes("DQ") < 0.05 * raw_plane / 2  # uint16, mostly zeros: compressed
    assert raw_plane * 2 < record.bytes < raw_plane * 2 * 1.2
    ctx.close()
    assert os.path.isdir(record.directory)  # kept on request


def test_bands_within_taller_stored_chunks_read_just_their_rows(tmp_path, counted):
    _, reads = counted
    frames = testing.resampled_sequence(5, SHAPE, chunk_rows=ROWS)
    ctx = _context(tmp_path, frames)
    with dask.config.set({"draconis.chunk_rows": 8}):
        stored = PrimitiveCaller(ctx).flushPixels()
    # a memory budget of a few rows: 2-row bands inside the 8-row chunks
    stack = stack_frames_core(stored, testing.stack_params(memory=1e-5),
                              logging.getLogger("test"))
    assert set(stack[0].plane("SCI").chunks[0]) == {2}
    got = [np.asarray(stack[0].plane(n)) for n in ("SCI", "VAR", "DQ")]
    for name, a, b in zip(("SCI", "VAR", "DQ"), got, _direct_stack(frames, reject_method="sigclip")):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=0, err_msg=name)
    assert {skip for _, _, skip in reads} == {0, 2, 4, 6}  # every read started inside a chunk, at its band
    ctx.close()
