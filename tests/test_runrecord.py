"""The run record of a reduce: time per primitive and compute stage, frames/s, peak memory per worker,
checkpoint bytes, per-frame facts, and the summary table printed and logged at the end of every reduce.

One real small F2 reduction (tests/helpers/small_run.py, shared with the report tests) on the synchronous
scheduler, and one calibration reduction on a real LocalCluster (scheduler + 2 worker processes) for the
per-worker memory.
"""
from __future__ import annotations

import datetime as dt
import logging
import os

import numpy as np
import pytest
from astropy.table import Table

import draconis
from draconis import runrecord
from draconis.framefacts import frame_rows, left_out
from draconis.recipes import find_recipe
from draconis.recipes.caller import record as record_calls


def _truth(run) -> Table:
    t = Table.read(run.truth / "frames.ecsv")
    return t[t["role"] == "science"]


def test_every_recipe_step_is_timed_in_order(small_f2_run):
    rec = small_f2_run.reduce.summary
    recipe = find_recipe("_default", draconis.open(small_f2_run.science[0]).tags, "sq")
    expected = [c.name for c in record_calls(recipe.func)]
    assert [s.name for s in rec.steps] == expected
    for s in rec.steps:
        assert s.end >= s.start and s.start.tzinfo == dt.timezone.utc
        assert s.seconds >= 0
    assert sum(s.seconds for s in rec.steps) <= rec.seconds
    stack = next(s for s in rec.steps if s.name == "stackFrames")
    assert (stack.frames_in, stack.frames_out) == (5, 1)
    assert rec.success and rec.frames_per_second == pytest.approx(5 / rec.seconds)


def test_compute_stages_belong_to_their_primitive(small_f2_run):
    rec = small_f2_run.reduce.summary
    labels = {(s.step, s.label) for s in rec.stages}
    assert ("flushPixels", "checkpoint flushPixels") in labels
    assert ("detectSources", "checkpoint detectSources") in labels
    assert ("detectSources", "detect sources") in labels
    assert ("stackFrames", "checkpoint stackFrames") in labels
    by_step = {}
    for s in rec.stages:
        by_step[s.step] = by_step.get(s.step, 0.0) + s.seconds
    steps = {}
    for s in rec.steps:
        steps[s.name] = steps.get(s.name, 0.0) + s.seconds
    # between steps the runner snapshots the streams (for --resume): its stages belong to no primitive
    runner = [s for s in rec.stages if s.step is None]
    assert runner and all(s.label.startswith("checkpoint after ") for s in runner)
    assert by_step.pop(None) <= rec.seconds - sum(steps.values()) + 1e-6
    for name, seconds in by_step.items():
        assert seconds <= steps[name] + 1e-6, name


def test_checkpoint_bytes_are_the_bytes_on_disk(small_f2_run):
    # the helper keeps the checkpoints: what the record says is what lies under the run's directory
    rec = small_f2_run.reduce.summary
    # (pixel checkpoints and the resume snapshots; not the run's bookkeeping files beside them, nor the
    # outputs a snapshot froze as hard links, which add no bytes)
    on_disk = sum(p.stat().st_size for p in small_f2_run.checkpoint_dir.rglob("*")
                  if p.is_file() and "backups" not in p.parts and p.parent.parent != small_f2_run.checkpoint_dir
                  and not (p.parent.name == "outputs" and p.stat().st_nlink > 1))
    assert rec.checkpoint_bytes == on_disk > 0


def test_peak_memory_of_this_process(small_f2_run):
    rec = small_f2_run.reduce.summary
    assert rec.scheduler == "synchronous" and rec.workers == {}
    assert list(rec.memory_peak) == ["this process"]
    # no less than a Python process with numpy and astropy hold
    assert 50 * 2**20 < rec.memory_peak["this process"]


def test_non_default_parameters_and_calibrations(small_f2_run):
    rec = small_f2_run.reduce.summary
    params = {s.name: s.params for s in rec.steps}
    # the recipe's own arguments differ from the declared defaults and are recorded
    assert params["storeProcessedScience"].get("suffix") == "_image"
    assert "suffix" not in params["prepare"]
    cals = {c.caltype: c for c in rec.calibrations}
    assert set(cals) == {"processed_dark", "processed_flat"}
    for caltype, path in small_f2_run.ucals.items():
        assert cals[caltype].path == os.path.abspath(path)
        assert cals[caltype].md5 == runrecord.file_md5(path) and len(cals[caltype].md5) == 32


def test_per_frame_facts_match_the_truth(small_f2_run):
    rec = small_f2_run.reduce.summary
    truth = _truth(small_f2_run)
    rows = {r["filename"]: r for r in frame_rows(rec)}
    assert set(rows) == set(truth["file"])
    ratios = [rows[t["file"]]["fwhm"] / t["fwhm_arcsec"] for t in truth]
    assert abs(np.median(ratios) - 1) < 0.1, ratios
    methods = [rows[f]["align_method"] for f in truth["file"]]
    assert methods.count("reference") == 1 and set(methods) <= {"reference", "sources", "offsets"}
    for f in truth["file"]:
        row = rows[f]
        assert row["n_sources"] > 0
        if row["align_method"] == "sources":
            assert row["align_matched"] >= 3 and 0 <= row["align_rms"] < 0.5
        assert row["scale_applied"] == pytest.approx(1.0, abs=0.05)
        if row["scale_measured"] is not None and row["align_method"] != "offsets":
            assert row["scale_measured"] == pytest.approx(row["scale_applied"], rel=0.03)
        assert row["left_out"] is None
    # telescope offsets are the simulator's p, q
    for t in truth:
        assert rows[t["file"]]["p_offset"] == pytest.approx(t["p"]) and rows[t["file"]]["q_offset"] == pytest.approx(t["q"])


