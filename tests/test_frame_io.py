"""Frames round-trip through FITS and zarr, lazily, with headers intact."""
from __future__ import annotations

import os

import dask
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

import draconis
from draconis.errors import InputError, NotFITSError
from draconis.io import is_url, local_path, open_zarr, write_fits, write_zarr
from draconis.testing import PixelsComputedError, raise_if_dask_computes


def _raw_file(path, *, cube=False, extname=True, n=1, shape=(32, 40), seed=0):
    rng = np.random.default_rng(seed)
    phu = fits.PrimaryHDU()
    phu.header["INSTRUME"] = "F2"
    phu.header["OBJECT"] = "test"
    hdus = [phu]
    for i in range(n):
        data = rng.integers(0, 30000, size=shape).astype(np.int32)
        if cube:
            data = data[np.newaxis]
        hdu = fits.ImageHDU(data)
        if extname:
            hdu.header["EXTNAME"] = "SCI"
            hdu.header["EXTVER"] = i + 1
        hdu.header["GAIN"] = 4.44 + i
        hdus.append(hdu)
    fits.HDUList(hdus).writeto(path)
    return path


def test_open_reads_headers_only_and_squeezes_cube(tmp_path):
    path = _raw_file(tmp_path / "S20200104S0075.fits", cube=True)
    with raise_if_dask_computes():
        frame = draconis.open(path)
        doubled = frame[0].plane("SCI") * 2
    assert frame[0].shape == (32, 40)
    assert frame.phu["OBJECT"] == "test"
    assert frame[0].header["GAIN"] == 4.44
    expected = fits.getdata(path)[0]
    np.testing.assert_array_equal(doubled.compute(), expected * 2)


def test_instrument_descriptor_is_not_shadowed(tmp_path):
    # DRAGONS users write ad.instrument() for the name; the Instrument object has its own name.
    frame = draconis.open(_raw_file(tmp_path / "S20200104S0075.fits"))
    assert frame.instrument() == "F2"
    assert frame.instrument_model.name == "F2"


def test_guard_catches_computation(tmp_path):
    frame = draconis.open(_raw_file(tmp_path / "a.fits"))
    with pytest.raises(PixelsComputedError):
        with raise_if_dask_computes():
            frame[0].plane("SCI").sum().compute()


def test_extensions_without_extname_are_science_arrays(tmp_path):
    frame = draconis.open(_raw_file(tmp_path / "N20160102S0270.fits", extname=False, n=2))
    assert len(frame) == 2
    assert [e.header["GAIN"] for e in frame.extensions] == [4.44, 5.44]


def _processed(frame):
    def planes(ext):
        sci = ext.plane("SCI").astype(np.float32)
        return ext.with_planes(SCI=sci, VAR=sci * 0 + 2.5, DQ=(sci > 20000).astype(np.uint16) * 4,
                               OBJMASK=(sci > 25000).astype(np.uint8)).replace(
            objcat=Table({"NUMBER": [1, 2], "X_IMAGE": [3.5, 7.25]}))
    return frame.map_extensions(planes).with_phu(PREPARE="2026-11-21T00:00:00").with_suffix("_prepared")


def test_fits_round_trip(tmp_path):
    raw = draconis.open(_raw_file(tmp_path / "S1.fits", n=2))
    with raise_if_dask_computes():
        proc = _processed(raw)
    assert proc.filename == "S1_prepared.fits"
    out = write_fits(proc, tmp_path / proc.filename)
    with fits.open(out) as hdul:
        names = [(h.name, h.ver) for h in hdul[1:]]
        assert names == [("SCI", 1), ("VAR", 1), ("DQ", 1), ("OBJMASK", 1), ("OBJCAT", 1),
                         ("SCI", 2), ("VAR", 2), ("DQ", 2), ("OBJMASK", 2), ("OBJCAT", 2)]
        assert hdul["DQ", 2].data.dtype == np.uint16
        assert hdul[0].header["ORIGNAME"] == "S1.fits"
    again = draconis.open(out)
    assert again.stem == "S1"
    for a, b in zip(proc.extensions, again.extensions):
        for plane in ("SCI", "VAR", "DQ", "OBJMASK"):
            np.testing.assert_array_equal(a.plane(plane).compute(), b.plane(plane).compute())
            assert a.plane(plane).dtype == b.plane(plane).dtype
        assert list(b.objcat["X_IMAGE"]) == [3.5, 7.25]
        assert b.header["GAIN"] == a.header["GAIN"]
    assert again.phu["PREPARE"] == "2026-11-21T00:00:00"
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".part")]


def test_zarr_round_trip_keeps_headers(tmp_path):
    proc = _processed(draconis.open(_raw_file(tmp_path / "S2.fits", n=2)))
    store = write_zarr(proc, tmp_path / "S2.zarr", chunks=(8, 40))
    back = open_zarr(store)
    assert back.phu.tostring() == proc.phu.tostring()
    assert back.filename == proc.filename
    assert back[1].plane("SCI").chunks[0][0] == 8
    for a, b in zip(proc.extensions, back.extensions):
        assert a.header.tostring() == b.header.tostring()
        np.testing.assert_array_equal(a.plane("DQ").compute(), b.plane("DQ").compute())
        assert list(b.objcat["NUMBER"]) == [1, 2]


