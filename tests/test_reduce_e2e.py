"""draconis reduce on simulated F2 data: darks through the CLI and the API into a configured SQLite database."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from astropy.io import fits

import draconis


def _simulate():
    try:
        from draconis.simulate.build import make_dataset
    except ImportError:
        pytest.skip("simulator not available")
    return make_dataset


def md5(path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def f2(tmp_path, monkeypatch, caldb_config):
    make_dataset = _simulate()
    raw = tmp_path / "raw"
    make_dataset("f2-deep", raw, size=64, nframes=2, seed=3)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    draconis.caldb.init()
    darks = sorted(str(p) for p in raw.glob("S20200107*.fits") if "DARK" in draconis.open(p).tags)
    return work, darks


def test_cli_darks_stored_in_database(f2):
    from draconis.cli import main

    work, darks = f2
    darks = [d for d in darks if draconis.open(d).exposure_time() == 5]
    assert Path(darks[0]).name == "S20200107S0049.fits"
    before = {p: md5(p) for p in darks}
    (work / "darks.list").write_text("\n".join(darks) + "\n")
    assert main(["reduce", "@darks.list", "--scheduler", "synchronous", "--logmode", "quiet"]) == 0
    out = work / "S20200107S0049_dark.fits"
    assert "PROCDARK" in fits.getheader(out)
    assert (work / "calibrations" / "processed_dark" / out.name).exists()
    assert [c.name for c in draconis.caldb.list_files()] == [out.name]
    assert {p: md5(p) for p in darks} == before


def test_api_darks_then_wrong_exposure_user_dark_fails_cleanly(f2):
    work, darks = f2
    r = draconis.Reduce()
    r.scheduler = "synchronous"
    r.files.extend(d for d in darks if draconis.open(d).exposure_time() == 2)
    r.runr()
    assert r.output_filenames == ["S20200107S0035_dark.fits"]
    science = sorted(str(p) for p in Path(darks[0]).parent.glob("S20200104*.fits"))
    assert science and draconis.open(science[0]).exposure_time() == 5
    before = {p: md5(p) for p in science}
    listing = sorted(p.name for p in work.rglob("*"))
    r2 = draconis.Reduce(science, recipename="ultradeep_part1", scheduler="synchronous",
                         ucals=draconis.reduce.normalize_ucals(["processed_dark:S20200107S0035_dark.fits"]))
    # darkCorrect refuses the 2 s dark on 5 s frames: a typed error naming the dark, nothing left
    # behind, inputs untouched
    with pytest.raises(draconis.DraconisError, match="S20200107S0035_dark.fits has exposure time 2 s"):
        r2.runr()
    assert sorted(p.name for p in work.rglob("*")) == listing
    assert {p: md5(p) for p in science} == before
