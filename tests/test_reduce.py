"""The runner end to end on small files built from real F2/NIRI headers: Reduce API, CLI, errors, logging."""
from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

import draconis
from draconis import logutils
from draconis.errors import InputError, ParameterError, RecipeError
from draconis.reduce import Reduce

sys.path.insert(0, str(Path(__file__).parent))
from helpers.real_headers import REAL_HEADERS_DIR, parse_dump  # noqa: E402

F2_DARK = REAL_HEADERS_DIR / "F2" / "S20141130S0001.fits.header"
pytestmark = pytest.mark.skipif(not F2_DARK.exists(), reason="real header dumps not available")
DRACONIS = [sys.executable, "-m", "draconis.cli"]


def _niri_image() -> Path:
    for path in sorted((REAL_HEADERS_DIR / "NIRI").glob("*.header")):
        if "IMAGE" in (parse_dump(path).old_tags or ()):
            return path
    pytest.skip("no NIRI image header")


def make_file(dump: Path, out: Path, seed: int, n: int = 32, exptime: float | None = None) -> Path:
    """A raw file with the dump's headers and n x n seeded pixels."""
    d = parse_dump(dump)
    rng = np.random.default_rng(seed)
    hdus = [fits.PrimaryHDU(header=d.phu)]
    hdus[0].header.remove("ORIGNAME", ignore_missing=True)  # products are named after this file
    if exptime is not None:
        hdus[0].header["EXPTIME"] = exptime
    for h in d.extensions:
        h = h.copy()
        cube = h.get("NAXIS", 2) == 3
        h.remove("NAXIS3", ignore_missing=True)
        data = (1000 + rng.normal(0, 10, (n, n))).astype(np.float32)
        hdus.append(fits.ImageHDU(data=data[None] if cube else data, header=h))
    fits.HDUList(hdus).writeto(out, overwrite=True, output_verify="silentfix")
    return out


def md5(path: Path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def darks(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))  # no user calibration configuration
    files = [make_file(F2_DARK, tmp_path / f"S2020010{7 + i}S0049.fits", seed=i) for i in range(3)]
    return files


