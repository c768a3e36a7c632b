"""The write paths that stream: FITS outputs band by band (the same bytes as astropy's writer), and checkpoint
chunk files written and read directly (what zarr itself reads)."""
from __future__ import annotations

import os
import shutil

import dask
import dask.array as da
import numpy as np
import pytest
import zarr
from astropy.io import fits
from astropy.table import Table

from draconis.frame import Frame, make_extension
from draconis.io._tasks import StoredPlane
from draconis.io.fits import build_hdulist, write_fits, write_hdulist_atomic
from draconis.io.zarr import live_stores, open_zarr, stored_source, stored_summary, write_zarr


def _frame(rng, shape=(37, 23), chunks=(10, 12), n_ext=2) -> Frame:
    exts = []
    for _ in range(n_ext):
        sci = rng.normal(size=shape).astype(np.float32)
        header = fits.Header()
        header["GAIN"] = 2.0
        header["LONGSTR"] = "x" * 100  # a CONTINUE card
        header["HISTORY"] = "a history card"
        dq = (rng.random(shape) * 70000 % 65535).astype(np.uint16)  # values above 32767: BZERO matters
        exts.append(make_extension(header, da.from_array(sci, chunks=chunks), np.abs(sci), dq,
                                   (sci > 1).astype(np.uint8), Table({"NUMBER": [1, 2], "X": [1.5, 2.5]})))
    phu = fits.Header()
    phu["OBJECT"] = "test"
    return Frame(phu=phu, extensions=tuple(exts), filename="a.fits", tables={"REFCAT": Table({"RA": [1.0, 2.0]})})


def test_streamed_fits_is_byte_identical_to_astropys(tmp_path):
    frame = _frame(np.random.default_rng(1))
    streamed = write_fits(frame, tmp_path / "streamed.fits")
    arrays = [{n: np.asarray(e.plane(n)) for n in ("SCI", "VAR", "DQ", "OBJMASK")} for e in frame.extensions]
    reference = write_hdulist_atomic(build_hdulist(frame, arrays), tmp_path / "astropy.fits")
    assert open(streamed, "rb").read() == open(reference, "rb").read()
    # an integer SCI plane (a BPM) is written as it is
    bpm = make_extension(fits.Header(), da.from_array(np.arange(20, dtype=np.int16).reshape(4, 5), chunks=(3, 5)))
    bpm_frame = Frame(phu=fits.Header(), extensions=(bpm,), filename="b.fits")
    a = write_fits(bpm_frame, tmp_path / "bpm.fits")
    b = write_hdulist_atomic(build_hdulist(bpm_frame, [{"SCI": np.asarray(bpm.plane("SCI"))}]), tmp_path / "bpm2.fits")
    assert open(a, "rb").read() == open(b, "rb").read()
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".part")]


def test_bands_that_divide_the_chunk_height_are_stored_as_they_come(tmp_path):
    """Bands of 8 rows with chunk_rows 32 (the window sky's 128-row bands under 512): one stored chunk each,
    written without a rechunk (no band moved to another task), and read back in blocks of 32 rows."""
    rng = np.random.default_rng(4)
    frame = _frame(rng, shape=(64, 23), chunks=(8, 23), n_ext=1)
    frame = frame.map_extensions(lambda e: e.with_planes(**{n: da.from_array(np.asarray(e.plane(n)), chunks=(8, 23))
                                                            for n in ("VAR", "DQ", "OBJMASK")}))
    with dask.config.set({"draconis.chunk_rows": 32}):
        from draconis.io.zarr import prepare_zarr

        pending = prepare_zarr(frame, tmp_path / "a.zarr")
        layers = [k for r in pending.records for k in r.__dask_graph__().layers]
        assert not [k for k in layers if k.startswith("rechunk")], layers
        stored = write_zarr(frame, tmp_path / "b.zarr")
        back = open_zarr(stored)
    for name in ("SCI", "VAR", "DQ", "OBJMASK"):
        got = back[0].plane(name)
        assert stored_source(got).chunk_rows == 8 and got.chunks[0] == (32, 32)
        np.testing.assert_array_equal(np.asarray(got), np.asarray(frame[0].plane(name)))
        np.testing.assert_array_equal(zarr.open_array(stored, path=f"ext1/{name}")[:], np.asarray(frame[0].plane(name)))
    # bands that do not divide the chunk height (or are too thin) are merged into chunks of it, as before
    for chunks in ((12, 23), (2, 23)):
        other = _frame(rng, shape=(64, 23), chunks=chunks, n_ext=1)
        with dask.config.set({"draconis.chunk_rows": 32}):
            again = open_zarr(write_zarr(other, tmp_path / f"c{chunks[0]}.zarr"))
        assert stored_source(again[0].plane("SCI")).chunk_rows == 32 and again[0].plane("SCI").chunks[0] == (32, 32)


