"""Suite-wide isolation: no test sees the calibration database another test chose."""
from __future__ import annotations

import pytest

# the fixtures that run primitives through the real RunContext
from draconis.testing import module_run_primitive, run_primitive  # noqa: F401


@pytest.fixture(autouse=True)
def _forget_current_calibration_database():
    # caldb.set_local_database() remembers its choice for the module-level
    # API (as DRAGONS' cal_service does); a database a caldb test dropped must
    # not answer the calibration look-ups of the next test.
    yield
    import draconis.caldb

    draconis.caldb._current = None


@pytest.fixture
def caldb_config(tmp_path, monkeypatch):
    """A draconisrc of this test only (SQLite file under tmp_path, get and store), HOME moved to tmp_path."""
    monkeypatch.setenv("HOME", str(tmp_path))
    rc = tmp_path / "draconisrc"
    rc.write_text(f"[calibs]\ndatabases = {tmp_path / 'cal.db'} get store\n")
    monkeypatch.setenv("DRACONISRC", str(rc))
    return rc


@pytest.fixture(scope="session")
def small_f2_run(tmp_path_factory):
    """A real small F2 reduction (tests/helpers/small_run.py), made once for the run-record and report tests."""
    from helpers.small_run import make_small_run

    return make_small_run(tmp_path_factory.mktemp("small_f2_run"))


def _science(name, tmp_path_factory):
    from helpers.science_runs import dataset, reference

    base = tmp_path_factory.getbasetemp()
    ds = dataset(name, base)
    return ds, reference(ds, base)


@pytest.fixture(scope="session")
def f2_science(tmp_path_factory):
    """The cluster tests' F2 dataset (tests/helpers/science_runs.py) and its synchronous reference products."""
    return _science("f2", tmp_path_factory)


@pytest.fixture(scope="session")
def niri_science(tmp_path_factory):
    """The cluster tests' NIRI offset-sky dataset and its synchronous reference products."""
    return _science("niri", tmp_path_factory)


@pytest.fixture(scope="session")
def two_dask_workers(tmp_path_factory):
    """``dask scheduler`` + two single-thread ``dask worker`` processes (with nannies) on 127.0.0.1.

    Started once per session from the installed console scripts, in a
    directory of their own (not the client's); shared by the cluster tests.
    """
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from helpers.dask_processes import scheduler_process, worker_processes

    cwd = tmp_path_factory.mktemp("workers_cwd")
    with scheduler_process(cwd) as address, worker_processes(address, cwd, tmp_path_factory.mktemp("scratch"), n=2):
        yield address
