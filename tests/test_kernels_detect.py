"""The object-mask transfer kernel: one tile of a mask resampled through two WCSs."""
from __future__ import annotations

import numpy as np
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
