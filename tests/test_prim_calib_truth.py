"""Calibrations against a known truth: master darks, master flats, BPMs and VAR vs measured scatter.

The raw frames are drawn here from a known bias, dark current, flat pattern
and bad pixels with Poisson and read noise (in electrons, converted to ADU
with the instrument gain), then reduced with the recipe's primitive chain.
"""
from __future__ import annotations

import numpy as np
import pytest

from test_prim_calib_instruments import _frame
from test_prim_calibration import _core_defaults, in_memory, raw_f2, sci  # noqa: F401 (autouse fixture)

N = 128
F2_GAIN, F2_RN = 4.44, 11.7


def _noisy(rng, electrons, gain, rn):
    return (rng.poisson(np.clip(electrons, 0, None)) + rng.normal(0, rn, electrons.shape)) / gain


def _f2_darks(tmp_path, rng, truth, exptime, n=5, tag="d"):
    return [raw_f2(tmp_path / f"S2020010{i}S00{tag}.fits", _noisy(rng, truth, F2_GAIN, F2_RN).round(),
                   exptime=exptime, time=f"01:{10 + i:02d}:00.0") for i in range(n)]


def _dark_chain(run, frames):
    frames = run("prepare", frames)
    frames = run("addDQ", frames, add_illum_mask=False, latency=False)
    frames = run("ADUToElectrons", frames)
    frames = run("addVAR", frames, read_noise=True, poisson_noise=True)
    return [in_memory(f) for f in run("nonlinearityCorrect", frames)]


@pytest.fixture(scope="module")
def f2_dark_truth(module_run_primitive, tmp_path_factory):
    module_run_primitive.instrument = ""  # the core defaults, as in test_prim_calibration
    rng = np.random.default_rng(11)
    bias = rng.normal(500.0, 30.0, (N, N))
    current = rng.gamma(2.0, 1.0, (N, N))  # e-/s
    t = 60.0
    truth = bias + current * t
    raw = _f2_darks(tmp_path_factory.mktemp("darks"), rng, truth, t)
    return truth, _dark_chain(module_run_primitive, raw)


def test_master_dark_matches_truth(run_primitive, f2_dark_truth):
    truth, frames = f2_dark_truth
    (master,) = run_primitive("stackDarks", frames)
    resid = sci(master) - truth
    expected = np.sqrt(np.median(sci(master, "VAR")))
    print('master dark: mean resid %.3f e-, rms %.3f e-, sqrt(VAR) %.3f e-' % (np.mean(resid), np.std(resid), expected))
    # Unbiased and as noisy as its VAR says (5 frames, Poisson + read noise).
    assert abs(np.mean(resid)) < 3 * expected / N
    assert np.std(resid) == pytest.approx(expected, rel=0.1)


def test_var_agrees_with_scatter(run_primitive, f2_dark_truth):
    _, frames = f2_dark_truth
    diff = (sci(frames[0]) - sci(frames[1])) / np.sqrt(2)
    predicted = np.sqrt(np.mean((sci(frames[0], "VAR") + sci(frames[1], "VAR")) / 2))
    print('VAR check: scatter %.3f e-, sqrt(VAR) %.3f e-' % (np.std(diff), predicted))
    assert np.std(diff) == pytest.approx(predicted, rel=0.03)


def _f2_flats(tmp_path, rng, pattern, level, t, lamp, shutter, n=5, tag="f"):
    return [raw_f2(tmp_path / f"S2020010{i}S0{tag}.fits", _noisy(rng, pattern * level + 400.0, F2_GAIN, F2_RN).round(),
                   exptime=t, obstype="FLAT", lamp=lamp, shutter=shutter, time=f"02:{10 + i:02d}:00.0")
            for i in range(n)]


def _flat_pattern(rng):
    yy, xx = np.mgrid[0:N, 0:N] / N
    return (1 + 0.1 * (xx - 0.5) - 0.05 * (yy - 0.5) ** 2) * rng.normal(1.0, 0.02, (N, N))


