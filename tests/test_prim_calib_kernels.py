"""Calibration-stage kernels on tiny arrays with exact expectations."""
from __future__ import annotations

import numpy as np

from draconis.instruments import illumination as il
from draconis.kernels import nonlinearity as nl
from draconis.kernels import calib as k
from draconis.primitives.stack import _fit, tile_rows


def test_saturation_bits():
    sci = np.array([[10.0, 70.0, 99.0, 100.0, 150.0]])
    dq = k.saturation_dq(sci, saturation=100.0, non_linear=70.0)
    assert dq.tolist() == [[0, 2, 2, 4, 4]]
    assert k.saturation_dq(sci, saturation=None, non_linear=None).sum() == 0
    # A non-linear level at the saturation level sets no non-linear bit.
    assert k.saturation_dq(sci, saturation=100.0, non_linear=100.0).tolist() == [[0, 0, 0, 4, 4]]


def test_hidden_saturation_flags_enclosed_core_only():
    sci = np.full((20, 20), 100.0)
    sci[5:10, 5:10] = 5000.0       # saturated star
    sci[7:8, 7:9] = 50.0           # wrapped core: low values inside it
    dq = k.hidden_saturation_dq(sci, non_linear=1000.0)
    expected = np.zeros((20, 20), np.uint16)
    expected[7:8, 7:9] = 4
    np.testing.assert_array_equal(dq, expected)
    # An array entirely below the level is one region (the background): nothing flagged.
    assert k.hidden_saturation_dq(np.zeros((10, 10)), non_linear=1.0).sum() == 0


def test_latency_bits():
    a = np.array([[0, 4, 2]], np.uint16)
    b = np.array([[4, 0, 0]], np.uint16)
    assert k.latency_dq(a, b).tolist() == [[8, 8, 0]]
    assert k.latency_dq(a, bits=6).tolist() == [[0, 8, 8]]


def test_linearize_polynomial_and_rows():
    sci = np.array([[1000.0, 2000.0], [3000.0, 4000.0]], np.float32)
    coeffs = (0.99, 1e-6, 1e-11)
    out = k.linearize_block(sci, form="polynomial", to_electrons=2.0, coeffs=coeffs)
    x = sci.astype(float) * 2
    np.testing.assert_allclose(out, x * (0.99 + 1e-6 * x + 1e-11 * x * x) / 2, rtol=1e-6)
    even, odd = (1e-6, 1e-12), (2e-6, 3e-12)
    rows = k.linearize_block(sci, form="irdc", to_electrons=1.0, coeffs=even, odd_coeffs=odd, row0=1,
                             exposure_scale=0.5)
    # Block starting on an odd detector row: its first row uses the odd coefficients.
    np.testing.assert_allclose(rows[0], nl.linearize_irdc(sci[0], *odd) * 0.5, rtol=1e-6)
    np.testing.assert_allclose(rows[1], nl.linearize_irdc(sci[1], *even) * 0.5, rtol=1e-6)


def test_division_variance_and_threshold():
    sci, var = np.array([[4.0, 4.0]]), np.array([[1.0, 1.0]])
    flat, fvar = np.array([[2.0, 0.0]]), np.array([[0.01, 0.01]])
    np.testing.assert_allclose(k.divide_sci(sci, flat), [[2.0, 0.0]])
    np.testing.assert_allclose(k.divide_var(sci, var, flat, fvar), [[(1 + 4 * 0.01) / 4, 0.0]])
    dq = np.array([[0, 1, 0, 2]], np.uint16)
    out = k.threshold_dq(np.array([[0.001, 0.001, 11.0, 1.0]]), dq, lower=0.01, upper=10.0)
    assert out.tolist() == [[64, 1, 64, 2]]


def test_bpm_block():
    flat = np.array([[1.0, 0.5, 1.5, 0.0]])
    fdq = np.array([[0, 0, 0, 64]], np.uint16)
    dark = np.array([[0.0, 0.0, 0.0, 5000.0]])
    bpm = k.bpm_block(flat, fdq, dark, flat_lo=0.8, flat_hi=1.25, dark_lo=-20, dark_hi=1300,
                      keep_unilluminated=True)
    assert bpm.dtype == np.int16
    assert bpm.tolist() == [[0, 1, 1, 65]]


def test_keyhole_matches_simulator_and_shifts():
    from draconis.simulate.keyhole import keyhole_mask as sim_mask
    for shape in ((1022, 1024), (128, 128), (61, 77)):
        np.testing.assert_array_equal(il.keyhole_mask(shape), sim_mask(shape))
    base = il.illuminated("GNIRS", (64, 64))
    shifted = il.illuminated("GNIRS", (64, 64), xshift=3, yshift=-2)
    np.testing.assert_array_equal(shifted[10:50, 10:50], base[12:52, 7:47])
    assert il.illuminated("NIRI", (8, 8)) is None
    f2 = il.illuminated("F2", (64, 64))
    assert f2[32, 32] and not f2[0, 0]


def test_tile_rows_fit_budget():
    # 10 frames x 2048 columns x 30 bytes = 614400 bytes per row.
    rows = tile_rows(10, (2048, 2048), 0.1, chunk_rows=512)
    assert rows * 10 * 2048 * 30 <= 0.1 * 1024 ** 3
    assert 512 % rows == 0
    assert tile_rows(10, (2048, 2048), 10.0, chunk_rows=512) == 2048
    assert tile_rows(3, (100, 50), None) == 100


def test_normalisation_fit_ignores_outliers():
    rng = np.random.default_rng(1)
    x = rng.normal(1000, 30, 5000)
    ref = 1.7 * x + rng.normal(0, 1, 5000)
    ref[:50] += 5000  # stars in the reference
    assert abs(_fit(ref, x, scale=True, old=False) - 1.7) < 1e-3
    assert abs(_fit(x + 25.0, x, scale=False, old=False) - 25.0) < 1e-9


def test_combine_rows_leaves_every_worker_several_bands():
    from draconis.primitives.stack import MIN_BANDS, combine_rows

    # memory allows the whole image, but the stack is still cut into whole-chunk bands for parallelism
    rows = combine_rows(20, (2246, 2246), 10.0, chunk_rows=256)
    assert rows == 256 and -(-2246 // rows) >= MIN_BANDS
    # a tight memory budget still wins
    assert combine_rows(156, (2048, 2048), 0.05, chunk_rows=256) <= tile_rows(156, (2048, 2048), 0.05, 256)


def test_dark_and_gain_arithmetic_kernels():
    sci = np.array([[10.0, 20.0], [30.0, -5.0]], np.float32)
    dark = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
    np.testing.assert_array_equal(k.subtract_sci(sci, dark), [[9.0, 18.0], [27.0, -9.0]])
    assert k.subtract_sci(sci, dark).dtype == np.float32
    np.testing.assert_array_equal(k.sum_var(sci, dark), sci + dark)
    np.testing.assert_array_equal(k.sum_var(dark), dark)  # no calibration variance: unchanged
    scaled = k.scale_block(sci, factor=4.44)
    assert scaled.dtype == np.float32
    np.testing.assert_allclose(scaled, sci.astype(np.float64) * 4.44, rtol=1e-6)
