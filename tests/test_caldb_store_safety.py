"""Storing processed calibrations (issue 12): permissions like any output, and no inconsistent state after a kill.

* the copies under calibrations/processed_*/ get 0666 less the umask, as outputs do;
* a ``draconis reduce`` of darks SIGKILLed right after the dark is written
  (a user recipe kills its own process) leaves a journal entry; the next
  ``draconis caldb list`` stores the dark (copy identical, row with its md5);
* a store SIGKILLed between the copy and the database row (the row method is
  replaced by a kill in a subprocess) is completed by the next run, which
  also removes the temporary copies of dead processes (not of live ones).
"""
from __future__ import annotations

import hashlib
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from astropy.io import fits

import draconis
from draconis import caldb
from draconis.caldb.testing import make_calibration
from draconis.cli import main
from draconis.errors import InputError
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


# ---------------------------------------------------------------- killed while storing
DIE_AFTER_DARK = '''
import glob
import os
import signal

from draconis.recipes.calibration import makeProcessedDark_f2


def dark_then_die(p):
    makeProcessedDark_f2(p)
    if glob.glob("*_dark.fits"):  # the real run (the runner's dry run of the recipe writes nothing)
        os.kill(os.getpid(), signal.SIGKILL)
'''

DIE_BEFORE_THE_ROW = '''
import os
import signal
import sys

from draconis import caldb
from draconis.caldb.manager import CalibrationDatabase

CalibrationDatabase.add_values = lambda self, values: os.kill(os.getpid(), signal.SIGKILL)
caldb.store_calibration(sys.argv[1], "processed_dark")
'''


def _dead_pid() -> int:
    """The pid of a process that has ended."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def _pending(where: Path) -> list[Path]:
    return sorted((where / "calibrations").rglob(".pending/*.json"))


def _parts(where: Path) -> list[Path]:
    return sorted((where / "calibrations").rglob("*.part"))


@pytest.fixture(scope="module")
def darks(tmp_path_factory) -> list[Path]:
    """Three raw F2 darks of one exposure time (64 px)."""
    from draconis.simulate import make_dataset

    where = tmp_path_factory.mktemp("raw")
    make_dataset("f2-deep", where, size=64, seed=6, nframes=1)
    files = sorted(where.glob("S*.fits"))
    dark = [p for p in files if "DARK" in draconis.open(str(p)).tags]
    exptime = draconis.open(str(dark[0])).exposure_time()
    return [p for p in dark if draconis.open(str(p)).exposure_time() == exptime][:3]


def _rows() -> list[tuple[str, str]]:
    """(path, md5) of every row of the configured database."""
    from sqlalchemy import select

    from draconis.caldb.models import Calibration

    return [(r.path, r.md5) for r in caldb.set_local_database().query(select(Calibration))]


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _names_in_database(capsys) -> list[str]:
    """Names the database has after ``draconis caldb list`` (which first completes unfinished stores)."""
    assert main(["caldb", "list"]) == 0
    return [f.name for f in caldb.list_files()]


def test_sigkill_after_the_dark_is_written_is_stored_by_the_next_caldb(darks, caldb_config, tmp_path, monkeypatch,
                                                                      capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["caldb", "init"]) == 0
    (tmp_path / "die.py").write_text(DIE_AFTER_DARK)
    run = subprocess.run([sys.executable, "-m", "draconis.cli", "reduce", *map(str, darks), "-r",
                          "die.py:dark_then_die", "--scheduler", "synchronous"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == -signal.SIGKILL, run.stderr
    (written,) = tmp_path.glob("*_dark.fits")
    assert not (tmp_path / "calibrations" / "processed_dark" / written.name).exists()
    assert len(_pending(tmp_path)) == 1  # the intent survived the kill

    assert _names_in_database(capsys) == [written.name]  # `caldb list` completed the store first
    copy = tmp_path / "calibrations" / "processed_dark" / written.name
    assert copy.read_bytes() == written.read_bytes()
    assert _rows() == [(str(copy), _md5(copy))]
    assert _pending(tmp_path) == [] and _parts(tmp_path) == []


def test_sigkill_between_copy_and_row_is_completed_by_the_next_run(caldb_config, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    caldb.init()
    dark = make_calibration(tmp_path / "N20160102S0423_dark.fits", "NIRI", "processed_dark")
    run = subprocess.run([sys.executable, "-c", DIE_BEFORE_THE_ROW, str(dark)], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == -signal.SIGKILL, run.stderr
    copy = tmp_path / "calibrations" / "processed_dark" / "N20160102S0423_dark.fits"
    assert copy.exists() and caldb.list_files() == []  # a copy no database lists
    # a temporary copy a killed process left, and one of a live process (this one) that must stay
    dead = copy.parent / f".{copy.name}.{_dead_pid()}.abcdefgh.part"
    dead.write_bytes(b"")
    live = copy.parent / f".{copy.name}.{os.getpid()}.abcdefgh.part"
    live.write_bytes(b"")

    from draconis.reduce import Reduce

    with pytest.raises(InputError, match="no such file"):  # a run that fails still completes the store first
        Reduce([str(tmp_path / "missing.fits")], scheduler="synchronous").runr()
    assert _rows() == [(str(copy), _md5(copy))]
    assert _pending(tmp_path) == [] and _parts(tmp_path) == [live]
