"""The GSAOI tutorial's science path as written (Reduce, then disco_stu's disco) and disco's bad input.

On a small simulated gsaoi-galaxy sequence (128-pixel arrays, 5 on-target and
3 sky frames, 3 + 3 dome flats):

* the flats reduce to a processed flat stored in the calibration database;
* ``Reduce`` of the science frames with ``skyCorrect:offset_sky=False``
  writes the ``_flatCorrected`` frames and the five ``_skyCorrected``
  on-target frames and no stack (the tutorial's DRAGONS);
* the tutorial's disco_stu script, with ``disco_stu`` replaced by
  ``draconis.disco_stu``, makes ``my_Kshort_stack.fits``;
* ``draconis disco $(draconis dataselect *_skyCorrected.fits --expr ...)``
  makes ``disco_stack.fits`` by default;
* ``-r reduce`` goes on to the ``_image`` stack.

Bad input to ``draconis disco`` (exit status 1, one line on stderr naming the
file and the problem, no output, inputs unchanged): an F2 frame, a frame of
another filter, a frame with an array missing, a reference catalogue of
another field.  A frame with no sources is aligned with the telescope offsets
and named in a warning.
"""
from __future__ import annotations

import hashlib
import os
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

import draconis
from draconis.cli import main as cli

SIZE = 128


def _md5(path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def client():
    """One in-process Dask client for the module: Reduce and disco use a default client when there is one
    (the tutorial's lines start none; a cluster per run would cost more than the small runs)."""
    from distributed import Client

    with Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=":0") as c:
        yield c


@pytest.fixture(scope="module")
def reduced(tmp_path_factory, client):
    """(work directory, _skyCorrected paths) after the tutorial's flat and science reductions."""
    from draconis.simulate import make_dataset

    work = tmp_path_factory.mktemp("gsaoi_seed")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)
        mp.setenv("HOME", str(work))
        rc = work / "draconisrc"
        rc.write_text(f"[calibs]\ndatabases = {work / 'cal.db'} get store\n")
        mp.setenv("DRACONISRC", str(rc))
        info = make_dataset("gsaoi-galaxy", work / "raw", size=SIZE, nframes=8, seed=2,
                            roles=("science", "sky", "flat_on", "flat_off"))
        assert cli(["caldb", "init"]) == 0
        flats = draconis.Reduce()
        flats.files.extend(info.files["flat_on"][:3] + info.files["flat_off"][:3])
        flats.runr()
        science = draconis.dataselect.select_data(sorted(info.files["science"] + info.files["sky"]), [], ["FLAT"])
        reduce_target = draconis.Reduce()
        reduce_target.files.extend(science)
        reduce_target.uparms.append(("skyCorrect:offset_sky", False))
        reduce_target.runr()
        # the tutorial passes output_filenames (names in the working directory) on; the tests move around
        yield work, [str(work / o) for o in reduce_target.output_filenames], info
        draconis.caldb._current = None


def test_science_reduce_stops_at_sky_corrected_frames(reduced):
    work, outputs, info = reduced
    assert sorted(os.path.basename(o) for o in outputs) == sorted(
        f"{Path(p).stem}_skyCorrected.fits" for p in info.files["science"])
    assert len(list(work.glob("*_flatCorrected.fits"))) == len(info.files["science"]) + len(info.files["sky"])
    assert not list(work.glob("*_image.fits"))
    frame = draconis.open(str(work / outputs[0]))
    assert all(ext.objcat is not None and len(ext.objcat) for ext in frame.extensions)
    assert all(ext.header["DISTMODL"] == "GSAOI static distortion" for ext in frame.extensions)


def test_the_tutorials_disco_script(reduced, monkeypatch):
    work, outputs, info = reduced
    monkeypatch.chdir(work)
    # the tutorial's lines, with disco_stu -> draconis.disco_stu
    from draconis.disco_stu import disco
    from draconis.disco_stu.lookups import general_parameters as disco_pars

    MatchInfo = namedtuple("MatchInfo", ["offset_radius", "match_radius", "min_matches", "degree"])
    object_match_info = MatchInfo(disco_pars.OBJCAT_ALIGN_RADIUS[0], disco_pars.OBJCAT_ALIGN_RADIUS[1], None,
                                  disco_pars.OBJCAT_POLY_DEGREE)
    reference_match_info = MatchInfo(disco_pars.REFCAT_ALIGN_RADIUS[0], disco_pars.REFCAT_ALIGN_RADIUS[1],
                                     disco_pars.REFCAT_MIN_MATCHES, disco_pars.REFCAT_POLY_DEGREE)
    disco.disco(infiles=outputs, output_identifier="my_Kshort_stack", objmatch_info=object_match_info,
                refmatch_info=reference_match_info, pixel_scale=disco_pars.PIXEL_SCALE, skysub=False)
    stack = draconis.open(str(work / "my_Kshort_stack.fits"))
    assert disco_pars.OUTPUT == "disco_stack.fits"
    assert len(stack) == 1 and stack.phu["NCOMBINE"] == len(outputs)
    ext = stack[0]
    assert {"SCI", "VAR", "DQ"} <= set(ext.data.data_vars)
    assert ext.header["BUNIT"].lower().startswith("electron")
    assert abs(ext.header["CD1_1"] ** 2 + ext.header["CD2_1"] ** 2 - (0.02 / 3600) ** 2) < 1e-18
    # one grid for all four arrays of every frame: wider than two arrays and the gap between them
    assert min(ext.shape) > 2 * SIZE
    sci, var, dq = (np.asarray(ext.plane(n)) for n in ("SCI", "VAR", "DQ"))
    good = (dq == 0) & (var > 0)
    assert good.mean() > 0.5 and np.isfinite(sci[good]).all()


