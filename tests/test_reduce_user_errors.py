"""User errors of ``draconis reduce`` found in issue 12: one line each, naming the problem, before any work.

* ``-p detectSources:detect_thresh=inf`` (and nan): refused with the range;
* a raw file without EXPTIME, when a dark is looked up: the message names
  exposure_time and EXPTIME (not only "no processed_dark found");
* a directory given as input: "is a directory" (a zarr checkpoint, which is a
  directory, is still read);
* ``--suffix ""``: refused (it would name outputs like their inputs).
"""
from __future__ import annotations

from pathlib import Path

import pytest
from astropy.io import fits

import draconis
from draconis.cli import main


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> list[Path]:
    """Two simulated raw F2 science frames (64 px)."""
    from draconis.simulate import make_dataset

    where = tmp_path_factory.mktemp("raw")
    make_dataset("f2-deep", where, size=64, seed=5, nframes=2)
    return sorted(where.glob("S20200104S00*.fits"))[:2]


def _one_line_error(capsys, *args) -> str:
    assert main(["reduce", *args, "--scheduler", "synchronous", "--logfile", ""]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("draconis reduce: error: "), err
    return err[0]


@pytest.mark.parametrize("value", ["inf", "nan", "-inf"])
def test_infinite_or_nan_threshold_is_refused(value, raw, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    line = _one_line_error(capsys, *map(str, raw), "-p", f"detectSources:detect_thresh={value}")
    assert f"detect_thresh: {value} is outside the valid range [0.1,inf)" in line
    assert list(tmp_path.iterdir()) == []


def test_missing_exptime_is_named_when_a_dark_is_looked_up(raw, tmp_path, monkeypatch, capsys, caldb_config):
    monkeypatch.chdir(tmp_path)
    assert main(["caldb", "init"]) == 0
    copies = []
    for src in raw:
        with fits.open(src) as hdul:
            del hdul[0].header["EXPTIME"]
            hdul.writeto(tmp_path / src.name)
        copies.append(str(tmp_path / src.name))
    line = _one_line_error(capsys, *copies)
    assert "no processed_dark found" in line and "exposure_time" in line and "EXPTIME" in line


def test_directory_input_says_it_is_a_directory(raw, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "adir").mkdir()
    line = _one_line_error(capsys, "adir", *map(str, raw))
    assert "adir: is a directory, not a FITS file" in line
    line = _one_line_error(capsys, "gone.zarr")
    assert "gone.zarr: no such file or directory" in line


def test_zarr_checkpoint_directory_is_still_read(raw, tmp_path):
    from draconis.io import open_frame, write_zarr

    store = write_zarr(draconis.open(str(raw[0])), tmp_path / "frame.zarr")
    assert open_frame(store).filename == raw[0].name


@pytest.mark.parametrize("suffix", ["", "  ", "/x"])
def test_empty_suffix_is_refused(suffix, raw, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    line = _one_line_error(capsys, *map(str, raw), "--suffix", suffix)
    assert "--suffix" in line and ("cannot be empty" in line or "cannot contain" in line)
