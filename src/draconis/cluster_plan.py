"""How big the default LocalCluster is: workers, threads and memory from the machine.

One worker per core with a fixed budget each overcommits small machines (8
cores x 4 GiB on a 16 GB laptop promises 32 GiB, and the operating system,
not Dask, ends the run).  The plan instead starts from the memory the
machine has (cgroup limits included, as Dask measures it), keeps some for
the operating system and the client process, and makes as many workers as
there are cores only while each still gets a worker's baseline plus one
useful tile; otherwise fewer, larger workers, with more threads each so
every core is used.  A run that computes on a cluster plans its tasks for
the workers that cluster has instead (:func:`machine_plan` given them).
Values set in the configuration (``draconis.n_workers``,
``threads_per_worker``, ``memory_limit``) win.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import dask.utils

GiB = 1024 ** 3
MiB = 1024 ** 2
#: Resident memory of an idle worker process with NumPy, Astropy and draconis imported.
WORKER_BASELINE = 450 * MiB
#: Memory kept for the operating system and the client process: this fraction of the total,
#: within [RESERVE_MIN, RESERVE_MAX].
RESERVE_FRACTION = 0.15
RESERVE_MIN = 1 * GiB
RESERVE_MAX = 8 * GiB


@dataclasses.dataclass(frozen=True)
class ClusterPlan:
    """Workers of the default LocalCluster, or of the cluster a run computes on.

    Attributes
    ----------
    n_workers, threads_per_worker
        Worker processes and threads in each.
    memory_limit
        Bytes per worker (the limit Dask enforces).
    total_memory, cores
        What this machine offers.
    reason
        One phrase saying how the plan was reached.
    """

    n_workers: int
    threads_per_worker: int
    memory_limit: int
    total_memory: int
    cores: int
    reason: str

    def describe(self) -> str:
        """``2 workers x 1 thread x 10.2 GiB`` and the machine it was planned for."""
        threads = "thread" if self.threads_per_worker == 1 else "threads"
        workers = "worker" if self.n_workers == 1 else "workers"
        return (f"{self.n_workers} {workers} x {self.threads_per_worker} {threads} x "
                f"{dask.utils.format_bytes(self.memory_limit)} (machine: {self.cores} cores, "
                f"{dask.utils.format_bytes(self.total_memory)}; {self.reason})")


def useful_tile() -> int:
    """Bytes of one useful task: stackFrames' declared ``memory`` (one combine band), the largest by design."""
    from .primitives.registry import get_primitive

    return int(float(get_primitive("stackFrames").param("memory").default) * GiB)


def reserve(total_memory: int) -> int:
    """Memory left to the operating system and the client process."""
    return int(min(max(RESERVE_FRACTION * total_memory, RESERVE_MIN), RESERVE_MAX))


def plan_local_cluster(total_memory: int, cores: int, *, n_workers: int | None = None,
                       threads_per_worker: int | None = None, memory_limit: int | str | None = None,
                       tile: int | None = None) -> ClusterPlan:
    """The LocalCluster for a machine with ``total_memory`` bytes and ``cores`` cores.

    Parameters
    ----------
    total_memory, cores
        The machine (e.g. ``distributed.system.MEMORY_LIMIT``, ``dask.system.CPU_COUNT``).
    n_workers, threads_per_worker, memory_limit
        Values from the configuration (None: planned).  ``memory_limit`` may
        be a string such as ``"4GiB"``.
    tile
        Bytes one task needs to be worth running (default: :func:`useful_tile`).

    Returns
    -------
    ClusterPlan
    """
    cores = max(int(cores), 1)
    usable = max(total_memory - reserve(total_memory), WORKER_BASELINE)
    if isinstance(memory_limit, str):
        memory_limit = dask.utils.parse_bytes(memory_limit)
    if n_workers:
        n = int(n_workers)
        reason = "workers from the configuration"
    elif memory_limit:
        n = max(1, min(cores, usable // int(memory_limit)))
        reason = "memory per worker from the configuration"
    else:
        per_worker = WORKER_BASELINE + (useful_tile() if tile is None else tile)
        n = max(1, min(cores, usable // per_worker))
        if usable < per_worker:
            reason = (f"less than the {dask.utils.format_bytes(per_worker)} a worker and one stacking tile "
                      f"want: lower stackFrames:memory")
        elif n == cores:
            reason = "one worker per core"
        else:
            reason = f"fewer workers than cores so each has at least {dask.utils.format_bytes(per_worker)}"
    threads = int(threads_per_worker) if threads_per_worker else max(1, cores // n)
    memory = int(memory_limit) if memory_limit else usable // n
    return ClusterPlan(n, threads, memory, int(total_memory), cores, reason)


def machine_plan(config: dict | None = None,
                 workers: Mapping[str, Mapping[str, Any]] | None = None) -> ClusterPlan:
    """The workers a run plans its tasks for: this machine's LocalCluster, or the cluster's own.

    Parameters
    ----------
    config
        ``n_workers``, ``threads_per_worker``, ``memory_limit`` (None: the
        draconis configuration).  A value set there wins over what is planned
        or found.
    workers
        The workers of the cluster the run computes on, ``{address: {"threads":
        n, "memory_limit": bytes}}`` as :func:`draconis.runrecord.describe_workers`
        gives them.  None or empty: :func:`plan_local_cluster` for this machine.

    Returns
    -------
    ClusterPlan
        With ``workers``: as many workers as there are, each with the smallest
        memory limit among them and the fewest threads.  A worker without a
        memory limit (0 or None) counts for what this machine's plan gives
        each of that many workers.  ``total_memory`` and ``cores`` stay this
        machine's.
    """
    from dask.system import CPU_COUNT
    from distributed.system import MEMORY_LIMIT

    from . import config as _config

    values = config if config is not None else {k: _config.get(k) for k in
                                                ("n_workers", "threads_per_worker", "memory_limit")}
    if not workers:
        return plan_local_cluster(MEMORY_LIMIT, CPU_COUNT, **values)
    found = list(workers.values())
    n = int(values.get("n_workers") or len(found))
    threads = values.get("threads_per_worker") or min(int(w.get("threads") or 1) for w in found)
    memory = values.get("memory_limit")
    if memory:
        why = "memory per worker from the configuration"
    else:
        limits = [int(w.get("memory_limit") or 0) for w in found]
        unlimited = 0 if all(limits) else plan_local_cluster(MEMORY_LIMIT, CPU_COUNT, n_workers=n).memory_limit
        memory = min(limit or unlimited for limit in limits)
        why = ("the smallest worker's memory limit" if all(limits) else
               "this machine's share for workers without a memory limit")
    count = "workers from the configuration" if values.get("n_workers") else f"the cluster's {len(found)} workers"
    plan = plan_local_cluster(MEMORY_LIMIT, CPU_COUNT, n_workers=n, threads_per_worker=threads, memory_limit=memory)
    return dataclasses.replace(plan, reason=f"{count}, {why}")
