"""Calibration primitives on frames with real NIRI, GNIRS and GSAOI headers (small or real-size data)."""
from __future__ import annotations

import numpy as np
from astropy.io import fits

import draconis
from draconis.kernels import nonlinearity as nl
from draconis.testing import raise_if_dask_computes
from helpers.real_headers import REAL_HEADERS_DIR, parse_dump
from test_prim_calibration import _core_defaults, in_memory, sci  # noqa: F401 (autouse fixture)


def _frame(tmp_path, dump_name, data_for, *, phu=None, ext=None):
    """A FITS file with a real header dump and our data (one array per extension)."""
    dump = parse_dump(REAL_HEADERS_DIR / dump_name)
    header = fits.Header([c for c in dump.phu.cards if c.keyword not in ("SIMPLE", "EXTEND", "BITPIX")])
    header.update(phu or {})
    hdus = [fits.PrimaryHDU(header=header)]
    for i, eh in enumerate(dump.extensions):
        h = fits.Header([c for c in eh.cards if c.keyword not in ("XTENSION", "BITPIX", "PCOUNT", "GCOUNT", "BZERO",
                                                                  "BSCALE") and not c.keyword.startswith("NAXIS")])
        h.update((ext or {}).get(i, {}))
        hdus.append(fits.ImageHDU(np.asarray(data_for(i), np.float32), header=h))
    path = tmp_path / f"{dump.name[:-5]}_{len(list(tmp_path.iterdir()))}.fits"
    fits.HDUList(hdus).writeto(path, output_verify="silentfix")
    return draconis.open(path)


def test_niri_irdc_correction(run_primitive, tmp_path):
    rng = np.random.default_rng(3)
    data = rng.uniform(100, 30000, (1024, 1024)).astype(np.float32)
    (frame,) = run_primitive("prepare", [_frame(tmp_path, "NIRI/N20030325S0098.fits.header", lambda i: data)])
    with raise_if_dask_computes():
        (out,) = run_primitive("nonlinearityCorrect", [frame])
    gain, coadds, t = 12.3, 3, 45.003 / 3
    c = frame.descriptor("nonlinearity_coeffs")[0]
    x = data.astype(float) * gain / coadds
    expected = nl.linearize_irdc(x, c.gamma, c.eta) * coadds / gain * t / (t + c.time_delta)
    np.testing.assert_allclose(sci(out), expected, rtol=2e-5)
    assert out[0].header["SATLEVEL"] > frame[0].header["SATLEVEL"]


def test_gnirs_row_dependent_correction(run_primitive, tmp_path):
    data = np.full((1022, 1024), 3000.0, np.float32)
    (frame,) = run_primitive("prepare", [_frame(tmp_path, "GNIRS/N20170201S0246.fits.header", lambda i: data)],
                   require_wcs=False)
    frame = frame.map_extensions(lambda e: e.with_planes(SCI=e.plane("SCI").rechunk((101, 1024))))
    (out,) = run_primitive("nonlinearityCorrect", [frame])
    c = frame.descriptor("nonlinearity_coeffs")[0]
    res = sci(out)
    x = 3000.0 * 13.5
    scale = 120.0 / (120.0 + c.time_delta)
    even = nl.linearize_irdc(x, c.even.gamma, c.even.eta) / 13.5 * scale
    odd = nl.linearize_irdc(x, c.odd.gamma, c.odd.eta) / 13.5 * scale
    # Chunks of 101 rows start on odd rows too: parity follows the detector row.
    np.testing.assert_allclose(res[0::2, 0], even, rtol=1e-5)
    np.testing.assert_allclose(res[1::2, 0], odd, rtol=1e-5)


def _gsaoi(tmp_path, levels, shape=(32, 32), obj="Domeflat", detsec=None):
    def data(i):
        return np.random.default_rng(i).normal(levels[i], 5.0, shape)
    n = shape[0]
    origins = [(0, 0), (n, 0), (0, n), (n, n)]
    ext = {i: {"DETSEC": detsec[i] if detsec else f"[{x + 1}:{x + n},{y + 1}:{y + n}]"} for i, (x, y) in enumerate(origins)}
    return _frame(tmp_path, "GSAOI/S20130201S0246.fits.header", data, phu={"OBJECT": obj}, ext=ext)


def test_gsaoi_j_flats_are_stacked_and_normalised_together(run_primitive, tmp_path):
    levels = [10000.0, 11000.0, 9000.0, 12000.0]
    flats = [_gsaoi(tmp_path, levels) for _ in range(3)]
    assert "LAMPON" in flats[0].tags
    prepared = run_primitive("prepare", flats, require_wcs=False)
    prepared = [in_memory(f) for f in run_primitive("ADUToElectrons", prepared)]
    (lamp,) = run_primitive("makeLampFlat", prepared)
    assert lamp.phu["NCOMBINE"] == 3
    with raise_if_dask_computes(max_computes=1):
        (norm,) = run_primitive("normalizeFlat", [lamp])
    all_pixels = np.concatenate([sci(lamp, e=e).ravel() for e in range(4)])
    m = np.median(all_pixels)
    for e in range(4):
        # Relative response of the arrays is kept (one normalisation for all four).
        np.testing.assert_allclose(sci(norm, e=e), sci(lamp, e=e) / m, rtol=1e-3)


def test_flat_is_clipped_to_roi(run_primitive, tmp_path):
    flat_frames = run_primitive("prepare", [_gsaoi(tmp_path, [1.0, 2.0, 3.0, 4.0])], require_wcs=False)
    flat = flat_frames[0]
    roi = ["[9:24,5:20]", "[41:56,9:24]", "[1:16,33:48]", "[49:64,49:64]"]
    science = run_primitive("prepare", [_gsaoi(tmp_path, [100.0] * 4, shape=(16, 16), obj="galaxy", detsec=roi)],
                  require_wcs=False)
    with raise_if_dask_computes():
        (out,) = run_primitive("flatCorrect", science, flat=[flat])
    for e, (x1, y1) in enumerate([(8, 4), (8, 8), (0, 0), (16, 16)]):
        cut = sci(flat, e=e)[y1:y1 + 16, x1:x1 + 16]
        np.testing.assert_allclose(sci(out, e=e), sci(science[0], e=e) / cut, rtol=1e-6)


def test_gnirs_keyhole_mask_aligned_to_flat(run_primitive, tmp_path):
    from draconis.instruments.illumination import keyhole_mask
    shape = (1022, 1024)
    lit = np.roll(np.roll(keyhole_mask(shape), 7, axis=1), -4, axis=0)
    data = np.where(lit, 5000.0, 20.0) + np.random.default_rng(0).normal(0, 10, shape)
    flat = _frame(tmp_path, "GNIRS/N20170201S0246.fits.header", lambda i: data, phu={"OBSTYPE": "FLAT"})
    (flat,) = run_primitive("prepare", [flat], require_wcs=False)
    flat = in_memory(flat)
    with raise_if_dask_computes(max_computes=1):
        (out,) = run_primitive("addIllumMaskToDQ", [flat])
    dq = sci(out, "DQ")
    assert np.array_equal(dq == 0, lit)
    (user,) = run_primitive("addIllumMaskToDQ", [flat], xshift=2)
    assert np.array_equal(sci(user, "DQ") == 0, np.roll(keyhole_mask(shape), 2, axis=1))
