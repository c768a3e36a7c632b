"""Checkpoints on any storage (issue 12 item 4): an fsspec URL or another local path as the work directory.

The F2 default recipe runs with its checkpoints on ``memory://`` (fsspec's
in-memory filesystem: in-process schedulers only, as every process has its
own) and on a second local directory; the outputs equal the reference run's.
A finished run leaves nothing in its work directory unless
``--keep-checkpoints`` (then its record says "done" and the zarr checkpoints
and snapshots are there).  A ``memory://`` work directory on a cluster of
worker processes is refused before any work, with one line.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import fsspec
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from helpers.science_runs import (
    assert_same_products,
    products,
    reduce_cli,
)


def test_checkpoints_in_memory_kept_on_request(f2_science, tmp_path):
    ds, expected = f2_science
    memory = fsspec.filesystem("memory")
    url = f"memory://draconis-tests/{tmp_path.name}"
    assert reduce_cli(ds, tmp_path / "run", "synchronous", "--workdir", url, "--keep-checkpoints",
                      "--logmode", "quiet") == 0
    assert_same_products(products(tmp_path / "run"), expected, "F2 with checkpoints on memory://")
    assert not list((tmp_path / "run").glob("memory*")) and not (tmp_path / "run" / ".draconis").exists()
    (run,) = memory.ls(f"/draconis-tests/{tmp_path.name}", detail=False)
    record = json.loads(memory.cat_file(f"{run}/run.json"))
    assert record["state"] == "done"
    kept = [p.rsplit("/", 1)[-1] for p in memory.ls(run, detail=False)]
    assert "01_flushPixels" in kept and any(k.startswith("step-") for k in kept), kept
    memory.rm(f"/draconis-tests/{tmp_path.name}", recursive=True)


def test_checkpoints_on_another_local_path_removed_when_done(f2_science, tmp_path):
    ds, expected = f2_science
    other = tmp_path / "scratch-disk" / "draconis-work"
    assert reduce_cli(ds, tmp_path / "run", "synchronous", "--workdir", str(other), "--logmode", "quiet") == 0
    assert_same_products(products(tmp_path / "run"), expected, "F2 with checkpoints on another path")
    assert not other.exists() or not list(other.iterdir())
    assert not (tmp_path / "run" / ".draconis").exists()


def test_memory_workdir_on_worker_processes_is_refused(f2_science, two_dask_workers, tmp_path, capsys):
    ds, _ = f2_science
    status = reduce_cli(ds, tmp_path / "run", two_dask_workers, "--workdir", "memory://draconis-tests/cluster")
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1 and len(err) == 1, err
    assert "cannot see the working directory memory://draconis-tests/cluster" in err[0]
    assert not list((tmp_path / "run").glob("*.fits"))
