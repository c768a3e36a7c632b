"""The object-mask transfer kernel: one tile of a mask resampled through two WCSs."""
from __future__ import annotations

import numpy as np
import pytest
from astropy.wcs import WCS

from draconis.kernels.detect import spline_coefficients, transfer_mask_tile


def _wcs(crpix_x: float) -> WCS:
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150.0, 2.0]
    w.wcs.crpix = [crpix_x, 16.0]
    w.wcs.cd = [[-3e-5, 0.0], [0.0, 3e-5]]
    return w


def test_mask_follows_the_wcs_tile_by_tile():
    mask = np.zeros((32, 32), np.uint8)
    mask[10:13, 20:23] = 1
    source = [(spline_coefficients(mask, 1), _wcs(16.0))]
    same = transfer_mask_tile(source, _wcs(16.0), (0, 32, 0, 32), order=0, threshold=0.5)
    np.testing.assert_array_equal(same, mask)
    # a target grid whose reference pixel is 4 px further right sees the object 4 px further right
    shifted = transfer_mask_tile(source, _wcs(20.0), (0, 32, 0, 32), order=0, threshold=0.5)
    np.testing.assert_array_equal(shifted[:, 4:], mask[:, :-4])
    tile = transfer_mask_tile(source, _wcs(20.0), (8, 16, 16, 32), order=0, threshold=0.5)
    np.testing.assert_array_equal(tile, shifted[8:16, 16:32])
    smooth = transfer_mask_tile([(spline_coefficients(mask, 3), _wcs(16.0))], _wcs(16.0), (0, 32, 0, 32),
                                order=3, threshold=0.5)
    np.testing.assert_array_equal(smooth, mask)  # a cubic spline through a box still thresholds to the box


@pytest.mark.parametrize("shape", [(512, 384), (500, 390)])
def test_background_maps_equal_photutils_own(shape):
    # estimate_background expands the mesh itself (a tensor-product spline, ~20x faster than the zoom
    # photutils uses); the maps must be photutils' own to double rounding, including a shape that is
    # not a whole number of boxes and a masked region.
    import warnings

    from photutils.background import Background2D

    from draconis.kernels.detect import estimate_background

    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    data = 100 + 0.02 * xx + 10 * np.sin(yy / 90.0) + rng.normal(0, 3, shape)
    bad = np.zeros(shape, bool)
    bad[100:140, 50:300] = True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = Background2D(data, 32, mask=bad, filter_size=3, exclude_percentile=50.0)
        ref_bkg, ref_rms = ref.background, ref.background_rms
    bkg, rms = estimate_background(data, bad, back_size=32, back_filtersize=3)
    assert bkg.shape == rms.shape == shape
    np.testing.assert_allclose(bkg, ref_bkg, rtol=1e-12, atol=0)
    np.testing.assert_allclose(rms, ref_rms, rtol=1e-12, atol=0)
    assert np.ptp(rms) > 0 and np.ptp(bkg) > 10  # a varying background, not a constant


