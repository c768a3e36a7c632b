"""clean() before the spline prefilter: every bad pixel takes the value of a good pixel at the exact minimal distance.

``sci`` holds a distinct integer per pixel (exact in float32), so the value a
bad pixel received names the pixel it was copied from; SciPy's
``distance_transform_edt`` gives the reference distances.
"""
from __future__ import annotations

import threading

import numpy as np
import pytest
from scipy import ndimage

from draconis.kernels import resample as kres
from draconis.kernels._fill import fill_nearest


def _circle_outside(ny, nx, rng):
    """The outside of a centred circle of radius 0.48 * width, plus ~0.5 % isolated bad pixels."""
    yy, xx = np.mgrid[:ny, :nx]
    bad = (yy - (ny - 1) / 2) ** 2 + (xx - (nx - 1) / 2) ** 2 > (0.48 * nx) ** 2
    return bad | (rng.random((ny, nx)) < 0.005)


def _only(ny, nx, where):
    bad = np.ones((ny, nx), bool)
    bad[where] = False
    return bad


def _masks():
    rng = np.random.default_rng(7)
    yield "circle 120x200", _circle_outside(120, 200, rng)
    yield "circle 300x64", _circle_outside(300, 64, rng)
    yield "one good pixel", _only(40, 57, (13, 44))
    yield "one good corner pixel", _only(33, 21, (32, 0))
    yield "one good row", _only(45, 31, (17, slice(None)))
    yield "one good column", _only(29, 50, (slice(None), 6))
    yield "two good pixels", _only(50, 50, ([3, 40], [45, 9]))
    for shape in [(61, 47), (1, 80), (80, 1), (2, 90), (90, 3)]:
        bad = rng.random(shape) < 0.5
        bad.flat[rng.integers(bad.size)] = False  # at least one good pixel
        yield f"random 50% {shape}", bad
    bad = rng.random((70, 70)) < 0.97  # few, scattered good pixels: long envelopes with many ties
    bad[0, 0] = False
    yield "random 97%", bad
    yy, xx = np.mgrid[:40, :64]
    yield "checkerboard of 4x4 tiles", ((yy // 4 + xx // 4) % 2 == 0) & (rng.random((40, 64)) < 0.9)


def _source(out, shape):
    """Row and column of the pixel whose value each output pixel holds (sci is the pixel's flat index)."""
    flat = out.astype(np.int64)
    assert np.array_equal(flat, out), "a value not copied from any pixel"
    return np.divmod(flat, shape[1])


@pytest.mark.parametrize("name, bad", list(_masks()), ids=[n for n, _ in _masks()])
def test_each_bad_pixel_takes_a_good_pixel_at_the_minimal_distance(name, bad):
    ny, nx = bad.shape
    sci = np.arange(ny * nx, dtype=np.float32).reshape(ny, nx)
    sci[bad & (np.arange(sci.size).reshape(ny, nx) % 3 == 0)] = np.nan  # some bad pixels are non-finite too
    dq = np.where(bad, 4, 0).astype(np.uint16)
    before = sci.copy()
    out = kres.clean(sci, dq)
    np.testing.assert_array_equal(sci, before)  # the input is not modified
    assert out.dtype == np.float32 and out.shape == sci.shape
    sy, sx = _source(out, bad.shape)
    assert not bad[sy, sx].any()  # every value comes from a good pixel
    np.testing.assert_array_equal(out[~bad], sci[~bad])  # good pixels unchanged
    yy, xx = np.mgrid[:ny, :nx]
    got = (sy - yy) ** 2 + (sx - xx) ** 2
    want = np.rint(ndimage.distance_transform_edt(bad) ** 2).astype(np.int64)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(kres.clean(sci, dq), out)  # ties are broken the same way every time


def test_no_bad_pixel_returns_the_values_and_all_bad_returns_zeros():
    sci = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_array_equal(kres.clean(sci, np.zeros((3, 4), np.uint16)), sci)
    np.testing.assert_array_equal(kres.clean(sci, None), sci)
    nan = np.full((3, 4), np.nan, np.float32)
    for data, dq in [(nan, None), (sci, np.full((3, 4), 1, np.uint16))]:
        out = kres.clean(data, dq)
        assert out.dtype == np.float32 and (out == 0).all()
    assert np.isnan(nan).all() and np.array_equal(sci, np.arange(12).reshape(3, 4))


def test_bits_outside_clean_bits_do_not_make_a_pixel_bad():
    sci = np.arange(200, dtype=np.float32).reshape(10, 20)
    dq = np.zeros((10, 20), np.uint16)
    dq[:, :5] = 4  # 25 % bad: the nearest-pixel path
    dq[:, 10:] = 512  # not a CLEAN_BITS bit
    out = kres.clean(sci, dq)
    np.testing.assert_array_equal(out[:, 5:], sci[:, 5:])
    np.testing.assert_array_equal(out[:, :5], np.repeat(sci[:, 5:6], 5, axis=1))


def test_fill_from_several_threads_at_once_gives_the_single_thread_result():
    rng = np.random.default_rng(3)
    bad = _circle_outside(150, 160, rng)
    sci = rng.random(bad.shape).astype(np.float32)
    want = np.empty_like(sci)
    fill_nearest(sci, bad, want)
    outs = [np.empty_like(sci) for _ in range(4)]
    threads = [threading.Thread(target=fill_nearest, args=(sci, bad, o)) for o in outs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for o in outs:
        np.testing.assert_array_equal(o, want)