def test_checkpoint_chunks_are_zarr_and_read_back_in_any_slice(tmp_path):
    rng = np.random.default_rng(2)
    frame = _frame(rng, n_ext=1)
    sci = np.asarray(frame[0].plane("SCI"))
    sci[:5] = np.nan
    frame = frame.map_extensions(lambda e: e.with_planes(SCI=da.from_array(sci, chunks=(10, 23))))
    store = write_zarr(frame, tmp_path / "a.zarr", chunks=(8, 23))
    back = open_zarr(store)
    for name in ("SCI", "VAR", "DQ", "OBJMASK"):
        want = np.asarray(frame[0].plane(name))
        got = back[0].plane(name)
        assert got.chunks[0] == (8, 8, 8, 8, 5) and got.dtype == want.dtype
        np.testing.assert_array_equal(np.asarray(got), want)
        np.testing.assert_array_equal(zarr.open_array(store, path=f"ext1/{name}")[:], want)  # zarr reads it
        np.testing.assert_array_equal(np.asarray(got[3:30:4, 5:20]), want[3:30:4, 5:20])
        source = stored_source(got)
        assert isinstance(source, StoredPlane)
        np.testing.assert_array_equal(source[17], want[17])
        np.testing.assert_array_equal(source[33:35, ::2], want[33:35, ::2])
    summary = stored_summary(back[0])
    dq = np.asarray(frame[0].plane("DQ"))
    assert summary.finite
    assert summary.usable == bool(np.any(np.isfinite(sci) & ((dq & ~np.uint16(2)) == 0)))
    # all flagged but non_linear (2) and NaN elsewhere: finite pixels exist, none usable
    flagged = frame.map_extensions(lambda e: e.with_planes(DQ=da.full(sci.shape, 4, np.uint16, chunks=(10, 23))))
    assert stored_summary(open_zarr(write_zarr(flagged, tmp_path / "b.zarr", chunks=(8, 23)))[0]).usable is False
    harmless = frame.map_extensions(lambda e: e.with_planes(DQ=da.full(sci.shape, 2, np.uint16, chunks=(10, 23))))
    assert stored_summary(open_zarr(write_zarr(harmless, tmp_path / "c.zarr", chunks=(8, 23)))[0]).usable is True
    assert os.path.abspath(store) in live_stores()


def test_compressed_planes_are_stored_in_short_chunks_and_read_in_the_others_blocks(tmp_path):
    """DQ/OBJMASK chunks of at most 128 rows (a band reader decompresses little it does not use), read back in
    the blocks SCI is read in; zarr itself reads them."""
    from draconis.io.zarr import stored_rows

    rng = np.random.default_rng(7)
    frame = _frame(rng, shape=(300, 23), chunks=(100, 23), n_ext=1)
    store = write_zarr(frame, tmp_path / "a.zarr", chunks=(256, 23))
    back = open_zarr(store)
    heights = {}
    for name in ("SCI", "VAR", "DQ", "OBJMASK"):
        got = back[0].plane(name)
        heights[name] = stored_source(got).chunk_rows
        assert got.chunks[0] == (256, 44)
        np.testing.assert_array_equal(np.asarray(got), np.asarray(frame[0].plane(name)))
        np.testing.assert_array_equal(zarr.open_array(store, path=f"ext1/{name}")[:], np.asarray(frame[0].plane(name)))
    assert heights == {"SCI": 256, "VAR": 256, "DQ": 128, "OBJMASK": 128}
    # the cut divides the block height, is at most 128 rows and at least 32; raw planes are not cut
    assert stored_rows("zstd", 512, None) == (128, 512) and stored_rows("zstd", 500, None) == (125, 500)
    assert stored_rows("zstd", 128, 512) == (128, 512) and stored_rows("raw", 512, None) == (512, None)
    assert stored_rows("zstd", 509, None) == (509, None)  # a prime height has no cut


def test_level_samples_are_read_chunk_by_chunk_as_the_slices_give_them(tmp_path):
    """A level task's strided sample of stored planes (read through a reused buffer) is the plain slice."""
    from draconis.primitives.sky import _read_sample
    from draconis.primitives.sky_window import MaskedDQ

    rng = np.random.default_rng(5)
    frame = _frame(rng, shape=(45, 31), n_ext=1)
    back = open_zarr(write_zarr(frame, tmp_path / "a.zarr", chunks=(8, 31)))
    sections = [(slice(None), slice(None)), (slice(5, 38), slice(2, 29)), (slice(9, 10), slice(30, 31)),
                (slice(0, 8), slice(None, None, 2))]
    for name in ("SCI", "DQ", "OBJMASK"):
        want = np.asarray(frame[0].plane(name))
        reader = stored_source(back[0].plane(name))
        for section in sections:
            for step in (1, 3, 10):
                got = _read_sample(reader, section, step)
                np.testing.assert_array_equal(got, want[section][:, ::step], err_msg=f"{name} {section} {step}")
                assert got.dtype == want.dtype
    # a reader without a chunk height of its own: the DQ with the dilated object mask OR-ed in
    dq, mask = (stored_source(back[0].plane(n)) for n in ("DQ", "OBJMASK"))
    masked = MaskedDQ(dq, mask, 1.5, 512)
    whole = masked.rows(0, 45)
    np.testing.assert_array_equal(_read_sample(masked, sections[1], 4), whole[sections[1]][:, ::4])


def test_a_removed_checkpoint_fails_loudly_not_as_zeros(tmp_path):
    frame = _frame(np.random.default_rng(3), n_ext=1)
    store = write_zarr(frame, tmp_path / "a.zarr", chunks=(8, 23))
    back = open_zarr(store)
    shutil.rmtree(store)
    for name in ("SCI", "DQ"):
        with pytest.raises(FileNotFoundError, match="checkpoint"), dask.config.set(scheduler="synchronous"):
            np.asarray(back[0].plane(name))
