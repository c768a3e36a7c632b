"""Reduce on a SLURM cluster: dask-jobqueue starts the workers as batch jobs.

Usage (on a login node, inside the data directory on the shared filesystem)::

    pip install draconis dask-jobqueue
    python jobqueue_cluster.py @sci_images.list -r ultradeep

Adapt queue, account, cores and memory to your site; ``memory`` should match
``draconis.memory_limit`` times ``processes``.  For PBS use ``PBSCluster``.
"""
from __future__ import annotations

import sys

import dask.config
from dask.distributed import Client
from dask_jobqueue import SLURMCluster

from draconis.cli import main

cluster = SLURMCluster(
    queue="regular",          # your partition
    account=None,             # your allocation, if any
    cores=4,                  # cores per job
    processes=4,              # one worker process per core: the stacking kernels release the GIL
    memory="16GiB",           # per job; 4 GiB per worker
    walltime="02:00:00",
    local_directory="$TMPDIR",
)
cluster.scale(jobs=4)         # 16 workers
with Client(cluster) as client, dask.config.set({"draconis.memory_limit": "4GiB"}):
    client.wait_for_workers(4)
    sys.exit(main(["reduce", "--scheduler", cluster.scheduler_address, *sys.argv[1:]]))
