"""resampleToCommonFrame (union grid, flux, variance, DQ, laziness) and scaleCountsToReference."""
from __future__ import annotations

import logging

import dask
import dask.array as da
import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from dask.utils import key_split
from scipy.special import erf

from draconis.frame import Frame, make_extension
from draconis.kernels import resample as kres
from draconis.testing import raise_if_dask_computes

PIXSCALE = 0.12
SHAPE = (96, 128)
SIGMA = 1.5


def header(crpix, scale=PIXSCALE):
    hdr = fits.Header()
    hdr.update(CTYPE1="RA---TAN", CTYPE2="DEC--TAN", CRPIX1=crpix[0], CRPIX2=crpix[1], CRVAL1=150.0, CRVAL2=2.0,
               CD1_1=-scale / 3600, CD1_2=0.0, CD2_1=0.0, CD2_2=scale / 3600)
    return hdr


def star_image(hdr, stars, shape=SHAPE):
    x, y = WCS(hdr).all_world2pix(stars[:, 0], stars[:, 1], 0)
    ex, ey = np.arange(shape[1] + 1) - 0.5, np.arange(shape[0] + 1) - 0.5
    img = np.zeros(shape)
    scale = hdr["CD2_2"] * 3600 / PIXSCALE
    for xi, yi, f in zip(x, y, stars[:, 2]):
        fx = np.diff(0.5 * erf((ex - xi) / (np.sqrt(2) * SIGMA / scale)))
        fy = np.diff(0.5 * erf((ey - yi) / (np.sqrt(2) * SIGMA / scale)))
        img += f * np.outer(fy, fx)
    return img.astype(np.float32)


def frame(sci, hdr, name, var=None, dq=None, exptime=10.0):
    phu = fits.Header()
    phu.update(INSTRUME="NIRI", TELESCOP="Gemini-North", OBSTYPE="OBJECT", ORIGNAME=f"{name}.fits", EXPTIME=exptime)
    phu["DATE-OBS"], phu["UT"] = "2016-01-02", "10:00:00.0"
    var = np.ones(sci.shape, np.float32) if var is None else var
    dq = np.zeros(sci.shape, np.uint16) if dq is None else dq
    ext = make_extension(hdr, *(da.from_array(a, chunks=(32, -1)) for a in (sci, var, dq)))
    return Frame(phu=phu, extensions=(ext,), filename=f"{name}.fits")


def world_stars():
    hdr = header((64.5, 48.5))
    xs, ys = np.array([30.2, 70.7, 100.4, 50.1]), np.array([30.3, 60.8, 40.6, 70.2])
    ra, dec = WCS(hdr).all_pix2world(xs, ys, 0)
    return np.column_stack([ra, dec, [5000.0, 8000.0, 3000.0, 6000.0]])


SHIFTS = [(0.0, 0.0), (7.3, -4.6), (-11.8, 9.25)]


@pytest.fixture(scope="module")
def aligned(module_run_primitive):
    stars = world_stars()
    frames = []
    for k, (dx, dy) in enumerate(SHIFTS):
        hdr = header((64.5 + dx, 48.5 + dy))
        frames.append(frame(star_image(hdr, stars), hdr, f"N20160102S{100 + k:04d}"))
    with raise_if_dask_computes():
        out = module_run_primitive("resampleToCommonFrame", frames)
    return stars, frames, out


def test_union_grid(aligned):
    _, frames, out = aligned
    xs = [dx for dx, _ in SHIFTS]
    ys = [dy for _, dy in SHIFTS]
    # every frame shifted by (dx, dy) px on the sky: union spans the extreme integer-rounded shifts
    want = (SHAPE[0] + int(np.ceil(max(ys) - min(ys))), SHAPE[1] + int(np.ceil(max(xs) - min(xs))))
    assert all(f[0].shape == out[0][0].shape for f in out)
    assert abs(out[0][0].shape[0] - want[0]) <= 1 and abs(out[0][0].shape[1] - want[1]) <= 1
    # the reference lands on integer pixels: its values are copied exactly
    ref = out[0]
    x0 = int(round(ref[0].header["CRPIX1"] - frames[0][0].header["CRPIX1"]))
    y0 = int(round(ref[0].header["CRPIX2"] - frames[0][0].header["CRPIX2"]))
    sci = ref[0].plane("SCI").compute()
    np.testing.assert_allclose(sci[y0:y0 + SHAPE[0], x0:x0 + SHAPE[1]], frames[0][0].plane("SCI").compute(),
                               atol=1e-4)
    assert out[0].filename.endswith("_align.fits")


