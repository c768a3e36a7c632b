"""``draconis caldb`` from the command line, and its errors: one line, non-zero exit, nothing half-written."""
from __future__ import annotations

import os
import socket
import warnings
from pathlib import Path

import pytest

from draconis.caldb.testing import PostgresUnavailable, make_calibration, make_frame, scratch_database
from draconis.cli import main

SCRIPT = Path(__file__).resolve().parents[1] / ".ci" / "postgres.sh"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def setup(request, tmp_path, monkeypatch):
    """A work directory and a draconisrc naming a not-yet-initialised database (get store)."""
    try:
        with scratch_database(request.param, tmp_path, SCRIPT) as url:
            rc = tmp_path / "draconisrc"
            rc.write_text(f"[calibs]\ndatabases = {url} get store\n")
            monkeypatch.setenv("DRACONISRC", str(rc))
            monkeypatch.delenv("DRAGONSRC", raising=False)
            work = tmp_path / "playground"
            work.mkdir()
            monkeypatch.chdir(work)
            yield work, url
    except PostgresUnavailable as err:
        warnings.warn(f"PostgreSQL caldb CLI tests NOT RUN: {err}")
        pytest.skip(f"WARNING: no PostgreSQL server: {err}")


def run(capsys, *args):
    status = main(["caldb", *args])
    out, err = capsys.readouterr()
    return status, out, err


def test_seed_workflow(setup, capsys):
    work, _ = setup
    assert run(capsys, "init")[0] == 0
    status, _, err = run(capsys, "init")
    assert status == 1 and "already exists" in err and len(err.strip().splitlines()) == 1
    make_calibration(work / "N20120102S0538_dark.fits", "GNIRS", "processed_dark")
    make_calibration(work / "N20120117S0034_flat.fits", "GNIRS", "processed_flat")
    assert run(capsys, "add", "N20120102S0538_dark.fits")[0] == 0
    status, out, _ = run(capsys, "add", "-v", "N20120117S0034_flat.fits")
    assert status == 0 and "processed_flat" in out
    status, out, _ = run(capsys, "list")
    lines = sorted(out.splitlines())
    assert status == 0 and len(lines) == 2
    assert lines[0].split() == ["N20120102S0538_dark.fits", str(work)]
    assert run(capsys, "remove", "N20120102S0538_dark.fits")[0] == 0
    assert (work / "N20120102S0538_dark.fits").exists()
    status, out, _ = run(capsys, "list")
    assert [line.split()[0] for line in out.splitlines()] == ["N20120117S0034_flat.fits"]
    status, _, err = run(capsys, "remove", "N20120102S0538_dark.fits")
    assert status == 1 and "not in the calibration database" in err
    status, _, _ = run(capsys, "init", "--wipe")
    assert status == 0 and run(capsys, "list")[1] == ""


def test_add_walk_skips_raw_frames(setup, capsys):
    work, _ = setup
    run(capsys, "init")
    sub = work / "calibrations" / "processed_dark"
    sub.mkdir(parents=True)
    make_calibration(sub / "a_dark.fits", "F2", "processed_dark")
    make_frame(sub / "raw.fits", "F2")
    status, _, err = run(capsys, "add", "calibrations")
    assert status == 1 and "-k/--walk" in err
    status, _, err = run(capsys, "add", "-k", "calibrations")
    assert status == 0, err
    assert [line.split()[0] for line in run(capsys, "list")[1].splitlines()] == ["a_dark.fits"]


def test_named_raw_frame_is_refused_with_its_name(setup, capsys):
    work, _ = setup
    run(capsys, "init")
    make_frame(work / "S20200107S0035.fits", "F2")
    make_calibration(work / "good_dark.fits", "F2", "processed_dark")
    status, _, err = run(capsys, "add", "S20200107S0035.fits", "good_dark.fits")
    assert status == 1
    assert "S20200107S0035.fits: not a processed calibration" in err and len(err.strip().splitlines()) == 1
    assert [line.split()[0] for line in run(capsys, "list")[1].splitlines()] == ["good_dark.fits"]


