"""Where a run's Dask graphs execute.

- default: a :class:`distributed.LocalCluster` sized to the machine
  (:mod:`draconis.cluster_plan`: memory and cores, unless ``draconis.n_workers``,
  ``threads_per_worker``, ``memory_limit`` are set), started for the run and
  closed after; an existing default :class:`distributed.Client` is reused instead;
- ``ADDRESS`` (``--scheduler tcp://host:8786``, or ``DASK_SCHEDULER_ADDRESS``):
  attach to a running scheduler; its workers need draconis installed and the
  same paths;
- ``synchronous``: everything in this process, one task at a time (debugging);
- ``threads``: Dask's threaded scheduler in this process (no cluster).

Every run logs where it computes (workers x threads x memory, the dashboard).
"""
from __future__ import annotations

import asyncio
import contextlib
import contextvars
import importlib
import logging
import os
import re
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import dask
import dask.utils

from . import config as _config
from .cluster_plan import ClusterPlan, machine_plan

log = logging.getLogger("draconis")

_ACTIVE: contextvars.ContextVar[Any] = contextvars.ContextVar("draconis_client", default=None)

LOCAL_SCHEDULERS = ("synchronous", "sync", "single-threaded", "threads", "threading")


def active_client():
    """The distributed client the current run computes on, or None."""
    return _ACTIVE.get()


#: What ``--scheduler`` accepts, for error messages.
VALID_SCHEDULERS = "synchronous, threads, or a scheduler address such as tcp://host:8786"
_ADDRESS = re.compile(r"^([a-z][a-z0-9+.-]*://\S+|[^\s/:]+:\d+)$")


def scheduler_address(requested: str | None) -> str | None:
    """The scheduler the user asked for (argument, else environment/config), checked.

    Raises
    ------
    ConfigError
        Neither an in-process scheduler name nor an address (``proto://...`` or ``host:port``).
    """
    from .errors import ConfigError

    address = requested or os.environ.get("DASK_SCHEDULER_ADDRESS") or dask.config.get("scheduler-address", None)
    if not address:
        return None
    address = str(address).strip()
    if address not in LOCAL_SCHEDULERS and not _ADDRESS.match(address):
        where = "--scheduler" if requested else "DASK_SCHEDULER_ADDRESS"
        raise ConfigError(f"{where} {address!r}: expected {VALID_SCHEDULERS}")
    return address


#: Scheduler settings of the LocalClusters draconis starts (the scheduler reads them when it starts).
#:
#: ``worker-saturation`` 1.0: a worker is sent its next queued root-like task (a sliding-window sky
#: band, :func:`draconis.primitives.sky_window._queued`) only once it has nothing else to do. With
#: distributed's default (1.1: two slots for a one-thread worker) a worker was sent a second band while
#: making one, and ran it before the first band's checkpoint writes: Dask's order puts every band ahead
#: of the writes (each band feeds every frame), and work stealing moved a third band onto a worker still
#: holding two. At 156 full-size F2 frames on 2 GiB workers a worker then held 2-3 band results
#: (~400 MB each) and spilled 0.4-2 GiB per sky pass; with 1.0 it holds one.
SCHEDULER_SETTINGS: dict[str, Any] = {"distributed.scheduler.worker-saturation": 1.0}


def _check_saturation(client: Any, what: str) -> None:
    """Warn when a scheduler draconis did not start sends a worker more queued tasks than SCHEDULER_SETTINGS."""
    wanted = SCHEDULER_SETTINGS["distributed.scheduler.worker-saturation"]
    try:
        # a lambda: pickled by value, so a scheduler without draconis installed can run it
        saturation = float(client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.WORKER_SATURATION))
    except Exception as err:  # noqa: BLE001 - an older or other scheduler: nothing to say
        log.debug("Dask: could not read the worker saturation of %s (%s)", what, err)
        return
    if saturation > wanted:
        log.warning("Dask: %s has worker-saturation %g: a worker may be sent a second sky band while making "
                    "one and spill; start it with DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION=%g "
                    "(docs/distributed-runs.md)", what, saturation, wanted)


