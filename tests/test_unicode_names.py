"""Non-ASCII file names (issue 12): FITS headers are ASCII, file names need not be.

A raw file named ``unicodé_ñame_中文.fits`` is reduced (its products keep the
real name on disk; ORIGNAME holds it %-escaped and reads back as the real
name), and a processed dark with a non-ASCII name, accepted by
``draconis caldb add``, is found and used by a later reduction (DARKIM
names it, escaped). The header escaping itself is checked on its own.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from astropy.io import fits

import draconis
from draconis.cli import main
from draconis.frame import header_name, header_text

NAME = "unicodé_ñame_中文"
DARK_NAME = "dark_ñ中.fits"
RECIPE = '''
def quick(p):
    p.prepare()
    p.addDQ()
    p.ADUToElectrons()
    p.addVAR(read_noise=True, poisson_noise=True)
    p.darkCorrect()
    p.stackFrames()
    p.writeOutputs()
'''


@pytest.mark.parametrize("name", ["S20200104S0075.fits", "a b.fits", "unicodé_ñame_中文.fits", "100%.fits",
                                  "tab\there", "50%_ñ.fits"])
def test_header_text_is_ascii_and_reversible(name):
    text = header_text(name)
    assert all(" " <= c <= "~" for c in text)
    assert header_name(text) == name
    fits.Header()["ORIGNAME"] = text  # astropy accepts it
    if all(" " <= c <= "~" for c in name):
        assert text == name  # printable ASCII (Gemini names, any other card text) is left as it is


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> tuple[list[Path], list[Path]]:
    """Two F2 science frames (the first renamed with non-ASCII characters) and three darks of their exposure time."""
    from draconis.simulate import make_dataset

    where = tmp_path_factory.mktemp("raw")
    make_dataset("f2-deep", where, size=64, seed=2, nframes=2)
    files = sorted(where.glob("S*.fits"))
    science = [p for p in files if "IMAGE" in draconis.open(str(p)).tags and "CAL" not in draconis.open(str(p)).tags]
    exptime = draconis.open(str(science[0])).exposure_time()
    darks = [p for p in files if "DARK" in draconis.open(str(p)).tags
             and draconis.open(str(p)).exposure_time() == exptime][:3]
    assert len(science) == 2 and len(darks) == 3
    renamed = science[0].with_name(f"{NAME}.fits")
    science[0].rename(renamed)
    return [renamed, science[1]], darks


def test_non_ascii_names_in_reduce_and_caldb(raw, tmp_path, monkeypatch, caldb_config, capsys):
    science, darks = raw
    monkeypatch.chdir(tmp_path)
    (tmp_path / "quick.py").write_text(RECIPE)
    assert main(["caldb", "init"]) == 0
    assert main(["reduce", *map(str, darks), "--scheduler", "synchronous", "--logfile", ""]) == 0
    dark = capsys.readouterr().out.splitlines()[-1]  # the output name, printed last
    assert dark.endswith("_dark.fits")
    shutil.copy(dark, DARK_NAME)
    assert main(["caldb", "remove", dark]) == 0
    assert main(["caldb", "add", DARK_NAME]) == 0
    assert main(["caldb", "list"]) == 0
    assert DARK_NAME in capsys.readouterr().out  # the real name in the database

    status = main(["reduce", *map(str, science), "-r", "quick.py:quick", "--scheduler", "synchronous", "--no-report",
                   "--logfile", ""])
    assert status == 0, capsys.readouterr().err
    out = tmp_path / f"{NAME}_stack.fits"
    assert out.exists()  # the real name on disk
    with fits.open(out) as hdul:
        phu = hdul[0].header
        assert phu["ORIGNAME"] == header_text(f"{NAME}.fits") and phu["ORIGNAME"].isascii()
        assert header_name(phu["DARKIM"]) == DARK_NAME and phu["DARKIM"].isascii()
    assert draconis.open(str(out)).orig_filename == f"{NAME}.fits"
