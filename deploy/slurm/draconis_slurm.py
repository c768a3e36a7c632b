"""Reduce on a SLURM cluster: dask-jobqueue starts draconis' Dask workers as batch jobs.

On a login node, in the data directory (on a filesystem the compute nodes
share, at the same path)::

    pip install draconis dask-jobqueue
    python draconis_slurm.py --queue regular --jobs 4 -- @sci_images.list -r ultradeep

Each job runs ``processes`` single-thread workers on ``cores`` cores with
``memory`` in all; every worker's Dask memory limit and its draconis budget
(``DASK_DRACONIS__MEMORY_LIMIT``) are the same: ``memory / processes``.
Before the workers start, the job installs draconis of the client's version
into a virtual environment on the shared filesystem (once; later jobs find
it).  For PBS, SGE or LSF use ``PBSCluster``, ``SGECluster``, ``LSFCluster``
with the same arguments.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import dask.utils


def worker_memory(memory: str | int, processes: int) -> str:
    """Each worker's share of a job's ``memory``, as Dask writes it (``4GiB``)."""
    return dask.utils.format_bytes(dask.utils.parse_bytes(memory) // processes).replace(" ", "")


def install_steps(venv: str, requirement: str) -> list[str]:
    """Shell lines run in each job before the workers: draconis in ``venv`` (made and filled once)."""
    return [f'[ -x "{venv}/bin/python" ] || python3 -m venv "{venv}"',
            f'"{venv}/bin/python" -m pip install --quiet "{requirement}"',
            f'source "{venv}/bin/activate"']


def slurm_cluster(*, queue: str, account: str | None = None, cores: int = 4, processes: int | None = None,
                  memory: str = "16GiB", walltime: str = "02:00:00", venv: str = "$HOME/draconis-venv",
                  requirement: str | None = None, local_directory: str = "$TMPDIR", **kwargs):
    """A SLURMCluster of draconis workers (no job submitted until it is scaled).

    Parameters
    ----------
    queue, account, walltime
        SLURM partition, allocation and time limit of each job.
    cores, processes, memory
        Per job: cores, worker processes (default one per core: the stacking
        kernels release the GIL) and the memory they share.
    venv, requirement
        Where the jobs install draconis, and what (default: this client's version).
    local_directory
        The workers' spill directory (node-local disk).
    **kwargs
        Passed to :class:`dask_jobqueue.SLURMCluster` (e.g. ``scheduler_options``).
    """
    from dask_jobqueue import SLURMCluster

    import draconis

    processes = processes or cores
    requirement = requirement or f"draconis=={draconis.__version__}"
    prologue = [*install_steps(venv, requirement),
                f"export DASK_DRACONIS__MEMORY_LIMIT={worker_memory(memory, processes)}"]
    return SLURMCluster(queue=queue, account=account, cores=cores, processes=processes, memory=memory,
                        walltime=walltime, job_script_prologue=prologue, python=f"{venv}/bin/python",
                        local_directory=local_directory, **kwargs)


def main(argv: Sequence[str] | None = None) -> int:
    """``python draconis_slurm.py [options] -- <draconis reduce arguments>``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queue", required=True)
    parser.add_argument("--account", default=None)
    parser.add_argument("--jobs", type=int, default=1, help="batch jobs to start")
    parser.add_argument("--cores", type=int, default=4)
    parser.add_argument("--memory", default="16GiB")
    parser.add_argument("--walltime", default="02:00:00")
    parser.add_argument("--venv", default="$HOME/draconis-venv")
    parser.add_argument("reduce", nargs=argparse.REMAINDER, help="arguments of draconis reduce (after --)")
    args = parser.parse_args(argv)

    import dask.config
    from dask.distributed import Client

    from draconis.cli import main as draconis_main

    cluster = slurm_cluster(queue=args.queue, account=args.account, cores=args.cores, memory=args.memory,
                            walltime=args.walltime, venv=args.venv)
    cluster.scale(jobs=args.jobs)
    budget = worker_memory(args.memory, args.cores)
    with cluster, Client(cluster) as client, dask.config.set({"draconis.memory_limit": budget}):
        client.wait_for_workers(1)
        reduce_args = [a for a in args.reduce if a != "--"]
        return draconis_main(["reduce", "--scheduler", cluster.scheduler_address, *reduce_args])


if __name__ == "__main__":
    sys.exit(main())
