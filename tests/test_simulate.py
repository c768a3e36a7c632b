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


# -- the physics against the recorded truth ---------------------------------------------
@pytest.fixture(scope="module")
def f2_linear(tmp_path_factory):
    """A small F2 set without non-linearity or cosmic rays (aperture photometry is exact)."""
    return make_dataset("f2-deep", tmp_path_factory.mktemp("f2lin"), size=128, nframes=3, seed=11,
                        effects={"nonlinearity": False, "cosmic_rays": False})


def _truth_map(info, name):
    with fits.open(Path(info.truth_dir) / name) as hdul:
        return np.asarray(hdul[1].data, float), hdul[0].header


def test_darks_are_bias_plus_dark_current(datasets):
    info = datasets["f2-deep"]
    effects = json.loads((Path(info.truth_dir) / "effects.json").read_text())
    current, hdr = _truth_map(info, "dark_current.fits")
    assert hdr["BIAS"] == effects["bias"] > 0
    gain, rn = effects["gain"][0], effects["read_noise"][0]
    for role, t in (("dark_5s", 5.0), ("dark_2s", 2.0)):
        stack = np.mean([fits.getdata(p, 1)[0] * gain for p in info.files[role]], axis=0)
        expected = effects["bias"] + current * t
        resid = (stack - expected)[expected < 1000]  # hot pixels saturate
        # The bias is noiseless; dark current has Poisson noise.
        noise = np.sqrt(rn ** 2 + np.median(current * t)) / np.sqrt(len(info.files[role]))
        assert abs(np.median(resid)) < 0.3 * noise
        assert np.std(resid) == pytest.approx(noise, rel=0.15)
    bpm, _ = _truth_map(info, "bpm.fits")
    hot = (bpm > 0) & (current > 1000)
    assert hot.any()
    assert np.all(fits.getdata(info.files["dark_5s"][0], 1)[0][hot] > 20 * np.median(current) * 5 / gain)


def _star_in_frame(info, path, frame_row):
    sources = Table.read(Path(info.truth_dir) / "sources.ecsv")
    hdr = fits.getheader(path, 1)
    crpix = np.array([hdr["CRPIX1"], hdr["CRPIX2"]])
    cd = np.array([[hdr["CD1_1"], hdr["CD1_2"]], [hdr["CD2_1"], hdr["CD2_2"]]]) * 3600
    inv = np.linalg.inv(cd)
    # Positions through the true pointing (nominal + recorded error) and the header's linear WCS.
    xi, eta = tan_project(sources["ra"], sources["dec"], frame_row["ra_pointing"], frame_row["dec_pointing"])
    x, y = (inv @ np.vstack([xi, eta])) + crpix[:, None]
    # inside F2's circular field (radius 64 px about the centre), away from its edge
    stars = (sources["kind"] == "star") & (np.hypot(x - 64.5, y - 64.5) < 48)
    best = None
    for i in np.flatnonzero(stars):
        others = np.hypot(x - x[i], y - y[i])
        others[i] = np.inf
        bright = np.asarray(sources["kind"]) != "star"
        far = others.min() > 18 and (others[bright].min() if bright.any() else np.inf) > 35
        if far and (best is None or sources["flux_e_per_s"][i] > sources["flux_e_per_s"][best]):
            best = i
    if best is None:
        return None, None, None, None
    return sources[best], x[best], y[best], WCS(hdr, naxis=2)


def test_star_flux_and_position_match_truth(f2_linear):
    info = f2_linear
    effects = json.loads((Path(info.truth_dir) / "effects.json").read_text())
    frames = Table.read(Path(info.truth_dir) / "frames.ecsv")
    current, _ = _truth_map(info, "dark_current.fits")
    flat, _ = _truth_map(info, "flat.fits")
    gain, rn = effects["gain"][0], effects["read_noise"][0]
    for path in info.files["science"][1:] + info.files["science"][:1]:
        row = frames[frames["file"] == Path(path).name][0]
        star, x, y, wcs = _star_in_frame(info, path, row)
        if star is not None:
            break
    assert star is not None, "no isolated star in any frame"
    t = row["exptime"]
    electrons = fits.getdata(path, 1)[0] * gain - effects["bias"] - current * t
    electrons = electrons / np.where(flat > 0, flat, np.inf) - row["sky_e"]
    yy, xx = np.mgrid[0:128, 0:128] + 1.0
    r = np.hypot(xx - x, yy - y)
    bad, _ = _truth_map(info, "bpm.fits")
    aperture = r < 2.5 * row["fwhm_arcsec"] / 0.18  # > 99.99 % of a Gaussian's flux
    good = aperture & (bad == 0)
    # bad pixels (hot ones saturate, dead ones see nothing) replaced by the aperture's good-pixel model:
    # simply scale the good-pixel sum by the PSF fraction they cover
    sigma = row["fwhm_arcsec"] / 2.3548 / 0.18
    psf = np.exp(-0.5 * (r / sigma) ** 2)
    measured = electrons[good].sum() * psf[aperture].sum() / psf[good].sum()
    expected = star["flux_e_per_s"] * t
    noise = np.sqrt(aperture.sum() * (row["sky_e"] + rn ** 2) + expected)
    assert abs(measured - expected) < 4 * noise
    assert expected > 10 * noise  # a meaningful comparison
    # Centroid where the true pointing puts the star...
    w = np.clip(electrons, 0, None) * (r < 2 * row["fwhm_arcsec"] / 0.18)
    cx, cy = (w * xx).sum() / w.sum(), (w * yy).sum() / w.sum()
    assert np.hypot(cx - x, cy - y) < 0.15
    # ... which is the header WCS position shifted by the recorded pointing error.
    hx, hy = wcs.all_world2pix(star["ra"], star["dec"], 1)
    err = np.hypot(row["pointing_error_east"], row["pointing_error_north"])
    assert 0.1 <= err <= 0.3
    assert np.hypot(hx - x, hy - y) == pytest.approx(err / 0.18, rel=0.02)