def _listing(directory: Path) -> set[str]:
    # (Python's own byte-code caches of a user's recipe module are not the run's files)
    return {str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def test_reduce_api_makes_processed_dark(darks, tmp_path):
    before = {p: md5(p) for p in darks}
    r = Reduce(scheduler="synchronous")
    r.files.extend(str(p) for p in darks)
    outputs = r.runr()
    assert outputs == r.output_filenames == ["S20200107S0049_dark.fits"]
    with fits.open(tmp_path / outputs[0]) as hdul:
        assert "PROCDARK" in hdul[0].header and hdul[0].header["PROCMODE"] == "sq"
        assert [h.name for h in hdul[1:4]] == ["SCI", "VAR", "DQ"]
        expected = np.mean([fits.getdata(p)[0] for p in darks], axis=0)
        # raw ADU -> electrons with the F2 gain; a mean of 3 with rejection of nothing extreme
        gain = hdul[1].data.mean() / expected.mean()
        np.testing.assert_allclose(hdul[1].data, expected * gain, rtol=2e-3)
    stored = tmp_path / "calibrations" / "processed_dark" / "S20200107S0049_dark.fits"
    assert r.processed_filenames and Path(r.processed_filenames[0]) == stored and stored.exists()
    assert "PROCESSED" in draconis.open(stored).tags
    assert {p: md5(p) for p in darks} == before
    assert not (tmp_path / ".draconis").exists()  # checkpoints and work directory cleaned


def test_cli_at_files_nested_and_output_printed(darks, tmp_path):
    (tmp_path / "rest.list").write_text(f"# the others\n\n{darks[1].name}\n{darks[2].name}  # second\n")
    (tmp_path / "darks.list").write_text(f"{darks[0].name}\n@rest.list\n")
    res = subprocess.run([*DRACONIS, "reduce", "@darks.list", "--scheduler", "synchronous", "--logmode", "quiet"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == "S20200107S0049_dark.fits"
    assert (tmp_path / "calibrations" / "processed_dark" / "S20200107S0049_dark.fits").exists()
    assert "PRIMITIVE: stackDarks" in (tmp_path / "reduce.log").read_text()


def test_cli_list_shows_recipe(darks, tmp_path):
    res = subprocess.run([*DRACONIS, "reduce", *[p.name for p in darks], "--list"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert "makeProcessedDark" in lines[0] and "f2_DARK" in lines[0]
    assert "  addDQ(add_illum_mask=False)" in lines and lines[-1] == "  storeProcessedDark()"
    assert not list(tmp_path.glob("*_dark.fits"))


@pytest.mark.parametrize("case", ["empty", "missing", "mixed", "recipe", "param", "value", "ucal"])
def test_cli_bad_input_one_line_error_no_outputs(case, darks, tmp_path, capsys):
    names = [p.name for p in darks]
    if case == "mixed":
        make_file(_niri_image(), tmp_path / "N20160102S0270.fits", seed=9)
    args = {
        "empty": ["@empty.list"],
        "missing": [*names, "S20200107S0999.fits"],
        "mixed": [*names, "N20160102S0270.fits"],
        "recipe": [*names, "-r", "noSuchRecipe"],
        "param": [*names, "-p", "stackDarks:reject_methd=none"],
        "value": [*names, "-p", "stackDarks:reject_method=bogus"],
        "ucal": [*names, "--user_cal", "processed_dark:" + names[0]],
    }[case]
    (tmp_path / "empty.list").write_text("# nothing\n")
    before = {p: md5(p) for p in darks}
    listing = _listing(tmp_path)
    from draconis.cli import main

    status = main(["reduce", *args, "--scheduler", "synchronous", "--logfile", "", "--logmode", "quiet"])
    assert status != 0
    stderr = capsys.readouterr().err
    err = stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("draconis reduce: error:"), stderr
    expected = {"empty": "no input files", "missing": "S20200107S0999.fits", "mixed": "N20160102S0270.fits",
                "recipe": "noSuchRecipe", "param": "did you mean reject_method", "value": "bogus",
                "ucal": "processed_dark"}[case]
    assert expected in err[0]
    assert _listing(tmp_path) == listing
    assert {p: md5(p) for p in darks} == before


def test_api_errors_are_typed(darks):
    with pytest.raises(InputError, match="no input files"):
        Reduce(scheduler="synchronous").runr()
    with pytest.raises(RecipeError):
        Reduce([str(darks[0])], recipename="nope", scheduler="synchronous").runr()
    with pytest.raises(ParameterError, match="unknown primitive 'stackDark'"):
        Reduce([str(darks[0])], uparms=[("stackDark:operation", "median")], scheduler="synchronous").runr()
    with pytest.raises(ParameterError, match="no primitive has a parameter"):
        Reduce([str(darks[0])], uparms={"operatoin": "median"}, scheduler="synchronous").runr()


def test_user_value_loses_to_recipe_argument_with_warning(darks, capsys):
    logutils.config()
    r = Reduce([str(p) for p in darks], scheduler="synchronous",
               uparms=[("addDQ:add_illum_mask", True), ("stackDarks:operation", "median")])
    r.runr()
    out = capsys.readouterr().out
    assert "add_illum_mask=False; the user value True is ignored" in out
    # the user's operation reached stackDarks: the median of 3 is one of the inputs (in electrons)
    data = fits.getdata(r.output_filenames[0], extname="SCI")
    raw = np.stack([fits.getdata(p)[0] for p in darks])
    ratio = data / np.median(raw, axis=0)
    np.testing.assert_allclose(ratio, ratio.flat[0], rtol=1e-5)


def test_no_double_log_messages(darks, capsys, tmp_path):
    logging.basicConfig()  # a user handler on the root logger must not duplicate messages
    logutils.config(file_name=str(tmp_path / "a.log"))
    logutils.config(file_name=str(tmp_path / "a.log"))
    for _ in range(2):
        Reduce([str(p) for p in darks], scheduler="synchronous").runr()
    out = capsys.readouterr()
    assert out.out.count("PRIMITIVE: stackDarks") == 2
    assert "PRIMITIVE" not in out.err
    assert (tmp_path / "a.log").read_text().count("PRIMITIVE: stackDarks") == 2
    owned = [h for h in logging.getLogger("draconis").handlers if getattr(h, "_draconis_owned", False)]
    assert len(owned) == 2


def test_failure_removes_outputs_of_the_run(darks, tmp_path):
    # a user recipe that stores the dark, then fails: no output may be left behind (the checkpoints stay
    # in .draconis, so the run can resume)
    (tmp_path / "myrecipes.py").write_text(
        "def broken(p):\n"
        "    p.prepare(); p.ADUToElectrons(); p.addVAR(read_noise=True)\n"
        "    p.stackDarks(); p.storeProcessedDark(); p.writeOutputs(suffix='_copy')\n"
        "    p.transferAttribute(source='nowhere', attribute='OBJMASK')\n")
    existing = tmp_path / "S20200107S0049_dark.fits"
    existing.write_bytes(b"old content")
    listing = _listing(tmp_path)
    with pytest.raises(InputError, match=r"nowhere: no such file \(given as transferAttribute:source\)"):
        Reduce([str(p) for p in darks], recipename="myrecipes.py:broken", scheduler="synchronous").runr()
    left = {p for p in _listing(tmp_path) if not p.startswith(".draconis/")}
    assert left - {"myrecipes.py"} == listing - {"myrecipes.py"}
    assert existing.read_bytes() == b"old content"  # a file replaced by the run is restored
    assert not (tmp_path / "calibrations").exists()


def test_single_primitive_recipe_and_suffix(darks, tmp_path):
    r = Reduce([str(p) for p in darks], recipename="prepare", suffix="_mine", scheduler="synchronous")
    assert r.runr() == [f"{p.stem}_mine.fits" for p in darks]
    assert "PREPARED" in draconis.open(tmp_path / f"{darks[0].stem}_mine.fits").tags


def test_showpars_gnirs_seed_format(tmp_path):
    dumps = sorted((REAL_HEADERS_DIR / "GNIRS").glob("*.header"))
    gnirs = next((p for p in dumps if "IMAGE" in (parse_dump(p).old_tags or ())), dumps[0] if dumps else None)
    if gnirs is None:
        pytest.skip("no GNIRS image header")
    path = make_file(gnirs, tmp_path / "N20120117S0014.fits", seed=1)
    res = subprocess.run([*DRACONIS, "showpars", str(path), "associateSky"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].startswith("Dataset tagged as {") and "'GNIRS'" in lines[0]
    assert lines[1] == "Settable parameters on 'associateSky':"
    assert set(lines[2]) == {"="} and lines[3].startswith("Name" + " " * 16 + "Current setting")
    rows = {line[:20].strip(): line[20:40].strip() for line in lines[5:] if line[:20].strip()}
    assert rows["suffix"] == "'_skyAssociated'" and rows["time"] == "600.0" and rows["distance"] == "1.0"
    assert rows["min_skies"] == "3" and rows["max_skies"] == "None" and rows["use_all"] == "False"
    assert lines[lines.index(next(l for l in lines if l.startswith("time"))) + 1] == " " * 20 + "Valid Range = [0,inf)"


def test_check_wcs_reports_discrepant_frame_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    dump = next(p for p in sorted((REAL_HEADERS_DIR / "F2").glob("*.header"))
                if {"IMAGE"} <= (parse_dump(p).old_tags or set()) and "FLAT" not in (parse_dump(p).old_tags or ()))
    files = [make_file(dump, tmp_path / f"S20200104S007{i}.fits", seed=i) for i in range(3)]
    with fits.open(files[2], mode="update") as hdul:  # 60" away from where the offsets put it
        hdul[1].header["CRVAL2"] = hdul[1].header["CRVAL2"] + 60 / 3600
    listing = _listing(tmp_path)
    logutils.config()
    assert Reduce([str(f) for f in files], recipename="checkWCS", scheduler="synchronous").runr() == []
    out = capsys.readouterr().out
    assert "S20200104S0072.fits is 60.0\"" in out and "1 discrepant" in out
    assert _listing(tmp_path) == listing


def test_prepare_stops_on_a_wcs_the_offsets_contradict(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    dump = next(p for p in sorted((REAL_HEADERS_DIR / "F2").glob("*.header"))
                if {"IMAGE"} <= (parse_dump(p).old_tags or set()) and "FLAT" not in (parse_dump(p).old_tags or ()))
    files = [make_file(dump, tmp_path / f"S20200104S007{i}.fits", seed=i) for i in range(3)]
    with fits.open(files[1], mode="update") as hdul:  # 40" north of where its offsets put it
        hdul[1].header["CRVAL2"] = hdul[1].header["CRVAL2"] + 40 / 3600
    listing = _listing(tmp_path)
    with pytest.raises(InputError, match=r"S20200104S0071.fits: WCS is 40.0\" from where the telescope offsets"):
        Reduce([str(f) for f in files], recipename="prepare", scheduler="synchronous").runr()
    assert _listing(tmp_path) == listing
    loose = Reduce([str(f) for f in files], recipename="prepare", scheduler="synchronous",
                   uparms=[("prepare:debug_consistency_limit", 45)])
    assert len(loose.runr()) == 3
    with pytest.raises(ParameterError, match="'fix' is not supported by draconis"):
        Reduce([str(f) for f in files], recipename="prepare", uparms=[("prepare:bad_wcs", "fix")]).runr()


def test_outputs_record_how_they_were_made(darks, tmp_path):
    """Provenance read back from the files: stamps, version, non-default parameters, inputs, calibrations."""
    import re

    r = Reduce([str(p) for p in darks], uparms=[("stackDarks:hsigma", 4)], scheduler="synchronous")
    (dark,) = r.runr()
    phu = fits.getheader(dark)
    stamp = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$")
    for keyword in ("PREPARE", "ADUTOELE", "ADDVAR", "STACKFRM", "PROCDARK", "GEM-TLM"):
        assert stamp.match(phu[keyword]), keyword
    assert phu["DRACONIS"] == draconis.__version__
    assert phu["NCOMBINE"] == 3 and [phu[f"IMCMB00{i}"] for i in (1, 2, 3)] == [p.name for p in darks]
    history = [str(h) for h in phu["HISTORY"]]
    assert "draconis stackDarks: hsigma=4.0" in history  # the user's value
    assert "draconis addVAR: read_noise=True" in history  # the recipe's
    assert not any("stackDarks: lsigma" in h for h in history)  # defaults are not listed
    # the dark, used as a calibration, is named with its checksum in what it corrected
    (tmp_path / "corr.py").write_text("def corr(p):\n    p.prepare(); p.darkCorrect()\n")
    (corrected, *_) = Reduce([str(p) for p in darks], recipename="corr.py:corr", scheduler="synchronous",
                             ucals={"processed_dark": dark}).runr()
    history = [str(h) for h in fits.getheader(corrected)["HISTORY"]]
    i = history.index(f"draconis darkCorrect: processed_dark {os.path.basename(dark)}")
    assert history[i + 1] == f"draconis darkCorrect: md5={md5(dark)}"
    # a stream of the run named by a parameter keeps its value card: its frames' raw files were not read
    (tmp_path / "moved.py").write_text(
        "def moved(p):\n    p.prepare(); p.copyInputs(outstream='twin')\n"
        "    p.transferAttribute(source='twin', attribute='wcs'); p.writeOutputs()\n")
    outputs = Reduce([str(p) for p in darks[:1]], recipename="moved.py:moved", scheduler="synchronous").runr()
    history = [str(h) for h in fits.getheader(outputs[0])["HISTORY"]]
    assert "draconis transferAttribute: source='twin'" in history
    assert not any(h.startswith("draconis transferAttribute: md5=") for h in history)
