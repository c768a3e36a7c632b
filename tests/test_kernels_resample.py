"""The resampling kernel on one output band: several arrays, their boxes, the gap between them, the Jacobian."""
from __future__ import annotations

import numpy as np
import pytest

from draconis.kernels import resample as kres


def _pixel_map(fy, fx, box, jac=None, step=8):
    """A PixelMap of the input position functions fy(y, x), fx(y, x) sampled every ``step`` over ``box``."""
    y0, y1, x0, x1 = box
    gy = np.unique(np.append(np.arange(y0, y1, step), y1 - 1)).astype(float)
    gx = np.unique(np.append(np.arange(x0, x1, step), x1 - 1)).astype(float)
    yy, xx = np.meshgrid(gy, gx, indexing="ij")
    return kres.PixelMap(fy(yy, xx), fx(yy, xx), gy, gx, None if jac is None else np.full(yy.shape, jac), box)


def _region(sci, var=None, dq=None, origin=(0, 0)):
    return (sci, var, dq, origin)


def test_two_arrays_fill_their_boxes_and_leave_the_gap_flagged():
    rng = np.random.default_rng(1)
    left, right = rng.normal(10, 1, (40, 30)).astype(np.float32), rng.normal(20, 1, (40, 30)).astype(np.float32)
    # output columns 0-29 are the left array, 40-69 the right one (shifted by 40): a 10-column gap between
    maps = [_pixel_map(lambda y, x: y, lambda y, x: x, (0, 40, 0, 31)),
            _pixel_map(lambda y, x: y, lambda y, x: x - 40.0, (0, 40, 39, 71))]
    regions = [_region(left), _region(right)]
    sci, var, dq = kres.resample_band(regions, maps, 10, 30, 80, order=3, dq_threshold=0.001)
    assert sci.shape == (20, 80)
    np.testing.assert_allclose(sci[:, :30], left[10:30], atol=1e-4)
    np.testing.assert_allclose(sci[:, 40:70], right[10:30], atol=1e-4)
    assert (dq[:, 30:40] == kres.NO_DATA).all() and (sci[:, 30:40] == 0).all()
    assert (dq[:, 70:] == kres.NO_DATA).all()
    assert (dq[:, :30] == 0).all() and (dq[:, 40:70] == 0).all()


def test_band_reads_a_region_with_its_origin():
    full = np.arange(100 * 50, dtype=np.float32).reshape(100, 50)
    m = _pixel_map(lambda y, x: y + 0.0, lambda y, x: x + 0.0, (0, 100, 0, 50))
    # only rows 60-79 of the input are given, as a task of rows [62, 75) would read them
    region = _region(full[60:80], origin=(60, 0))
    sci, _, dq = kres.resample_band([region], [m], 62, 75, 50, order=1, dq_threshold=0.001)
    np.testing.assert_allclose(sci, full[62:75], atol=1e-3)
    assert (dq == 0).all()


def test_jacobian_conserves_flux_and_variance_scales_with_its_square():
    # output pixels twice as large on each axis: each covers 4 input pixels
    sci_in = np.full((64, 64), 3.0, np.float32)
    var_in = np.full((64, 64), 2.0, np.float32)
    m = _pixel_map(lambda y, x: 2.0 * y, lambda y, x: 2.0 * x, (0, 32, 0, 32), jac=4.0)
    sci, var, _ = kres.resample_band([_region(sci_in, var_in)], [m], 0, 32, 32, order=1, dq_threshold=0.001)
    np.testing.assert_allclose(sci, 12.0, rtol=1e-6)  # total flux 64*64*3 = 32*32*12
    np.testing.assert_allclose(var[::2, ::2], 2.0 * 16.0, rtol=1e-6)  # integer positions: weights 1, x jac**2


def test_dq_bits_of_each_array_and_first_array_wins_where_they_overlap():
    a = np.ones((20, 20), np.float32)
    b = np.full((20, 20), 5.0, np.float32)
    dqa = np.zeros((20, 20), np.uint16)
    dqa[5, 5] = 4
    maps = [_pixel_map(lambda y, x: y, lambda y, x: x, (0, 20, 0, 20)),
            _pixel_map(lambda y, x: y, lambda y, x: x - 10.0, (0, 20, 10, 30))]
    sci, _, dq = kres.resample_band([_region(a, dq=dqa), _region(b)], maps, 0, 20, 30, order=1, dq_threshold=0.001)
    assert dq[5, 5] == 4 and sci[5, 5] == pytest.approx(1.0)
    np.testing.assert_allclose(sci[:, 10:20], 1.0)  # overlap: the first array
    np.testing.assert_allclose(sci[:, 20:30], 5.0)


def test_fine_map_over_a_column_window():
    gy, gx = np.array([0.0, 10.0]), np.array([20.0, 40.0])
    coarse = np.array([[0.0, 20.0], [10.0, 30.0]])  # value = y + (x - 20)
    out = kres.fine_map(coarse, gy, gx, 2, 5, 31, x0=25)
    yy, xx = np.mgrid[2:5, 25:31]
    np.testing.assert_allclose(out, yy + xx - 20.0)
