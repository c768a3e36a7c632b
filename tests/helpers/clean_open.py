"""Check that a FITS output opens cleanly in astropy: no warning, every image HDU a 2-D celestial WCS."""
from __future__ import annotations

import warnings

from astropy.io import fits
from astropy.wcs import WCS


def assert_opens_cleanly(path) -> int:
    """Open ``path`` with every warning an error; each SCI/VAR/DQ (or single image) HDU has a 2-D WCS
    whose two-argument ``all_world2pix`` round-trips its centre. Returns the number of images checked."""
    checked = 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with fits.open(path) as hdul:
            hdul.verify("exception")
            for hdu in hdul:
                if not isinstance(hdu, (fits.ImageHDU, fits.PrimaryHDU)) or hdu.header.get("NAXIS", 0) != 2:
                    continue
                if "CTYPE1" not in hdu.header:
                    continue
                wcs = WCS(hdu.header)
                assert wcs.naxis == 2, f"{path}[{hdu.name}]: {wcs.naxis}-axis WCS"
                assert wcs.has_celestial, f"{path}[{hdu.name}]: no celestial WCS"
                ny, nx = hdu.shape
                ra, dec = wcs.all_pix2world(nx / 2, ny / 2, 0)
                x, y = wcs.all_world2pix(ra, dec, 0)
                assert abs(x - nx / 2) < 1e-3 and abs(y - ny / 2) < 1e-3, f"{path}[{hdu.name}]: round trip"
                checked += 1
    return checked