def _flat_chain(run, frames):
    frames = run("prepare", frames)
    frames = run("addDQ", frames, add_illum_mask=False, latency=False)
    frames = run("ADUToElectrons", frames)
    frames = run("addVAR", frames, read_noise=True, poisson_noise=True)
    return [in_memory(f) for f in run("nonlinearityCorrect", frames)]


def test_f2_k_flat_minus_darks_matches_pattern(run_primitive, tmp_path):
    """F2 K band: lamp-on/shutter-closed flats minus darks of the same exposure from the same list."""
    rng = np.random.default_rng(5)
    pattern = _flat_pattern(rng)
    flats = _f2_flats(tmp_path, rng, pattern, 2500.0 * F2_GAIN, 8.0, "IRhigh", "CLOSED")
    darks = _f2_darks(tmp_path, rng, np.full((N, N), 400.0), 8.0)
    frames = _flat_chain(run_primitive, flats + darks)
    (lamp,) = run_primitive("makeLampFlat", frames)
    (norm,) = run_primitive("normalizeFlat", [lamp])
    (flat,) = run_primitive("thresholdFlatfield", [norm])
    ratio = sci(flat) / (pattern / np.median(pattern))
    good = sci(flat, "DQ") == 0
    print('F2 K flat: rms vs truth %.5f, median ratio %.5f' % (np.std(ratio[good]), np.median(ratio[good])))
    assert np.std(ratio[good]) < 0.005 and abs(np.median(ratio[good]) - 1) < 0.005


def _niri(tmp_path, data, **phu):
    return _frame(tmp_path, "NIRI/N20030325S0098.fits.header", lambda i: data, phu=phu)


def test_niri_bpm_finds_bad_pixels(run_primitive, tmp_path):
    rng = np.random.default_rng(21)
    gain, rn = 12.3, 35.0
    pattern = rng.normal(1.0, 0.02, (N, N))
    bad = np.zeros((N, N), bool)
    idx = rng.choice(N * N, 200, replace=False)
    bad.flat[idx] = True
    dead, hot = idx[:100], idx[100:]
    pattern.flat[dead] = rng.uniform(0.0, 0.6, 100)
    dark_e = np.full((N, N), 50.0)
    dark_e.flat[hot] = rng.uniform(3000, 20000, 100)
    flat_kw = dict(OBSTYPE="FLAT", GCALLAMP="IRhigh", COADDS=1, EXPTIME=10.0)
    on = [_niri(tmp_path, _noisy(rng, pattern * 30000 + dark_e, gain, rn), GCALSHUT="OPEN", **flat_kw)
          for _ in range(4)]
    off = [_niri(tmp_path, _noisy(rng, pattern * 3000 + dark_e, gain, rn), GCALSHUT="CLOSED", **flat_kw)
           for _ in range(4)]
    darks = [_niri(tmp_path, _noisy(rng, dark_e, gain, rn), OBSTYPE="DARK", COADDS=1, EXPTIME=1.0)
             for _ in range(4)]
    assert "LAMPON" in on[0].tags and "DARK" in darks[0].tags
    prepared = [in_memory(f) for f in run_primitive("ADUToElectrons", run_primitive("prepare", on + off + darks))]
    dark_stack = run_primitive("stackFrames", prepared[8:])
    (lamp,) = run_primitive("makeLampFlat", prepared[:8])
    (norm,) = run_primitive("normalizeFlat", [lamp])
    ctx = run_primitive.context(streams={"darks": dark_stack})
    (bpm,) = run_primitive("makeBPM", [norm], ctx, flat_lo_thresh=0.8, flat_hi_thresh=1.25, dark_lo_thresh=-20.0,
                           dark_hi_thresh=1300.0)
    found = sci(bpm) == 1
    print('BPM truth: found %d of %d bad, %d false positives' % ((found & bad).sum(), bad.sum(), (found & ~bad).sum()))
    assert (found & bad).sum() >= 0.95 * bad.sum()
    assert (found & ~bad).sum() < 0.001 * (~bad).sum()
