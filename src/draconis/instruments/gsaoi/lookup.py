"""GSAOI detector, geometry and filter lookup values (plain data, no I/O).

``ARRAY_IDS``
    the four H2RG arrays in extension order ('H2RG-032-074', '-064', '-071', '-061').
``ARRAY_PROPERTIES``
    ``{(read_speed_setting, array_id): GSAOIArrayProperties}``.  Read noise in
    electrons (one coadd), gain in e-/ADU, **well depth in ADU**, linear limit
    as a fraction of saturation, non-linearity polynomial (a1, a2, a3) for
    electrons per coadd (x_lin = x*(a1 + a2*x + a3*x**2)), and the
    non-linear limit (fraction).
``READ_SPEEDS``
    ``{LNRS: read_speed_setting}`` (2 Bright, 8 Faint, 16 Very Faint Objects).
``NOMINAL_ZEROPOINTS``
    ``{(filter, array_id): zeropoint}`` in magnitudes for 1 electron/s.
``FILTER_WAVELENGTHS``
    central wavelength (microns) by filter name.
``ARRAY_ORIGINS``, ``ARRAY_SHIFTS``, ``ARRAY_ROTATIONS``, ``ARRAY_GEOMETRY``, ``TILE_GAPS``
    the 2x2 array layout: the four mosaic positions (0-based detector
    pixels of their lower-left corners), the shift (pixels) and rotation
    (degrees) of the array at each position, the same as a dict keyed by
    position, and the (x, y) gaps between tiles in pixels.
``ARRAY_DETECTOR_ORIGINS``
    ``{array_id: position}``: which array sits where (from DETSEC).
``PIXEL_SCALE``
    nominal plate scale (arcsec/pixel).

Helpers: :func:`array_properties`, :func:`read_noise`, :func:`saturation_level`,
:func:`non_linear_level`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "GSAOIArrayProperties",
    "ARRAY_IDS",
    "ARRAY_PROPERTIES",
    "READ_SPEEDS",
    "NOMINAL_ZEROPOINTS",
    "FILTER_WAVELENGTHS",
    "ARRAY_ORIGINS",
    "ARRAY_SHIFTS",
    "ARRAY_ROTATIONS",
    "ARRAY_DETECTOR_ORIGINS",
    "ARRAY_GEOMETRY",
    "TILE_GAPS",
    "ARRAY_SIZE",
    "PIXEL_SCALE",
    "array_properties",
    "read_noise",
    "saturation_level",
    "non_linear_level",
]


@dataclass(frozen=True)
class GSAOIArrayProperties:
    """One GSAOI array in one read-speed setting."""

    read_noise: float  # electrons, one coadd
    gain: float  # e-/ADU
    well_depth: float  # ADU
    linear_limit: float  # fraction of saturation
    coeffs: tuple[float, float, float]  # (a1, a2, a3) for electrons
    nonlinear_limit: float  # fraction


ARRAY_IDS: tuple[str, str, str, str] = ("H2RG-032-074", "H2RG-032-064", "H2RG-032-071", "H2RG-032-061")

READ_SPEEDS: dict[int, str] = {2: "Bright Objects", 8: "Faint Objects", 16: "Very Faint Objects"}

# Per array: read noise (Bright, Faint, Very Faint), gain, well (ADU), linlimit, coeffs, nonlinlimit.
_ARRAYS: dict[str, tuple[tuple[float, float, float], float, float, float, tuple[float, float, float], float]] = {
    "H2RG-032-074": ((26.53, 13.63, 10.22), 2.434, 52400.0, 0.73, (0.9947237, 3.0403620e-07, 4.2870263e-12), 0.97),
    "H2RG-032-064": ((19.10, 9.85, 7.44), 2.010, 50250.0, 0.64, (0.9944842, 3.3573418e-07, 9.1085864e-12), 0.97),
    "H2RG-032-071": ((27.24, 14.22, 10.61), 2.411, 53700.0, 0.76, (0.9947278, 2.9311700e-07, 3.7454887e-12), 0.98),
    "H2RG-032-061": ((32.26, 16.78, 12.79), 2.644, 52300.0, 0.75, (0.9958842, 2.1448022e-07, 3.8885419e-12), 0.96),
}

ARRAY_PROPERTIES: dict[tuple[str, str], GSAOIArrayProperties] = {
    (speed, array_id): GSAOIArrayProperties(noises[i], gain, well, lin, coeffs, nonlin)
    for array_id, (noises, gain, well, lin, coeffs, nonlin) in _ARRAYS.items()
    for i, speed in enumerate(("Bright Objects", "Faint Objects", "Very Faint Objects"))
}

_ZP_ORDER = ARRAY_IDS
_ZP: dict[str, tuple[float, float, float, float]] = {
    "Z": (26.71, 26.71, 26.71, 26.71),
    "J": (26.857, 26.891, 26.774, 26.727),
    "H": (26.796, 26.931, 26.821, 26.796),
    "Kshort": (26.201, 26.287, 26.154, 26.192),
    "K": (26.199, 26.285, 26.152, 26.190),
    "Kprime": (26.419, 26.505, 26.372, 26.410),
}
NOMINAL_ZEROPOINTS: dict[tuple[str, str], float] = {
    (filt, array_id): zp for filt, zps in _ZP.items() for array_id, zp in zip(_ZP_ORDER, zps)
}

FILTER_WAVELENGTHS: dict[str, float] = {
    "Z": 1.0150,
    "HeI1083": 1.0830,
    "PaG": 1.0940,
    "J": 1.2500,
    "Jcont": 1.2070,
    "PaB": 1.2820,
    "H": 1.6350,
    "Hcont": 1.5700,
    "CH4short": 1.5800,
    "FeII": 1.6440,
    "CH4long": 1.6900,
    "H2O": 2.0000,
    "HeI-2p2s": 2.0580,
    "Kcntshrt": 2.0930,
    "Kprime": 2.1200,
    "H2(1-0)": 2.1220,
    "Kshort": 2.1500,
    "BrG": 2.1660,
    "K": 2.2000,
    "H2(2-1)": 2.2480,
    "Kcntlong": 2.2700,
    "CO2360": 2.3600,
}

#: Pixels per side of one H2RG array.
ARRAY_SIZE: int = 2048

#: Lower-left corner (x, y), 0-based detector pixels, of the four mosaic positions, in the
#: order of ARRAY_SHIFTS/ARRAY_ROTATIONS (NOT the extension order: see ARRAY_DETECTOR_ORIGINS).
ARRAY_ORIGINS: tuple[tuple[int, int], ...] = ((0, 0), (2048, 0), (0, 2048), (2048, 2048))
#: Mosaic shift (x, y) in pixels of the array at each ARRAY_ORIGINS position relative to (0, 0).
ARRAY_SHIFTS: tuple[tuple[float, float], ...] = (
    (0.0, 0.0),
    (2198.604018, -1.248663),
    (0.029961, 2177.102256),
    (2192.420524, 2175.722921),
)
#: Mosaic rotation (degrees) of each array.
ARRAY_ROTATIONS: tuple[float, ...] = (0.0, 0.033606, -0.582767, -0.769542)
#: Where each array sits on the detector (0-based lower-left corner, from DETSEC of real raw
#: files, whose extensions come in ARRAY_IDS order: 074 lower right, 064 lower left,
#: 071 upper left, 061 upper right).
ARRAY_DETECTOR_ORIGINS: dict[str, tuple[int, int]] = {
    "H2RG-032-074": (2048, 0),
    "H2RG-032-064": (0, 0),
    "H2RG-032-071": (0, 2048),
    "H2RG-032-061": (2048, 2048),
}
#: {detector origin: ((shift x, shift y), rotation degrees)} of the mosaic geometry.
ARRAY_GEOMETRY: dict[tuple[int, int], tuple[tuple[float, float], float]] = {
    origin: (shift, rotation) for origin, shift, rotation in zip(ARRAY_ORIGINS, ARRAY_SHIFTS, ARRAY_ROTATIONS)
}
#: Gaps (x, y) between tiles in pixels.
TILE_GAPS: tuple[int, int] = (145, 140)

#: Nominal plate scale (arcsec/pixel).
PIXEL_SCALE: float = 0.02


def array_properties(read_speed: str, array_id: str) -> GSAOIArrayProperties:
    """Properties of one array in a read-speed setting (KeyError if unknown)."""
    return ARRAY_PROPERTIES[(read_speed, array_id)]


def read_noise(props: GSAOIArrayProperties, coadds: int = 1) -> float:
    """Read noise (electrons): ``round(RN / sqrt(coadds), 2)`` (coadds are averaged)."""
    return round(props.read_noise / math.sqrt(coadds), 2)


def saturation_level(props: GSAOIArrayProperties, current_gain: float | None = None) -> float:
    """Saturation level in the data's current units.

    ``well * table_gain / current_gain``: the well (ADU) for raw data, the
    well in electrons after ADUToElectrons (current gain 1).
    """
    current = props.gain if current_gain is None else current_gain
    return props.well_depth * props.gain / current


def non_linear_level(props: GSAOIArrayProperties, current_gain: float | None = None) -> float:
    """Start of the non-linear regime: ``linear_limit * saturation`` (float)."""
    return props.linear_limit * saturation_level(props, current_gain)
