"""NIRI and GNIRS science seeds end to end through draconis.Reduce on simulated data.

NIRI extended source with an offset sky: BPM from flats and short darks, the
BPM passed as ``addDQ:user_bpm``, ``skyCorrect:scale_sky=False`` (the science
run through ``draconis reduce``); the standard reduced with
``darkCorrect:do_cal=skip`` through ``draconis.Reduce``. GNIRS keyhole point source: the
dark given with ``--user_cal``. Skipped until the simulator and the runner land.
"""
from __future__ import annotations

import numpy as np
import pytest

import draconis
from draconis import simulate
from draconis.reduce import Reduce
from helpers.clean_open import assert_opens_cleanly
from test_science_e2e import _by_tags, _reduce

SIZE = 128


def _dataset(simulate, name, tmp_path, **kw):
    raw = tmp_path / "raw"
    simulate.make_dataset(name, raw, size=SIZE, seed=6, **kw)
    return sorted(str(p) for p in raw.rglob("*.fits") if "truth" not in p.parts)


def _assert_outputs_open_cleanly(work):
    """Every FITS file the workflow wrote (not the raw inputs) opens with a clean 2-D WCS (issue 13)."""
    outputs = [p for p in work.rglob("*.fits") if "raw" not in p.relative_to(work).parts]
    assert outputs
    for path in outputs:
        assert_opens_cleanly(path)


def _exptime(path):
    return draconis.open(path).exposure_time()


def _empty_sky_stats(frame):
    sci = np.asarray(frame[0].plane("SCI"), float)
    var = np.asarray(frame[0].plane("VAR"), float)
    dq = np.asarray(frame[0].plane("DQ"))
    objmask = np.abs(sci) > 5 * np.sqrt(np.maximum(var, 1e-12))
    from scipy import ndimage

    empty = (dq == 0) & (var > 0) & ~ndimage.binary_dilation(objmask, iterations=6)
    return sci[empty], var[empty]


