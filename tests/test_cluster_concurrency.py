"""Two runs never collide (issue 12 item 5).

* Two reductions of the same inputs started at once in the same directory
  both run to the end: each has its own run directory (checkpoints,
  snapshots, record) and neither removes the other's (a run removes only
  the directories of runs whose process is dead); outputs are written
  atomically (temporary name, then rename), so the last writer wins with
  identical content. Neither waits nor refuses. A barrier in both processes
  at the sky flush makes sure they are running at the same time.
* Two reductions in different directories share one calibration database
  (SQLite, and PostgreSQL — started by .ci/postgres.sh, or
  DRACONIS_TEST_POSTGRES_URL): both darks are stored and found, nothing is
  lost. A barrier at storeProcessedDark makes them store together.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import draconis
from draconis import caldb
from draconis.caldb.testing import PostgresUnavailable, scratch_database

sys.path.insert(0, str(Path(__file__).parent))
from helpers.science_runs import assert_same_products, dataset, products, reference

LAUNCHER = Path(__file__).parent / "helpers" / "reduce_until.py"
SCRIPT = Path(__file__).resolve().parents[1] / ".ci" / "postgres.sh"


def _start(args: list[str], cwd: Path, log: str, *point: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([sys.executable, str(LAUNCHER), *point, "--", *args, "--logfile", log,
                             "--scheduler", "synchronous"],
                            cwd=cwd, env={**os.environ, "HOME": str(cwd), **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(procs: list[subprocess.Popen]) -> list[str]:
    errs = []
    for proc in procs:
        _, err = proc.communicate(timeout=900)
        errs.append(err)
    for proc, err in zip(procs, errs):
        assert proc.returncode == 0, err[-3000:]
    return errs


def test_two_runs_of_the_same_inputs_at_once_in_one_directory(f2_science, tmp_path):
    ds, expected = f2_science
    work, barrier = tmp_path / "run", tmp_path / "barrier"
    barrier.mkdir()
    point = ("--step", "flushPixels#2", "--barrier", f"{barrier}:2")
    _finish([_start(ds.cli_args(), work, f"reduce-{i}.log", *point) for i in range(2)])
    logs = [(work / f"reduce-{i}.log").read_text() for i in range(2)]
    dirs = [set(re.findall(r"/\.draconis/(run-\w+)/", text)) for text in logs]
    assert all(len(d) == 1 for d in dirs) and dirs[0] != dirs[1], dirs
    assert not any("Removed run-" in text for text in logs)
    assert_same_products(products(work), expected, "F2, two runs at once in one directory")
    assert not list((work / ".draconis").iterdir()) if (work / ".draconis").exists() else True
    assert not list(work.glob("*.tmp*")) and not list(work.glob(".*.bak"))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def shared_db(request, tmp_path):
    try:
        with scratch_database(request.param, tmp_path, SCRIPT) as url:
            yield url
    except PostgresUnavailable as err:
        warnings.warn(f"PostgreSQL shared-database test NOT RUN: {err}")
        pytest.skip(f"WARNING: no PostgreSQL server: {err}")


def test_two_directories_share_one_calibration_database(f2_science, shared_db, tmp_path):
    ds, _ = f2_science
    raw = sorted(str(p) for p in (ds.work / "raw").glob("*.fits"))
    darks = [p for p in raw if "DARK" in draconis.open(p).tags]
    by_time: dict[float, list[str]] = {}
    for path in darks:
        by_time.setdefault(round(draconis.open(path).exposure_time(), 2), []).append(path)
    assert len(by_time) >= 2
    groups = [files for _, files in sorted(by_time.items())][:2]
    rc = tmp_path / "draconisrc"
    rc.write_text(f"[calibs]\ndatabases = {shared_db} get store\n")
    database = caldb.set_local_database(shared_db)
    database.init()
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    point = ("--step", "storeProcessedDark#1", "--barrier", f"{barrier}:2")
    _finish([_start(files, tmp_path / f"dir{i}", "reduce.log", *point, env={"DRACONISRC": str(rc)})
             for i, files in enumerate(groups)])
    outputs = [next((tmp_path / f"dir{i}").glob("*_dark.fits")) for i in range(2)]
    listed = {os.path.basename(f.path) for f in database.list_files()}
    assert {p.name for p in outputs} <= listed, listed
    for path, files in zip(outputs, groups):
        found = caldb.get_calibration(files[0], "processed_dark", config=str(rc))
        assert found is not None and os.path.basename(found) == path.name
