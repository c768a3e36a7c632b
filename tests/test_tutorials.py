"""The tutorials in docs/tutorials run as written (issue 13 item 4): every bash and python block, in order,
on simulated data made small by the runner (tests/helpers/tutorials.py); a doc that drifts from the code
fails here. Every FITS file a tutorial writes must then open cleanly in astropy (2-D WCS, no warning).
"""
from __future__ import annotations

from pathlib import Path

import pytest
from astropy.io import fits

from helpers.clean_open import assert_opens_cleanly
from helpers.tutorials import blocks, run_tutorial

DOCS = Path(__file__).resolve().parents[1] / "docs" / "tutorials"
#: per tutorial: (array size, science frames or None for the dataset's own count); GSAOI at 256: smaller
#: arrays share too few stars between 1.5" dithers for disco to align the frames on their sources
SIZES = {"f2-deep-field-cli.md": (96, 4), "f2-deep-field-api.md": (96, 4),
         "niri-extended-source-api.md": (96, None), "gnirs-keyhole-cli.md": (96, 6),
         "gsaoi-galaxy-cli.md": (256, 8)}


#: outputs a tutorial must leave in its playground (glob -> how many), each opening cleanly like every other
#: FITS file it writes. GSAOI (issue 13 item 5): the _skyCorrected frames of the standard and the science,
#: with the SIP distortion of their four arrays, and the three disco stacks.
MUST_WRITE = {"gsaoi-galaxy-cli.md": {"S20170504S01??_skyCorrected.fits": 4, "S20170505S0???_skyCorrected.fits": 5,
                                      "disco_stack.fits": 1, "my_Kshort_stack.fits": 1,
                                      "my_Kshort_stack_api.fits": 1}}


def test_every_tutorial_is_run_here():
    assert sorted(p.name for p in DOCS.glob("*.md") if p.name != "README.md") == sorted(SIZES)
    for name in SIZES:
        kinds = {lang for lang, _ in blocks((DOCS / name).read_text())}
        assert "bash" in kinds or "python" in kinds


@pytest.mark.parametrize("name", sorted(SIZES))
def test_tutorial_runs(name, tmp_path):
    size, nframes = SIZES[name]
    run_tutorial(DOCS / name, tmp_path, size=size, nframes=nframes)
    outputs = [p for p in (tmp_path / "playground").rglob("*.fits")]
    assert outputs
    for path in outputs:
        assert_opens_cleanly(path)
    for pattern, count in MUST_WRITE.get(name, {}).items():
        found = sorted((tmp_path / "playground").glob(pattern))
        assert len(found) == count, (pattern, [p.name for p in found])
        for path in found:
            # every science array (four per GSAOI frame, one per stack) has its clean 2-D celestial WCS
            with fits.open(path) as hdul:
                sci = [h.header for h in hdul if h.name == "SCI"]
            assert len(sci) == (4 if "_skyCorrected" in pattern else 1)
            assert assert_opens_cleanly(path) == len(sci), path.name
            # frames carry the static distortion as SIP, the stacks are on an undistorted grid
            assert all((header["CTYPE1"] == "RA---TAN-SIP") == ("_skyCorrected" in pattern) for header in sci)
    # every science reduction wrote its report: none was given up with a warning
    logs = list((tmp_path / "playground").glob("*.log"))
    assert logs and list((tmp_path / "playground").glob("*_report.html"))
    for log in logs:
        assert "report could not be written" not in log.read_text(), log.name
