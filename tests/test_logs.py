"""Logs a person can read (issue 13 item 3): the terminal gets a few lines per primitive and the summary
table; per-frame lines beyond the first two of a kind go to the log file only (all of them on the terminal
with --logmode debug). Real simulated F2 frames through ``draconis reduce``.
"""
from __future__ import annotations

import re

import pytest

from draconis.cli import main


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    from draconis.simulate import make_dataset

    info = make_dataset("f2-deep", tmp_path_factory.mktemp("logs") / "raw", size=64, nframes=5, seed=7)
    return [str(p) for p in info.files["science"]]


def _run(raw, tmp_path, monkeypatch, capsys, *extra):
    monkeypatch.chdir(tmp_path)
    # detectSources says one line per frame: five frames, five lines
    assert main(["reduce", *raw, "-r", "detectSources", "--scheduler", "synchronous", "--no-report",
                 "--logfile", "run.log", *extra]) == 0
    return capsys.readouterr().out, (tmp_path / "run.log").read_text()


def test_terminal_condenses_per_frame_lines_the_file_keeps_them(raw, tmp_path, monkeypatch, capsys):
    out, log = _run(raw, tmp_path, monkeypatch, capsys)
    per_frame = r"detectSources: S\d+S\d+\.fits: \d+ source\(s\)"
    assert len(re.findall(per_frame, out)) == 2
    assert len(re.findall(r"^Wrote ", out, re.M)) == 2
    assert out.count("... 3 more line(s) like these in the log file") == 2
    assert len(re.findall(per_frame, log)) == 5 and len(re.findall(r" - Wrote ", log)) == 5
    # no FITS-standard warning leaks to the terminal when catalogues are written
    assert "VerifyWarning" not in out
    # the run ends with the summary table on the terminal and in the file
    assert re.search(r"^Summary: detectSources on 5 frame\(s\)", out, re.M)
    assert "Summary: detectSources on 5 frame(s)" in log
    # per-frame facts are in the file only
    assert "Per-frame facts:" in log and "Per-frame facts:" not in out


def test_debug_mode_shows_everything(raw, tmp_path, monkeypatch, capsys):
    out, _ = _run(raw, tmp_path, monkeypatch, capsys, "--logmode", "debug")
    assert len(re.findall(r"detectSources: \S+: \d+ source\(s\)", out)) == 5
    assert "more line(s) like these" not in out and "Per-frame facts:" in out


def test_warnings_are_never_condensed(raw, tmp_path, monkeypatch, capsys):
    # addDQ without a static BPM warns once per frame: every warning reaches the terminal
    monkeypatch.chdir(tmp_path)
    assert main(["reduce", *raw, "-r", "addDQ", "--scheduler", "synchronous", "--no-report"]) == 0
    out = capsys.readouterr().out
    assert len(re.findall(r"addDQ: no static BPM found for", out)) == 5


def test_a_log_line_during_a_progress_bar_starts_its_own_line(monkeypatch):
    """Terminal stdout and stderr are one screen: a message logged while a bar is drawn is not glued to it."""
    import io

    import dask

    from draconis import logutils, progress

    screen = io.StringIO()
    monkeypatch.setattr("sys.stdout", screen)
    monkeypatch.setattr("sys.stderr", screen)
    logutils.config("standard")
    log = logutils.get_logger()

    def work(k):
        log.info("task %d says hello", k)
        return k

    try:
        with dask.config.set(scheduler="synchronous"):
            assert progress.compute([dask.delayed(work)(k) for k in range(3)], "stage", show=True) == [0, 1, 2]
    finally:
        logutils.config("standard")
    text = screen.getvalue()
    assert "stage" in text  # the bar was drawn
    for k in range(3):
        at = text.index(f"task {k} says hello")
        # the bar was cleared before the message: it starts a line
        assert text[at - 1] in "\r\n", repr(text[max(0, at - 60):at + 20])
