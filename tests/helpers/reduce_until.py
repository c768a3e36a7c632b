"""``draconis reduce`` that signals itself at a chosen point: the killed or interrupted runs of the resume tests.

Usage::

    python reduce_until.py [--step NAME#K | --compute LABEL#K] [--task N] [--signal KILL|INT] -- REDUCE-ARGS...
    python reduce_until.py --step NAME#K --barrier DIR:N -- REDUCE-ARGS...
    python reduce_until.py --on-log REGEX [--signal KILL|INT] -- REDUCE-ARGS...

The signal is sent when the N-th Dask task starts (default 1) while the
K-th call of recipe step NAME runs (including the snapshot after it), or
while the K-th computation labelled LABEL runs (``checkpoint flushPixels``,
``checkpoint after stackFrames``, ``writing``...). With an in-process
scheduler a local Dask callback sends it; on a cluster a worker plugin sends
it to this process. Without ``--step``/``--compute`` the reduction runs
normally. ``--on-log REGEX`` signals right after the run logs a matching
message (``Wrote .*_dark.fits``: after an output is written, before anything
else). With ``--barrier DIR:N`` nothing is signalled: the process waits
at the start of that step until N processes (itself included) have reached
it (one file each in DIR), so runs started together are surely running at
the same time there. The exit status is draconis'; a SIGKILL shows as -9 to
the parent.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _point(text: str) -> tuple[str, int]:
    name, _, k = text.partition("#")
    return name, int(k or 1)


def _arm(nth: int, sig: int):
    """Context: signal this process at the nth task started inside it."""
    from helpers.faults import SignalAfterTasks, SignalOnTask, plugin_on_workers

    import draconis.cluster

    if draconis.cluster.active_client() is None:
        return SignalAfterTasks(nth, sig)
    flag = os.path.join(tempfile.mkdtemp(prefix="draconis-fault-"), "fired")
    pids = os.environ.get("DRACONIS_TEST_WORKER_PIDS")  # a directory: one file per worker process id
    return plugin_on_workers(SignalOnTask(flag, nth=nth, sig=sig, target=os.getpid(), pid_dir=pids), "reduce-until")


@contextlib.contextmanager
def _barrier(spec: str):
    """Wait until N processes have arrived in DIR (``DIR:N``)."""
    import time

    directory, _, n = spec.rpartition(":")
    Path(directory, str(os.getpid())).touch()
    deadline = time.monotonic() + 600
    while len(os.listdir(directory)) < int(n):
        if time.monotonic() > deadline:
            raise RuntimeError(f"barrier {spec}: the other runs never arrived")
        time.sleep(0.05)
    yield


def _signal_on_log(pattern: str, sig: int) -> None:
    import logging
    import re

    class Trigger(logging.Handler):
        def emit(self, record):
            if re.search(pattern, record.getMessage()):
                os.kill(os.getpid(), sig)

    logging.getLogger("draconis").addHandler(Trigger(logging.DEBUG))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--step")
    parser.add_argument("--compute")
    parser.add_argument("--task", type=int, default=1)
    parser.add_argument("--signal", choices=("KILL", "INT"), default="KILL")
    parser.add_argument("--barrier")
    parser.add_argument("--on-log")
    parser.add_argument("reduce", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    sig = signal.SIGKILL if args.signal == "KILL" else signal.SIGINT
    seen: dict[str, int] = {}

    def armed(kind: str, name: str):
        want = getattr(args, kind)
        if not want:
            return contextlib.nullcontext()
        target, k = _point(want)
        if name != target:
            return contextlib.nullcontext()
        seen[kind] = seen.get(kind, 0) + 1
        if seen[kind] != k:
            return contextlib.nullcontext()
        return _barrier(args.barrier) if args.barrier else _arm(args.task, sig)

    import draconis.progress
    from draconis.reduce.resume import StepCaller

    step = StepCaller._step

    def _step(self, name, run, arguments):
        with armed("step", name):
            return step(self, name, run, arguments)

    compute = draconis.progress.compute

    def _compute(tasks, label="computing", **kwargs):
        with armed("compute", label):
            return compute(tasks, label, **kwargs)

    StepCaller._step = _step
    draconis.progress.compute = _compute
    if args.on_log:
        _signal_on_log(args.on_log, sig)
    from draconis.cli import main as draconis_main

    reduce_args = args.reduce[1:] if args.reduce[:1] == ["--"] else args.reduce
    return draconis_main(["reduce", *reduce_args])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