def test_disco_command_with_dataselect_default_output(reduced, monkeypatch, capsys):
    work, outputs, info = reduced
    monkeypatch.chdir(work)
    assert cli(["dataselect", *sorted(str(p) for p in work.glob("*_skyCorrected.fits")), "--expr",
                'observation_class=="science"']) == 0
    selected = capsys.readouterr().out.split()
    assert sorted(os.path.basename(s) for s in selected) == sorted(os.path.basename(o) for o in outputs)
    before = {s: _md5(s) for s in selected}
    # the science reduction's report is named after the first frame, as disco's first input is
    science_report = work / f"{Path(info.files['science'][0]).stem}_report.html"
    science_report_md5 = _md5(science_report)
    assert cli(["disco", *selected, "--scheduler", "threads"]) == 0
    assert (work / "disco_stack.fits").is_file()
    # disco's report is named after its stack and leaves the reduction's report alone
    assert (work / "disco_stack_report.html").is_file() and (work / "disco_stack_report" / "stack.png").is_file()
    assert _md5(science_report) == science_report_md5
    assert {s: _md5(s) for s in selected} == before
    assert not (work / ".draconis").exists() or not any((work / ".draconis").iterdir())


# ------------------------------------------------------------------------ bad input
def _disco_fails(argv, capsys, out: Path) -> str:
    os.chdir(out.parent)  # the log file goes there
    status = cli(["disco", *map(str, argv), "-o", str(out), "--scheduler", "threads"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1 and len(err) == 1, err
    assert not out.exists()
    return err[0]


def _copy(src, dst, edit) -> Path:
    with fits.open(src) as hdul:
        edit(hdul)
        hdul.writeto(dst)
    return Path(dst)


def test_disco_refuses_another_instrument(reduced, tmp_path, capsys):
    from draconis.simulate import make_dataset

    _, outputs, _ = reduced
    f2 = make_dataset("f2-deep", tmp_path / "f2", size=32, nframes=1, roles=("science",)).files["science"][0]
    line = _disco_fails([*outputs[:2], f2], capsys, tmp_path / "out.fits")
    assert os.path.basename(f2) in line and "F2" in line and "GSAOI" in line


def test_disco_refuses_another_filter(reduced, tmp_path, capsys):
    _, outputs, _ = reduced

    def to_j(hdul):
        hdul[0].header["FILTER1"] = "J_G1102"

    odd = _copy(outputs[1], tmp_path / "odd_skyCorrected.fits", to_j)
    line = _disco_fails([outputs[0], odd], capsys, tmp_path / "out.fits")
    assert "odd_skyCorrected.fits" in line and "filter" in line


def test_disco_refuses_a_frame_with_an_array_missing(reduced, tmp_path, capsys):
    _, outputs, _ = reduced

    def drop_array(hdul):
        for hdu in [h for h in hdul[1:] if h.header.get("EXTVER") == 4]:
            hdul.remove(hdu)

    odd = _copy(outputs[1], tmp_path / "three_skyCorrected.fits", drop_array)
    assert len(draconis.open(str(odd))) == 3
    line = _disco_fails([outputs[0], odd], capsys, tmp_path / "out.fits")
    assert "three_skyCorrected.fits" in line and "3 pixel extension" in line


def test_disco_refuses_a_reference_catalogue_of_another_field(reduced, tmp_path, capsys):
    _, outputs, _ = reduced
    refcat = tmp_path / "elsewhere.ecsv"
    Table({"RA": [10.0, 10.001, 10.002], "DEC": [-5.0, -5.001, -5.002]}).write(refcat)
    line = _disco_fails([*outputs[:2], "--refcat", refcat], capsys, tmp_path / "out.fits")
    assert "elsewhere.ecsv" in line and "field" in line


def test_disco_aligns_a_frame_without_sources_on_the_offsets(reduced, tmp_path, capsys, monkeypatch):
    _, outputs, _ = reduced

    def no_sources(hdul):
        for hdu in hdul:
            if hdu.header.get("EXTNAME") == "OBJCAT":
                hdu.data = hdu.data[:0]

    monkeypatch.chdir(tmp_path)
    empty = _copy(outputs[1], tmp_path / "empty_skyCorrected.fits", no_sources)
    out = tmp_path / "stack.fits"
    assert cli(["disco", outputs[0], str(empty), outputs[2], "-o", str(out), "--scheduler", "threads"]) == 0
    log = capsys.readouterr().out
    warning = next(line for line in log.splitlines() if "telescope offsets" in line)
    assert draconis.open(str(empty)).stem in warning  # frames are named by their raw file (ORIGNAME)
    assert draconis.open(str(out)).phu["NCOMBINE"] == 3


def test_align_and_stack_recipe_makes_the_image(reduced, tmp_path, monkeypatch):
    """``reduce -r alignAndStack`` on the _skyCorrected frames: the stacking half of ``-r reduce`` (whose
    first half is the default recipe run by the fixture), to a distortion-corrected ``_image``."""
    _, outputs, _ = reduced
    monkeypatch.chdir(tmp_path)
    r = draconis.Reduce(outputs, recipename="alignAndStack", scheduler="threads")
    r.runr()
    (image,) = [o for o in r.output_filenames if o.endswith("_image.fits")]
    stack = draconis.open(str(tmp_path / image))
    assert stack.phu["NCOMBINE"] == len(outputs) and "PROCSCI" in stack.phu
    assert abs(np.hypot(stack[0].header["CD1_1"], stack[0].header["CD2_1"]) * 3600 - 0.02) < 1e-9


def test_reduce_recipe_goes_on_to_the_image_stack():
    import draconis.recipes.image_gsaoi as gsaoi
    from draconis.recipes.caller import record

    names = [c.name for c in record(gsaoi.reduce)]
    assert names[-3:] == ["scaleCountsToReference", "stackFrames", "storeProcessedScience"]
    assert "writeOutputs" in names[:names.index("addReferenceCatalog")]


def test_small_overlaps_never_lock_on_chance_coincidences(reduced, tmp_path):
    """128-pixel arrays and 1.5" dithers: frames share few stars with the reference.  Each frame is aligned on
    sources only where enough pairs agree (then to a fraction of a pixel), else on the telescope offsets (then
    within the pointing errors, < 0.6"), never on three pairs that happen to line up a few arcsec off."""
    from draconis.distortion import project
    from draconis.reduce.context import RunContext
    from draconis.simulate.geometry import tan_project
    from draconis.simulate.instruments import instrument_model

    _, outputs, info = reduced
    ctx = RunContext({"main": [draconis.open(p) for p in outputs]}, workdir=tmp_path)
    aligned = ctx.run("adjustWCSToReference")
    sources = Table.read(f"{info.truth_dir}/sources.ecsv")
    frames = Table.read(f"{info.truth_dir}/frames.ecsv")
    model = instrument_model("GSAOI", SIZE)
    centre = (float(aligned[0][0].header["CRVAL1"]), float(aligned[0][0].header["CRVAL2"]))
    errors = {}
    for frame in aligned:
        row = frames[frames["file"] == frame.stem + ".fits"][0]
        err = []
        for ext, arr in zip(frame.extensions, model.arrays):
            x, y = arr.geometry.offsets_to_pix(*tan_project(sources["ra"], sources["dec"], row["ra_pointing"],
                                                            row["dec_pointing"]), float(row["pa"]))
            on = (x > 0.5) & (x < SIZE + 0.5) & (y > 0.5) & (y < SIZE + 0.5)
            ra, dec = ext.wcs.all_pix2world(x[on], y[on], 1)
            err.append(np.column_stack(project(ra, dec, *centre)) - np.column_stack(
                project(np.asarray(sources["ra"])[on], np.asarray(sources["dec"])[on], *centre)))
        errors[frame.stem] = np.concatenate(err) / 0.02
    offset = np.median(errors[aligned[0].phu["ALIGNREF"]], axis=0)
    methods = {f.stem: f.phu["ALIGNMTH"] for f in aligned}
    assert set(methods.values()) <= {"reference", "sources", "offsets"}
    for stem, err in errors.items():
        rms = np.sqrt(((err - offset) ** 2).sum(axis=1).mean())
        limit = 0.5 if methods[stem] in ("sources", "reference") else 30.0
        assert rms < limit, f"{stem} ({methods[stem]}): {rms:.2f} px"
