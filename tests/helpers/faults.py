"""Fault injection for the cluster and resume tests: kill or interrupt at a chosen point, never after a sleep.

The point is a recipe step (its name and occurrence: the second
``flushPixels`` is the one that computes the sky subtraction) and the n-th
Dask task that starts while that step runs:

* :class:`SignalOnTask` is a Dask worker plugin that sends a signal (SIGKILL
  to its own worker process, or SIGINT to another process) when the n-th task
  starts executing on any worker, once (a flag file shared by the workers);
* :class:`SignalAfterTasks` does the same with the in-process schedulers
  (a local Dask callback), signalling the reducing process itself;
* :func:`during_step` runs a context manager around one recipe step
  (``RunContext.run`` of that name and occurrence).
"""
from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable
from typing import Any

from dask.callbacks import Callback
from distributed.diagnostics.plugin import WorkerPlugin


def claim(flag: str) -> bool:
    """True the first time any process calls this with ``flag`` (the file is created exclusively)."""
    try:
        os.close(os.open(flag, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


class SignalOnTask(WorkerPlugin):
    """Worker plugin: send ``sig`` when the ``nth`` task starts executing on this worker (once, cluster-wide).

    ``target`` is ``"self"`` (this worker process) or a process id.  The
    count is per worker; ``flag`` (a path every worker sees) makes it happen
    once in the whole cluster, also after the killed worker is restarted.
    """

    def __init__(self, flag: str, *, nth: int = 1, sig: int = signal.SIGKILL, target: str | int = "self",
                 pid_dir: str | None = None):
        self.flag, self.nth, self.sig, self.target, self.pid_dir = flag, nth, int(sig), target, pid_dir
        self.started = 0

    def setup(self, worker: Any) -> None:
        self.started = 0
        if self.pid_dir:  # so a test can check that no worker outlives the run
            open(os.path.join(self.pid_dir, str(os.getpid())), "w").close()

    def transition(self, key: Any, start: str, finish: str, **kwargs: Any) -> None:
        if finish != "executing":
            return
        self.started += 1
        if self.started >= self.nth and claim(self.flag):
            os.kill(os.getpid() if self.target == "self" else int(self.target), self.sig)


class SignalAfterTasks(Callback):
    """Local-scheduler callback: send ``sig`` to this process when the ``nth`` task starts (once)."""

    def __init__(self, nth: int = 1, sig: int = signal.SIGKILL):
        super().__init__()
        self.nth, self.sig, self.started, self.fired = nth, int(sig), 0, False

    def _pretask(self, key, dsk, state):
        self.started += 1
        if self.started >= self.nth and not self.fired:
            self.fired = True
            os.kill(os.getpid(), self.sig)


def during_step(monkeypatch: Any, step: str, occurrence: int, around: Callable[[], Any]) -> None:
    """Run recipe step ``step`` (its ``occurrence``-th call, from 1) inside the context manager ``around()``."""
    from draconis.reduce.context import RunContext

    original = RunContext.run
    seen = {"n": 0}

    def run(self, name, **kwargs):
        if name != step:
            return original(self, name, **kwargs)
        seen["n"] += 1
        manager = around() if seen["n"] == occurrence else contextlib.nullcontext()
        with manager:
            return original(self, name, **kwargs)

    monkeypatch.setattr(RunContext, "run", run)


@contextlib.contextmanager
def plugin_on_workers(plugin: WorkerPlugin, name: str = "draconis-test-fault"):
    """``plugin`` registered on the workers of the run's client while the block runs."""
    import cloudpickle

    import draconis.cluster

    client = draconis.cluster.active_client()
    assert client is not None, "the step does not run on a distributed cluster"
    module = __import__(__name__, fromlist=["_"])
    cloudpickle.register_pickle_by_value(module)  # the workers need not import the tests
    client.register_plugin(plugin, name=name)
    try:
        yield
    finally:
        client.unregister_worker_plugin(name)