def test_niri_extended_source_with_offset_sky(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    files = _dataset(simulate, "niri-extended", tmp_path)
    flats = _by_tags(files, {"FLAT"})
    darks = _by_tags(files, {"DARK"})
    short = min(_exptime(d) for d in darks)
    (bpm,) = _reduce(Reduce, flats + [d for d in darks if abs(_exptime(d) - short) < 0.01],
                     recipename="makeProcessedBPM")
    (flat,) = _reduce(Reduce, flats, uparms=[("addDQ:user_bpm", bpm)])
    # as the seed: IMAGE, not FLAT, and not the standard star (NIRI headers do not tag standards)
    science = draconis.dataselect.select_data(files, ["IMAGE"], ["FLAT"],
                                              draconis.dataselect.expr_parser('object!="FS 17"'))
    t = _exptime(science[0])
    (dark,) = _reduce(Reduce, [d for d in darks if abs(_exptime(d) - t) < 0.01])
    # the science run from the command line, as the seed's "reduce" chapter does it
    from draconis.cli import main

    assert main(["reduce", *science, "-p", f"addDQ:user_bpm={bpm}", "-p", "skyCorrect:scale_sky=False",
                 "--user_cal", f"processed_dark:{dark}", "--user_cal", f"processed_flat:{flat}",
                 "--scheduler", "synchronous", "--logmode", "quiet"]) == 0
    (image,) = list(tmp_path.glob("*_image.fits"))
    stack = draconis.open(str(image))
    # the offset-sky frames are sky only: fewer frames stacked than science frames given
    assert 2 <= stack.phu["NCOMBINE"] < len(science)
    _check_against_truth(stack, tmp_path / "raw" / "truth", science)
    _assert_outputs_open_cleanly(tmp_path)


def _check_against_truth(stack, truth, science):
    """SCI - (truth sources + the sky residual the seed's settings must leave) is zero within VAR.

    The host galaxy fills the field, so "empty" pixels are not empty: the truth
    model is subtracted. With skyCorrect:scale_sky=False each frame keeps the
    difference between its sky and its sky stack's, and stackSkyFrames
    (scale=True, as DRAGONS) brings the sky frames to the level of the first of
    them: all five offset skies serve every frame here (600 s window), so the
    expected background is the mean science sky less the first sky frame's
    (the skies were taken later, as the sky drifted up).
    """
    from astropy.table import Table

    from helpers.truth_model import compact_source_mask, source_model

    frames = Table.read(truth / "frames.ecsv")
    sources = Table.read(truth / "sources.ecsv")
    level = {str(r["file"]): float(r["sky_e"]) for r in frames}
    seeing = float(np.mean([r["fwhm_arcsec"] for r in frames if r["role"] == "science"]))
    stacked = [str(stack.phu[f"IMCMB{k:03d}"]) for k in range(1, stack.phu["NCOMBINE"] + 1)
               if f"IMCMB{k:03d}" in stack.phu]
    stacked = [next(f for f in level if f.removesuffix(".fits") in name) for name in stacked]
    assert len(stacked) == stack.phu["NCOMBINE"]
    skies = sorted(str(r["file"]) for r in frames if r["role"] == "sky")
    expected_sky = np.mean([level[f] for f in stacked]) - level[skies[0]]
    ext = stack[0]
    sci = np.asarray(ext.plane("SCI"), float)
    var = np.asarray(ext.plane("VAR"), float)
    dq = np.asarray(ext.plane("DQ"))
    model = source_model(sci.shape, ext.wcs, sources, exptime=_exptime(science[0]), seeing=seeing)
    use = (dq == 0) & (var > 0) & ~compact_source_mask(sci.shape, ext.wcs, sources, seeing=seeing)
    assert use.sum() > 0.3 * sci.size
    residual = sci[use] - model[use] - expected_sky
    sigma = np.sqrt(np.median(var[use]))
    assert abs(np.median(residual)) < 0.1 * sigma
    assert np.std(residual / np.sqrt(var[use])) == pytest.approx(1.0, abs=0.15)


def test_niri_standard_without_dark(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    files = _dataset(simulate, "niri-extended", tmp_path)
    standards = draconis.dataselect.select_data(files, [], [], draconis.dataselect.expr_parser('object=="FS 17"'))
    assert len(standards) >= 3
    (flat,) = _reduce(Reduce, _by_tags(files, {"FLAT"}))
    outputs = _reduce(Reduce, standards, uparms=[("darkCorrect:do_cal", "skip")], ucals={"processed_flat": flat})
    assert any(p.endswith("_image.fits") for p in outputs)
    _assert_outputs_open_cleanly(tmp_path)


def test_gnirs_keyhole_point_source_with_user_dark(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    files = _dataset(simulate, "gnirs-keyhole", tmp_path)
    science = _by_tags(files, {"IMAGE"}, {"FLAT", "DARK", "CAL"})
    darks = _by_tags(files, {"DARK"})
    t = _exptime(science[0])
    (dark,) = _reduce(Reduce, [d for d in darks if abs(_exptime(d) - t) < 0.01])
    (flat,) = _reduce(Reduce, _by_tags(files, {"FLAT"}))
    outputs = _reduce(Reduce, science, ucals={"processed_dark": dark, "processed_flat": flat})
    stack = draconis.open(next(p for p in outputs if p.endswith("_image.fits")))
    assert stack.phu["NCOMBINE"] >= 2
    sci, var = _empty_sky_stats(stack)
    assert abs(np.median(sci)) < 0.2 * np.sqrt(np.median(var))
    _assert_outputs_open_cleanly(tmp_path)


def test_gnirs_keyhole_through_the_cli_with_the_calibration_database(tmp_path, monkeypatch, caldb_config):
    """The GNIRS seed from the command line: dark and flat reduced and stored in the database; the
    science run finds the flat there by itself and is given the dark with --user_cal."""
    from draconis.cli import main

    files = _dataset(simulate, "gnirs-keyhole", tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main(["caldb", "init"]) == 0
    science = _by_tags(files, {"IMAGE"}, {"FLAT", "DARK", "CAL"})
    t = _exptime(science[0])
    darks = [d for d in _by_tags(files, {"DARK"}) if abs(_exptime(d) - t) < 0.01]
    quiet = ["--scheduler", "synchronous", "--logmode", "quiet"]
    assert main(["reduce", *darks, *quiet]) == 0
    (dark,) = [p for p in work.glob("*_dark.fits")]
    assert main(["reduce", *_by_tags(files, {"FLAT"}), *quiet]) == 0
    stored = {c.name for c in draconis.caldb.list_files()}
    assert dark.name in stored and any(n.endswith("_flat.fits") for n in stored)
    assert main(["reduce", *science, "--user_cal", f"processed_dark:{dark.name}", *quiet]) == 0
    (image,) = list(work.glob("*_image.fits"))
    stack = draconis.open(str(image))
    assert stack.phu["NCOMBINE"] >= 2
    sci, var = _empty_sky_stats(stack)
    assert abs(np.median(sci)) < 0.2 * np.sqrt(np.median(var))
