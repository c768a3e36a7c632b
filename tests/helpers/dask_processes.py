"""A real Dask cluster for tests: ``dask scheduler`` and ``dask worker`` processes, as a user starts them.

The console scripts of the running interpreter's environment are used, on
127.0.0.1 with a free port, in a directory the test chooses (the workers'
current directory is not the client's).  Processes are stopped (then killed
if they do not stop) when the context exits.
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

DASK = Path(sys.executable).with_name("dask")


def free_port() -> int:
    """A TCP port nobody listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen, timeout: float = 30) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)


class Scheduler(str):
    """A scheduler's address (what tests pass to ``--scheduler``) that also holds its process."""

    proc: subprocess.Popen


@contextlib.contextmanager
def scheduler_process(cwd: Path, *, env: dict[str, str] | None = None) -> Iterator[Scheduler]:
    """A ``dask scheduler`` started in ``cwd`` (``env`` added to the environment); yields its address (``.proc``: the process)."""
    port = free_port()
    proc = subprocess.Popen([str(DASK), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                             "--dashboard-address", ":0"], cwd=cwd, env={**os.environ, **(env or {})},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    address = Scheduler(f"tcp://127.0.0.1:{port}")
    address.proc = proc
    try:
        yield address
    finally:
        _stop(proc)


@contextlib.contextmanager
def worker_processes(address: str, cwd: Path, scratch: Path, *, n: int = 1, prefix: Sequence[str] = (),
                     args: Sequence[str] = (), env: dict[str, str] | None = None,
                     timeout: float = 120) -> Iterator[list[subprocess.Popen]]:
    """``n`` single-thread ``dask worker`` processes started in ``cwd``, connected to ``address``.

    ``prefix`` is put in front of the command (e.g. a namespace wrapper),
    ``args`` after it (e.g. ``--memory-limit``), ``env`` is added to the
    environment; ``scratch`` is the workers' local directory (spill files).
    Returns when the scheduler sees the workers.
    """
    from distributed import Client

    env = {**os.environ, "DASK_DISTRIBUTED__WORKER__DAEMON": "False", **(env or {})}
    procs = []
    with Client(address, timeout="60s") as client:
        before = len(client.scheduler_info(n_workers=-1)["workers"])
        for _ in range(n):
            procs.append(subprocess.Popen([*prefix, str(DASK), "worker", address, "--nthreads", "1",
                                           "--no-dashboard", "--local-directory", str(scratch), *args],
                                          cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        try:
            client.wait_for_workers(before + n, timeout=timeout)
        except BaseException:
            for proc in procs:
                _stop(proc)
            raise
    try:
        yield procs
    finally:
        for proc in procs:
            _stop(proc)
