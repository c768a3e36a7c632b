"""The HTML report of a run (issue 13 item 1), opened in headless Chromium.

The report of the small real F2 reduction (tests/helpers/small_run.py) is loaded from disk by Debian's
chromium driven by Playwright (never a downloaded browser): it must render, every picture must load, and
the figures it shows must be the run record's and the log file's. A screenshot is kept under the test's
tmp dir (its path is printed). Numbers measured for the report are checked against the simulator's truth.
"""
from __future__ import annotations

import os
import re
import tempfile

import pytest
from astropy.table import Table

from draconis import framefacts
from draconis.cli import main

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def page(small_f2_run, tmp_path_factory):
    """The science report open in Chromium: (page, report path, screenshot path)."""
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    assert os.path.exists(CHROMIUM), "Debian's chromium is missing: .ci/run installs it (apt-get install chromium)"
    report = small_f2_run.reduce.report_filename
    shot = tmp_path_factory.mktemp("report_screenshot") / "report.png"
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as p:
        context = p.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, headless=True, args=FLAGS,
                                                       viewport={"width": 1200, "height": 900})
        try:
            tab = context.new_page()
            errors: list[str] = []
            tab.on("pageerror", lambda err: errors.append(str(err)))
            tab.goto(f"file://{report}")
            tab.wait_for_load_state("load")
            tab.screenshot(path=str(shot), full_page=True)
            print(f"report screenshot: {shot}")
            yield tab, report, shot, errors
        finally:
            context.close()


def _table(tab, table_id: str) -> list[list[str]]:
    return tab.evaluate(f"""Array.from(document.querySelectorAll('#{table_id} tr')).map(
        tr => Array.from(tr.querySelectorAll('th,td')).map(c => c.innerText.trim()))""")


def test_report_is_written_beside_the_outputs(small_f2_run):
    report = small_f2_run.reduce.report_filename
    assert report == str(small_f2_run.work / "S20200104S0075_report.html")
    folder = small_f2_run.work / "S20200104S0075_report"
    assert (folder / "record.json").is_file() and (folder / "stack.png").is_file()
    # calibration reductions write none unless asked
    assert [r.report_filename for r in small_f2_run.calibration_runs] == [None, None]
    assert not list(small_f2_run.work.glob("S20200107*_report.html"))


def test_report_renders_and_every_image_loads(page):
    tab, report, shot, errors = page
    assert "draconis report" in tab.title()
    assert errors == []
    images = tab.evaluate("Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])")
    srcs = {src for src, _, _ in images}
    for key in ("times", "sky", "fwhm", "sources", "scaling", "dither", "stack", "depth", "residual", "histogram"):
        assert f"S20200104S0075_report/{key}.png" in srcs, key
    assert any("calibration_" in s for s in srcs)
    for src, complete, width in images:
        assert complete and width > 0, src
    assert shot.stat().st_size > 10_000


def test_times_shown_are_the_record_and_the_log(page, small_f2_run):
    tab, *_ = page
    rec = small_f2_run.reduce.summary
    rows = {r[0]: r for r in _table(tab, "times-table")[1:] if r}
    log = small_f2_run.log_file.read_text()
    summary = log[log.rindex("Summary: reduce on 5 frame(s)"):]
    for prim in rec.primitive_times():
        shown = rows[prim["name"]]
        assert shown[4] == f"{prim['seconds']:.2f}"
        # the log's summary line of the primitive has the same calls and seconds
        line = re.search(rf" - \s+{prim['name']}\s+(\d+)\s+\d+>\d+\s+([\d.]+)", summary, re.M)
        assert line and line.group(1) == shown[1] and line.group(2) == shown[4], prim["name"]
    run = dict(r for r in _table(tab, "run-table") if len(r) == 2)
    assert run["recipe"] == "reduce" and run["scheduler"] == "synchronous"
    assert run["frames per second"] == f"{rec.frames_per_second:.2f}"
    workers = _table(tab, "workers-table")
    assert workers[1][0] == "this process" and workers[1][3] in summary


def test_frame_table_is_the_record_and_the_log(page, small_f2_run):
    tab, *_ = page
    rec = small_f2_run.reduce.summary
    table = _table(tab, "frames-table")
    head, body = table[0], [r for r in table[1:] if r]
    log = small_f2_run.log_file.read_text()
    logged = log[log.rindex("Per-frame facts:"):].splitlines()[1:len(body) + 2]
    for row in body:
        facts = rec.frames[row[0].removesuffix(".fits")]
        for key in ("fwhm", "n_sources", "sky_level", "align_method", "scale_applied"):
            assert row[head.index(framefacts.COLUMNS[key])] == framefacts.format_value(facts.get(key)), key
        # the same row, cell for cell, in the log file's per-frame table
        tokens = [c for cell in row for c in cell.split()]
        assert any(line.split()[-len(tokens):] == tokens for line in logged), row[0]


def test_calibrations_and_parameters_shown(page, small_f2_run):
    tab, *_ = page
    cals = {r[0]: r for r in _table(tab, "calibrations-table")[1:] if r}
    rec = small_f2_run.reduce.summary
    for c in rec.calibrations:
        assert cals[c.caltype][1] == c.path and cals[c.caltype][2] == c.md5
    params = _table(tab, "params-table")
    assert ["storeProcessedScience", "suffix", "_image", "recipe"] in params
    stack = dict(r for r in _table(tab, "stack-table") if len(r) == 2)
    assert stack["frames combined (NCOMBINE)"] == "5"
    assert stack["most frames on one pixel"] == "5"


def test_report_numbers_against_the_truth(small_f2_run):
    """Sky levels of the raw frames and the stack's normalised residuals, as the report measured them."""
    rec = small_f2_run.reduce.summary
    truth = Table.read(small_f2_run.truth / "frames.ecsv")
    truth = truth[truth["role"] == "science"]
    for t in truth:
        measured = rec.frames[t["file"].removesuffix(".fits")]["sky_level"]
        # the raw median also holds the dark current (~1 %) and the flat's +-5 % gradient averages out
        assert measured == pytest.approx(t["sky_e"], rel=0.03)
    st = rec.report_stack["stats"]
    assert abs(st["mean"]) < 0.1 and st["robust_std"] == pytest.approx(1.0, abs=0.15)
    depth = dict(rec.report_stack["depth_rows"])
    assert max(depth) == 5 and depth[5] > 0


def test_report_on_request_for_a_calibration_and_no_report_on_request(small_f2_run, tmp_path, monkeypatch, capsys):
    from draconis.simulate import make_dataset

    info = make_dataset("f2-deep", tmp_path / "raw", size=64, nframes=1, seed=5)
    monkeypatch.chdir(tmp_path)
    darks = [str(p) for p in info.files["dark_5s"]]
    assert main(["reduce", *darks, "--report", "--scheduler", "synchronous", "--logmode", "quiet"]) == 0
    (report,) = tmp_path.glob("*_report.html")
    text = report.read_text()
    assert "processed_dark (this run)" in text and "S20200107S0049_dark.fits" in text
    sci = [str(p) for p in info.files["science"]]
    assert main(["reduce", *sci, "-r", "prepare", "--no-report", "--scheduler", "synchronous",
                 "--logmode", "quiet"]) == 0
    assert len(list(tmp_path.glob("*_report.html"))) == 1
    assert main(["reduce", *sci, "-r", "prepare", "--scheduler", "synchronous", "--logmode", "quiet"]) == 0
    assert (tmp_path / "S20200104S0075_report.html").is_file()