def test_summary_table_is_logged_at_the_end(small_f2_run):
    rec = small_f2_run.reduce.summary
    text = small_f2_run.log_file.read_text()
    table = rec.summary_table()
    assert table.splitlines()[0].startswith("Summary: reduce on 5 frame(s)")
    for line in table.splitlines():
        assert line.rstrip() in text
    for name in ("detectSources", "stackFrames", "checkpoint flushPixels", "peak memory per worker",
                 "checkpoints written"):
        assert name in table
    # the table comes after the last primitive and before the closing line
    last = text.rindex("Summary: reduce on 5 frame(s)")
    assert text.rindex("PRIMITIVE: storeProcessedScience") < last < text.rindex("reduce completed in")


def test_left_out_frames_get_the_warning_that_named_them():
    rec = runrecord.RunRecord(recipe="reduce", inputs=["a.fits", "b.fits", "c.fits"])
    for stem in ("a", "b", "c"):
        rec.frames[stem] = {"filename": f"{stem}.fits", "object": True}
    entry = runrecord.StepRecord("stackFrames", runrecord.utcnow())
    entry.warnings.append("stackFrames: b_align.fits: every pixel is flagged; left out of the stack")
    rec.steps.append(entry)
    rec.stacked = ["a", "c"]
    assert left_out(rec) == {"b": "stackFrames: stackFrames: b_align.fits: every pixel is flagged; "
                                   "left out of the stack"}
    rows = {r["filename"]: r for r in frame_rows(rec)}
    assert rows["b.fits"]["left_out"].startswith("stackFrames:") and rows["a.fits"]["left_out"] is None


def test_hooks_do_nothing_without_a_record():
    with runrecord.step("x", [1, 2]) as entry:
        assert entry is None
    with runrecord.stage("s"):
        pass
    runrecord.note_calibration("processed_dark", __file__)
    assert runrecord.current() is None


@pytest.mark.timeout(300)
def test_peak_memory_per_worker_on_a_local_cluster(tmp_path, monkeypatch):
    """A real LocalCluster (2 worker processes): every worker has its own peak, below its memory limit."""
    from distributed import Client, LocalCluster

    from draconis.reduce import Reduce
    from draconis.simulate import make_dataset

    info = make_dataset("f2-deep", tmp_path / "raw", size=64, nframes=1, seed=2)
    monkeypatch.chdir(tmp_path)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                      memory_limit="2GiB") as cluster, Client(cluster) as client:
        r = Reduce([str(p) for p in info.files["dark_5s"]], scheduler=cluster.scheduler_address)
        r.runr()
        workers = set(client.scheduler_info()["workers"])
    rec = r.summary
    assert rec.scheduler == cluster.scheduler_address
    assert set(rec.memory_peak) == workers == set(rec.workers)
    for address, peak in rec.memory_peak.items():
        assert 50 * 2**20 < peak <= rec.workers[address]["memory_limit"]
        assert rec.workers[address]["threads"] == 1
    assert "peak memory per worker: " in rec.summary_table()
    # 2 GiB workers and a 64x64 dark: nothing had to leave memory, and the summary says so
    assert rec.spilled == {w: 0 for w in workers}
    assert "spilled to disk per worker: none" in rec.summary_table()


@pytest.mark.timeout(300)
def test_spill_to_disk_per_worker_and_per_stage(tmp_path, monkeypatch, caplog):
    """Workers that must keep almost nothing in memory spill: the record counts those bytes, per worker and
    per compute stage, from distributed's own counter (real worker processes, real spill directories)."""
    import dask
    from distributed import Client, LocalCluster

    from draconis.reduce import Reduce
    from draconis.simulate import make_dataset

    info = make_dataset("f2-deep", tmp_path / "raw", size=256, nframes=1, seed=2)
    monkeypatch.chdir(tmp_path)
    # managed memory above 64 KiB goes to disk (a 256x256 float32 plane is 256 KiB); the process-memory
    # thresholds are off, so nothing pauses or restarts whatever else loads the machine
    tiny = {"distributed.worker.memory.target": 64 * 1024 / 2**31, "distributed.worker.memory.spill": False,
            "distributed.worker.memory.pause": False, "distributed.worker.memory.terminate": False}
    with dask.config.set(tiny), LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                             dashboard_address=":0", memory_limit="2GiB",
                                             local_directory=str(tmp_path / "workers")) as cluster, \
            Client(cluster) as client:
        r = Reduce([str(p) for p in info.files["dark_5s"]], scheduler=cluster.scheduler_address)
        logger = logging.getLogger("draconis")  # it does not propagate to caplog's root handler
        logger.addHandler(caplog.handler)
        try:
            r.runr()
        finally:
            logger.removeHandler(caplog.handler)
        counted = client.run(runrecord._worker_spilled_bytes)
    rec = r.summary
    assert set(rec.spilled) == set(counted)
    assert sum(rec.spilled.values()) > 256 * 1024  # at least one plane went to disk
    assert all(0 <= rec.spilled[w] <= counted[w] for w in counted)
    # the stages that spilled are named (not every computation is a stage: a primitive's own small
    # dask.compute is not), and no byte is counted twice
    stages = rec.stage_times()
    assert 0 < sum(st["spilled"] for st in stages) <= sum(rec.spilled.values())
    table = rec.summary_table()
    assert "spilled to disk per worker: " in table and "spilled to disk per worker: none" not in table
    assert "(spilled " in table
    # and the log says it when it happens, naming the stage
    assert any("the workers spilled" in line.getMessage() for line in caplog.records)
