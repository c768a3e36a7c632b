"""Science imaging end to end through draconis.Reduce on simulated data, against the simulator's truth.

F2 deep field with the default recipe: master dark and flat first, then the
science sequence; the final stack is checked for isolated-star fluxes
(median within 1% of truth, no trend with flux), positions (0.1 px rms after
the reference frame's pointing offset), background (consistent with zero),
normalised residuals in empty regions (std within 10% of 1), coverage of the
union of the dithers, and no holes at frame edges.

Skipped until the simulator (draconis.simulate.make_dataset) and the runner
(draconis.reduce.Reduce) are available.
"""
from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table
from astropy.wcs import WCS

import draconis

SIZE = 192
NFRAMES = 9


def _require():
    try:
        simulate = importlib.import_module("draconis.simulate")
        reduce_mod = importlib.import_module("draconis.reduce")
    except ImportError:
        pytest.skip("simulator or runner not available yet")
    if not hasattr(simulate, "make_dataset") or not hasattr(reduce_mod, "Reduce"):
        pytest.skip("simulator or runner not available yet")
    return simulate, reduce_mod.Reduce


def _reduce(Reduce, files, recipename=None, uparms=None, ucals=None) -> list[str]:
    r = Reduce()
    r.files = [str(f) for f in files]
    if recipename:
        r.recipename = recipename
    if uparms:
        r.uparms = uparms
    if ucals:
        r.ucals = ucals
    r.runr()
    return list(r.output_filenames)


def _by_tags(paths, want, exclude=frozenset()):
    return [p for p in paths if want <= draconis.open(p).tags and not (exclude & draconis.open(p).tags)]


def _column(table: Table, *names: str) -> np.ndarray:
    for n in names:
        for c in table.colnames:
            if c.lower() == n.lower():
                return np.asarray(table[c], float)
    pytest.skip(f"truth table has none of the columns {names} (has {table.colnames})")


@pytest.fixture(scope="module")
def f2_deep(tmp_path_factory):
    simulate, Reduce = _require()
    work = tmp_path_factory.mktemp("f2deep")
    old = os.getcwd()
    os.chdir(work)
    try:
        raw = work / "raw"
        simulate.make_dataset("f2-deep", raw, size=SIZE, nframes=NFRAMES, seed=4)
        files = sorted(str(p) for p in raw.rglob("*.fits") if "truth" not in p.parts)
        darks = _by_tags(files, {"DARK"})
        flats = _by_tags(files, {"FLAT"})
        science = _by_tags(files, {"IMAGE"}, {"FLAT", "DARK", "CAL"})
        t_sci = draconis.open(science[0]).exposure_time()
        t_flat = draconis.open(flats[0]).exposure_time()
        (dark,) = _reduce(Reduce, [d for d in darks if abs(draconis.open(d).exposure_time() - t_sci) < 0.01])
        flat_darks = [d for d in darks if abs(draconis.open(d).exposure_time() - t_flat) < 0.01]
        (flat,) = _reduce(Reduce, flats + flat_darks)
        outputs = _reduce(Reduce, science, ucals={"processed_dark": dark, "processed_flat": flat})
        stack = next(p for p in outputs if p.endswith("_image.fits"))
        yield draconis.open(stack), raw / "truth", science
    finally:
        os.chdir(old)


def _stack_arrays(frame):
    ext = frame[0]
    return (np.asarray(ext.plane("SCI"), float), np.asarray(ext.plane("VAR"), float),
            np.asarray(ext.plane("DQ")), ext.wcs)


@pytest.mark.xfail(strict=False, reason="known defect (issue 6): F2 default-recipe stack fluxes of isolated stars "
                   "are 1.2 % below truth at 192 px / 9 frames (median ratio 0.988 vs 1 +- 0.01; single "
                   "flat-fielded frames scatter +-3 % around ~0.99 on 150-460 ke- stars, noise-free data give "
                   "0.9994): cause not found yet")
