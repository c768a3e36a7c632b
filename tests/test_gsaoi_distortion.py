"""GSAOI's static distortion in the WCS: exact SIP headers, prepare, write/re-open, the offsets' sign.

The truth is the simulator's own evaluation of the model (simulate/geometry.py,
which shares only the coefficients with draconis), and real GSAOI headers
for the sign of the telescope offsets.
"""
from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

import draconis
from draconis.distortion import Poly2D, PolyMap, fit_polymap, grid_points, header_polymap, project, sip_header
from draconis.instruments.gsaoi.distortion import array_distortion
from draconis.instruments.gsaoi.lookup import ARRAY_IDS
from draconis.io.fits import write_fits
from draconis.simulate import make_dataset
from draconis.simulate.geometry import DistortedArray, rotation, tan_deproject
from draconis.simulate.instruments import instrument_model
from draconis.reduce.context import RunContext

from helpers.real_headers import REAL_HEADERS_DIR, parse_dump, write_fits as write_dump

CENTRE = (201.3651, -43.0191)


def _sky_error_pixels(wcs, x, y, truth_ra, truth_dec, scale=0.02):
    ra, dec = wcs.all_pix2world(x, y, 1)
    return np.hypot((ra - truth_ra) * np.cos(np.radians(dec)), dec - truth_dec) * 3600.0 / scale


def test_polynomials_compose_shift_and_fit_exactly():
    p = Poly2D.from_terms({"c0_0": 1.0, "c1_0": 2.0, "c1_1": -0.5, "c0_2": 0.25, "c3_0": 1e-3})
    a, b = Poly2D([[0.5, 1.0], [2.0, 0.0]]), Poly2D([[-1.0, 0.0], [0.3, 0.1]])
    x, y = np.meshgrid(np.linspace(-3, 3, 7), np.linspace(-2, 4, 5))
    np.testing.assert_allclose(p.compose(a, b)(x, y), p(a(x, y), b(x, y)), rtol=1e-12)
    np.testing.assert_allclose(p.shifted(10.0, -7.0)(x, y), p(x + 10.0, y - 7.0), rtol=1e-12)
    # a cubic map sampled on a small patch far from the origin is recovered exactly
    cubic = PolyMap(p, p.transpose())
    xs, ys = 1000.0 + 5 * np.random.default_rng(0).random((2, 60))
    fitted = fit_polymap(xs, ys, *cubic(xs, ys), 3)
    np.testing.assert_allclose(fitted(1003.0, 1001.0), cubic(1003.0, 1001.0), rtol=1e-8)


@pytest.mark.parametrize("pa", [0.0, 37.0])
def test_sip_header_is_the_model_exactly_and_states_its_inverse_residual(pa):
    for index, array_id in enumerate(ARRAY_IDS):
        model = array_distortion(array_id)
        truth = DistortedArray(index)
        header = sip_header(PolyMap.affine(rotation(pa)).compose(model.forward), CENTRE, (2048, 2048),
                            model=model.name)
        assert header["CTYPE1"] == "RA---TAN-SIP" and header["A_ORDER"] == 3 and header["DISTRESI"] == 0.0
        x, y = grid_points((2048, 2048), 15)
        ra, dec = tan_deproject(*truth.pix_to_offsets(x, y, pa), *CENTRE)
        assert _sky_error_pixels(WCS(header), x, y, ra, dec).max() < 1e-6
        # the fitted inverse (AP/BP) says how good it is, and is that good
        assert 0 < header["DISTIRES"] < 1e-3
        back = WCS(header).all_world2pix(ra, dec, 1)
        assert np.abs(np.asarray(back) - np.vstack([x, y])).max() < 1e-4


def test_header_polymap_reads_sip_back_exactly():
    model = array_distortion(ARRAY_IDS[2])
    g = PolyMap.affine(rotation(12.0) * 1.001, (0.4, -0.3)).compose(model.forward)
    header = sip_header(g, CENTRE, (2048, 2048), model=model.name)
    x, y = grid_points((2048, 2048), 9)
    np.testing.assert_allclose(np.vstack(header_polymap(header)(x, y)), np.vstack(g(x, y)), atol=1e-9)


@pytest.fixture(scope="module")
def gsaoi_raw(tmp_path_factory):
    out = tmp_path_factory.mktemp("gsaoi_raw")
    info = make_dataset("gsaoi-galaxy", out, size=64, nframes=4, seed=3, roles=("science", "sky"),
                        position_angles={"S20170505S0096": 25.0}, effects={"pointing_error": False})
    return info


