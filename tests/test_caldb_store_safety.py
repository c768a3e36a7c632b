"""Storing processed calibrations (issue 12): permissions like any output, and no inconsistent state after a kill."""
from __future__ import annotations

import os
import stat

import pytest
from astropy.io import fits

from draconis import caldb
from draconis.caldb.testing import make_calibration
from draconis.io.fits import write_hdulist_atomic


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture(params=[0o022, 0o027], ids=["umask022", "umask027"])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def test_calibration_copies_get_the_umask_like_outputs(umask, caldb_config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    caldb.init()
    dark = make_calibration(tmp_path / "N20160102S0423_dark.fits", "NIRI", "processed_dark")
    (stored,) = caldb.store_calibration(dark, "processed_dark")
    output = write_hdulist_atomic(fits.HDUList([fits.PrimaryHDU()]), tmp_path / "out.fits")
    assert _mode(stored) == _mode(output) == 0o666 & ~umask