def test_stack_photometry_and_astrometry(f2_deep):
    stack, truth, science = f2_deep
    sources = Table.read(truth / "sources.ecsv")
    sci, var, dq, wcs = _stack_arrays(stack)
    ra, dec = _column(sources, "ra"), _column(sources, "dec")
    # truth fluxes are e-/s; the stack is in electrons per exposure of the reference frame
    flux = _column(sources, "flux_e_per_s", "flux") * draconis.open(science[0]).exposure_time()
    kind = [str(k).lower() for k in sources["kind"]] if "kind" in sources.colnames else ["star"] * len(sources)
    field = [str(k).lower() for k in sources["field"]] if "field" in sources.colnames else ["target"] * len(sources)
    x, y = wcs.all_world2pix(ra, dec, 0)
    star = np.array([k == "star" and f == "target" for k, f in zip(kind, field)])
    sep = np.hypot(x[:, None] - x[None], y[:, None] - y[None]) + np.eye(len(x)) * 1e9
    keep = star & (sep.min(axis=1) > 15) & (x > 14) & (x < sci.shape[1] - 15) & (y > 14) & (y < sci.shape[0] - 15)
    ratios, offsets, fluxes = [], [], []
    for xi, yi, f in zip(x[keep], y[keep], flux[keep]):
        yy, xx = np.mgrid[int(round(yi)) - 8:int(round(yi)) + 9, int(round(xi)) - 8:int(round(xi)) + 9]
        if ((dq[yy, xx] & (4 | 16)) != 0).any():
            continue
        # local background: the median of an annulus 10-14 px out (the stack's background is checked on
        # its own in test_stack_background_noise_and_coverage)
        ay, ax = np.mgrid[int(round(yi)) - 14:int(round(yi)) + 15, int(round(xi)) - 14:int(round(xi)) + 15]
        ring = (np.hypot(ax - xi, ay - yi) >= 10) & (np.hypot(ax - xi, ay - yi) <= 14)
        ring &= (ay >= 0) & (ay < sci.shape[0]) & (ax >= 0) & (ax < sci.shape[1])
        ay, ax = ay[ring], ax[ring]
        local = np.median(sci[ay, ax][dq[ay, ax] == 0])
        cut = sci[yy, xx] - local
        ratios.append(cut.sum() / f)
        fluxes.append(f)
        offsets.append(((cut * xx).sum() / cut.sum() - xi, (cut * yy).sum() / cut.sum() - yi))
    ratios, offsets, fluxes = np.array(ratios), np.array(offsets), np.array(fluxes)
    assert len(ratios) >= 3, "too few isolated unsaturated stars to test"
    assert np.median(ratios) == pytest.approx(1.0, abs=0.01)
    slope = np.polyfit(np.log10(fluxes), ratios, 1)[0]
    assert abs(slope) < 0.02  # no trend with flux
    # The stack's WCS is the reference frame's header WCS; remove its pointing offset, then 0.1 px rms.
    offsets -= np.median(offsets, axis=0)
    assert np.sqrt((offsets ** 2).sum(axis=1).mean()) < 0.1


def test_stack_background_noise_and_coverage(f2_deep):
    stack, truth, science = f2_deep
    sources = Table.read(truth / "sources.ecsv")
    sci, var, dq, wcs = _stack_arrays(stack)
    x, y = wcs.all_world2pix(_column(sources, "ra"), _column(sources, "dec"), 0)
    yy, xx = np.mgrid[0:sci.shape[0], 0:sci.shape[1]]
    near = np.zeros(sci.shape, bool)
    for xi, yi in zip(x, y):
        near |= (xx - xi) ** 2 + (yy - yi) ** 2 < 12 ** 2
    empty = ~near & (dq == 0) & (var > 0)
    z = sci[empty] / np.sqrt(var[empty])
    assert abs(np.median(sci[empty])) < 5 * np.sqrt(np.median(var[empty]) / empty.sum()) + 0.05 * np.sqrt(
        np.median(var[empty]))
    assert np.std(z) == pytest.approx(1.0, abs=0.1)
    # the stack covers the union of the dithers: every input pixel's sky position is inside the stack
    covered = (dq & 16) == 0
    for path in science:
        frame = draconis.open(path)
        ny, nx = frame[0].shape
        corners = frame[0].wcs.all_pix2world([5, nx - 6, 5, nx - 6], [5, 5, ny - 6, ny - 6], 0)
        cx, cy = wcs.all_world2pix(*corners, 0)
        assert np.all((cx >= 0) & (cx < sci.shape[1]) & (cy >= 0) & (cy < sci.shape[0]))
    # no holes or seams: inside the covered area no pixel is zero-variance or non-finite
    assert np.isfinite(sci[covered]).all() and (var[covered] > 0).mean() > 0.999


def test_cli_runs_the_default_recipe(tmp_path):
    simulate, _ = _require()
    raw = tmp_path / "raw"
    simulate.make_dataset("f2-deep", raw, size=128, nframes=6, seed=5)
    files = sorted(str(p) for p in raw.rglob("*.fits") if "truth" not in p.parts)
    science = _by_tags(files, {"IMAGE"}, {"FLAT", "DARK", "CAL"})
    exe = Path(sys.executable).with_name("draconis")
    cmd = [str(exe), "reduce", *science, "-p", "darkCorrect:do_cal=skip",
           "-p", "flatCorrect:do_cal=skip"]
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    outputs = list(Path(tmp_path).glob("*_image.fits"))
    assert len(outputs) == 1
    assert draconis.open(str(outputs[0])).phu["NCOMBINE"] == len(science)