def test_zarr_catalogues_are_remembered_by_content(tmp_path):
    """A catalogue written again unchanged, or read back, skips ECSV; a changed one is written anew."""
    from draconis.io import zarr as zio

    proc = _processed(draconis.open(_raw_file(tmp_path / "S3.fits")))
    first = open_zarr(write_zarr(proc, tmp_path / "a.zarr", chunks=(8, 40)))
    cat = first[0].objcat
    cat["X_IMAGE"][1] = 99.5  # changed in place after it was read: the memory must not hide it
    second = open_zarr(write_zarr(first, tmp_path / "b.zarr", chunks=(8, 40)))
    assert list(second[0].objcat["X_IMAGE"]) == [3.5, 99.5] and "note" not in second[0].objcat.meta
    cat.meta["note"] = "edited"  # the metadata too
    second = open_zarr(write_zarr(first, tmp_path / "b.zarr", chunks=(8, 40)))
    assert list(second[0].objcat["X_IMAGE"]) == [3.5, 99.5] and second[0].objcat.meta["note"] == "edited"
    third = open_zarr(tmp_path / "a.zarr")  # the copy handed out was edited, the stored text was not
    assert list(third[0].objcat["X_IMAGE"]) == [3.5, 7.25] and "note" not in third[0].objcat.meta
    # what is remembered is what ECSV gives: a fresh parse of the stored text
    zio._TEXT_OF.clear()
    zio._TABLE_OF.clear()
    fresh = open_zarr(tmp_path / "b.zarr")[0].objcat
    assert list(fresh["X_IMAGE"]) == [3.5, 99.5] and fresh.meta["note"] == "edited"
    assert list(zio._TABLE_OF) == [zio._table_to_text(fresh)]


def test_bad_files_name_the_file(tmp_path):
    text = tmp_path / "notes.fits"
    text.write_text("hello, this is not FITS\n" * 200)
    with pytest.raises(NotFITSError, match="notes.fits"):
        draconis.open(text)
    good = _raw_file(tmp_path / "full.fits", shape=(256, 256))
    cut = tmp_path / "cut.fits"
    cut.write_bytes(good.read_bytes()[:-100000])
    with pytest.raises(NotFITSError, match="cut.fits.*truncated"):
        draconis.open(cut)
    with pytest.raises(InputError, match="no such file"):
        draconis.open(tmp_path / "missing.fits")


def test_atomic_write_leaves_no_partial_file(tmp_path):
    proc = _processed(draconis.open(_raw_file(tmp_path / "S3.fits")))
    broken = proc.map_extensions(lambda e: e.with_planes(SCI=e.plane("SCI").map_blocks(_explode, dtype=np.float32)))
    with pytest.raises(RuntimeError):
        write_fits(broken, tmp_path / "out.fits")
    assert not (tmp_path / "out.fits").exists()
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".part")]


def _explode(block):
    raise RuntimeError("boom")


def test_writing_computes_the_planes_once(tmp_path):
    from draconis.io.fits import pixel_read_count

    raw = draconis.open(_raw_file(tmp_path / "S4.fits", n=2, shape=(64, 40)), chunks=(16, 40))
    proc = _processed(raw)  # SCI, VAR, DQ, OBJMASK all derive from the raw SCI chunks
    chunks = sum(len(ext.plane("SCI").chunks[0]) for ext in raw.extensions)
    before = pixel_read_count()
    with dask.config.set(scheduler="synchronous"):
        write_fits(proc, tmp_path / "S4_prepared.fits")
    # Dask inlines the cheap source read into each plane's branch (4 planes here), but the frame
    # itself must not send the planes through the graph a second time (it did: 5 reads per chunk).
    assert pixel_read_count() - before <= 4 * chunks


def test_is_url_tells_urls_from_local_paths(tmp_path):
    assert not is_url(str(tmp_path)) and not is_url(tmp_path) and not is_url("work/run-1")
    # a file:// URL names a local file: read and written like a bare path, after local_path
    assert not is_url(f"file://{tmp_path}/ck") and not is_url("FILE:///x")
    assert local_path(f"file://{tmp_path}/ck") == f"{tmp_path}/ck"
    assert local_path("memory://x/y") == "memory://x/y" and local_path("work/run-1") == "work/run-1"
    assert is_url("memory://x/y") and is_url("s3://bucket/prefix") and is_url("sqlite:///cal.db")


def test_checkpoints_on_a_file_url_are_the_local_directory(tmp_path):
    from draconis.reduce.outputs import Checkpoints

    assert Checkpoints(f"file://{tmp_path}/ck").root == str(tmp_path / "ck")
    assert Checkpoints("memory://ck").root == "memory://ck"
