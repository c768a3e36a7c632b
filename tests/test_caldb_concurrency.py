"""Many processes adding and looking up calibrations at once lose and fail nothing."""
from __future__ import annotations

import datetime as dt
import multiprocessing
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from draconis import caldb
from draconis.caldb.testing import PostgresUnavailable, concurrency_worker, make_calibration, scratch_database

SCRIPT = Path(__file__).resolve().parents[1] / ".ci" / "postgres.sh"
N_PROCESSES = 8
PER_PROCESS = 50
N_SHARED = 4


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    try:
        with scratch_database(request.param, tmp_path, SCRIPT) as url:
            yield url
    except PostgresUnavailable as err:
        warnings.warn(f"PostgreSQL concurrency test NOT RUN: {err}")
        pytest.skip(f"WARNING: no PostgreSQL server: {err}")


@pytest.fixture(scope="module")
def calibrations(tmp_path_factory):
    """8 x 50 F2 darks, each with its own exposure time, plus a few every worker adds."""
    root = tmp_path_factory.mktemp("concurrent_cals")
    t0 = dt.datetime(2020, 1, 7, 3, 0, 0)
    batches = []
    for worker in range(N_PROCESSES):
        batch = []
        for j in range(PER_PROCESS):
            name = root / f"w{worker}_{j:02d}_dark.fits"
            when = t0 + dt.timedelta(minutes=worker * PER_PROCESS + j)
            batch.append(make_calibration(name, "F2", "processed_dark", when=when, EXPTIME=1000.0 * worker + j + 1))
        batches.append(batch)
    shared = [make_calibration(root / f"shared_{k}_dark.fits", "F2", "processed_dark", EXPTIME=0.5 + k)
              for k in range(N_SHARED)]
    return batches, shared


def test_parallel_add_and_lookup(db_url, calibrations):
    batches, shared = calibrations
    database = caldb.set_local_database(db_url)
    database.init()
    # A fresh single-threaded server process imports draconis once and forks
    # the workers: no threads are copied, and no worker pays the import again.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["draconis.caldb.testing"])
    with ProcessPoolExecutor(max_workers=N_PROCESSES, mp_context=context) as pool:
        futures = [pool.submit(concurrency_worker, db_url, batch, shared) for batch in batches]
        results = [f.result(timeout=120) for f in futures]
    errors = [e for r in results for e in r["errors"]]
    wrong = [w for r in results for w in r["wrong"]]
    assert errors == [], errors[:5]
    assert wrong == [], wrong[:5]
    assert sum(r["added"] for r in results) == N_PROCESSES * PER_PROCESS
    assert sum(r["found"] for r in results) == N_PROCESSES * PER_PROCESS
    listed = database.list_files()
    paths = [f.path for f in listed]
    assert len(paths) == len(set(paths)) == N_PROCESSES * PER_PROCESS + N_SHARED


def test_threads_share_one_database_object(db_url, calibrations):
    batches, shared = calibrations
    database = caldb.set_local_database(db_url)
    database.init()
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda batch: concurrency_worker(db_url, batch[:15], shared), batches[:4]))
    assert [r["errors"] for r in results] == [[]] * 4
    assert sum(r["found"] for r in results) == 60
    shared_added = {(i // 5) % N_SHARED for i in range(0, 15, 5)}
    assert len(database.list_files()) == 60 + len(shared_added)
