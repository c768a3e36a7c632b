"""A lost worker costs nothing; a worker over its memory budget is named as such (issue 12 item 2).

On ``dask scheduler`` + two ``dask worker`` processes (with nannies), the F2
default recipe runs through ``draconis.Reduce`` while a worker process is
SIGKILLed in the middle of the sky step (the third task that starts during
the flushPixels that computes the sky subtraction) and another in the middle
of the stack (the third task of writeOutputs, which computes the stack): the
outputs equal the synchronous run's and the log says, twice, that a worker
was lost and its work run again.  The kill is triggered by a worker plugin
when a task starts, not by a timer.

A worker whose memory limit (220 MiB) is below what a task needs is
restarted by its nanny; with ``allowed-failures`` 0 the run stops at once
with one line naming the primitive, the task and the budget.  (A fresh
worker holds ~70 MiB, ~160 MiB once draconis is imported for the run's
path check; the first calibration task brings in the primitives and their
libraries, ~290 MiB: over the budget however small the data.)
"""
from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from helpers.dask_processes import scheduler_process, worker_processes
from helpers.faults import SignalOnTask, during_step, plugin_on_workers
from helpers.science_runs import (
    assert_same_products,
    products,
    reduce_api,
    reduce_cli,
)


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture
def draconis_log():
    handler = _Collect()
    logger = logging.getLogger("draconis")
    logger.addHandler(handler)
    yield handler.messages
    logger.removeHandler(handler)


def test_workers_killed_during_the_sky_and_the_stack_cost_nothing(f2_science, two_dask_workers, tmp_path, monkeypatch,
                                                                  draconis_log):
    ds, expected = f2_science
    sky, stack = str(tmp_path / "killed-in-sky"), str(tmp_path / "killed-in-stack")
    during_step(monkeypatch, "flushPixels", 2, lambda: plugin_on_workers(SignalOnTask(sky, nth=3), "kill-in-sky"))
    during_step(monkeypatch, "writeOutputs", 1, lambda: plugin_on_workers(SignalOnTask(stack, nth=3), "kill-in-stack"))
    reduce_api(ds, tmp_path / "run", two_dask_workers)
    assert Path(sky).exists() and Path(stack).exists(), "a worker was not killed"
    assert_same_products(products(tmp_path / "run"), expected, "F2 on 2 workers, one killed in the sky, one in the stack")
    lost = [m for m in draconis_log if re.search(r"Dask worker \S+ was lost .* runs that work again", m)]
    assert len(lost) == 2, draconis_log
    assert all(int(re.search(r"was running (\d+) task", m).group(1)) >= 1 for m in lost), lost


def test_a_worker_over_its_memory_budget_is_named_as_such(f2_science, tmp_path, capsys):
    ds, _ = f2_science
    cwd = tmp_path / "workers_cwd"
    cwd.mkdir()
    no_spill = {"DASK_DISTRIBUTED__WORKER__MEMORY__PAUSE": "False", "DASK_DISTRIBUTED__WORKER__MEMORY__SPILL": "False",
                "DASK_DISTRIBUTED__WORKER__MEMORY__TARGET": "False"}
    with scheduler_process(cwd, env={"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0"}) as address, \
            worker_processes(address, cwd, tmp_path / "scratch", args=["--memory-limit", "220MiB"], env=no_spill):
        status = reduce_cli(ds, tmp_path / "run", address)
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1
    assert len(err) == 1, err
    assert re.search(r"error: (\w+): a \S+ task needs more memory than a Dask worker's budget of 220\.00 MiB", err[0]), err
    step = re.search(r"error: (\w+):", err[0]).group(1)
    assert step in {"prepare", "addDQ", "ADUToElectrons", "addVAR", "nonlinearityCorrect", "darkCorrect",
                    "flatCorrect", "flushPixels"}, err
    assert not list((tmp_path / "run").glob("*.fits"))


def _over_budget() -> float:
    import time

    import numpy as np

    held = np.ones(int(600e6) // 8)  # 600 MB: over the 400 MiB worker's budget, the nanny kills it
    time.sleep(5)
    return float(held[0])


def test_a_local_cluster_restarts_a_worker_killed_over_its_budget_during_a_run():
    """draconis' own LocalCluster (its nannies in this process) gets a killed worker back while a run computes.

    A nanny starting the new worker process pickles dask's global config, where the run's counting
    scheduler sits; a closure there made every restart fail, so the cluster lost that worker for good.
    """
    import pickle

    import dask
    import distributed

    from draconis.cluster import execution

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
            distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, memory_limit="400MiB",
                                     dashboard_address=None) as cluster, \
            distributed.Client(cluster, set_as_default=False) as client, execution(cluster.scheduler_address):
        pickle.dumps(dask.config.global_config)  # what the nanny sends to the new worker process
        with pytest.raises(distributed.KilledWorker):
            client.submit(_over_budget, pure=False).result(timeout=120)
        # only a restarted worker can run this
        assert client.submit(sum, [1, 2], pure=False).result(timeout=120) == 3
