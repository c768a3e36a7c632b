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
