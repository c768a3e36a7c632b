"""Stopping a run (issue 12): Ctrl-C, SIGTERM, a lost scheduler, a misspelt scheduler.

``draconis reduce`` runs in a subprocess with a user recipe that writes an
output and then waits in a distributed computation that never ends (three
tasks sleeping on one single-thread worker), so the signal always lands in
the middle of a ``Client.gather`` (the test waits for a task to start).  After SIGINT or SIGTERM the command
prints one line, exits 130 / 143, leaves no output, no checkpoint directory
and no process behind (every process that inherited the run's marker
environment variable is gone).  When the scheduler of an external cluster
is killed, the run ends with one line saying so.  A misspelt ``--scheduler``
is refused at once with the valid values.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from helpers.dask_processes import scheduler_process  # noqa: E402

from draconis.cli import main

RECIPE = '''
import os
import time

import dask

from draconis import progress


def blocking(p):
    if not p.prepare():
        return  # the runner's dry run of the recipe (it records calls, returns no frames)
    if os.environ.get("WRITE_FIRST"):
        p.writeOutputs()
    print("WAITING", flush=True)
    # a lambda travels to the workers by value (this module is not importable there)
    sleep = lambda marker: (open(marker, "w").close(), time.sleep(3600))  # noqa: E731
    progress.compute([dask.delayed(sleep, pure=False)(os.path.abspath(f"running-{i}")) for i in range(3)],
                     "waiting")
'''


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> list[Path]:
    from draconis.simulate import make_dataset

    where = tmp_path_factory.mktemp("raw")
    make_dataset("f2-deep", where, size=64, seed=4, nframes=2)
    return sorted(where.glob("S20200104S00*.fits"))[:2]


def _start(raw, tmp_path, scheduler_args=(), env=None):
    tag = uuid.uuid4().hex
    (tmp_path / "blocking.py").write_text(RECIPE)
    env = {**os.environ, "DRACONIS_TEST_RUN": tag, "HOME": str(tmp_path), "DASK_DRACONIS__N_WORKERS": "1",
           "DASK_DRACONIS__MEMORY_LIMIT": "1GiB", "WRITE_FIRST": "1", **(env or {})}
    proc = subprocess.Popen([sys.executable, "-m", "draconis.cli", "reduce", *map(str, raw), "-r",
                             "blocking.py:blocking", "--logfile", "", "--no-report", *scheduler_args],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if line.strip() == "WAITING":
            break
    else:
        pytest.fail(f"the run ended before it waited: {proc.wait()} {proc.stderr.read()}")
    if "--scheduler" not in scheduler_args:  # a task runs: the client is inside Client.gather
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob("running-*")) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
    if env.get("WRITE_FIRST"):
        assert list(tmp_path.glob("*_prepared.fits"))  # an output to roll back
    return proc, tag


def _survivors(tag: str) -> list[psutil.Process]:
    """Processes still running that inherited the run's marker (the run's own children)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("DRACONIS_TEST_RUN") == tag:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def _wait_gone(tag: str, timeout: float = 60) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    while (left := _survivors(tag)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


@pytest.mark.parametrize("sig, status, word", [(signal.SIGINT, 130, "interrupted"),
                                               (signal.SIGTERM, 143, "terminated")], ids=["SIGINT", "SIGTERM"])
def test_signal_stops_cleanly(sig, status, word, raw, tmp_path):
    proc, tag = _start(raw, tmp_path)
    proc.send_signal(sig)
    assert proc.wait(timeout=120) == status
    err = proc.stderr.read().strip().splitlines()
    assert err == [f"draconis reduce: {word}" + (" (SIGTERM)" if sig == signal.SIGTERM else "")], err
    assert not list(tmp_path.glob("*_prepared.fits"))  # rolled back
    assert not (tmp_path / ".draconis").exists()
    left = _wait_gone(tag)
    assert not left, [p.cmdline() for p in left]


def test_lost_scheduler_is_one_line(raw, tmp_path):
    cwd = tmp_path / "cluster"
    cwd.mkdir()
    with scheduler_process(cwd) as address:
        # No worker: the computation waits until the scheduler is killed.  The client then tries
        # to reconnect for distributed.comm.timeouts.connect before giving up.
        proc, _ = _start(raw, tmp_path, ["--scheduler", address],
                         env={"DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "3s", "WRITE_FIRST": ""})
        address.proc.kill()
        assert proc.wait(timeout=120) == 1
    err = proc.stderr.read().strip().splitlines()
    assert len(err) == 1 and f"lost the Dask scheduler at {address}" in err[0], "\n".join(err)
    assert not (tmp_path / ".draconis").exists()


@pytest.mark.parametrize("value", ["synchronus", "thread", "localhost"])
def test_misspelt_scheduler_lists_the_valid_values(value, raw, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["reduce", *map(str, raw), "--scheduler", value]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"'{value}'" in err[0]
    assert "synchronous, threads, or a scheduler address such as tcp://host:8786" in err[0]
