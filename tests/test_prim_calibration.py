"""Calibration-stage primitives on small F2 frames: lazy, and equal to NumPy arithmetic."""
from __future__ import annotations

import logging

import numpy as np
import pytest
from astropy.io import fits

import draconis
from draconis.errors import CalibrationNotFoundError, InputError
from draconis.primitives.registry import get_primitive
from draconis.testing import raise_if_dask_computes

SHAPE = (48, 40)
GAIN, RN = 4.44, 11.7


@pytest.fixture(autouse=True)
def _core_defaults(run_primitive):
    # these tests check the core declarations: no instrument overlay
    run_primitive.instrument = ""


def raw_f2(path, data, *, obstype="DARK", exptime=5.0, time="01:02:03.0", lamp=None, shutter=None):
    phu = fits.PrimaryHDU()
    h = phu.header
    h.update(INSTRUME="F2", OBSTYPE=obstype, EXPTIME=exptime, COADDS=1, LNRS=1, OBSERVAT="Gemini-South",
             DATALAB="GS-2020A-Q-1-1-001", GRISM="Open", FILTER1="K-red_G0812", FILTER2="Open",
             LYOT="f/16_G5830", AIRMASS=1.2)
    h["DATE-OBS"], h["TIME-OBS"] = "2020-01-04", time
    if lamp:
        h.update(GCALLAMP=lamp, GCALSHUT=shutter)
    ext = fits.ImageHDU(np.asarray(data, np.int32)[np.newaxis])
    ext.header.update(CRVAL1=10.0, CRVAL2=-20.0, CRPIX1=20, CRPIX2=24, CD1_1=-5e-5, CD2_2=5e-5, CD1_2=0.0,
                      CD2_1=0.0, CTYPE1="RA---TAN", CTYPE2="DEC--TAN")
    fits.HDUList([phu, ext]).writeto(path, overwrite=True)
    return draconis.open(path)


def _data(seed, level=1000.0):
    rng = np.random.default_rng(seed)
    return rng.normal(level, 20, SHAPE).round()


@pytest.fixture
def darks(tmp_path):
    return [raw_f2(tmp_path / f"S2020010{i}S0001.fits", _data(i), time=f"01:0{i}:00.0") for i in range(3)]


def sci(frame, plane="SCI", e=0):
    return np.asarray(frame[e].plane(plane))


def test_prepare_writes_levels_and_float32(run_primitive, darks):
    with raise_if_dask_computes():
        (out,) = run_primitive("prepare", darks[:1])
    assert "PREPARED" in out.tags and out.filename.endswith("_prepared.fits")
    h = out[0].header
    assert (h["GAIN"], h["RDNOISE"], h["SATLEVEL"], h["NONLINEA"]) == (GAIN, RN, 35000, 25200)
    assert out[0].plane("SCI").dtype == np.float32
    assert "PREPARE" not in darks[0].phu  # input untouched
    np.testing.assert_array_equal(sci(out), _data(0).astype(np.float32))


def test_prepare_rejects_missing_wcs(run_primitive, tmp_path):
    f = raw_f2(tmp_path / "S1.fits", _data(0))
    bad = f.map_extensions(lambda e: e.replace(header=fits.Header()))
    with pytest.raises(InputError, match="no WCS"):
        run_primitive("prepare", [bad])


def test_add_dq_bits_bpm_and_latency(run_primitive, tmp_path):
    d1 = _data(1)
    d1[3, 4] = 40000       # saturated
    d1[5, 6] = 30000       # non-linear
    d2 = _data(2)
    frames = run_primitive("prepare", [raw_f2(tmp_path / "S1.fits", d1, obstype="OBJECT", time="01:00:00.0"),
                             raw_f2(tmp_path / "S2.fits", d2, obstype="OBJECT", time="01:01:00.0")])
    bpm = np.zeros(SHAPE, np.int16)
    bpm[10, 11] = 1
    user = frames[0].map_extensions(lambda e: e.with_planes(SCI=bpm.astype(np.float32)))
    with raise_if_dask_computes():
        ctx = run_primitive.context(ucals={"processed_bpm": user})
        out = run_primitive("addDQ", frames, ctx, latency=True, time=120.0, add_illum_mask=True)
    dq1, dq2 = sci(out[0], "DQ"), sci(out[1], "DQ")
    assert dq1[3, 4] & 4 and dq1[5, 6] & 6 == 2 and dq1[10, 11] & 1 and dq1[24, 20] == 0
    assert dq2[3, 4] & 8 and not dq1[3, 4] & 8   # latency from the earlier frame
    assert dq1[0, 0] & 64 and not dq1[24, 20] & 64  # F2 circular field, corners unilluminated
    assert out[0].filename.endswith("_dqAdded.fits")