def test_prepare_puts_the_distortion_in_every_arrays_wcs(gsaoi_raw, tmp_path):
    runner = RunContext({"main": [draconis.open(p) for p in gsaoi_raw.files["science"] + gsaoi_raw.files["sky"]]},
                        workdir=tmp_path)
    prepared = runner.run("prepare")
    from astropy.table import Table

    frames = Table.read(gsaoi_raw.truth_dir + "/frames.ecsv")
    model = instrument_model("GSAOI", 64)
    for frame in prepared:
        row = frames[frames["file"] == frame.stem + ".fits"][0]
        for ext, arr in zip(frame.extensions, model.arrays):
            assert ext.header["DISTMODL"] == "GSAOI static distortion"
            x, y = grid_points(ext.shape, 9)
            ra, dec = tan_deproject(*arr.geometry.pix_to_offsets(x, y, float(row["pa"])), row["ra_nominal"],
                                    row["dec_nominal"])
            assert _sky_error_pixels(ext.wcs, x, y, ra, dec).max() < 1e-5
    # written and re-opened by draconis: the same mapping; astropy alone reads the same SIP from the file
    path = write_fits(prepared[1], tmp_path / "prepared.fits")
    back = draconis.open(path)
    for before, after in zip(prepared[1].extensions, back.extensions):
        x, y = grid_points(before.shape, 9)
        np.testing.assert_allclose(after.wcs.all_pix2world(x, y, 1), before.wcs.all_pix2world(x, y, 1),
                                   rtol=0, atol=1e-12)
    with fits.open(path) as hdul:
        assert WCS(hdul[1].header).sip is not None


def test_prepare_leaves_undistorted_instruments_linear(tmp_path):
    info = make_dataset("f2-deep", tmp_path / "raw", size=32, nframes=1, roles=("science",))
    (frame,) = RunContext({"main": [draconis.open(info.files["science"][0])]}, workdir=tmp_path).run("prepare")
    assert "DISTMODL" not in frame[0].header and "-SIP" not in frame[0].header["CTYPE1"]


def test_detector_offsets_are_where_a_star_moves_on_real_gsaoi_headers(tmp_path):
    # S20181023S0087: PA 0, POFFSET -16 = RAOFFSET, QOFFSET 27 = DECOFFSE, CD1_1 > 0 (mirrored arrays)
    frame = draconis.open(write_dump(parse_dump(REAL_HEADERS_DIR / "GSAOI" / "S20181023S0087.fits.header"),
                                     tmp_path))
    phu = frame.phu
    assert phu["PA"] == 0 and phu["RAOFFSET"] == phu["POFFSET"] and phu["DECOFFSE"] == phu["QOFFSET"]
    # the telescope moved by (RAOFFSET, DECOFFSE) from the base: a fixed star moves by -CD^-1 @ that on the array
    cd = WCS(frame[0].header).wcs.cd
    star_motion = -np.linalg.solve(cd, np.array([phu["RAOFFSET"], phu["DECOFFSE"]]) / 3600.0)
    offsets = np.array([frame.descriptor("detector_x_offset"), frame.descriptor("detector_y_offset")])
    assert np.sign(offsets).tolist() == np.sign(star_motion).tolist()
    np.testing.assert_allclose(offsets, star_motion, rtol=0.05)


def test_detector_offsets_move_simulated_stars_the_same_way(gsaoi_raw):
    # two frames of one position angle and no pointing error: a sky point's pixel moves by the offsets' difference
    a, b = (draconis.open(p) for p in gsaoi_raw.files["science"][::2])
    assert a.descriptor("position_angle") == b.descriptor("position_angle")
    shift = np.array([b.descriptor("detector_x_offset") - a.descriptor("detector_x_offset"),
                      b.descriptor("detector_y_offset") - a.descriptor("detector_y_offset")])
    assert np.hypot(*shift) > 20  # the dither is tens of pixels
    ra, dec = a[0].wcs.all_pix2world([32.0], [32.0], 1)
    moved = np.array(b[0].wcs.all_world2pix(ra, dec, 1)).ravel() - 32.0
    np.testing.assert_allclose(moved, shift, atol=0.05 * np.hypot(*shift))


def test_tangent_projection_round_trip():
    from draconis.distortion import deproject

    xi, eta = np.array([-40.0, 0.0, 35.5]), np.array([12.0, 0.0, -44.0])
    np.testing.assert_allclose(project(*deproject(xi, eta, *CENTRE), *CENTRE), (xi, eta), atol=1e-9)