def test_flux_and_positions_conserved(aligned):
    stars, _, out = aligned
    for f in out:
        sci, dq = dask.compute(f[0].plane("SCI"), f[0].plane("DQ"))
        assert np.isclose(sci[dq == 0].sum(), stars[:, 2].sum(), rtol=0.01)
        x, y = WCS(f[0].header).all_world2pix(stars[:, 0], stars[:, 1], 0)
        for xi, yi, flux in zip(x, y, stars[:, 2]):
            yy, xx = np.mgrid[int(yi) - 6:int(yi) + 7, int(xi) - 6:int(xi) + 7]
            cut = sci[yy, xx]
            assert cut.sum() == pytest.approx(flux, rel=0.01)
            assert (cut * xx).sum() / cut.sum() == pytest.approx(xi, abs=0.05)


def test_no_data_outside_footprint(aligned):
    _, frames, out = aligned
    for f, src in zip(out, frames):
        dq = f[0].plane("DQ").compute()
        covered = (dq & kres.NO_DATA) == 0
        assert covered.sum() == pytest.approx(SHAPE[0] * SHAPE[1], rel=0.03)
    union = np.zeros(out[0][0].shape, bool)
    for f in out:
        union |= (f[0].plane("DQ").compute() & kres.NO_DATA) == 0
    assert union.mean() > 0.85  # the union grid is filled by the dithers (only corners empty)


def test_variance_matches_noise(run_primitive):
    rng = np.random.default_rng(2)
    shape = (128, 128)
    noise = rng.normal(0, 3.0, shape).astype(np.float32)
    var = np.full(shape, 9.0, np.float32)
    ref = frame(np.zeros(shape, np.float32), header((64.5, 64.5)), "N20160102S0500", var=var)
    moved = frame(noise, header((64.5 + 0.5, 64.5 + 0.37)), "N20160102S0501", var=var)
    out = run_primitive("resampleToCommonFrame", [ref, moved])
    sci, v, dq = dask.compute(out[1][0].plane("SCI"), out[1][0].plane("VAR"), out[1][0].plane("DQ"))
    inner = (dq == 0)
    inner[:8], inner[-8:], inner[:, :8], inner[:, -8:] = False, False, False, False
    ratio = np.std(sci[inner]) / np.sqrt(np.median(v[inner]))
    assert ratio == pytest.approx(1.0, abs=0.05)


def test_dq_bits_spread_by_threshold(run_primitive):
    shape = (64, 64)
    dq = np.zeros(shape, np.uint16)
    dq[30, 30] = 1
    sci = np.ones(shape, np.float32)
    sci[30, 30] = 1e6  # a hot pixel must not ring into good pixels
    ref = frame(np.ones(shape, np.float32), header((32.5, 32.5)), "N20160102S0600")
    moved = frame(sci, header((32.5 + 0.5, 32.5)), "N20160102S0601", dq=dq)
    out = run_primitive("resampleToCommonFrame", [ref, moved])
    s, d = dask.compute(out[1][0].plane("SCI"), out[1][0].plane("DQ"))
    bad = (d & 1) != 0
    assert 1 <= bad.sum() <= 4
    good = d == 0
    assert np.abs(s[good] - 1.0).max() < 1e-3


@pytest.mark.parametrize("with_dq", [True, False])
def test_non_finite_pixels_are_flagged_not_zeros(with_dq, run_primitive):
    """NaN input pixels come out flagged bad_pixel, a NaN frame entirely flagged (issue 12)."""
    shape = (64, 64)
    sci = np.ones(shape, np.float32)
    sci[20:24, 40:44] = np.nan
    dq = np.zeros(shape, np.uint16) if with_dq else None
    ref = frame(np.ones(shape, np.float32), header((32.5, 32.5)), "N20160102S0610")
    moved = frame(sci, header((32.5 + 0.5, 32.5)), "N20160102S0611", dq=dq)
    blank = frame(np.full(shape, np.nan, np.float32), header((32.5 + 0.5, 32.5)), "N20160102S0612", dq=dq)
    out = run_primitive("resampleToCommonFrame", [ref, moved, blank])
    s, d = dask.compute(out[1][0].plane("SCI"), out[1][0].plane("DQ"))
    assert np.isfinite(s).all()
    assert 16 <= ((d & 1) != 0).sum() <= 30  # bad_pixel: the 4x4 NaN block and its interpolation edge
    assert np.abs(s[d == 0] - 1.0).max() < 1e-3
    d_blank = out[2][0].plane("DQ").compute()
    assert ((d_blank & (1 | kres.NO_DATA)) != 0).all()


def test_pixel_scale_change_conserves_flux(run_primitive):
    stars = world_stars()
    ref_hdr = header((64.5, 48.5))
    fine_hdr = header((128.5, 96.5), scale=PIXSCALE / 2)
    ref = frame(star_image(ref_hdr, stars), ref_hdr, "N20160102S0700")
    fine = frame(star_image(fine_hdr, stars, shape=(192, 256)), fine_hdr, "N20160102S0701",
                 var=np.ones((192, 256), np.float32))
    out = run_primitive("resampleToCommonFrame", [ref, fine])
    sci, dq = dask.compute(out[1][0].plane("SCI"), out[1][0].plane("DQ"))
    assert sci[dq == 0].sum() == pytest.approx(stars[:, 2].sum(), rel=0.01)


