"""Same outputs with the synchronous scheduler, a LocalCluster and separate scheduler/worker processes."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import dask
import numpy as np
import pytest
from astropy.io import fits

from draconis.reduce import Reduce

sys.path.insert(0, str(Path(__file__).parent))
from test_reduce import F2_DARK, make_file  # noqa: E402

pytestmark = pytest.mark.skipif(not F2_DARK.exists(), reason="real header dumps not available")
DASK = Path(sys.executable).with_name("dask")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _reduce(directory: Path, scheduler: str | None) -> np.ndarray:
    os.chdir(directory)
    files = [str(make_file(F2_DARK, directory / f"S2020010{7 + i}S0049.fits", seed=i, n=48)) for i in range(3)]
    out = Reduce(files, scheduler=scheduler).runr()
    with fits.open(directory / out[0]) as hdul:
        return np.stack([hdul["SCI"].data, hdul["VAR"].data, hdul["DQ"].data.astype(np.float32)])


@pytest.fixture
def scheduler_processes(tmp_path):
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    procs = [subprocess.Popen([str(DASK), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--dashboard-address", ":0"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env=env)]
    time.sleep(2)
    procs.append(subprocess.Popen([str(DASK), "worker", address, "--nthreads", "1", "--nworkers", "1",
                                   "--no-dashboard", "--local-directory", str(tmp_path / "worker")],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env))
    from distributed import Client

    with Client(address, timeout="30s") as client:
        client.wait_for_workers(1, timeout=60)
    yield address
    for proc in reversed(procs):
        proc.terminate()
        proc.wait(timeout=30)


def test_same_output_on_every_scheduler(tmp_path, monkeypatch, scheduler_processes):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    results = {}
    for name, scheduler in [("sync", "synchronous"), ("local", None), ("remote", scheduler_processes)]:
        directory = tmp_path / name
        directory.mkdir()
        with dask.config.set({"draconis.n_workers": 1, "draconis.threads_per_worker": 1}):
            results[name] = _reduce(directory, scheduler)
    np.testing.assert_allclose(results["local"], results["sync"], rtol=1e-6)
    np.testing.assert_allclose(results["remote"], results["sync"], rtol=1e-6)
    assert np.isfinite(results["sync"]).all() and results["sync"][0].std() > 0


def _loaded(name: str) -> bool:
    return name in sys.modules


def test_workers_import_ahead_what_the_recipe_needs():
    """A run's workers import its tasks' modules (photutils for detection) before a task needs them."""
    distributed = pytest.importorskip("distributed")
    from draconis.cluster import warm_workers
    from draconis.primitives.registry import worker_imports
    from draconis.recipes import calibration, image_f2
    from draconis.recipes.caller import record

    science = worker_imports(call.name for call in record(image_f2.reduce))
    assert {"draconis.primitives.detect", "photutils.segmentation", "photutils.background"} <= set(science)
    dark = worker_imports(call.name for call in record(calibration.makeProcessedDark_f2))
    assert "draconis.primitives.prepare" in dark and not any(m.startswith("photutils") for m in dark)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) \
            as cluster, distributed.Client(cluster) as client:
        assert not any(client.run(_loaded, "photutils.segmentation").values())
        with warm_workers(client, ("no_such_module_here", "photutils.segmentation")) as warming:
            # each worker's one task slot runs the import first, then this check
            checks = {address: client.submit(_loaded, "photutils.segmentation", workers=[address],
                                             allow_other_workers=False, pure=False) for address in client.nthreads()}
            assert len(checks) == 2 and all(f.result(timeout=300) for f in checks.values())
            # a module that fails is named, not raised: the task that needs it reports it
            assert [f.result(timeout=300) for f in warming] == [["no_such_module_here"]] * 2


def _saturation(client) -> float:
    return client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.WORKER_SATURATION)


def test_schedulers_send_a_worker_one_sky_band_at_a_time_or_say_so(scheduler_processes, caplog):
    """The LocalCluster draconis starts runs with worker-saturation 1.0; a user's scheduler with more is named.

    With more, a worker is sent its next sky band while making one and can spill (docs/distributed-runs.md).
    """
    import logging

    from draconis.cluster import execution

    with caplog.at_level(logging.WARNING, logger="draconis"):
        with dask.config.set({"draconis.n_workers": 1, "draconis.threads_per_worker": 1}), \
                execution(None) as client:
            assert _saturation(client) == 1.0
        assert "worker-saturation" not in caplog.text
        with execution(scheduler_processes) as client:  # a `dask scheduler` with distributed's defaults
            assert _saturation(client) > 1.0
    assert f"the scheduler at {scheduler_processes} has worker-saturation 1.1" in caplog.text
    assert "DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION=1" in caplog.text
