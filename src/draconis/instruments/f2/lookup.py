"""Flamingos-2 detector and filter lookup values (plain data, no I/O).

Everything the F2 descriptors and the simulator need to agree on:

``ARRAY_PROPERTIES``
    ``{read_mode: F2ArrayProperties}`` keyed by the read mode, i.e. ``str(LNRS)``
    ('1', '4', '6', '8').  Read noise and well depth are in electrons; ``base_gain``
    is the gain of one read in e-/ADU; ``linear_limit`` is the fraction of the
    saturation level where the response stops being linear; ``coeffs`` are the
    non-linearity polynomial (a1, a2, a3) for counts in electrons per coadd
    (x_lin = x * (a1 + a2*x + a3*x**2)).
``FILTER_WAVELENGTHS``
    central wavelength (microns) by pretty filter name.
``NOMINAL_ZEROPOINTS``
    ``{(filter, camera): zeropoint}`` in magnitudes for 1 electron/s.
``DEFAULT_PIXEL_SCALE``
    arcsec/pixel of the f/16 camera, used when the WCS is unusable.

Helper functions implement the spec formulas (F2 sums its reads in ADU):
:func:`gain`, :func:`read_noise`, :func:`saturation_level`,
:func:`non_linear_level`.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "F2ArrayProperties",
    "ARRAY_PROPERTIES",
    "NONLINEARITY_COEFFS",
    "FILTER_WAVELENGTHS",
    "NOMINAL_ZEROPOINTS",
    "DEFAULT_PIXEL_SCALE",
    "RAW_ARRAY_SECTION",
    "array_properties",
    "gain",
    "read_noise",
    "saturation_level",
    "non_linear_level",
]


@dataclass(frozen=True)
class F2ArrayProperties:
    """Detector properties for one F2 read mode (number of read pairs)."""

    read_noise: float  # electrons
    base_gain: float  # e-/ADU for a single read
    well_depth: float  # electrons
    linear_limit: float  # fraction of the saturation level
    coeffs: tuple[float, float, float]  # non-linearity (a1, a2, a3), electrons


#: Non-linearity polynomial (a1, a2, a3) shared by every read mode.
NONLINEARITY_COEFFS: tuple[float, float, float] = (0.9999107, -4.2854848e-8, 1.0096585e-12)

ARRAY_PROPERTIES: dict[str, F2ArrayProperties] = {
    "1": F2ArrayProperties(11.7, 4.44, 155400.0, 0.72, NONLINEARITY_COEFFS),
    "4": F2ArrayProperties(6.0, 4.44, 155400.0, 0.72, NONLINEARITY_COEFFS),
    "6": F2ArrayProperties(5.3, 4.44, 155400.0, 0.72, NONLINEARITY_COEFFS),
    "8": F2ArrayProperties(5.0, 4.44, 155400.0, 0.72, NONLINEARITY_COEFFS),
}

FILTER_WAVELENGTHS: dict[str, float] = {
    "Y": 1.020,
    "J-lo": 1.122,
    "Jlow": 1.122,
    "J": 1.250,
    "JH": 1.390,
    "H": 1.631,
    "HK": 1.871,
    "K-blue": 2.060,
    "Ks": 2.157,
    "K-long": 2.200,
    "Klong": 2.200,
    "K-red": 2.310,
}

NOMINAL_ZEROPOINTS: dict[tuple[str, str], float] = {
    ("J", "f/16"): 26.51,
    ("H", "f/16"): 26.75,
    ("Ks", "f/16"): 26.12,
}

#: f/16 imaging plate scale (arcsec/pixel), the fallback when no WCS is usable.
DEFAULT_PIXEL_SCALE: float = 0.18

#: Raw F2 data always cover the whole array (FITS-style section string).
RAW_ARRAY_SECTION: str = "[1:2048,1:2048]"


def array_properties(read_mode: str | int) -> F2ArrayProperties:
    """Return the detector properties for an F2 read mode.

    Parameters
    ----------
    read_mode : str or int
        Number of read pairs (LNRS), e.g. ``'1'`` or ``8``.

    Raises
    ------
    KeyError
        If the read mode is not in :data:`ARRAY_PROPERTIES`.
    """
    return ARRAY_PROPERTIES[str(read_mode)]


def gain(read_mode: str | int) -> float:
    """Gain (e-/ADU) of raw F2 data: the base gain divided by LNRS.

    F2 adds its reads in ADU, so one ADU of the summed image is worth
    ``base_gain / LNRS`` electrons.
    """
    return array_properties(read_mode).base_gain / int(read_mode)


def read_noise(read_mode: str | int) -> float:
    """Read noise (electrons) for an F2 read mode."""
    return array_properties(read_mode).read_noise


def saturation_level(read_mode: str | int) -> int:
    """Saturation level (ADU) of raw F2 data: ``int(well / gain)``."""
    return int(array_properties(read_mode).well_depth / gain(read_mode))


def non_linear_level(read_mode: str | int) -> int:
    """Start of the non-linear regime (ADU): ``int(linear_limit * saturation)``."""
    return int(array_properties(read_mode).linear_limit * saturation_level(read_mode))