def test_options_before_or_after_the_action(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DRACONISRC", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    db = tmp_path / "other.db"
    assert run(capsys, "-d", str(db), "init")[0] == 0
    assert db.is_file()
    rc = tmp_path / "rc"
    rc.write_text(f"[calibs]\ndatabases = {tmp_path} get store\n")
    assert run(capsys, "init", "--config", str(rc))[0] == 0
    assert (tmp_path / "cal_manager.db").is_file()
    status, out, _ = run(capsys, "config", "-c", str(rc))
    assert status == 0 and str(rc) in out and "cal_manager.db" in out and "get store" in out


# -- errors ----------------------------------------------------------------------------
def _write_rc(tmp_path, monkeypatch, location):
    rc = tmp_path / "rc"
    rc.write_text(f"[calibs]\ndatabases = {location} get store\n")
    monkeypatch.setenv("DRACONISRC", str(rc))
    return rc


def _one_line_error(status, err, *needles):
    assert status == 1
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("draconis caldb: error: ")
    for needle in needles:
        assert needle in err


def test_unwritable_location(tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("x")
    _write_rc(tmp_path, monkeypatch, f"{blocker}/cal.db")
    status, _, err = run(capsys, "init")
    _one_line_error(status, err, f"{blocker}/cal.db", "does not exist")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        _write_rc(tmp_path, monkeypatch, f"{locked}/cal.db")
        status, _, err = run(capsys, "init")
        if os.access(locked, os.W_OK):  # root writes anyway: the init simply works
            assert status == 0
        else:
            _one_line_error(status, err, f"{locked}/cal.db", "not writable")
            assert os.listdir(locked) == []
    finally:
        locked.chmod(0o700)
    # a location nobody (not even root) can create files in
    _write_rc(tmp_path, monkeypatch, "/proc/draconis_cal.db")
    status, _, err = run(capsys, "init")
    _one_line_error(status, err, "/proc/draconis_cal.db", "cannot create the calibration database")


def test_missing_database_without_init(tmp_path, capsys, monkeypatch):
    _write_rc(tmp_path, monkeypatch, tmp_path / "never.db")
    make_calibration(tmp_path / "d_dark.fits", "F2", "processed_dark")
    for args in (("list",), ("add", str(tmp_path / "d_dark.fits")), ("remove", "d_dark.fits")):
        status, _, err = run(capsys, *args)
        _one_line_error(status, err, str(tmp_path / "never.db"), "caldb init")
    assert not (tmp_path / "never.db").exists(), "a failed command must not create the database"


def test_unreachable_database_url(tmp_path, capsys, monkeypatch):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"postgresql+psycopg2://nobody@127.0.0.1:{port}/cals"
    _write_rc(tmp_path, monkeypatch, url)
    status, _, err = run(capsys, "init")
    _one_line_error(status, err, f"127.0.0.1:{port}/cals", "cannot connect")
    status, _, err = run(capsys, "list")
    _one_line_error(status, err, "cannot connect")


def test_bad_url_scheme(tmp_path, capsys, monkeypatch):
    _write_rc(tmp_path, monkeypatch, "nosuchdb://x/y")
    status, _, err = run(capsys, "init")
    _one_line_error(status, err, "nosuchdb://x/y", "not a usable database URL")


def test_fits_file_without_needed_descriptors(tmp_path, capsys, monkeypatch):
    _write_rc(tmp_path, monkeypatch, tmp_path / "cal.db")
    assert run(capsys, "init")[0] == 0
    make_calibration(tmp_path / "nodate_dark.fits", "F2", "processed_dark", **{"DATE-OBS": None, "TIME-OBS": None})
    make_calibration(tmp_path / "noexp_dark.fits", "NIRI", "processed_dark", EXPTIME=None)
    (tmp_path / "junk.fits").write_bytes(b"not fits at all")
    for name, needle in (("nodate_dark.fits", "observation time"), ("noexp_dark.fits", "exposure_time"),
                         ("junk.fits", "junk.fits")):
        status, _, err = run(capsys, "add", str(tmp_path / name))
        _one_line_error(status, err, name, needle)
    assert run(capsys, "list")[1] == ""


def test_unknown_flag_in_configuration(tmp_path, capsys, monkeypatch):
    rc = tmp_path / "rc"
    rc.write_text(f"[calibs]\ndatabases = {tmp_path}/cal.db get stor\n")
    monkeypatch.setenv("DRACONISRC", str(rc))
    status, _, err = run(capsys, "init")
    _one_line_error(status, err, str(rc), "stor")
    assert not (tmp_path / "cal.db").exists()


def test_no_database_configured(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("DRACONISRC", raising=False)
    monkeypatch.delenv("DRAGONSRC", raising=False)
    status, _, err = run(capsys, "list")
    _one_line_error(status, err, "no local calibration database configured")
