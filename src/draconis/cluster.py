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
        from dask import local, threaded

        name = "threads" if address in ("threads", "threading") else "synchronous"
        log.debug("Dask: %s scheduler in this process", name)
        with dask.config.set(scheduler=_counted(threaded.get if name == "threads" else local.get_sync)):
            token = _ACTIVE.set(None)
            try:
                yield None
            finally:
                _ACTIVE.reset(token)
        return
    with _client(address) as client, watching_workers(client):
        token = _ACTIVE.set(client)
        try:
            with dask.config.set(scheduler=_counted(client.get)):
                yield client
        finally:
            _ACTIVE.reset(token)


_computations = 0


def computations() -> int:
    """How many ``dask.compute`` calls the run's scheduler has served (did a step compute something?)."""
    return _computations


def _counted(get: Any) -> Any:
    def get_counted(*args: Any, **kwargs: Any) -> Any:
        global _computations
        _computations += 1
        return get(*args, **kwargs)

    return get_counted


#: scheduler event topics draconis follows during a run
_TOPICS = ("all", "worker-restart-memory")


@contextlib.contextmanager
def watching_workers(client: Any) -> Iterator[None]:
    """Log, as it happens, a worker the cluster loses and a worker restarted for exceeding its memory.

    The scheduler reschedules the tasks a lost worker was running and
    recomputes the results it held; draconis says so, so a run that
    completes after losing workers does not hide it.
    """
    for topic in _TOPICS:
        client.subscribe_topic(topic, _on_cluster_event)
    try:
        yield
    finally:
        for topic in _TOPICS:
            with contextlib.suppress(Exception):  # the scheduler may be gone already
                client.unsubscribe_topic(topic)


def _on_cluster_event(event: tuple[float, dict]) -> None:
    _, msg = event
    if not isinstance(msg, dict):
        return
    if msg.get("action") == "remove-worker" and not msg.get("expected"):
        running = len(msg.get("processing-tasks") or ())
        held = len(msg.get("lost-computed-tasks") or ())
        log.warning("Dask worker %s was lost (it was running %d task(s) and held %d result(s)); "
                    "the scheduler runs that work again on the remaining workers", msg.get("worker"), running, held)
    elif "rss" in msg and "worker" in msg:
        log.warning("Dask worker %s used %s, more than its memory budget allows: restarted by its nanny",
                    msg["worker"], _bytes(msg["rss"]))


def _bytes(n: float) -> str:
    from dask.utils import format_bytes

    return format_bytes(int(n))


def explain_killed_worker(err: BaseException, step: str | None) -> Exception:
    """A clear error for ``distributed.KilledWorker`` raised while ``step`` ran (``err`` if it is not one).

    When the workers that died running the task had been restarted by their
    nanny for exceeding their memory, the message says so, with the budget,
    instead of Dask's generic "workers died".
    """
    try:
        from distributed import KilledWorker
    except ImportError:
        return err
    if not isinstance(err, KilledWorker):
        return err
    from dask.utils import key_split

    from .errors import ClusterError

    worker = err.last_worker
    where = f"{step}: " if step else ""
    task = key_split(err.task)
    limit = getattr(worker, "memory_limit", None)
    client = active_client()
    restarted = []
    if client is not None:
        with contextlib.suppress(Exception):
            restarted = [msg for _, msg in client.get_events("worker-restart-memory")]
    if any(msg.get("worker") == worker.address for msg in restarted):
        rss = max(msg.get("rss", 0) for msg in restarted if msg.get("worker") == worker.address)
        budget = _bytes(limit) if limit else "its memory limit"
        return ClusterError(f"{where}a {task} task needs more memory than a Dask worker's budget of {budget}: "
                            f"the worker running it reached {_bytes(rss)} and was restarted "
                            f"{err.allowed_failures + 1} time(s). Give each worker more memory "
                            f"(draconis.memory_limit, or the workers' --memory-limit) or use fewer rows "
                            f"per chunk (draconis.chunk_rows)")
    return ClusterError(f"{where}Dask workers died {err.allowed_failures + 1} time(s) while running a {task} task "
                        f"(last on {worker.address}); the workers' logs say why")


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
    import fsspec

    from .errors import ConfigError

    fs, root = fsspec.core.url_to_fs(workdir)  # a directory, or a URL (s3://bucket/prefix...)
    fs.makedirs(root, exist_ok=True)
    probe = f"{workdir.rstrip('/')}/.probe-{uuid.uuid4().hex}"
    fs.pipe_file(fsspec.core.url_to_fs(probe)[1], b"draconis\n")
    try:
        answers = client.run(_missing_paths, [probe, *inputs])
    finally:
        fs.rm_file(fsspec.core.url_to_fs(probe)[1])
    for worker, missing in sorted(answers.items()):
        if not missing:
            continue
        what = (f"the working directory {workdir}" if missing[0] == probe
                else f"{missing[0]}" + (f" and {len(missing) - 1} other input(s)" if len(missing) > 1 else ""))
        raise ConfigError(f"Dask worker {worker} cannot see {what}: inputs and --workdir must be on a "
                          f"filesystem every worker shares, at the same absolute paths")


def _missing_paths(paths: Sequence[str]) -> list[str]:
    """The paths (or URLs) this process does not see (run on every worker)."""
    import fsspec

    missing = []
    for p in paths:
        fs, path = fsspec.core.url_to_fs(p)
        if not fs.exists(path):
            missing.append(p)
    return missing


def _existing_client():
    try:
        from distributed import default_client

        return default_client()
    except (ImportError, ValueError):
        return None