def test_addvar_adu_to_electrons(run_primitive, darks):
    frames = run_primitive("prepare", darks[:1])
    with raise_if_dask_computes():
        v = run_primitive("addVAR", frames, read_noise=True, poisson_noise=True)
        e = run_primitive("ADUToElectrons", v)
        (again,) = run_primitive("addVAR", e, read_noise=True)
        (e,) = e
    raw = _data(0)
    np.testing.assert_allclose(sci(e), raw * GAIN, rtol=1e-6)
    np.testing.assert_allclose(sci(e, "VAR"), raw * GAIN + RN ** 2, rtol=1e-5)
    np.testing.assert_allclose(sci(again, "VAR"), sci(e, "VAR"))  # read noise never added twice
    h = e[0].header
    assert h["BUNIT"] == "electron" and h["GAIN"] == 1.0 and h["SATLEVEL"] == pytest.approx(35000 * GAIN)
    assert e[0].header["VARNOISE"] == "Poisson,read"


def test_nonlinearity_polynomial(run_primitive, darks):
    prepared = run_primitive("prepare", darks[:1])
    frames = run_primitive("ADUToElectrons", run_primitive("addVAR", prepared, poisson_noise=True))
    with raise_if_dask_computes():
        (out,) = run_primitive("nonlinearityCorrect", frames)
    a1, a2, a3 = (0.9999107, -4.2854848e-8, 1.0096585e-12)
    x = _data(0) * GAIN
    expected = x * (a1 + a2 * x + a3 * x * x)
    np.testing.assert_allclose(sci(out), expected, rtol=1e-5)
    np.testing.assert_allclose(sci(out, "VAR"), x + (expected - x), rtol=1e-4)
    assert "LINCORR" in out.phu


def in_memory(frame):
    """The frame with its planes read into memory (summaries may then compute inside guards)."""
    import dask.array as da
    return frame.map_extensions(lambda e: e.with_planes(**{n: da.from_array(np.asarray(e.plane(n)), chunks=(16, -1))
                                                           for n in ("SCI", "VAR", "DQ") if e.plane(n) is not None}))


def _processed(run_primitive, frames):
    return _processed_lazy(run_primitive, frames)


def _processed_mem(run_primitive, frames):
    return [in_memory(f) for f in _processed_lazy(run_primitive, frames)]


def _processed_lazy(run_primitive, frames):
    with_dq = run_primitive("addDQ", run_primitive("prepare", frames), latency=False)
    return run_primitive("ADUToElectrons", run_primitive("addVAR", with_dq, read_noise=True, poisson_noise=True))


def test_dark_and_flat_correct(run_primitive, darks):
    sci_frame, dark, flat = _processed(run_primitive, darks)
    flat = flat.map_extensions(lambda e: e.with_planes(SCI=e.plane("SCI") / 4440.0, VAR=e.plane("VAR") / 4440.0 ** 2))
    with raise_if_dask_computes():
        (dc,) = run_primitive("darkCorrect", [sci_frame], dark=[dark])
        (fc,) = run_primitive("flatCorrect", [dc], flat=[flat])
    a, b, f = sci(sci_frame), sci(dark), sci(flat)
    np.testing.assert_allclose(sci(dc), a - b, rtol=1e-5, atol=1e-2)
    np.testing.assert_allclose(sci(dc, "VAR"), sci(sci_frame, "VAR") + sci(dark, "VAR"), rtol=1e-6)
    np.testing.assert_allclose(sci(fc), (a - b) / f, rtol=1e-4, atol=1e-3)
    vexp = (sci(dc, "VAR") + ((a - b) / f) ** 2 * sci(flat, "VAR")) / f ** 2
    np.testing.assert_allclose(sci(fc, "VAR"), vexp, rtol=1e-4)
    assert fc.filename.endswith("_flatCorrected.fits") and "DARKCORR" in fc.phu
    with pytest.raises(CalibrationNotFoundError):
        run_primitive("darkCorrect", [sci_frame])
    assert run_primitive("darkCorrect", [sci_frame], do_cal="skip")[0].extensions is sci_frame.extensions


