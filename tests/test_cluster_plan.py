"""The default LocalCluster sized from the machine (issue 12), on pretend machines and on this one."""
from __future__ import annotations

import logging

import dask
import pytest

from draconis.cluster_plan import WORKER_BASELINE, GiB, MiB, plan_local_cluster, reserve, useful_tile

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
