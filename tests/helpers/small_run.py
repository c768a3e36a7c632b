"""One small real F2 reduction (simulated raw -> dark, flat -> science stack) shared by the run-record,
report and display tests: 128 px, 5 science frames, the synchronous scheduler, checkpoints kept.
"""
from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path

import dask

import draconis

SIZE = 128
NFRAMES = 5


@dataclasses.dataclass
class SmallRun:
    work: Path
    raw: Path
    truth: Path
    science: list[str]
    ucals: dict[str, str]
    reduce: object          # the science draconis.Reduce after runr()
    calibration_runs: list  # the dark and flat Reduce objects
    log_file: Path
    checkpoint_dir: Path


def _reduce(files, *, scheduler="synchronous", **attrs):
    from draconis.reduce import Reduce

    r = Reduce([str(f) for f in files], scheduler=scheduler)
    for key, value in attrs.items():
        setattr(r, key, value)
    r.runr()
    return r


def make_small_run(work: Path, *, report: bool | None = None) -> SmallRun:
    """Simulate and reduce under ``work`` (dark and flat, then the science frames with the default recipe)."""
    from draconis import logutils
    from draconis.simulate import make_dataset

    raw = work / "raw"
    info = make_dataset("f2-deep", raw, size=SIZE, nframes=NFRAMES, seed=4)
    files = info.files
    science = [str(p) for p in files["science"]]
    t_flat = draconis.open(files["flat"][0]).exposure_time()
    flat_darks = [p for p in files["dark"] if abs(draconis.open(p).exposure_time() - t_flat) < 0.01]
    log_file = work / "reduce.log"
    checkpoints = work / "checkpoints"
    logutils.config("standard", file_name=str(log_file), file_mode="w")
    with contextlib.chdir(work), dask.config.set({"draconis.keep_checkpoints": True}):
        dark = _reduce(files["dark_5s"])
        flat = _reduce(list(files["flat"]) + flat_darks)
        ucals = {"processed_dark": str(work / dark.output_filenames[0]),
                 "processed_flat": str(work / flat.output_filenames[0])}
        sci = _reduce(science, ucals=ucals, workdir=str(checkpoints),
                      **({} if report is None else {"report": report}))
    logutils.config("standard")
    return SmallRun(work, raw, Path(info.truth_dir), science, ucals, sci, [dark, flat], log_file, checkpoints)
