"""The whole science recipe on real Dask clusters gives the synchronous scheduler's outputs (issue 12 item 1).

``dask scheduler`` and ``dask worker`` processes are started from the
installed console scripts on 127.0.0.1 (free ports), in a directory other
than the client's; the F2 default recipe and the NIRI offset-sky recipe run
through ``draconis reduce --scheduler tcp://...`` and through
``draconis.Reduce``, and also on draconis' own LocalCluster. Every output
(the ``_image`` stack, the writeOutputs stack, the per-frame
``_sourcesDetected`` files with their catalogues) must equal the
synchronous run's: SCI, VAR, DQ and table columns bit for bit, headers apart
from UTC time stamps. Same with six single-thread workers on the two cores
(many workers, work stealing). "Same answer anywhere" is DESIGN principle 4.
"""
from __future__ import annotations

import sys
from pathlib import Path

import dask
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from helpers.dask_processes import scheduler_process, worker_processes
from helpers.science_runs import (
    assert_same_products,
    products,
    reduce_api,
    reduce_cli,
)


@pytest.fixture(scope="module")
def two_workers(two_dask_workers):
    return two_dask_workers


def _one_line_per_worker_count(address: str) -> int:
    from distributed import Client

    with Client(address, timeout="30s") as client:
        return len(client.scheduler_info(n_workers=-1)["workers"])


def test_f2_default_recipe_on_two_workers_and_a_local_cluster(f2_science, two_workers, tmp_path):
    ds, expected = f2_science
    assert any(name.endswith("_image.fits") for name in expected)
    assert sum(name.endswith("_sourcesDetected.fits") for name in expected) == len(ds.science)
    assert reduce_cli(ds, tmp_path / "cli", two_workers, "--logmode", "quiet") == 0
    assert_same_products(products(tmp_path / "cli"), expected, "F2, draconis reduce on 2 workers")
    with dask.config.set({"draconis.n_workers": 2, "draconis.threads_per_worker": 1}):
        reduce_api(ds, tmp_path / "local", None)
    assert_same_products(products(tmp_path / "local"), expected, "F2, Reduce on draconis' LocalCluster")


def test_niri_offset_sky_on_two_workers_and_a_local_cluster(niri_science, two_workers, tmp_path):
    ds, expected = niri_science
    stack = next(hdus for name, hdus in expected.items() if name.endswith("_image.fits"))
    assert 2 <= dict(stack[0][2].items()).get(next(k for k in stack[0][2] if k.endswith(":NCOMBINE"))) < len(ds.science)
    reduce_api(ds, tmp_path / "api", two_workers)
    assert_same_products(products(tmp_path / "api"), expected, "NIRI, Reduce on 2 workers")
    with dask.config.set({"draconis.n_workers": 2, "draconis.threads_per_worker": 1}):
        assert reduce_cli(ds, tmp_path / "local", None, "--logmode", "quiet") == 0
    assert_same_products(products(tmp_path / "local"), expected, "NIRI, draconis reduce on draconis' LocalCluster")


def test_six_single_thread_workers_on_two_cores(f2_science, niri_science, tmp_path):
    """More workers than cores: tasks move between workers (work stealing) and the answer does not change."""
    cwd = tmp_path / "workers_cwd"
    cwd.mkdir()
    with scheduler_process(cwd) as address, worker_processes(address, cwd, tmp_path / "scratch", n=6):
        assert _one_line_per_worker_count(address) == 6
        (ds, expected) = f2_science
        reduce_api(ds, tmp_path / "f2", address)
        assert_same_products(products(tmp_path / "f2"), expected, "F2, Reduce on 6 workers")
        (ds, expected) = niri_science
        assert reduce_cli(ds, tmp_path / "niri", address, "--logmode", "quiet") == 0
        assert_same_products(products(tmp_path / "niri"), expected, "NIRI, draconis reduce on 6 workers")