def test_stack_frames_mean_and_header(run_primitive, darks):
    frames = _processed(run_primitive, darks)
    from draconis.primitives.stack import stack_frames_core
    with raise_if_dask_computes():
        (st,) = run_primitive("stackFrames", frames, reject_method="none")
        # a budget below the declared range, to force bands on a tiny stack (the core takes any Mapping)
        params = get_primitive("stackFrames").resolve(None, None, {"reject_method": "none"}).replace(memory=1e-6)
        banded = stack_frames_core(frames, params, logging.getLogger("test"))
    np.testing.assert_allclose(sci(banded), sci(st))
    assert len(banded[0].plane("SCI").chunks[0]) > 1  # the memory budget split the combine in bands
    cube = np.stack([sci(f) for f in frames])
    np.testing.assert_allclose(sci(st), cube.mean(0), rtol=1e-6)
    vcube = np.stack([sci(f, "VAR") for f in frames])
    np.testing.assert_allclose(sci(st, "VAR"), vcube.mean(0) / 3, rtol=1e-5)
    assert st.phu["NCOMBINE"] == 3 and st.phu["IMCMB002"] == darks[1].filename
    assert st.phu["DATALAB"] == "GS-2020A-Q-1-1-001-STACK" and st.filename.endswith("_stack.fits")


def test_stack_scale_normalisation(run_primitive, darks):
    frames = _processed_mem(run_primitive, darks)
    factors = [1.0, 2.0, 0.5]
    scaled = [f.map_extensions(lambda e, s=s: e.with_planes(SCI=e.plane("SCI") / s)) for f, s in zip(frames, factors)]
    with raise_if_dask_computes(max_computes=1):  # one compute for all the normalisation samples
        (st,) = run_primitive("stackFrames", scaled, reject_method="none", scale=True)
    expected = np.mean([sci(f) for f in frames], axis=0)
    # Each frame is brought to the first's level; noise makes the fitted factor differ by < 1 %.
    np.testing.assert_allclose(sci(st).mean(), expected.mean(), rtol=1e-2)


def test_stack_sigclip_rejects_outlier(run_primitive, tmp_path):
    frames = _processed(run_primitive, [raw_f2(tmp_path / f"S{i}.fits", _data(i)) for i in range(6)])
    frames[2] = frames[2].map_extensions(lambda e: e.with_planes(SCI=e.plane("SCI") + 1e5 * (np.arange(SHAPE[1]) == 7)))
    (st,) = run_primitive("stackFrames", frames, hsigma=2.0)
    clean = np.mean([sci(f) for i, f in enumerate(frames) if i != 2], axis=0)
    assert np.all(np.abs(sci(st)[:, 7] - clean[:, 7]) < 150)  # the +1e5 outlier is rejected everywhere
    assert np.abs(sci(st) - clean).max() < 150


def test_stack_darks_checks_exposure(run_primitive, tmp_path, darks):
    other = raw_f2(tmp_path / "S2020S0099.fits", _data(9), exptime=8.0)
    with pytest.raises(InputError, match="S2020S0099"):
        run_primitive("stackDarks", _processed(run_primitive, darks[:2] + [other]))
    with raise_if_dask_computes():
        (st,) = run_primitive("stackDarks", _processed(run_primitive, darks))
    assert st.phu["NCOMBINE"] == 3


