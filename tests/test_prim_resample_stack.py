"""Register → resample → scale → combine on dithered star fields with header pointing errors, against truth.

The combine is the compiled kernel stackFrames uses (``combine_block``, mean with
sigma clipping), applied to the whole resampled cube, so this checks the
alignment part of the science recipe on its own: fluxes, positions,
normalised residuals, coverage and seams.
"""
from __future__ import annotations


import dask
import dask.array as da
import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from scipy.special import erf

from draconis.frame import Frame, make_extension
from draconis.kernels.combine import CombineSpec, combine_block

PIXSCALE = 0.18
SHAPE = (128, 128)
SIGMA = 1.6
NOISE_VAR = 400.0
DITHERS = [(0, 0), (9.4, 6.2), (-8.7, 7.9), (-7.3, -9.1), (8.2, -8.6), (0.6, 12.3), (12.1, 0.4), (-11.5, -0.7)]
POINTING_ERR = 1.5  # px rms of the header WCS error


def header(crpix):
    hdr = fits.Header()
    hdr.update(CTYPE1="RA---TAN", CTYPE2="DEC--TAN", CRPIX1=crpix[0], CRPIX2=crpix[1], CRVAL1=53.1, CRVAL2=-27.8,
               CD1_1=-PIXSCALE / 3600, CD1_2=0.0, CD2_1=0.0, CD2_2=PIXSCALE / 3600)
    return hdr


def truth_model(hdr, stars, shape):
    x, y = WCS(hdr).all_world2pix(stars[:, 0], stars[:, 1], 0)
    ex, ey = np.arange(shape[1] + 1) - 0.5, np.arange(shape[0] + 1) - 0.5
    img = np.zeros(shape)
    for xi, yi, f in zip(x, y, stars[:, 2]):
        fx = np.diff(0.5 * erf((ex - xi) / (np.sqrt(2) * SIGMA)))
        fy = np.diff(0.5 * erf((ey - yi) / (np.sqrt(2) * SIGMA)))
        img += f * np.outer(fy, fx)
    return img


@pytest.fixture(scope="module")
def reduced(module_run_primitive):
    rng = np.random.default_rng(11)
    base = header((64.5, 64.5))
    n = 30
    px = np.column_stack([rng.uniform(-4, 132, n), rng.uniform(-4, 132, n)])
    ra, dec = WCS(base).all_pix2world(px[:, 0], px[:, 1], 0)
    stars = np.column_stack([ra, dec, 10 ** rng.uniform(3.3, 4.6, n)])
    frames, errors = [], {}
    for k, (dx, dy) in enumerate(DITHERS):
        true = header((64.5 + dx, 64.5 + dy))
        err = rng.normal(0, POINTING_ERR, 2) if k else np.zeros(2)
        errors[f"S20200101S{k + 1:04d}"] = err
        told = header((64.5 + dx + err[0], 64.5 + dy + err[1]))
        model = truth_model(true, stars, SHAPE)
        sci = (model + rng.normal(0, np.sqrt(NOISE_VAR), SHAPE)).astype(np.float32)
        var = np.full(SHAPE, NOISE_VAR, np.float32)
        phu = fits.Header()
        phu.update(INSTRUME="F2", TELESCOP="Gemini-South", OBSTYPE="OBJECT", ORIGNAME=f"S20200101S{k + 1:04d}.fits",
                   EXPTIME=10.0)
        ext = make_extension(told, *(da.from_array(a, chunks=(64, -1)) for a in
                                     (sci, var, np.zeros(SHAPE, np.uint16))))
        frames.append(Frame(phu=phu, extensions=(ext,), filename=f"S20200101S{k + 1:04d}.fits"))
    frames = module_run_primitive("detectSources", frames)
    frames = module_run_primitive("adjustWCSToReference", frames)
    frames = module_run_primitive("resampleToCommonFrame", frames)
    frames = module_run_primitive("scaleCountsToReference", frames)
    cubes = dask.compute([f[0].plane("SCI") for f in frames], [f[0].plane("VAR") for f in frames],
                         [f[0].plane("DQ") for f in frames])
    sci, var, dq, nused = combine_block(*(np.stack(c) for c in cubes),
                                        CombineSpec(operation="mean", reject_method="sigclip"))
    # The stack's WCS is the reference frame's header WCS, pointing error included (no external catalogue
    # offline): the true WCS of the stack grid has that error removed.
    out_hdr = frames[0][0].header.copy()
    err = errors[frames[0].phu["ALIGNREF"]]
    out_hdr["CRPIX1"] -= err[0]
    out_hdr["CRPIX2"] -= err[1]
    return stars, sci, var, dq, nused, out_hdr


def test_stack_covers_union_without_seams(reduced):
    _, sci, var, dq, nused, hdr = reduced
    spans_x = max(d[0] for d in DITHERS) - min(d[0] for d in DITHERS)
    spans_y = max(d[1] for d in DITHERS) - min(d[1] for d in DITHERS)
    assert sci.shape[1] >= SHAPE[1] + spans_x - 2 and sci.shape[0] >= SHAPE[0] + spans_y - 2
    covered = (dq & 16) == 0
    assert covered.mean() > 0.9
    # no holes: inside the covered area every pixel used at least one frame, and VAR is finite and positive
    assert np.all(nused[covered] >= 1) and np.all(var[covered] > 0)


def test_fluxes_positions_and_noise_against_truth(reduced):
    stars, sci, var, dq, nused, hdr = reduced
    w = WCS(hdr)
    x, y = w.all_world2pix(stars[:, 0], stars[:, 1], 0)
    inside = (x > 8) & (x < sci.shape[1] - 9) & (y > 8) & (y < sci.shape[0] - 9)
    sep = np.hypot(x[:, None] - x[None], y[:, None] - y[None]) + np.eye(len(x)) * 1e9
    inside &= sep.min(axis=1) > 12  # isolated stars only
    ratios, dpos = [], []
    for xi, yi, flux in zip(x[inside], y[inside], stars[inside, 2]):
        yy, xx = np.mgrid[int(round(yi)) - 7:int(round(yi)) + 8, int(round(xi)) - 7:int(round(xi)) + 8]
        if (dq[yy, xx] & 16).any():
            continue
        cut = sci[yy, xx]
        ratios.append(cut.sum() / flux)
        if flux > 10000:
            dpos.append(((cut * xx).sum() / cut.sum() - xi, (cut * yy).sum() / cut.sum() - yi))
    ratios = np.array(ratios)
    assert len(ratios) >= 10
    assert np.median(ratios) == pytest.approx(1.0, abs=0.01)
    dpos = np.array(dpos)
    assert np.sqrt((dpos ** 2).sum(axis=1).mean()) < 0.1
    # normalised residual in empty regions
    model = truth_model(hdr, stars, sci.shape)
    empty = ((dq & 16) == 0) & (model < 0.5) & (nused == len(DITHERS))
    z = (sci - model)[empty] / np.sqrt(var[empty])
    assert abs(np.mean(z)) < 0.05
    assert np.std(z) == pytest.approx(1.0, abs=0.1)
