"""Outputs open cleanly everywhere (issue 13 item 5): every FITS file a reduction writes opens in astropy
with warnings as errors, and each image has a 2-D celestial WCS whose two-argument ``all_world2pix`` works.

F2 raw files are (1, N, N) cubes whose SCI header carries ``CD3_3 = 1`` (as real F2 files do, and the
simulator writes): no processed F2 image may keep that third axis. The NIRI and GNIRS workflows are checked
at the end of their end-to-end tests (test_science_e2e_niri_gnirs.py) with the same helper.
"""
from __future__ import annotations

import warnings

import pytest
from astropy.io import fits
from astropy.wcs import WCS

import draconis
from helpers.clean_open import assert_opens_cleanly


def _outputs(run):
    return sorted(p for p in run.work.rglob("*.fits") if "raw" not in p.relative_to(run.work).parts)


def test_raw_f2_cube_carries_a_third_wcs_axis(small_f2_run):
    # the premise: the raw SCI header describes three axes
    raw = small_f2_run.science[0]
    header = fits.getheader(raw, 1)
    assert header["NAXIS"] == 3 and header["CD3_3"] == 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert WCS(header).naxis == 3


def test_every_f2_output_has_a_clean_2d_wcs(small_f2_run):
    outputs = _outputs(small_f2_run)
    names = {p.name for p in outputs}
    assert {"S20200104S0075_image.fits", "S20200104S0075_stack.fits"} <= names
    assert any(n.endswith("_dark.fits") for n in names) and any(n.endswith("_flat.fits") for n in names)
    for path in outputs:
        assert assert_opens_cleanly(path) >= 1, path
        header = fits.getheader(path, "SCI")
        assert not [k for k in header if k.startswith(("CD3", "CTYPE3", "CRPIX3", "CRVAL3"))], path


def test_frames_opened_by_draconis_have_2d_headers(small_f2_run):
    frame = draconis.open(small_f2_run.science[0])
    assert "CD3_3" not in frame[0].header and frame[0].shape == (128, 128)
    assert WCS(frame[0].header).naxis == 2


@pytest.mark.parametrize("card", ["CTYPE3", "CD1_3", "PC3_3", "CRPIX3A", "PV3_1"])
def test_any_third_axis_wcs_card_is_dropped(tmp_path, card):
    data = fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data=__import__("numpy").zeros((1, 8, 8), "f4"))])
    h = data[1].header
    h.update(CTYPE1="RA---TAN", CTYPE2="DEC--TAN", CRVAL1=10.0, CRVAL2=-30.0, CRPIX1=4.0, CRPIX2=4.0,
             CD1_1=-1e-4, CD2_2=1e-4, EXTNAME="SCI", WCSAXES=3)
    h[card] = "WAVE" if card.startswith("CTYPE") else 1.0
    data.writeto(tmp_path / "cube.fits")
    header = draconis.open(tmp_path / "cube.fits")[0].header
    assert card not in header and header["WCSAXES"] == 2