def local_cluster_kwargs(plan: ClusterPlan | None = None) -> dict[str, Any]:
    """LocalCluster arguments: the machine's plan (:mod:`draconis.cluster_plan`) and the configuration."""
    plan = plan or machine_plan()
    return {
        "n_workers": plan.n_workers,
        "threads_per_worker": plan.threads_per_worker,
        "memory_limit": plan.memory_limit,
        "processes": True,
        "dashboard_address": _config.get("dashboard_address", ":0"),
        # distributed's own warnings (slow event loop, tasks cancelled at shutdown...) are not the user's
        # business; draconis reports what matters itself. draconis.cluster_log_level: warning shows them.
        "silence_logs": logging.getLevelName(str(_config.get("cluster_log_level", "error")).upper()),
    }


def _log_plan(client: Any, what: str) -> None:
    """One line at the start of every run: where it computes, how big, and the dashboard."""
    from collections import Counter

    from .runrecord import describe_workers

    shapes = Counter((w["threads"] or 0, w["memory_limit"] or 0) for w in describe_workers(client)[1].values())
    size = ", ".join(f"{count} x {threads} thread(s) x {dask.utils.format_bytes(memory) if memory else 'no limit'}"
                     for (threads, memory), count in sorted(shapes.items())) or "no worker yet"
    link = getattr(client, "dashboard_link", None)
    log.info("Dask: %s: workers %s; dashboard %s", what, size, link or "(none)")


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
        log.info("Dask: the %s scheduler in this process (no cluster)", name)
        with dask.config.set(scheduler=_CountedGet(threaded.get if name == "threads" else local.get_sync)):
            token = _ACTIVE.set(None)
            try:
                yield None
            finally:
                _ACTIVE.reset(token)
        return
    _quiet_allexit()
    distributed_log = logging.getLogger("distributed")
    level = distributed_log.level
    try:
        with _client(address) as client, watching_workers(client):
            token = _ACTIVE.set(client)
            try:
                with dask.config.set(scheduler=_CountedGet(client.get)):
                    yield client
            except KeyboardInterrupt:
                # Workers busy in a task are killed on the way out: distributed's warnings about it are
                # expected (the level is restored once the cluster is closed).
                distributed_log.setLevel(logging.ERROR)
                raise
            except Exception as err:
                if _lost(client):
                    from .errors import ClusterError

                    where = f"at {address}" if address else "of the LocalCluster"
                    raise ClusterError(f"lost the Dask scheduler {where} ({type(err).__name__}); "
                                       f"the run stopped and wrote nothing") from err
                raise
            finally:
                _ACTIVE.reset(token)
    finally:
        distributed_log.setLevel(level)


@contextlib.contextmanager
def warm_workers(client: Any, modules: Sequence[str]) -> Iterator[list[Any]]:
    """Have every worker of ``client`` import ``modules`` now, in a task of its own, without waiting.

    A run starts with its client building graphs while the workers sit idle;
    the first task that needs photutils or a primitive module would pay its
    import (~0.5-1.3 s a worker) in the middle of the work.  The import task
    runs in the worker's task slot, so it never imports alongside a task.
    A module that fails to import is left for the task that needs it to report.

    A context for the run: yields the tasks' futures, released on leaving
    while the client is still open (a task pinned to a worker that has left
    would otherwise wait on the scheduler for good).
    """
    futures = [] if client is None or not modules else [
        client.submit(_import_modules, tuple(modules), workers=[address], allow_other_workers=False, pure=False,
                      key=f"warm-imports-{uuid.uuid4().hex}") for address in client.nthreads()]
    try:
        yield futures
    finally:
        for future in futures:
            future.release()


def _import_modules(modules: Sequence[str]) -> list[str]:
    """Import ``modules`` here; the names of those that failed."""
    failed = []
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - the task that needs it raises the real error
            failed.append(name)
    return failed


