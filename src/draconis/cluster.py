"""Where a run's Dask graphs execute.

- default: a :class:`distributed.LocalCluster` sized to the machine
  (``draconis.n_workers`` or one worker per core, ``draconis.threads_per_worker``,
  ``draconis.memory_limit`` per worker), started for the run and closed after;
  an existing default :class:`distributed.Client` is reused instead;
- ``ADDRESS`` (``--scheduler tcp://host:8786``, or ``DASK_SCHEDULER_ADDRESS``):
  attach to a running scheduler; its workers need draconis installed and the
  same paths;
- ``synchronous``: everything in this process, one task at a time (debugging);
- ``threads``: Dask's threaded scheduler in this process (no cluster).
"""
from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import dask

from . import config as _config

log = logging.getLogger("draconis")

_ACTIVE: contextvars.ContextVar[Any] = contextvars.ContextVar("draconis_client", default=None)

LOCAL_SCHEDULERS = ("synchronous", "sync", "single-threaded", "threads", "threading")


def active_client():
    """The distributed client the current run computes on, or None."""
    return _ACTIVE.get()


def scheduler_address(requested: str | None) -> str | None:
    """The scheduler the user asked for: argument, else environment/config."""
    if requested:
        return requested
    return os.environ.get("DASK_SCHEDULER_ADDRESS") or dask.config.get("scheduler-address", None) or None


def local_cluster_kwargs() -> dict[str, Any]:
    """LocalCluster arguments from the draconis configuration."""
    n_workers = _config.get("n_workers") or os.cpu_count() or 1
    threads = _config.get("threads_per_worker") or 1
    return {
        "n_workers": int(n_workers),
        "threads_per_worker": int(threads),
        "memory_limit": _config.get("memory_limit", "4GiB"),
        "processes": True,
        "dashboard_address": _config.get("dashboard_address", ":0"),
    }


@contextlib.contextmanager
def execution(requested: str | None = None) -> Iterator[Any]:
    """Context in which ``dask.compute`` runs where the user asked.

    Parameters
    ----------
    requested
        ``None`` (default cluster), ``synchronous``/``threads``, or a
        scheduler address.

    Yields
    ------
    distributed.Client or None
        The client in use (None for the in-process schedulers).
    """
    address = scheduler_address(requested)
    if address in LOCAL_SCHEDULERS:
        name = "threads" if address in ("threads", "threading") else "synchronous"
        log.debug("Dask: %s scheduler in this process", name)
        with dask.config.set(scheduler=name):
            token = _ACTIVE.set(None)
            try:
                yield None
            finally:
                _ACTIVE.reset(token)
        return
    with _client(address) as client:
        token = _ACTIVE.set(client)
        try:
            with dask.config.set(scheduler=client.get):
                yield client
        finally:
            _ACTIVE.reset(token)


@contextlib.contextmanager
def _client(address: str | None) -> Iterator[Any]:
    from distributed import Client, LocalCluster

    from .errors import ConfigError

    if address:
        log.info("Dask: attaching to the scheduler at %s", address)
        try:
            client = Client(address, timeout="20s", set_as_default=False)
        except OSError as err:
            raise ConfigError(f"cannot reach the Dask scheduler at {address} ({err})") from err
        try:
            yield client
        finally:
            client.close()
        return
    existing = _existing_client()
    if existing is not None:
        log.debug("Dask: reusing the existing client %s", existing)
        yield existing
        return
    kwargs = local_cluster_kwargs()
    log.info("Dask: starting a LocalCluster (%d workers x %d threads, %s each)",
             kwargs["n_workers"], kwargs["threads_per_worker"], kwargs["memory_limit"])
    with LocalCluster(**kwargs) as cluster, Client(cluster, set_as_default=False) as client:
        yield client


def check_workers_see(client: Any, workdir: str, inputs: Sequence[str] = ()) -> None:
    """Refuse to start when a worker cannot see the working directory or an input.

    The client writes a probe file in ``workdir`` and asks every worker
    (``client.run``) whether it sees the probe and the inputs at the same
    absolute paths: a worker on another host without the shared filesystem
    would otherwise write its checkpoints where the client never reads them.

    Parameters
    ----------
    client
        The distributed client of the run (None: in-process scheduler, nothing to check).
    workdir
        Absolute checkpoint directory (created if needed).
    inputs
        Absolute paths of the input files.

    Raises
    ------
    ConfigError
        A worker does not see ``workdir`` or one of ``inputs``.
    """
    if client is None:
        return
    from .errors import ConfigError

    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, f".probe-{uuid.uuid4().hex}")
    with open(probe, "w", encoding="ascii") as fh:
        fh.write("draconis\n")
    try:
        answers = client.run(_missing_paths, [probe, *inputs])
    finally:
        os.unlink(probe)
    for worker, missing in sorted(answers.items()):
        if not missing:
            continue
        what = (f"the working directory {workdir}" if missing[0] == probe
                else f"{missing[0]}" + (f" and {len(missing) - 1} other input(s)" if len(missing) > 1 else ""))
        raise ConfigError(f"Dask worker {worker} cannot see {what}: inputs and --workdir must be on a "
                          f"filesystem every worker shares, at the same absolute paths")


def _missing_paths(paths: Sequence[str]) -> list[str]:
    """The paths this process does not see (run on every worker)."""
    return [p for p in paths if not os.path.exists(p)]


def _existing_client():
    try:
        from distributed import default_client

        return default_client()
    except (ImportError, ValueError):
        return None
