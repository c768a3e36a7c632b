"""The default LocalCluster sized from the machine (issue 12), on pretend machines and on this one.

A run on a cluster plans its tasks for that cluster's workers instead.
"""
from __future__ import annotations

import logging

import dask
import pytest

from draconis.cluster_plan import WORKER_BASELINE, GiB, MiB, machine_plan, plan_local_cluster, reserve, useful_tile

GB = 10 ** 9


@pytest.mark.parametrize("cores, memory, workers, threads", [
    (8, 16 * GB, 8, 1),      # a laptop: every core, ~1.6 GiB each (not 8 x 4 GiB = 32 GiB)
    (2, 24 * GB, 2, 1),      # few cores, much memory: large workers
    (64, 256 * GB, 64, 1),   # a big node
    (1, 2 * GB, 1, 1),       # a tiny VM: one worker, whatever is left
    (16, 8 * GB, 4, 4),      # many cores, little memory: fewer, larger workers, every core used
])
def test_plan_never_promises_more_than_the_machine(cores, memory, workers, threads):
    plan = plan_local_cluster(memory, cores)
    assert (plan.n_workers, plan.threads_per_worker) == (workers, threads)
    assert plan.n_workers * plan.memory_limit <= memory - reserve(memory)
    assert plan.n_workers * plan.threads_per_worker <= cores
    if memory - reserve(memory) >= WORKER_BASELINE + useful_tile():
        assert plan.memory_limit >= WORKER_BASELINE + useful_tile()
    assert f"{plan.n_workers} worker" in plan.describe()


def test_reserve_for_the_system_and_the_client_is_bounded():
    assert reserve(2 * GB) == 1 * GiB
    assert reserve(16 * GB) == pytest.approx(0.15 * 16 * GB, rel=1e-6)
    assert reserve(1024 * GB) == 8 * GiB


def test_configuration_wins():
    plan = plan_local_cluster(16 * GB, 8, n_workers=3, threads_per_worker=2, memory_limit="2GiB")
    assert (plan.n_workers, plan.threads_per_worker, plan.memory_limit) == (3, 2, 2 * GiB)
    plan = plan_local_cluster(16 * GB, 8, memory_limit="4GiB")  # workers that fit, cores shared among them
    assert (plan.n_workers, plan.threads_per_worker, plan.memory_limit) == (3, 2, 4 * GiB)


def test_tile_is_the_stack_combine_budget():
    assert useful_tile() == 1 * GiB  # stackFrames' declared memory default
    assert plan_local_cluster(16 * GB, 8, tile=4 * GiB).n_workers == 2


def test_every_run_logs_its_plan(tmp_path, monkeypatch):
    """A real LocalCluster from the plan: the log line names workers x threads x memory and the dashboard."""
    from draconis.cluster import execution

    records: list[logging.LogRecord] = []
    handler = logging.Handler(level=logging.INFO)
    handler.emit = records.append
    logger = logging.getLogger("draconis")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        with dask.config.set({"draconis.n_workers": 1, "draconis.memory_limit": "700MiB"}), execution(None) as client:
            info = client.scheduler_info(n_workers=-1)["workers"]
            assert [w["memory_limit"] for w in info.values()] == [700 * MiB]
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    said = [r.getMessage() for r in records]
    assert any("LocalCluster of 1 worker x" in m and "700.00 MiB" in m for m in said), said
    assert any("workers 1 x" in m and "dashboard http" in m for m in said), said


#: No draconis.n_workers / threads_per_worker / memory_limit set (whatever draconis.yaml or the environment says).
UNSET = {"n_workers": None, "threads_per_worker": None, "memory_limit": None}


def test_plan_from_a_clusters_workers():
    """Given the workers a cluster has: their number, the smallest memory limit, the fewest threads."""
    workers = {"tcp://a:1": {"threads": 2, "memory_limit": 3 * GiB},
               "tcp://b:1": {"threads": 1, "memory_limit": 700 * MiB},
               "tcp://c:1": {"threads": 1, "memory_limit": 900 * MiB}}
    plan = machine_plan(UNSET, workers)
    assert (plan.n_workers, plan.threads_per_worker, plan.memory_limit) == (3, 1, 700 * MiB)
    assert "the cluster's 3 workers" in plan.reason and "smallest" in plan.reason
    # a worker without a memory limit counts for this machine's share among that many workers
    share = machine_plan({**UNSET, "n_workers": 2}).memory_limit
    unlimited = {"tcp://a:1": {"threads": 1, "memory_limit": 0}, "tcp://b:1": {"threads": 1, "memory_limit": None}}
    assert machine_plan(UNSET, unlimited).memory_limit == share
    mixed = machine_plan(UNSET, {**workers, "tcp://d:1": {"threads": 1, "memory_limit": None}})
    assert mixed.memory_limit == min(700 * MiB, machine_plan({**UNSET, "n_workers": 4}).memory_limit)
    # settings win, each on its own
    assert machine_plan({**UNSET, "memory_limit": "2GiB"}, workers).memory_limit == 2 * GiB
    five = machine_plan({**UNSET, "n_workers": 5}, workers)
    assert (five.n_workers, five.memory_limit) == (5, 700 * MiB)
    # no workers (none joined yet, or no cluster): this machine's plan
    assert machine_plan(UNSET, {}) == machine_plan(UNSET)


@pytest.fixture
def cluster_of_700mib_workers():
    """A real LocalCluster of two worker processes of 700 MiB each (not what this machine's plan gives)."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, memory_limit="700MiB", processes=True,
                                  dashboard_address=":0") as cluster:
        yield cluster


@pytest.mark.timeout(300)  # a hang guard only
def test_a_run_plans_its_tasks_for_the_workers_of_its_cluster(cluster_of_700mib_workers, tmp_path):
    """RunContext.workers() on a cluster given by address: 2 x 700 MiB, not this machine's plan; settings win."""
    from draconis.cluster import execution
    from draconis.reduce.context import RunContext

    ctx = RunContext(workdir=tmp_path)
    try:
        with dask.config.set({f"draconis.{key}": None for key in UNSET}):
            local = machine_plan()
            assert local.memory_limit != 700 * MiB  # else this test shows nothing
            assert ctx.workers() == (local.n_workers, local.memory_limit)  # no client: this machine's plan
            with execution(cluster_of_700mib_workers.scheduler_address):
                assert ctx.workers() == (2, 700 * MiB)
                with dask.config.set({"draconis.memory_limit": "1GiB"}):
                    assert ctx.workers() == (2, 1 * GiB)
                with dask.config.set({"draconis.n_workers": 3}):
                    assert ctx.workers() == (3, 700 * MiB)
            with execution("synchronous"):
                assert ctx.workers() == (local.n_workers, local.memory_limit)
    finally:
        ctx.close()