def _crowded_field(shape=(384, 384), n=160, seed=3) -> np.ndarray:
    """Gaussian stars (a third of them in close pairs) on a noisy flat sky, sky subtracted."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    image = rng.normal(0.0, 5.0, shape)
    x, y = rng.uniform(5, shape[1] - 5, n), rng.uniform(5, shape[0] - 5, n)
    x[: n // 3], y[: n // 3] = x[n // 3: 2 * (n // 3)] + rng.uniform(3, 7, n // 3), y[n // 3: 2 * (n // 3)]
    for sx, sy, flux in zip(x, y, rng.lognormal(7.5, 1.0, n)):
        image += flux / (2 * np.pi * 1.6 ** 2) * np.exp(-((xx - sx) ** 2 + (yy - sy) ** 2) / (2 * 1.6 ** 2))
    return image


def test_smoothing_equals_ndimage_convolve_to_the_bit():
    from photutils.segmentation import make_2dgaussian_kernel
    from scipy import ndimage

    from draconis.kernels.detect import FILTER_FWHM, smooth

    kernel = make_2dgaussian_kernel(FILTER_FWHM, size=5).array
    kernel = kernel / kernel.sum()
    rng = np.random.default_rng(1)
    for shape in [(97, 130), (5, 5), (3, 8), (1, 6), (7, 1)]:
        image = rng.normal(0.0, 10.0, shape)
        np.testing.assert_array_equal(smooth(image), ndimage.convolve(image, kernel, mode="nearest"))


@pytest.mark.parametrize("contrast", [0.005, 0.05])
def test_deblending_equals_photutils_deblending_every_segment(contrast):
    # deblend hands photutils only the segments with more than one local peak; the map must be the one
    # photutils makes when it re-thresholds every segment, label for label
    import warnings

    from photutils.segmentation import deblend_sources, detect_sources

    from draconis.kernels.detect import _SourcePixels, deblend, smooth

    convolved = smooth(_crowded_field())
    segm = detect_sources(convolved, 10.0, n_pixels=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = deblend_sources(convolved, segm, 8, contrast=contrast, progress_bar=False)
    ours = deblend(convolved, segm, _SourcePixels(segm.data), n_pixels=8, contrast=contrast)
    assert reference.n_labels > segm.n_labels + 10  # the field has pairs to split
    np.testing.assert_array_equal(ours.data, reference.data)
    assert deblend(convolved, segm, _SourcePixels(segm.data), n_pixels=8, contrast=1.0) is segm


def _tilted_wcs(crpix, rotation_deg, scale):
    c, s = np.cos(np.radians(rotation_deg)), np.sin(np.radians(rotation_deg))
    pixel = 0.18 / 3600 * scale
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150.0, 2.0]
    w.wcs.crpix = list(crpix)
    w.wcs.cd = [[-pixel * c, pixel * s], [pixel * s, pixel * c]]
    return w


@pytest.mark.parametrize("order", [0, 1, 3])
def test_mask_transfer_on_a_coarse_map_equals_the_exact_map(order):
    # the WCSs are evaluated every 32 px and the positions interpolated between; a frame rotated by
    # 0.7 deg, scaled by 1e-3 and shifted by fractions of a pixel against the stack gets the same mask as
    # with both WCSs evaluated at every pixel (step=1); a distorted (SIP) frame at most a few edge pixels
    from astropy.wcs import Sip
    from scipy import ndimage

    rng = np.random.default_rng(1)
    mask = np.zeros((1100, 1100), np.uint8)
    for y, x in rng.integers(0, 1100, (300, 2)):
        r = rng.integers(2, 9)
        yy, xx = np.ogrid[-y:1100 - y, -x:1100 - x]
        mask[yy ** 2 + xx ** 2 <= r * r] = 1
    source = [(spline_coefficients(mask, order), _tilted_wcs((550.0, 550.0), 0.0, 1.0))]
    target = _tilted_wcs((530.3, 561.7), 0.7, 1.001)
    box = (100, 612, 0, 1024)
    coarse = transfer_mask_tile(source, target, box, order=order, threshold=0.01)
    exact = transfer_mask_tile(source, target, box, order=order, threshold=0.01, step=1)
    assert exact.sum() > 10000
    np.testing.assert_array_equal(coarse, exact)
    a, b = np.zeros((3, 3)), np.zeros((3, 3))
    a[2, 0], a[0, 2], b[1, 1] = 2e-6, -1e-6, 1.5e-6  # up to ~0.5 px of distortion at the tile's corners
    target.sip = Sip(a, b, None, None, target.wcs.crpix)
    target.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"]
    coarse = transfer_mask_tile(source, target, box, order=order, threshold=0.01)
    exact = transfer_mask_tile(source, target, box, order=order, threshold=0.01, step=1)
    differ = coarse != exact
    assert differ.sum() <= 1e-3 * exact.sum()
    ring = np.ones((3, 3), bool)
    edge = ndimage.binary_dilation(exact, ring) & ~ndimage.binary_erosion(exact, ring)
    assert not (differ & ~edge).any()


@pytest.mark.parametrize("density", [0.001, 0.05, 0.6])
def test_object_mask_dilation_equals_binary_dilation_with_a_disc(density):
    # dilate_mask paints the disc's rows around set pixels; it must be scipy's binary dilation with the
    # disc footprint, zeros beyond the edges (set pixels on every edge and corner are included)
    from scipy import ndimage

    from draconis.kernels.sky import dilate_mask, disc

    rng = np.random.default_rng(7)
    mask = (rng.random((97, 131)) < density).astype(np.uint8) * rng.integers(1, 4, (97, 131)).astype(np.uint8)
    mask[0, :3] = mask[-1, -2:] = mask[:2, -1] = mask[-3:, 0] = 2
    for radius in (0.5, 1.0, 1.5, 2.0, 2.9, 4.0):
        expected = ndimage.binary_dilation(mask != 0, structure=disc(radius)).astype(np.uint8)
        got = dilate_mask(mask, radius)
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, expected)


def test_mask_transfer_gives_a_pixel_the_same_value_in_any_tile():
    # the WCS grid is the array's, not the tile's: the rows a band task computes beyond its band (for the
    # dilation) equal the rows of the band they belong to, bit for bit, even on a distorted (SIP) frame
    from astropy.wcs import Sip

    rng = np.random.default_rng(3)
    mask = np.zeros((600, 600), np.uint8)
    for y, x in rng.integers(0, 600, (120, 2)):
        mask[max(0, y - 4):y + 4, max(0, x - 4):x + 4] = 1
    source = [(spline_coefficients(mask, 3), _tilted_wcs((300.0, 300.0), 0.0, 1.0))]
    target = _tilted_wcs((287.3, 311.9), 0.4, 1.0005)
    a, b = np.zeros((3, 3)), np.zeros((3, 3))
    a[2, 0], b[0, 2] = 3e-5, -2e-5  # ~2 px of distortion at the corners: the grid's choice shows
    target.sip = Sip(a, b, None, None, target.wcs.crpix)
    target.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"]
    whole = transfer_mask_tile(source, target, (0, 500, 0, 480), order=3, threshold=0.01, shape=(500, 480))
    assert whole.sum() > 5000
    for box in [(0, 37, 0, 480), (37, 203, 0, 480), (201, 500, 0, 480), (77, 141, 33, 301)]:
        y0, y1, x0, x1 = box
        tile = transfer_mask_tile(source, target, box, order=3, threshold=0.01, shape=(500, 480))
        np.testing.assert_array_equal(tile, whole[y0:y1, x0:x1])