def _lost(client: Any) -> bool:
    """Whether ``client`` has lost its scheduler (it closes itself after failing to reconnect)."""
    # "connecting": reconnecting after a lost connection; its futures are cancelled already.
    return getattr(client, "status", "running") not in ("running", "newly-created")


class _DropAllExit(logging.Filter):
    """Drop asyncio's "Task exception was never retrieved" reports of distributed's internal AllExit.

    An interrupted ``Client.gather`` leaves its waiting tasks to be collected
    with AllExit, distributed's own early-exit signal: nothing the user can act on.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return type(exc).__name__ != "AllExit"


def _quiet_allexit() -> None:
    logger = logging.getLogger("asyncio")
    if not any(isinstance(f, _DropAllExit) for f in logger.filters):
        logger.addFilter(_DropAllExit())


_computations = 0


def computations() -> int:
    """How many ``dask.compute`` calls the run's scheduler has served (did a step compute something?)."""
    return _computations


class _CountedGet:
    """The run's scheduler ``get``, counting the computations it serves.

    It sits in dask's global config while the run computes, and a nanny that
    restarts a worker (one killed over its memory budget) pickles that config
    for the new process: a closure there made every restart fail ("Can't
    pickle local object"), so a LocalCluster lost each killed worker for
    good. Pickled, it becomes None: in another process the run's scheduler
    means nothing, and dask then uses its default.
    """

    def __init__(self, get: Any):
        self.get = get

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        global _computations
        _computations += 1
        return self.get(*args, **kwargs)

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return _no_scheduler, ()


def _no_scheduler() -> None:
    """What a pickled :class:`_CountedGet` becomes: no scheduler setting."""
    return None


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


def explain_killed_worker(err: Exception, step: str | None) -> Exception:
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
            # distributed.comm.timeouts.connect (default 30 s) bounds the first connection and,
            # if the scheduler goes away, the client's attempts to reconnect.
            client = Client(address, set_as_default=False)
        except (OSError, ValueError) as err:
            raise ConfigError(f"cannot reach the Dask scheduler at {address} ({_first_line(err)})") from err
        # If the scheduler goes away the run says so in one line (ClusterError): the client's own
        # reports of its failed reconnection (tracebacks included) would only bury it.
        quiet = _DropConnectionErrors()
        for name in _CONNECTION_LOGGERS:
            logging.getLogger(name).addFilter(quiet)
        _log_plan(client, f"scheduler {address}")
        _check_saturation(client, f"the scheduler at {address}")
        try:
            yield client
        finally:
            client.close()
            for name in _CONNECTION_LOGGERS:
                logging.getLogger(name).removeFilter(quiet)
        return
    existing = _existing_client()
    if existing is not None:
        _log_plan(existing, "the existing client")
        _check_saturation(existing, "the existing client's scheduler")
        yield existing
        return
    plan = machine_plan()
    log.info("Dask: starting a LocalCluster of %s", plan.describe())
    if plan.n_workers * plan.memory_limit > plan.total_memory:
        log.warning("Dask: %d workers x %s promise more memory than the machine has (%s)", plan.n_workers,
                    dask.utils.format_bytes(plan.memory_limit), dask.utils.format_bytes(plan.total_memory))
    with dask.config.set(SCHEDULER_SETTINGS), LocalCluster(**local_cluster_kwargs(plan)) as cluster, \
            Client(cluster, set_as_default=False) as client:
        _log_plan(client, "LocalCluster")
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


#: Loggers of the client side of distributed that report a lost scheduler connection.
_CONNECTION_LOGGERS = ("distributed.client", "distributed.batched", "distributed.core")


class _DropConnectionErrors(logging.Filter):
    """Drop the client's reports of a lost connection to the scheduler (connection errors, failed reconnection)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, (OSError, asyncio.CancelledError)):
            return False
        return not str(record.msg).startswith(("Failed to reconnect to scheduler", "Batched Comm Closed"))


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _existing_client():
    try:
        from distributed import default_client

        return default_client()
    except (ImportError, ValueError):
        return None
