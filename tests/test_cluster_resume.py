"""A killed run resumes from its last complete checkpoint, with the outputs of an uninterrupted run (issue 12 item 3).

``draconis reduce`` of the F2 default recipe runs as a child process that
signals itself at a chosen point (tests/helpers/reduce_until.py: the n-th
Dask task started during a given recipe step or a given computation, never a
timer):

* SIGKILL, six times in a row, each run continuing the previous one with
  ``--resume``: during the calibration (the first flush), the sky
  subtraction (the second flush), the detection on the sky-subtracted
  frames, the resampling (computed for stackFrames' checkpoint of its
  inputs), the stack (computed for the snapshot after stackFrames) and the
  output write.  Each resumed run says which snapshot it continues from and
  does not run the steps before it again; the last one completes and its
  outputs equal the uninterrupted synchronous run's, bit for bit; nothing
  is left under the work directory.
* SIGINT (Ctrl-C) on draconis' LocalCluster during the sky, then during the
  output write of the resumed run: exit status 130, the message says how to
  resume, the run's record says "interrupted", the checkpoint being written
  is listed as incomplete, no output file is left, and no worker
  process outlives the run. A third run resumes and completes with the
  reference outputs.
* What killed runs leave: a dark reduction killed right after writing its
  dark, and a science run killed in its calibration; the dark reduction run
  again (without ``--resume``) removes its predecessor's directory and rolls
  back its dark, names the science run's and keeps it for its ``--resume``,
  and stores its dark.
* Changes since the interrupted run: a changed input or parameter makes
  ``--resume`` refuse with one line saying what changed; ``--resume=auto``
  continues from the last snapshot before the first step the change
  affects (or from the raw files for a changed input).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

import draconis

sys.path.insert(0, str(Path(__file__).parent))
from helpers.science_runs import assert_same_products, dataset, products, reference

LAUNCHER = Path(__file__).parent / "helpers" / "reduce_until.py"
STEPS = 24  # steps of the F2 default recipe


def _reduce(ds, directory: Path, log: str, *point: str, args: list[str] | None = None, scheduler="synchronous",
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``draconis reduce`` of ``ds`` in ``directory`` as a child process, signalled at ``point``."""
    directory.mkdir(exist_ok=True)
    cmd = [sys.executable, str(LAUNCHER), *point, "--", *(args if args is not None else ds.cli_args()),
           "--logfile", log]
    if scheduler:
        cmd += ["--scheduler", scheduler]
    proc = subprocess.run(cmd, cwd=directory, env={**os.environ, "HOME": str(directory), **(env or {})},
                          capture_output=True, text=True, timeout=900, check=False)
    proc.log = (directory / log).read_text() if (directory / log).exists() else ""
    return proc


def _resumed_from(text: str) -> int | None:
    """The step a resumed run continued after (0: from the raw files), from its log."""
    found = re.search(r"Resuming run-\w+ .* from its snapshot after step (\d+)/(\d+)", text)
    if found:
        assert int(found.group(2)) == STEPS
        return int(found.group(1))
    return 0 if re.search(r"Resuming run-\w+ .*no step had completed a snapshot", text) else None


def _records(directory: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((directory / ".draconis").glob("run-*/run.json"))]


KILLS = [  # where, how the child finds the point, the snapshot the next run continues after
    ("calibration", ["--compute", "checkpoint flushPixels#1", "--task", "3"], 0),
    ("sky", ["--compute", "checkpoint flushPixels#2", "--task", "3"], 12),
    ("detection", ["--step", "detectSources#2", "--task", "2"], 17),
    ("resampling", ["--compute", "checkpoint stackFrames#1", "--task", "3"], 18),
    ("stack", ["--compute", "checkpoint after stackFrames#1", "--task", "2"], 18),
    ("output write", ["--step", "writeOutputs#1", "--task", "2"], 22),
]


def test_killed_six_times_then_resumed_gives_the_uninterrupted_outputs(f2_science, tmp_path):
    ds, expected = f2_science
    work = tmp_path / "run"
    for i, (where, point, _) in enumerate(KILLS):
        proc = _reduce(ds, work, f"reduce-{i}.log", *point, args=ds.cli_args() + (["--resume"] if i else []))
        assert proc.returncode == -9, f"not killed during the {where}: {proc.returncode}\n{proc.stderr[-2000:]}"
        if i:
            # what the previous kill left is where this run started
            assert _resumed_from(proc.log) == KILLS[i - 1][2], (where, proc.log[-3000:])
            if KILLS[i - 1][2]:
                assert "PRIMITIVE: prepare" not in proc.log  # not from the raw files
    assert any(r["state"] == "running" for r in _records(work))  # a killed run cannot say more
    final = _reduce(ds, work, "reduce-final.log", args=ds.cli_args() + ["--resume"])
    assert final.returncode == 0, final.stderr[-3000:]
    assert _resumed_from(final.log) == KILLS[-1][2]
    assert "Reusing the stackFrames checkpoint" in (work / "reduce-5.log").read_text()  # computed by run 4
    assert_same_products(products(work), expected, "F2 resumed after six kills")
    assert not list((work / ".draconis").glob("*")), list((work / ".draconis").glob("*"))


def _alive(pids: list[int]) -> list[int]:
    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            pass
    return out