def test_lamp_flat_on_minus_off_normalise_threshold(run_primitive, tmp_path):
    on = [raw_f2(tmp_path / f"S{i}on.fits", _data(i, 8000.0), obstype="FLAT", lamp="IRhigh", shutter="OPEN")
          for i in range(3)]
    off = [raw_f2(tmp_path / f"S{i}off.fits", _data(10 + i, 1000.0), obstype="FLAT", lamp="IRhigh",
                  shutter="CLOSED") for i in range(3)]
    frames = _processed_mem(run_primitive, on + off)
    with raise_if_dask_computes():
        (lamp,) = run_primitive("makeLampFlat", frames)
    diff = np.mean([sci(f) for f in frames[:3]], 0) - np.mean([sci(f) for f in frames[3:]], 0)
    np.testing.assert_allclose(sci(lamp), diff, rtol=1e-3, atol=1.0)
    assert lamp.filename.endswith("_lampstack.fits")
    with raise_if_dask_computes(max_computes=1):
        (norm,) = run_primitive("normalizeFlat", [lamp])
    good = sci(lamp, "DQ") == 0
    assert np.median(sci(norm)[good]) == pytest.approx(1.0, abs=1e-3)
    hot = norm.map_extensions(lambda e: e.with_planes(SCI=e.plane("SCI") * (1 + 20 * (np.arange(SHAPE[1]) == 3))))
    (thr,) = run_primitive("thresholdFlatfield", [hot])
    assert np.all(sci(thr, "DQ")[:, 3] & 64) and np.all(sci(thr)[:, 3] == 1.0)


def test_k_band_flats_minus_darks_and_bpm(run_primitive, tmp_path, darks):
    flats = [raw_f2(tmp_path / f"S{i}f.fits", _data(20 + i, 9000.0), obstype="FLAT", lamp="IRhigh",
                    shutter="CLOSED") for i in range(3)]
    frames = _processed(run_primitive, flats + darks)
    (lamp,) = run_primitive("makeLampFlat", frames)
    dark_stack = run_primitive("stackDarks", frames[3:])[0]
    diff = np.mean([sci(f) for f in frames[:3]], 0) - sci(dark_stack)
    np.testing.assert_allclose(sci(lamp), diff, rtol=1e-3, atol=1.0)
    only_flats = _processed(run_primitive, flats)
    with pytest.raises(CalibrationNotFoundError):
        run_primitive("makeLampFlat", only_flats)
    (norm,) = run_primitive("normalizeFlat", [lamp])
    dark_stack = run_primitive("stackDarks", _processed(run_primitive, darks))[0]
    dark_stack = dark_stack.map_extensions(
        lambda e: e.with_planes(SCI=e.plane("SCI") * 0 + 10 * (np.arange(SHAPE[1]) == 5) * 1000))
    with raise_if_dask_computes():
        ctx = run_primitive.context(streams={"darks": [dark_stack]})
        (bpm,) = run_primitive("makeBPM", [norm], ctx, flat_lo_thresh=0.68, flat_hi_thresh=1.28,
                               dark_lo_thresh=-150.0, dark_hi_thresh=3050.0)
    mask = sci(bpm)
    assert mask.dtype == np.int16 and np.all(mask[:, 5] == 1) and mask.sum() == SHAPE[0]
    assert "BPM" in bpm.tags and bpm.phu["OBJECT"] == "BPM" and bpm.filename.endswith("_bpm.fits")


def test_apply_dq_plane_replaces_by_median(run_primitive, darks):
    (f,) = _processed_mem(run_primitive, darks[:1])
    f = f.map_extensions(lambda e: e.with_planes(DQ=e.plane("DQ") | (np.arange(SHAPE[1]) == 2).astype(np.uint16)))
    with raise_if_dask_computes(max_computes=1):
        (out,) = run_primitive("applyDQPlane", [f])
    good = sci(f)[:, np.arange(SHAPE[1]) != 2]
    np.testing.assert_allclose(sci(out)[:, 2], np.median(good), rtol=1e-3)


def test_same_answer_threads_and_synchronous(run_primitive, darks):
    import dask
    frames = _processed(run_primitive, darks)
    (st,) = run_primitive("stackDarks", frames)
    planes = [st[0].plane(n) for n in ("SCI", "VAR", "DQ")]
    with dask.config.set(scheduler="threads", num_workers=4):
        threaded = dask.compute(*planes)
    with dask.config.set(scheduler="synchronous"):
        serial = dask.compute(*planes)
    for a, b in zip(threaded, serial):
        np.testing.assert_array_equal(a, b)
