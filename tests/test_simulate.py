"""The simulator: seed-shaped datasets, tags and descriptors, and the truth it records."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

import draconis
from draconis.errors import ParameterError
from draconis.simulate import DATASETS, make_dataset
from draconis.simulate.geometry import tan_project

SIZE = 64


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    out = {}
    for name in DATASETS:
        out[name] = make_dataset(name, tmp_path_factory.mktemp(name), size=SIZE, seed=5)
    return out


def _stems(paths):
    return sorted(Path(p).name.removesuffix(".fits") for p in paths)


def _range(prefix, first, last):
    return [f"{prefix}{n:04d}" for n in range(first, last + 1)]


EXPECTED = {
    "f2-deep": {
        "science": _range("S20200104S", 75, 92),
        "dark_5s": _range("S20200107S", 49, 55) + _range("S20200111S", 159, 161),
        "dark_2s": _range("S20200107S", 35, 41) + ["S20200111S0257", "S20200111S0258", "S20200111S0260"],
        "flat_off": _range("S20200108S", 10, 19),
    },
    "niri-extended": {
        "science": _range("N20160102S", 270, 274), "sky": _range("N20160102S", 275, 279),
        "dark_20s": _range("N20160102S", 423, 432), "dark_1s": _range("N20160103S", 463, 472),
        "flat_on": _range("N20160102S", 373, 382), "flat_off": _range("N20160102S", 363, 372),
        "standard": _range("N20160102S", 295, 299),
    },
    "gnirs-keyhole": {
        "science": _range("N20120117S", 14, 33), "dark": _range("N20120102S", 538, 547),
        "flat_on": _range("N20120117S", 34, 41), "flat_off": _range("N20120117S", 42, 49),
    },
    "gsaoi-galaxy": {
        "science": _range("S20170505S", 95, 103), "sky": _range("S20170505S", 104, 110),
        "flat_on": _range("S20170505S", 30, 44), "flat_off": _range("S20170505S", 60, 74),
        "standard": _range("S20170504S", 114, 117),
    },
}

TAGS = {
    ("f2-deep", "science"): {"F2", "IMAGE", "RAW", "SIDEREAL", "SOUTH", "UNPREPARED", "GEMINI"},
    ("f2-deep", "dark"): {"CAL", "DARK", "F2", "GEMINI", "RAW", "SOUTH", "UNPREPARED"},
    ("f2-deep", "flat_off"): {"CAL", "F2", "FLAT", "GCALFLAT", "GCAL_IR_OFF", "GEMINI", "IMAGE", "LAMPOFF", "RAW",
                              "SOUTH", "UNPREPARED"},
    ("niri-extended", "flat_on"): {"FLAT", "LAMPON", "GCAL_IR_ON", "IMAGE", "NIRI"},
    ("niri-extended", "flat_off"): {"FLAT", "LAMPOFF", "GCAL_IR_OFF", "IMAGE", "NIRI"},
    ("niri-extended", "bpm"): {"BPM", "CAL", "PROCESSED", "NIRI"},
    ("gnirs-keyhole", "science"): {"GNIRS", "IMAGE", "RAW", "NORTH"},
    ("gnirs-keyhole", "dark"): {"GNIRS", "DARK", "CAL"},
    ("gsaoi-galaxy", "flat_on"): {"AZEL_TARGET", "CAL", "DOMEFLAT", "FLAT", "GEMINI", "GSAOI", "IMAGE", "LAMPON",
                                  "NON_SIDEREAL", "RAW", "SOUTH", "UNPREPARED"},
    ("gsaoi-galaxy", "flat_off"): {"AZEL_TARGET", "CAL", "DOMEFLAT", "FLAT", "GEMINI", "GSAOI", "IMAGE", "LAMPOFF",
                                   "NON_SIDEREAL", "RAW", "SOUTH", "UNPREPARED"},
    ("gsaoi-galaxy", "science"): {"GEMINI", "GSAOI", "IMAGE", "RAW", "SIDEREAL", "SOUTH", "UNPREPARED"},
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_file_names_per_role(datasets, name):
    info = datasets[name]
    for role, stems in EXPECTED[name].items():
        assert _stems(info.files[role]) == stems, role
    assert all(Path(p).exists() for paths in info.files.values() for p in paths)


@pytest.mark.parametrize("name, role", list(TAGS))
def test_tags_per_role(datasets, name, role):
    for path in datasets[name].files[role]:
        tags = draconis.open(path).tags
        if name == "f2-deep" or role in ("flat_on", "flat_off") and name == "gsaoi-galaxy" \
                or (name, role) == ("gsaoi-galaxy", "science"):
            assert tags == TAGS[(name, role)], path  # the seeds' typewalk lines, exactly
        else:
            assert TAGS[(name, role)] <= tags, path
    if role == "science":
        assert not {"CAL", "DARK", "FLAT"} & draconis.open(datasets[name].files[role][0]).tags


DESCRIPTORS = {
    "f2-deep": ("science", 5.0, "K-red", "1", "science", 0.18),
    "niri-extended": ("science", 20.002, "K(prime)", "Medium Background", "science", 0.1171),
    "gnirs-keyhole": ("science", 60.0, "J", "Faint Objects", "science", 0.1517),
    "gsaoi-galaxy": ("standard", 30.0, "Kshort", "FOWLER", "partnerCal", 0.02),
}


@pytest.mark.parametrize("name", list(DESCRIPTORS))
def test_descriptors(datasets, name):
    role, t, filt, mode, obsclass, scale = DESCRIPTORS[name]
    info = datasets[name]
    frames = [draconis.open(p) for p in info.files[role]]
    f = frames[0]
    assert f.exposure_time() == pytest.approx(t)
    assert f.filter_name(pretty=True) == filt
    assert f.read_mode() == mode
    assert f.observation_class() == obsclass
    assert f.object() == {"f2-deep": "Deep field", "niri-extended": "SN2014J host", "gnirs-keyhole": "GRB120116A",
                          "gsaoi-galaxy": "9132"}[name]
    assert f.pixel_scale() == pytest.approx(scale, rel=0.03)
    gains, noises = np.atleast_1d(f.gain()), np.atleast_1d(f.read_noise())
    effects = json.loads((Path(info.truth_dir) / "effects.json").read_text())
    np.testing.assert_allclose(gains, effects["gain"], rtol=1e-3)
    np.testing.assert_allclose(noises, effects["read_noise"], rtol=1e-3)
    times = [fr.ut_datetime() for fr in frames]
    assert times == sorted(times) and len(set(times)) == len(times)
    frames_truth = Table.read(Path(info.truth_dir) / "frames.ecsv")
    row = frames_truth[frames_truth["file"] == Path(info.files[role][1]).name][0]
    offsets = np.hypot(frames[1].telescope_x_offset(), frames[1].telescope_y_offset())
    assert offsets == pytest.approx(np.hypot(row["p"], row["q"]), abs=1e-3)


def test_niri_exposure_times_and_bpm(datasets):
    info = datasets["niri-extended"]
    assert {draconis.open(p).exposure_time() for p in info.files["dark_1s"]} == {1.001}
    (bpm,) = info.files["bpm"]
    assert Path(bpm).name == "bpm_20010317_niri_niri_11_full_1amp.fits"
    with fits.open(bpm) as hdul, fits.open(Path(info.truth_dir) / "bpm.fits") as truth:
        assert hdul[0].header["OBSTYPE"] == "BPM" and "BPMASK" in hdul[0].header
        assert hdul[1].data.dtype.kind == "i" and hdul[1].data.dtype.itemsize == 2
        np.testing.assert_array_equal(hdul[1].data, truth[1].data)
        assert 0 < hdul[1].data.sum() < 0.01 * hdul[1].data.size
    with fits.open(info.files["science"][0]) as hdul:
        assert "EXTNAME" not in hdul[1].header


def test_shapes(datasets):
    with fits.open(datasets["f2-deep"].files["science"][0]) as hdul:
        assert hdul[1].data.shape == (1, SIZE, SIZE)
    with fits.open(datasets["gnirs-keyhole"].files["science"][0]) as hdul:
        assert hdul[1].data.shape == (SIZE - 2, SIZE)
    with fits.open(datasets["gsaoi-galaxy"].files["standard"][0]) as hdul:
        assert [h.header["ARRAYID"] for h in hdul[1:]] == ["H2RG-032-074", "H2RG-032-064", "H2RG-032-071",
                                                          "H2RG-032-061"]
        roi = hdul[1].data.shape
        assert roi[0] < SIZE
        det = hdul[1].header["DETSEC"].strip("[]").replace(",", ":").split(":")
        assert int(det[1]) - int(det[0]) + 1 == roi[1] and int(det[0]) > 2048
    with fits.open(datasets["gsaoi-galaxy"].files["science"][0]) as hdul:
        assert all(h.data.shape == (SIZE, SIZE) for h in hdul[1:])


def test_deterministic_and_seed_dependent(tmp_path):
    a = make_dataset("gnirs-keyhole", tmp_path / "a", size=32, nframes=2, seed=3)
    b = make_dataset("gnirs-keyhole", tmp_path / "b", size=32, nframes=2, seed=3)
    c = make_dataset("gnirs-keyhole", tmp_path / "c", size=32, nframes=2, seed=4)
    for pa, pb, pc in zip(a.files["science"], b.files["science"], c.files["science"]):
        da, db, dc = (fits.getdata(p, 1) for p in (pa, pb, pc))
        np.testing.assert_array_equal(da, db)
        assert not np.array_equal(da, dc)
    assert _stems(a.files["science"]) == ["N20120117S0014", "N20120117S0015"]


def test_nframes_continues_numbering(tmp_path):
    info = make_dataset("f2-deep", tmp_path, size=32, nframes=20, seed=1)
    assert _stems(info.files["science"])[-1] == "S20200104S0094"


def test_bad_arguments():
    with pytest.raises(ParameterError, match="unknown dataset 'nope'"):
        make_dataset("nope", "/tmp/never")
    with pytest.raises(ParameterError, match="unknown simulator effect"):
        make_dataset("f2-deep", "/tmp/never", effects={"wind": True})
