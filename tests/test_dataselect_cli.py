"""dataselect, showd and typewalk: API and command line, on files with real headers.

The files are built from the real raw header dumps in the shared data (with
tiny zero-filled arrays), varied by a few keywords, so tags and descriptors
come from the instrument code exactly as for real data.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from draconis import cli, dataselect
from draconis.errors import ExpressionError

HEADERS = Path("/work/shared/data/real-headers")
pytestmark = pytest.mark.skipif(not HEADERS.is_dir(), reason="real header dumps not available")


# -- building files from header dumps ----------------------------------------
def _dump_blocks(path: Path) -> list[list[str]]:
    """The 80-column cards of each HDU of a header dump."""
    blocks: list[list[str]] = []
    for line in path.read_text().splitlines():
        if line.startswith("--- HDU"):
            blocks.append([])
        elif line.startswith(("SIMPLE  =", "XTENSION=")) and (not blocks or blocks[-1]):
            blocks.append([line])
        elif blocks and line.strip() and not line.startswith("END"):
            blocks[-1].append(line)
    return [b for b in blocks if b]


def fits_from_dump(dump: str, out: Path, *, size: int = 8, **phu: object) -> Path:
    """Write a FITS file with the headers of ``dump`` and zero arrays of ``size``² pixels.

    ``phu`` keywords override (or, with value None, delete) primary keywords.
    """
    blocks = _dump_blocks(HEADERS / dump)
    hdus: list[fits.hdu.base._BaseHDU] = []
    for index, cards in enumerate(blocks):
        header = fits.Header.fromstring("\n".join(c.ljust(80)[:80] for c in cards), sep="\n")
        if index == 0:
            for key, value in phu.items():
                if value is None:
                    header.remove(key, ignore_missing=True)
                else:
                    header[key] = value
            hdus.append(fits.PrimaryHDU(header=header))
            continue
        naxis = header.get("NAXIS", 0)
        if naxis == 0:
            continue
        shape = (1, size, size) if naxis == 3 else (size, size)
        for key in ("BZERO", "BSCALE", "BLANK"):
            header.remove(key, ignore_missing=True)
        hdus.append(fits.ImageHDU(data=np.zeros(shape, dtype=np.float32), header=header))
    fits.HDUList(hdus).writeto(out, output_verify="silentfix", overwrite=True)
    return out


NIRI_SCI = "NIRI/N20090918S0386.fits.header"
NIRI_FLAT = "NIRI/N20141203S0891.fits.header"
F2_SCI = "F2/S20181230S0026.fits.header"


@pytest.fixture(scope="module")
def niri_dir(tmp_path_factory) -> Path:
    """A NIRI set shaped like the NIRI tutorial: darks of 20.002 s and 1.001 s, flats, a standard, science."""
    # its own parent directory: the recursive typewalk test walks niri_dir.parent
    root = tmp_path_factory.mktemp("niri-parent") / "niri"
    root.mkdir()
    spec = {
        "N20160102S0423.fits": (NIRI_SCI, dict(OBSTYPE="DARK", OBSCLASS="dayCal", OBJECT="Dark", EXPTIME=20.002)),
        "N20160102S0424.fits": (NIRI_SCI, dict(OBSTYPE="DARK", OBSCLASS="dayCal", OBJECT="Dark", EXPTIME=20.002)),
        "N20160103S0463.fits": (NIRI_SCI, dict(OBSTYPE="DARK", OBSCLASS="dayCal", OBJECT="Dark", EXPTIME=1.001)),
        "N20160103S0464.fits": (NIRI_SCI, dict(OBSTYPE="DARK", OBSCLASS="dayCal", OBJECT="Dark", EXPTIME=1.001)),
        "N20160102S0373.fits": (NIRI_FLAT, dict()),
        "N20160102S0374.fits": (NIRI_FLAT, dict()),
        "N20160102S0295.fits": (NIRI_SCI, dict(OBJECT="FS 17", OBSCLASS="partnerCal", EXPTIME=10.001)),
        "N20160102S0270.fits": (NIRI_SCI, dict(OBJECT="SN2014J", EXPTIME=20.002)),
        "N20160102S0271.fits": (NIRI_SCI, dict(OBJECT="SN2014J", EXPTIME=20.002)),
    }
    for name, (dump, cards) in spec.items():
        fits_from_dump(dump, root / name, **cards)
    return root


@pytest.fixture(scope="module")
def niri_files(niri_dir) -> list[str]:
    return sorted(str(p) for p in niri_dir.glob("*.fits"))


@pytest.fixture()
def bad_files(tmp_path) -> dict[str, Path]:
    """One file for each way a file can be unusable."""
    notes = tmp_path / "notes.fits"
    notes.write_text("observing notes, not FITS\n" * 10)
    good = fits_from_dump(NIRI_SCI, tmp_path / "N20160102S0280.fits", OBJECT="SN2014J", EXPTIME=20.002)
    truncated = tmp_path / "N20160102S0281.fits"
    data = good.read_bytes()
    truncated.write_bytes(data[: len(data) - 2000])
    alien = fits_from_dump(NIRI_SCI, tmp_path / "X20160102S0001.fits", INSTRUME="FOOCAM")
    no_exptime = fits_from_dump(NIRI_SCI, tmp_path / "N20160102S0282.fits", OBJECT="SN2014J", EXPTIME=None)
    return {"notes": notes, "good": good, "truncated": truncated, "alien": alien, "no_exptime": no_exptime}


def names(paths) -> list[str]:
    return [os.path.basename(p) for p in paths]


# -- the API as the seeds use it ---------------------------------------------------
def test_darks_by_exposure_time_non_strict_and_strict(niri_files):
    darks = dataselect.select_data(niri_files, ["DARK"])
    assert names(darks) == ["N20160102S0423.fits", "N20160102S0424.fits", "N20160103S0463.fits",
                            "N20160103S0464.fits"]
    one = dataselect.select_data(niri_files, ["DARK"], [], dataselect.expr_parser("exposure_time==1"))
    assert names(one) == ["N20160103S0463.fits", "N20160103S0464.fits"]
    twenty = dataselect.select_data(niri_files, ["DARK"], [], dataselect.expr_parser("exposure_time==20"))
    assert names(twenty) == ["N20160102S0423.fits", "N20160102S0424.fits"]
    strict = dataselect.select_data(niri_files, ["DARK"], [], dataselect.expr_parser("exposure_time==20", strict=True))
    assert strict == []
    exact = dataselect.select_data(niri_files, ["DARK"], [], dataselect.expr_parser("exposure_time==20.002", strict=True))
    assert names(exact) == names(twenty)


def test_flats_standard_and_science(niri_files):
    assert names(dataselect.select_data(niri_files, ["FLAT"])) == ["N20160102S0373.fits", "N20160102S0374.fits"]
    std = dataselect.select_data(niri_files, [], [], dataselect.expr_parser('object=="FS 17"'))
    assert names(std) == ["N20160102S0295.fits"]
    target = dataselect.select_data(niri_files, ["IMAGE"], ["FLAT"], dataselect.expr_parser('object!="FS 17"'))
    assert names(target) == ["N20160102S0270.fits", "N20160102S0271.fits"]


def test_names_come_back_as_given_in_input_order(niri_dir, monkeypatch):
    monkeypatch.chdir(niri_dir.parent)
    given = [f"{niri_dir.name}/N20160102S0424.fits", str(niri_dir / "N20160102S0423.fits"),
             Path(niri_dir / "N20160102S0270.fits")]
    assert dataselect.select_data(given, ["DARK"]) == given[:2]
    assert dataselect.select_data(given) == [str(p) for p in given]


def test_text_expression_is_parsed_and_bad_one_raises(niri_files):
    assert names(dataselect.select_data(niri_files, [], [], 'object=="FS 17"')) == ["N20160102S0295.fits"]
    with pytest.raises(ExpressionError, match="position"):
        dataselect.select_data(niri_files, [], [], "exposure_time=>5")
    with pytest.raises(ExpressionError, match="unknown descriptor 'exposure_tme'"):
        dataselect.expr_parser("exposure_tme==5")


def test_bad_files_are_reported_once_and_skipped(bad_files):
    reports = []
    files = [str(p) for p in bad_files.values()]
    selected = dataselect.select_data(files, [], [], dataselect.expr_parser("exposure_time==20"),
                                      report=lambda name, message: reports.append((name, message)))
    assert names(selected) == ["N20160102S0280.fits"]
    by_name = {os.path.basename(n): m for n, m in reports}
    assert set(by_name) == {"notes.fits", "N20160102S0281.fits", "X20160102S0001.fits", "N20160102S0282.fits"}
    assert "not a readable FITS file" in by_name["notes.fits"]
    assert "truncated" in by_name["N20160102S0281.fits"]
    assert "FOOCAM" in by_name["X20160102S0001.fits"]
    assert "exposure_time" in by_name["N20160102S0282.fits"]
    assert all("\n" not in m for m in by_name.values())


# -- dataselect on the command line ---------------------------------------------
def test_cli_prints_names_as_given(niri_files, capsys):
    assert cli.main(["dataselect", *niri_files, "--tags", "DARK", "--expr", "exposure_time==1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f for f in niri_files if os.path.basename(f) in ("N20160103S0463.fits", "N20160103S0464.fits")]


def test_cli_tags_xtags_and_strict(niri_files, capsys):
    cli.main(["dataselect", "--tags", "IMAGE", "--xtags", "FLAT,DARK", *niri_files])
    assert names(capsys.readouterr().out.split()) == ["N20160102S0270.fits", "N20160102S0271.fits",
                                                      "N20160102S0295.fits"]
    cli.main(["dataselect", "--tags", "DARK", "--expr", "exposure_time==20", "--strict", *niri_files])
    assert capsys.readouterr().out == ""


def test_cli_output_file_has_three_header_lines(niri_files, tmp_path, capsys):
    out = tmp_path / "darks20.lis"
    code = cli.main(["dataselect", *niri_files, "--tags", "DARK", "--expr=exposure_time==20", "-o", str(out)])
    assert code == 0
    assert capsys.readouterr().out == ""
    lines = out.read_text().splitlines()
    assert lines[0].startswith("# Includes tags:") and "DARK" in lines[0]
    assert lines[1].startswith("# Excludes tags:")
    assert lines[2] == "# Descriptor expression: exposure_time==20"
    assert names(lines[3:]) == ["N20160102S0423.fits", "N20160102S0424.fits"]
    cli.main(["dataselect", *niri_files, "--tags", "DARK", "--expr=exposure_time==20", "-o", str(out), "-v"])
    assert names(capsys.readouterr().out.split()) == names(lines[3:])


def test_cli_bad_expression_is_one_line_and_exit_1(niri_files, capsys):
    assert cli.main(["dataselect", *niri_files, "--expr", "__import__('os').system('echo hi')"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("draconis dataselect: error:") and "position" in err[0]


def test_cli_deeply_nested_expression_is_one_line_and_exit_1(niri_files, capsys):
    assert cli.main(["dataselect", *niri_files, "--expr", "(" * 250 + "exposure_time==20" + ")" * 250]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nested more than" in err[0] and "Recursion" not in err[0]


def test_cli_bad_files_one_line_each_and_exit_0(bad_files, capsys):
    code = cli.main(["dataselect", *map(str, bad_files.values()), "--expr", "exposure_time==20"])
    captured = capsys.readouterr()
    assert code == 0
    assert names(captured.out.split()) == ["N20160102S0280.fits"]
    err = captured.err.strip().splitlines()
    assert len(err) == 4, err
    assert all(line.startswith("draconis dataselect: ") for line in err)
    assert any(f"skipping {bad_files['notes']}: not a readable FITS file" in line for line in err)
    assert "Traceback" not in captured.err


def test_cli_no_inputs_is_an_error(capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", _Tty())
    assert cli.main(["dataselect", "--tags", "DARK"]) == 1
    assert "no input files" in capsys.readouterr().err


class _Tty:
    def isatty(self):
        return True


def test_cli_reads_names_from_stdin(niri_files, capsys, monkeypatch):
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO("# a list\n\n" + "\n".join(niri_files) + "\n"))
    assert cli.main(["dataselect", "--tags", "FLAT"]) == 0
    assert names(capsys.readouterr().out.split()) == ["N20160102S0373.fits", "N20160102S0374.fits"]


# -- showd ----------------------------------------------------------------------------
def test_showd_table_layout(niri_files, capsys):
    darks = [f for f in niri_files if "S046" in f or "S042" in f]
    assert cli.main(["showd", "-d", "exposure_time,object", *darks]) == 0
    lines = capsys.readouterr().out.splitlines()
    width = max(map(len, darks))
    total = width + 3 + len("exposure_time") + 3 + len("object")
    assert lines[0] == lines[2] == "-" * total
    assert lines[1] == "filename".ljust(width) + "   exposure_time   object"
    assert lines[3] == darks[0].ljust(width) + "   " + "20.002".rjust(13) + "   " + "Dark".rjust(6)
    assert lines[-1] == darks[-1].ljust(width) + "   " + "1.001".rjust(13) + "   " + "Dark".rjust(6)
    assert len(lines) == 3 + len(darks)


def test_showd_csv(niri_files, capsys):
    cli.main(["showd", "--csv", "-d", "exposure_time,object", niri_files[0]])
    assert capsys.readouterr().out.splitlines() == ["filename,exposure_time,object", f"{niri_files[0]},20.002,SN2014J"]


def test_showd_failing_descriptor_shows_error_in_cell(bad_files, capsys):
    files = [str(bad_files[k]) for k in ("good", "no_exptime", "notes")]
    assert cli.main(["showd", "-d", "exposure_time,object", *files]) == 0
    captured = capsys.readouterr()
    rows = captured.out.splitlines()[3:]
    assert len(rows) == 2
    assert rows[0].split()[:2] == [files[0], "20.002"]
    assert rows[1].startswith(files[1]) and "ERROR" in rows[1] and rows[1].endswith("SN2014J")
    err = captured.err.strip().splitlines()
    assert len(err) == 2 and any("notes.fits" in line for line in err)


def test_showd_unknown_descriptor_exit_1(niri_files, capsys):
    assert cli.main(["showd", "-d", "exposure_tme", niri_files[0]]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "exposure_tme" in err[0]


def _draconis_command() -> list[str]:
    script = shutil.which("draconis") or str(Path(sys.executable).with_name("draconis"))
    return [script] if os.path.exists(script) else [sys.executable, "-m", "draconis.cli"]


def test_pipe_dataselect_into_showd(niri_files):
    cmd = _draconis_command()
    select = subprocess.run([*cmd, "dataselect", "--tags", "DARK", *niri_files], capture_output=True, text=True,
                            check=True, timeout=120)
    shown = subprocess.run([*cmd, "showd", "-d", "exposure_time"], input=select.stdout, capture_output=True,
                           text=True, check=True, timeout=120)
    lines = shown.stdout.splitlines()
    assert lines[1].split() == ["filename", "exposure_time"]
    assert [line.split() for line in lines[3:]] == [
        [f, "20.002" if "S042" in f else "1.001"] for f in select.stdout.split()]
    assert len(lines[3:]) == 4 and shown.stderr == ""


# -- typewalk -------------------------------------------------------------------------
def test_typewalk_lists_tags_in_a_fixed_column(niri_dir, capsys):
    assert cli.main(["typewalk", "-d", str(niri_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"directory:  {niri_dir.resolve()}"
    assert lines[-1] == "Done DataSpider.typewalk(..)"
    body = lines[1:-1]
    assert len(body) == 9
    dark = next(line for line in body if "N20160102S0423.fits" in line)
    assert dark.startswith("      N20160102S0423.fits ............... (")
    tags = dark.split("... ")[1].split()
    assert tags == sorted(tags) and "(DARK)" in tags and "(NIRI)" in tags and "(CAL)" in tags
    assert len({line.index("(") for line in body}) == 1


def test_typewalk_tags_or_xtags_norecurse_and_output(niri_dir, tmp_path, capsys):
    cli.main(["typewalk", "-d", str(niri_dir), "--tags", "DARK"])
    assert sum("(DARK)" in line for line in capsys.readouterr().out.splitlines()) == 4
    cli.main(["typewalk", "-d", str(niri_dir), "--tags", "DARK", "FLAT", "--or"])
    out = capsys.readouterr().out
    assert out.count("\n") == 2 + 6
    cli.main(["typewalk", "-d", str(niri_dir), "--xtags", "CAL"])
    out = capsys.readouterr().out
    assert "(CAL)" not in out and out.count("      N") == 3  # science + the partnerCal standard
    listing = tmp_path / "flats.lis"
    cli.main(["typewalk", "-d", str(niri_dir.parent), "--tags", "FLAT", "-o", str(listing)])
    paths = [line for line in listing.read_text().splitlines() if not line.startswith("#")]
    assert names(paths) == ["N20160102S0373.fits", "N20160102S0374.fits"] and all(os.path.isabs(p) for p in paths)
    cli.main(["typewalk", "-d", str(niri_dir.parent), "-n"])
    assert capsys.readouterr().out.splitlines()[-1] == "Done DataSpider.typewalk(..)"


def test_typewalk_bad_files_and_missing_directory(bad_files, tmp_path, capsys):
    assert cli.main(["typewalk", "-d", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert sum(line.startswith("      ") for line in captured.out.splitlines()) == 2
    assert len(captured.err.strip().splitlines()) == 3  # notes, truncated, unknown instrument
    assert cli.main(["typewalk", "-d", str(tmp_path / "nowhere")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such directory" in err[0]


def test_typewalk_long_names_get_their_own_line(niri_dir, tmp_path, capsys):
    shutil.copy(niri_dir / "N20160102S0423.fits", tmp_path / "N20160102S0423_a_rather_long_name.fits")
    cli.main(["typewalk", "-d", str(tmp_path)])
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == "      N20160102S0423_a_rather_long_name.fits"
    assert lines[2].startswith("      " + "." * 35 + " (")


# -- many files ---------------------------------------------------------------------------
def test_hundreds_of_files_are_selected(niri_dir, tmp_path):
    source = niri_dir / "N20160102S0423.fits"
    files = []
    for i in range(200):
        target = tmp_path / f"N20160102S{1000 + i:04d}.fits"
        os.link(source, target) if hasattr(os, "link") else shutil.copy(source, target)
        files.append(str(target))
    selected = dataselect.select_data(files, ["DARK"], [], dataselect.expr_parser("exposure_time==20 and object=='Dark'"))
    assert selected == files


# -- the seeds' selections on simulated datasets ---------------------------------------
def _simulated(tmp_path_factory, name: str) -> list[str]:
    simulate = pytest.importorskip("draconis.simulate")
    if not hasattr(simulate, "make_dataset"):
        pytest.skip("simulator not available")
    outdir = tmp_path_factory.mktemp(name)
    simulate.make_dataset(name, outdir, size=64, seed=1)
    files = sorted(str(p) for p in Path(outdir).rglob("*.fits"))
    assert files, f"simulated {name} has no FITS files"
    return files


def _stems(paths) -> list[str]:
    return sorted(os.path.basename(p).removesuffix(".fits") for p in paths)


def _run(capsys, *argv) -> list[str]:
    assert cli.main(list(argv)) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    return captured.out.split()


def _range(prefix: str, first: int, last: int) -> list[str]:
    return [f"{prefix}{n:04d}" for n in range(first, last + 1)]


@pytest.fixture(scope="module")
def f2_files(tmp_path_factory):
    return _simulated(tmp_path_factory, "f2-deep")


@pytest.fixture(scope="module")
def niri_sim_files(tmp_path_factory):
    return _simulated(tmp_path_factory, "niri-extended")


@pytest.fixture(scope="module")
def gnirs_files(tmp_path_factory):
    return _simulated(tmp_path_factory, "gnirs-keyhole")


@pytest.fixture(scope="module")
def gsaoi_files(tmp_path_factory):
    return _simulated(tmp_path_factory, "gsaoi-galaxy")


# Where a selection needs a tag, running it on the files having that tag gives
# the same answer as on all files; that keeps the number of full passes small.
def test_seed_f2_selections(f2_files, capsys):
    darks5 = dataselect.select_data(f2_files, ["F2", "DARK", "RAW"], [], dataselect.expr_parser("exposure_time==5"))
    assert _stems(darks5) == _range("S20200107S", 49, 55) + _range("S20200111S", 159, 161)
    darks = _run(capsys, "dataselect", "--tags", "DARK", *f2_files)
    assert _run(capsys, "dataselect", "--tags", "DARK", "--expr", "exposure_time==5", *darks) == darks5
    darks2 = dataselect.select_data(darks, ["F2", "DARK", "RAW"], [], dataselect.expr_parser("exposure_time==2"))
    assert sorted(darks2 + darks5) == sorted(darks) and darks2
    flats = _run(capsys, "dataselect", "--tags", "FLAT", *f2_files)
    assert flats and _run(capsys, "dataselect", "--tags", "FLAT", "--expr", "filter_name=='K-red'", *flats) == flats
    science = _run(capsys, "dataselect", "--xtags", "CAL", *f2_files)
    assert len(science) == 18
    expr = dataselect.expr_parser('(observation_class=="science" and filter_name=="K-red")')
    assert dataselect.select_data(f2_files, ["F2"], [], expr) == science
    # dataselect --tags DARK ... | showd -d exposure_time
    table = _run_lines(capsys, "showd", "-d", "exposure_time", *darks)
    rows = {os.path.basename(line.split()[0]).removesuffix(".fits"): line.split()[1] for line in table[3:]}
    assert rows == {s: "5.0" if s in _stems(darks5) else "2.0" for s in _stems(darks)}


def _run_lines(capsys, *argv) -> list[str]:
    assert cli.main(list(argv)) == 0
    return capsys.readouterr().out.splitlines()


def test_seed_niri_selections(niri_sim_files):
    select, parse = dataselect.select_data, dataselect.expr_parser
    darks = select(niri_sim_files, ["DARK"])
    ones = select(darks, ["DARK"], [], parse("exposure_time==1"))
    twenties = select(darks, ["DARK"], [], parse("exposure_time==20"))
    assert _stems(ones) == _range("N20160103S", 463, 472)
    assert _stems(twenties) == _range("N20160102S", 423, 432)
    assert sorted(ones + twenties) == sorted(darks)
    assert select(ones, ["DARK"], [], parse("exposure_time==1", strict=True)) == []
    std = select(niri_sim_files, [], [], parse('object=="FS 17"'))
    target = select(niri_sim_files, ["IMAGE"], ["FLAT"], parse('object!="FS 17"'))
    assert std and len(target) == 10 and not set(std) & set(target)
    assert not set(select(std + target, ["FLAT"])) and not set(darks) & set(target)


def test_seed_gnirs_selections(gnirs_files, capsys):
    darks = _run(capsys, "dataselect", "--tags", "DARK", *gnirs_files)
    assert darks and _run(capsys, "dataselect", "--tags", "DARK", "--expr=exposure_time==60", *darks) == darks
    first = _run(capsys, "dataselect", "--tags", "IMAGE", "--xtags", "FLAT", *gnirs_files)
    second = _run(capsys, "dataselect", "--xtags", "FLAT", "--expr=filter_name==\"J\"", *gnirs_files)
    third = _run(capsys, "dataselect", "--expr=object==\"GRB120116A\"", *gnirs_files)
    assert len(first) == 20 and first == second == third


def test_seed_gsaoi_selections(gsaoi_files, capsys):
    std = _run(capsys, "dataselect", "--expr", 'observation_class=="partnerCal"', *gsaoi_files)
    assert _stems(std) == _range("S20170504S", 114, 117)
    assert _run(capsys, "dataselect", "--expr", 'object=="9132"', *gsaoi_files) == std
    science = _run(capsys, "dataselect", "--expr", '(observation_class=="science" and exposure_time==60.)',
                   *gsaoi_files)
    assert _stems(science) == _range("S20170505S", 95, 110)
    flats = _run(capsys, "dataselect", "--tags", "FLAT", *gsaoi_files)
    assert flats and not set(flats) & set(science + std)
    assert _run(capsys, "dataselect", "--tags", "FLAT", "--expr", "filter_name=='Kshort'", *flats) == flats
    table = _run_lines(capsys, "showd", "-d", "object,exposure_time", *science)
    assert table[1].split() == ["filename", "object", "exposure_time"]
    assert all(line.split()[1:] == ["NGC5128", "60.0"] for line in table[3:]) and len(table) == 3 + 16


def test_seed_f2_typewalk_lines(f2_files, capsys):
    directory = os.path.dirname(f2_files[0])
    lines = _run_lines(capsys, "typewalk", "-d", directory)
    assert lines[0] == f"directory:  {os.path.abspath(directory)}" and lines[-1] == "Done DataSpider.typewalk(..)"
    assert "      S20200104S0075.fits ............... (F2) (GEMINI) (IMAGE) (RAW) (SIDEREAL) (SOUTH) (UNPREPARED)" \
        in lines
    assert "      S20200107S0035.fits ............... (CAL) (DARK) (F2) (GEMINI) (RAW) (SOUTH) (UNPREPARED)" in lines
    assert ("      S20200108S0010.fits ............... (CAL) (F2) (FLAT) (GCALFLAT) (GCAL_IR_OFF) (GEMINI) (IMAGE) "
            "(LAMPOFF) (RAW) (SOUTH) (UNPREPARED)") in lines