def test_scale_counts_measured_and_exposure_fallback(run_primitive, caplog):
    from astropy.table import Table

    def with_cat(f, fluxes):
        ext = f[0]
        cat = Table({"X_IMAGE": [10.0, 20.0, 30.0], "Y_IMAGE": [10.0, 25.0, 40.0], "FLUX_AUTO": fluxes,
                     "FLAGS": [0, 0, 0]})
        ra, dec = ext.wcs.all_pix2world(cat["X_IMAGE"], cat["Y_IMAGE"], 1)
        cat["X_WORLD"], cat["Y_WORLD"] = ra, dec
        return f.with_extensions([ext.replace(objcat=cat)])

    hdr = header((32.5, 32.5))
    a = with_cat(frame(np.ones((64, 64), np.float32), hdr, "N20160102S0800"), [1e4, 2e4, 3e4])
    b = with_cat(frame(np.ones((64, 64), np.float32), hdr, "N20160102S0801"), [5e3, 1e4, 1.5e4])
    c = frame(np.ones((64, 64), np.float32), hdr, "N20160102S0802", exptime=20.0)
    with raise_if_dask_computes(), caplog.at_level(logging.WARNING):
        out = run_primitive("scaleCountsToReference", [a, b, c])
    assert out[1].phu["CNTSCALE"] == pytest.approx(2.0)
    assert out[2].phu["CNTSCALE"] == pytest.approx(0.5)  # no sources: exposure-time ratio, with a warning
    assert "N20160102S0802" in caplog.text and "exposure-time" in caplog.text
    assert float(out[1][0].plane("SCI")[0, 0].compute()) == pytest.approx(2.0)
    assert float(out[1][0].plane("VAR")[0, 0].compute()) == pytest.approx(4.0)
    tol = run_primitive("scaleCountsToReference", [a, b], tolerance=0.5)
    assert tol[1].phu["CNTSCALE"] == pytest.approx(1.0)  # 2.0 differs from exposure ratio 1 by >50%
    # faint sources (relative errors ~10 %, from sqrt(flux) without FLUXERR): too uncertain, exposure time
    faint_a = with_cat(frame(np.ones((64, 64), np.float32), hdr, "N20160102S0803"), [100.0, 200.0, 300.0])
    faint_b = with_cat(frame(np.ones((64, 64), np.float32), hdr, "N20160102S0804"), [50.0, 100.0, 150.0])
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        faint = run_primitive("scaleCountsToReference", [faint_a, faint_b])
    assert faint[1].phu["CNTSCALE"] == pytest.approx(1.0)
    assert "N20160102S0804" in caplog.text and "too uncertain" in caplog.text


def test_checkpointed_frames_are_read_by_the_band_tasks(run_primitive):
    # frames read from a checkpoint: each band task reads the region it needs itself (no read task per
    # chunk, nothing moved between workers); the result is the in-memory frames' to the bit
    stars = world_stars()
    rng = np.random.default_rng(3)
    frames = []
    for i, shift in enumerate(SHIFTS):
        hdr = header((64.5 + shift[0], 48.5 + shift[1]))
        sci = star_image(hdr, stars) + rng.normal(0, 1, SHAPE).astype(np.float32)
        dq = np.zeros(SHAPE, np.uint16)
        dq[rng.integers(0, SHAPE[0], 20), rng.integers(0, SHAPE[1], 20)] = 1
        sci[5, 7] = np.nan
        frames.append(frame(sci, hdr, f"N20160102S{300 + i:04d}", var=np.abs(sci) + 1.0, dq=dq))
    ctx = run_primitive.context(streams={"main": frames})
    with dask.config.set({"draconis.chunk_rows": 40, "scheduler": "synchronous"}):
        stored = ctx.run("flushPixels", force=True)  # 40-row chunks: band regions straddle them
    in_memory = run_primitive("resampleToCommonFrame", frames, interpolant="poly3")
    from_disk = run_primitive("resampleToCommonFrame", stored, interpolant="poly3")
    for a, b in zip(in_memory, from_disk):
        graph = b[0].plane("SCI").dask
        assert not any(name.startswith("zarr") for name in graph.layers)  # no read task per chunk
        # the band tasks alone carry their name prefix (distributed estimates durations by prefix): the
        # planes picked from a band task's result are (name, band, 0) keys of other prefixes
        bands = [k for k in graph if key_split(k) == "resample"]
        assert bands and all(isinstance(k, tuple) and len(k) == 2 for k in bands)
        for plane in ("SCI", "VAR", "DQ"):
            np.testing.assert_array_equal(np.asarray(b[0].plane(plane)), np.asarray(a[0].plane(plane)))