def test_gnirs_light_only_inside_the_keyhole(datasets):
    from draconis.instruments.illumination import keyhole_mask

    info = datasets["gnirs-keyhole"]
    flat_on = np.mean([fits.getdata(p, 1) for p in info.files["flat_on"]], axis=0)
    flat_off = np.mean([fits.getdata(p, 1) for p in info.files["flat_off"]], axis=0)
    lamp = flat_on - flat_off
    lit = keyhole_mask(lamp.shape)
    truth, _ = _truth_map(info, "flat.fits")
    assert np.array_equal(truth > 0, lit & (truth > 0)) and (truth[lit] > 0).mean() > 0.95
    assert np.median(lamp[lit]) > 100 * abs(np.median(lamp[~lit]))


def test_saturation_and_effect_switches(tmp_path):
    quiet = make_dataset("niri-extended", tmp_path / "q", size=32, nframes=2, seed=2,
                         effects={k: False for k in ("read_noise", "poisson", "cosmic_rays", "sources",
                                                     "bad_pixels", "flat", "sky_drift", "pointing_error")})
    effects = json.loads((Path(quiet.truth_dir) / "effects.json").read_text())
    assert effects["effects"]["poisson"] is False and effects["effects"]["sky"] is True
    current, _ = _truth_map(quiet, "dark_current.fits")
    sky = Table.read(Path(quiet.truth_dir) / "frames.ecsv")["sky_e"][0]
    data = fits.getdata(quiet.files["science"][0], 1) * effects["gain"][0]
    np.testing.assert_allclose(data, sky + effects["bias"] + current * 20.002, rtol=1e-5)
    loud = make_dataset("niri-extended", tmp_path / "l", size=64, nframes=2, seed=2)
    sat = json.loads((Path(loud.truth_dir) / "effects.json").read_text())["saturation_adu"][0]
    darks = np.array([fits.getdata(p, 1) for p in loud.files["dark_20s"]])
    assert darks.max() == pytest.approx(sat)  # hot pixels saturate in 20 s


def test_gsaoi_stars_follow_the_distortion_not_the_linear_header(tmp_path):
    from draconis.simulate.geometry import DistortedArray
    from draconis.instruments.gsaoi.lookup import ARRAY_SIZE

    info = make_dataset("gsaoi-galaxy", tmp_path, size=128, nframes=1, seed=4,
                        effects={"nonlinearity": False, "cosmic_rays": False, "pointing_error": False})
    path = info.files["science"][0]
    row = Table.read(Path(info.truth_dir) / "frames.ecsv")[0]
    sources = Table.read(Path(info.truth_dir) / "sources.ecsv")
    sources = sources[(sources["kind"] == "star") & (sources["field"] == "target")]
    with fits.open(path) as hdul:
        ext = hdul[1]
        ccd = ext.header["CCDSEC"].strip("[]").replace(",", ":").split(":")
        origin = (int(ccd[0]) - 1, int(ccd[2]) - 1)
        assert origin[0] in (0, ARRAY_SIZE - 128) and origin[1] in (0, ARRAY_SIZE - 128)
        arr = DistortedArray(0, origin)
        xi, eta = tan_project(sources["ra"], sources["dec"], row["ra_pointing"], row["dec_pointing"])
        x, y = arr.offsets_to_pix(xi, eta, 0.0)
        inside = (x > 8) & (x < 121) & (y > 8) & (y < 121)
        assert inside.any()
        hx, hy = WCS(ext.header).all_world2pix(sources["ra"], sources["dec"], 1)
        # the linear header WCS is only an approximation of where stars fall
        assert np.median(np.hypot(hx - x, hy - y)[inside]) < 5
        data = ext.data.astype(float)
        i = np.flatnonzero(inside)[np.argmax(np.asarray(sources["flux_e_per_s"])[inside])]
        r0, c0 = int(round(y[i])) - 1, int(round(x[i])) - 1
        peak = np.unravel_index(np.argmax(data[r0 - 3:r0 + 4, c0 - 3:c0 + 4]), (7, 7))
        assert abs(peak[0] - 3) <= 1 and abs(peak[1] - 3) <= 1


def test_cli_writes_a_dataset(tmp_path, capsys):
    from draconis.cli import main

    assert main(["simulate", "gnirs-keyhole", str(tmp_path / "g"), "--size", "32", "--nframes", "2",
                 "--seed", "1", "--no-effect", "cosmic_rays", "-q"]) == 0
    out = capsys.readouterr().out
    assert "gnirs-keyhole: 28 files" in out
    effects = json.loads((tmp_path / "g" / "truth" / "effects.json").read_text())
    assert effects["effects"]["cosmic_rays"] is False
    assert len(list((tmp_path / "g").glob("N2012*.fits"))) == 28
