"""disco's default parameters, under the names disco_stu's users know.

Radii are in arcsec; degrees are the highest polynomial orders the fits may
use (draconis keeps a higher order only where the matched sources support it
by an F-test, so the degree is a ceiling, not a demand).
"""
from __future__ import annotations

#: Output pixel scale (arcsec/pixel) of the distortion-corrected grid.
PIXEL_SCALE = 0.02
#: (offset search radius, match radius) for matching frames' catalogues (OBJCAT) to each other.
OBJCAT_ALIGN_RADIUS = (3.0, 0.5)
#: Highest polynomial order of the map from a frame's focal plane to the reference's.
OBJCAT_POLY_DEGREE = 3
#: (offset search radius, match radius) for matching frames to a reference catalogue.
REFCAT_ALIGN_RADIUS = (5.0, 0.5)
#: Fewest matches with the reference catalogue for a frame to be calibrated on it.
REFCAT_MIN_MATCHES = 3
#: Highest polynomial order of the map from a frame's focal plane to the reference catalogue.
REFCAT_POLY_DEGREE = 2
#: Default output file.
OUTPUT = "disco_stack.fits"
