"""``draconis demo`` ends by pointing to the report and the stack's picture, with a truth comparison
(issue 13 item 6); the comparison itself is checked on the shared small F2 reduction."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

import draconis
from draconis.cli import main
from draconis.report.truth import compare_with_truth


def test_truth_comparison_of_a_real_stack(small_f2_run):
    stack = draconis.open(small_f2_run.work / "S20200104S0075_image.fits")
    exptime = draconis.open(small_f2_run.science[0]).exposure_time()
    result = compare_with_truth(stack, small_f2_run.truth, exptime)
    assert result.stars >= 3
    # 5 frames of 128 px: a handful of stars, each to a few per cent; positions to a fraction of a pixel
    assert result.flux_ratio_median == pytest.approx(1.0, abs=0.08)
    assert result.offset_scatter_arcsec < 0.18 and max(map(abs, result.offset_median_arcsec)) < 0.3
    assert abs(result.background_median) < 20
    text = "\n".join(result.lines())
    assert f"{result.stars} isolated stars" in text and f"{result.flux_ratio_median:.3f}" in text


def test_demo_points_to_the_report_and_the_picture(tmp_path, capsys):
    assert main(["demo", "--dir", str(tmp_path / "demo"), "--size", "96", "--nframes", "4"]) == 0
    out = capsys.readouterr().out
    tail = out[out.rindex("Stack S20200104S0075_image.fits"):]
    report = Path(re.search(r"^Report: (\S+)$", tail, re.M).group(1))
    picture = Path(re.search(r"^Stack picture: (\S+)", tail, re.M).group(1))
    assert report.is_file() and report.name == "S20200104S0075_report.html"
    assert picture.is_file() and picture.stat().st_size > 1000
    assert re.search(r"photometry: \d+ isolated stars, flux / truth = [\d.]+ \(median\)", tail)
    assert re.search(r"astrometry: common offset E [-+][\d.]+\", N [-+][\d.]+\"", tail)