def test_ctrl_c_stops_cleanly_and_the_run_resumes(f2_science, tmp_path):
    ds, expected = f2_science
    work, pids = tmp_path / "run", tmp_path / "pids"
    pids.mkdir()
    local = {"DASK_DRACONIS__N_WORKERS": "2", "DASK_DRACONIS__THREADS_PER_WORKER": "1",
             "DRACONIS_TEST_WORKER_PIDS": str(pids)}
    proc = _reduce(ds, work, "reduce-0.log", "--compute", "checkpoint flushPixels#2", "--task", "3",
                   "--signal", "INT", scheduler=None, env=local)
    assert proc.returncode == 130, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1] == "draconis reduce: interrupted"
    said = proc.stdout + proc.stderr  # the log goes to stdout, the error line to stderr
    assert "Interrupted during step 17 of 24 (flushPixels)" in said and " --resume`" in said
    workers = [int(p.name) for p in pids.iterdir()]
    assert len(workers) >= 2
    deadline = time.monotonic() + 60  # the workers may still be exiting when the client has returned
    while _alive(workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(workers), "worker processes outlived the interrupted run"
    assert not list(work.glob("*.fits")), list(work.glob("*.fits"))
    (record,) = _records(work)
    assert record["state"] == "interrupted" and record["outputs"] == []
    run_dir = next((work / ".draconis").glob("run-*"))
    assert (run_dir / "step-012" / "manifest.json").exists()
    index = json.loads((run_dir / "checkpoints.json").read_text())
    assert [(c["step"], c["label"], c["complete"]) for c in index.values()][-1] == (17, "flushPixels", False)

    proc = _reduce(ds, work, "reduce-1.log", "--step", "writeOutputs#1", "--task", "2", "--signal", "INT",
                   args=ds.cli_args() + ["--resume"])
    assert proc.returncode == 130, proc.stderr[-3000:]
    assert _resumed_from(proc.log) == 12
    assert not list(work.glob("*.fits")), list(work.glob("*.fits"))

    final = _reduce(ds, work, "reduce-2.log", args=ds.cli_args() + ["--resume"])
    assert final.returncode == 0, final.stderr[-3000:]
    assert _resumed_from(final.log) == 22
    assert_same_products(products(work), expected, "F2 resumed after two Ctrl-C")


def test_resume_refuses_what_changed_and_auto_recomputes_from_it(f2_science, tmp_path):
    ds, _ = f2_science
    work = tmp_path / "run"
    work.mkdir()
    science = []
    for path in ds.science:  # copies, so one can be changed
        science.append(str(shutil.copy(path, work / Path(path).name)))
    args = [*science, *[a for a in ds.cli_args() if a not in ds.science]]
    proc = _reduce(ds, work, "reduce-0.log", "--compute", "checkpoint flushPixels#2", "--task", "3", args=args)
    assert proc.returncode == -9

    changed = [*args, "-p", "detectSources:detect_thresh=2.5"]
    proc = _reduce(ds, work, "reduce-1.log", args=changed + ["--resume"])
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(err) == 1, proc.stderr[-2000:]
    assert "cannot resume" in err[0] and "parameters given (-p) changed" in err[0] and "--resume=auto" in err[0]
    # auto: the first step the change reaches is detectSources (step 12): continue after the flush (step 8)
    proc = _reduce(ds, work, "reduce-2.log", "--compute", "checkpoint detectSources#1", args=changed + ["--resume=auto"])
    assert proc.returncode == -9
    assert _resumed_from(proc.log) == 8, proc.log[-3000:]

    with open(science[2], "r+b") as fh:  # one input changes (a byte of its data)
        fh.seek(-10, os.SEEK_END)
        fh.write(b"\x01")
    proc = _reduce(ds, work, "reduce-3.log", args=changed + ["--resume"])
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(err) == 1 and f"the input {science[2]} changed" in err[0], proc.stderr[-2000:]
    proc = _reduce(ds, work, "reduce-4.log", "--compute", "checkpoint flushPixels#1", args=changed + ["--resume=auto"])
    assert proc.returncode == -9
    assert _resumed_from(proc.log) == 0 and "the input" in proc.log


def test_a_later_run_removes_what_a_killed_run_left(f2_science, tmp_path):
    """Issue 12 item 0: SIGKILL left checkpoints no later run removed, and a dark outside calibrations/."""
    ds, _ = f2_science
    work = tmp_path / "run"
    raw = sorted(str(p) for p in (ds.work / "raw").glob("*.fits"))
    darks = [p for p in raw if "DARK" in draconis.open(p).tags]
    five = [p for p in darks if abs(draconis.open(p).exposure_time() - 5.0) < 0.01]
    dark_args = [*five, "--logmode", "quiet"]
    # killed right after writing its dark, before storing it
    proc = _reduce(ds, work, "dark-0.log", "--on-log", r"Wrote .*_dark\.fits", args=dark_args)
    assert proc.returncode == -9
    (dark,) = work.glob("*_dark.fits")
    assert not (work / "calibrations").exists()
    # a science run of other inputs killed during its calibration
    proc = _reduce(ds, work, "sci-0.log", "--compute", "checkpoint flushPixels#1", "--task", "3")
    assert proc.returncode == -9
    runs = {p.name for p in (work / ".draconis").glob("run-*")}
    assert len(runs) == 2
    # the dark reduction again, without --resume: it removes its killed predecessor, names the other
    proc = _reduce(ds, work, "dark-1.log", args=dark_args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    log = (work / "dark-1.log").read_text()
    assert re.search(rf"Removed run-\w+ .* its output\(s\) {dark.name} rolled back", log), log[-2000:]
    assert re.search(r"holds [\d.]+ MB of checkpoints of run-\w+ .* an unfinished reduction of other inputs", log)
    left = {p.name for p in (work / ".draconis").glob("run-*")}
    assert len(left) == 1 and left < runs  # the science run's, kept for its --resume
    assert (work / "calibrations" / "processed_dark" / dark.name).exists() and dark.exists()
