"""GNIRS detector and filter lookup values (plain data, no I/O).

``DETECTOR_PROPERTIES``
    ``{array_name: {(read_mode, well_depth_setting): GNIRSDetectorConfig}}``.
    Read noise and well depth in electrons, gain in e-/ADU, ``linear_limit`` the
    fraction of saturation where non-linearity starts.
``NONLINEARITY``
    ``{array_name: {(read_mode, well_depth_setting): GNIRSNonlinearity}}``:
    IRDC form x_lin = x*(1 + gamma*x + eta*x**2) (x in electrons per coadd)
    with separate (gamma, eta) for even rows ``[0::2]`` and odd rows ``[1::2]``
    (0-based numpy rows) and one exposure-time offset ``time_delta`` (s).
``READ_MODES``
    ``{(LNRS, NDAVGS): read_mode}``.
``DETECTOR_BIAS``, ``BIAS_TOLERANCE``
    |DETBIAS| (V) of the 'Shallow' (0.3) and 'Deep' (0.6) well settings.
``PIXEL_SCALES``
    arcsec/pixel by camera name (without its component ID).
``FILTER_WAVELENGTHS``
    central wavelength (microns) by filter name (component ID removed).
``NOMINAL_ZEROPOINTS``
    none are defined for GNIRS (empty dict).

Helpers: :func:`detector_config`, :func:`read_noise`, :func:`saturation_level`,
:func:`non_linear_level`, :func:`well_depth_setting`, :func:`nonlinearity`,
:func:`pixel_scale`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "GNIRSDetectorConfig",
    "IRDCRowCoeffs",
    "GNIRSNonlinearity",
    "DETECTOR_PROPERTIES",
    "NONLINEARITY",
    "READ_MODES",
    "READ_MODE_ABBREVIATIONS",
    "DETECTOR_BIAS",
    "BIAS_TOLERANCE",
    "PIXEL_SCALES",
    "FILTER_WAVELENGTHS",
    "NOMINAL_ZEROPOINTS",
    "detector_config",
    "read_noise",
    "saturation_level",
    "non_linear_level",
    "well_depth_setting",
    "nonlinearity",
    "pixel_scale",
]


@dataclass(frozen=True)
class GNIRSDetectorConfig:
    """GNIRS array properties for one (read mode, well depth) setting."""

    read_noise: float  # electrons, one coadd
    gain: float  # e-/ADU
    well_depth: float  # electrons
    linear_limit: float  # fraction of saturation


@dataclass(frozen=True)
class IRDCRowCoeffs:
    """(gamma, eta) of the IRDC polynomial for one row parity."""

    gamma: float
    eta: float


@dataclass(frozen=True)
class GNIRSNonlinearity:
    """GNIRS non-linearity: one time offset, even- and odd-row coefficients."""

    time_delta: float
    even: IRDCRowCoeffs  # rows [0::2]
    odd: IRDCRowCoeffs  # rows [1::2]


_VB, _B, _F, _VF = "Very Bright Objects", "Bright Objects", "Faint Objects", "Very Faint Objects"
READ_MODE_ABBREVIATIONS: dict[str, str] = {"VB": _VB, "B": _B, "F": _F, "VF": _VF}


def _uniform(noise: dict[str, float], gain: float, shallow: float, deep: float,
             linear_limit: float) -> dict[tuple[str, str], GNIRSDetectorConfig]:
    # Tables where the well and linear limit do not depend on the read mode.
    table = {}
    for mode, rn in noise.items():
        table[(mode, "Shallow")] = GNIRSDetectorConfig(rn, gain, shallow, linear_limit)
        table[(mode, "Deep")] = GNIRSDetectorConfig(rn, gain, deep, linear_limit)
    return table


_NOISE_SOUTH = {_VB: 145.0, _B: 38.0, _F: 12.0, _VF: 7.0}
_NOISE_NORTH = {_VB: 155.0, _B: 30.0, _F: 10.0, _VF: 7.0}

# Measured wells (e-) and linear limits of the original northern controller.
_NORTH_MEASURED: dict[tuple[str, str], GNIRSDetectorConfig] = {
    (_VB, "Shallow"): GNIRSDetectorConfig(155.0, 13.5, 92000.0, 0.96),
    (_B, "Shallow"): GNIRSDetectorConfig(30.0, 13.5, 91000.0, 0.96),
    (_F, "Shallow"): GNIRSDetectorConfig(10.0, 13.5, 78000.0, 0.95),
    (_VF, "Shallow"): GNIRSDetectorConfig(7.0, 13.5, 67000.0, 0.98),
    (_VB, "Deep"): GNIRSDetectorConfig(155.0, 13.5, 209000.0, 0.93),
    (_B, "Deep"): GNIRSDetectorConfig(30.0, 13.5, 207000.0, 0.91),
    (_F, "Deep"): GNIRSDetectorConfig(10.0, 13.5, 190000.0, 0.95),
    (_VF, "Deep"): GNIRSDetectorConfig(7.0, 13.5, 180000.0, 0.72),
}

DETECTOR_PROPERTIES: dict[str, dict[tuple[str, str], GNIRSDetectorConfig]] = {
    "UNKNOWN": _uniform(_NOISE_SOUTH, 13.5, 90000.0, 180000.0, 0.714286),  # GNIRS at Gemini South
    "SN7638228.1": _uniform(_NOISE_NORTH, 13.5, 90000.0, 180000.0, 0.714286),  # North, early days
    "SN7638228.1.2": _NORTH_MEASURED,
    "SN7638228.1.3": _NORTH_MEASURED,
    "SN7638228.1.3+ARC-III": _uniform(_NOISE_NORTH, 13.5, 90000.0, 180000.0, 0.72),
}


def _nl(time_delta: float, even: tuple[float, float], odd: tuple[float, float]) -> GNIRSNonlinearity:
    return GNIRSNonlinearity(time_delta, IRDCRowCoeffs(*even), IRDCRowCoeffs(*odd))


_NONLIN_NORTH: dict[tuple[str, str], GNIRSNonlinearity] = {
    (_VB, "Shallow"): _nl(-0.00927304429432728, (7.31286925e-07, 1.12822847e-11), (8.78778457e-07, 4.79246805e-12)),
    (_B, "Shallow"): _nl(0.08396650606937735, (7.15637971e-07, 1.15383256e-11), (5.69215470e-07, 7.12109353e-12)),
    (_F, "Shallow"): _nl(1.3876736162675933, (7.80927834e-07, 1.14904418e-11), (8.25762314e-07, 4.76417974e-12)),
    (_VF, "Shallow"): _nl(2.597328770047285, (5.06924968e-08, 2.39898215e-11), (8.35434220e-08, 1.49121259e-11)),
    (_VB, "Deep"): _nl(0.01030521861815561, (3.65581625e-07, 3.10036318e-12), (4.74146254e-07, 1.54197057e-12)),
    (_B, "Deep"): _nl(0.08232950781117235, (3.67280555e-07, 3.17756003e-12), (4.50936807e-07, 1.65522683e-12)),
    (_F, "Deep"): _nl(1.4466383436198411, (1.76451657e-07, 4.11771903e-12), (2.73057711e-07, 2.43750647e-12)),
}

NONLINEARITY: dict[str, dict[tuple[str, str], GNIRSNonlinearity]] = {
    "SN7638228.1.2": _NONLIN_NORTH,
    "SN7638228.1.3": _NONLIN_NORTH,
}

READ_MODES: dict[tuple[int, int], str] = {
    (32, 16): _VF,
    (16, 16): _F,
    (1, 16): _B,
    (1, 1): _VB,
}

DETECTOR_BIAS: dict[str, float] = {"Shallow": 0.3, "Deep": 0.6}
BIAS_TOLERANCE: float = 0.1

PIXEL_SCALES: dict[str, float] = {
    "ShortBlue": 0.15170,
    "ShortRed": 0.15,
    "LongBlue": 0.05071,
    "LongRed": 0.05095,
}

FILTER_WAVELENGTHS: dict[str, float] = {
    "YPHOT": 1.0300,
    "X": 1.1000,
    "X_(order_6)": 1.1000,
    "JPHOT": 1.2500,
    "J_(order_5)": 1.2700,
    "H": 1.6300,
    "H_(order_4)": 1.6300,
    "H2": 2.1250,
    "K_(order_3)": 2.1950,
    "KPHOT": 2.2200,
    "PAH": 3.2950,
    "L": 3.5000,
    "L_(order_2)": 3.5000,
    "M": 5.1000,
    "M_(order_1)": 5.1000,
}

NOMINAL_ZEROPOINTS: dict[tuple[str, str], float] = {}


def detector_config(array_name: str, read_mode: str, well_setting: str) -> GNIRSDetectorConfig:
    """Array properties for a GNIRS configuration.

    Parameters
    ----------
    array_name : str
        ``array_name`` descriptor value (e.g. 'SN7638228.1.2'); a value with a
        controller suffix not in the table falls back to its part before '+'.
    read_mode, well_setting : str
        e.g. 'Bright Objects', 'Deep'.

    Raises
    ------
    KeyError
        If no entry exists.
    """
    table = DETECTOR_PROPERTIES.get(array_name)
    if table is None:
        table = DETECTOR_PROPERTIES[array_name.split("+")[0]]
    return table[(read_mode, well_setting)]


def read_noise(config: GNIRSDetectorConfig, coadds: int = 1) -> float:
    """Read noise (electrons) times sqrt(coadds)."""
    return config.read_noise * math.sqrt(coadds)


def saturation_level(config: GNIRSDetectorConfig, coadds: int = 1) -> int:
    """Saturation level (ADU): ``int(well * coadds / gain)``."""
    return int(config.well_depth * coadds / config.gain)


def non_linear_level(config: GNIRSDetectorConfig, coadds: int = 1) -> int:
    """Start of the non-linear regime (ADU): ``int(linear_limit * saturation)``."""
    return int(config.linear_limit * saturation_level(config, coadds))


def well_depth_setting(detbias: float) -> str:
    """'Shallow', 'Deep' or 'Unknown' from the DETBIAS voltage."""
    for setting, volts in DETECTOR_BIAS.items():
        if abs(abs(detbias) - volts) < BIAS_TOLERANCE:
            return setting
    return "Unknown"


def nonlinearity(array_name: str, read_mode: str, well_setting: str) -> GNIRSNonlinearity | None:
    """Non-linearity coefficients, or None when the configuration is uncalibrated."""
    return NONLINEARITY.get(array_name, {}).get((read_mode, well_setting))


def pixel_scale(camera: str) -> float | None:
    """Plate scale (arcsec/pixel) for a camera name such as 'ShortBlue_G5540'."""
    for name, scale in PIXEL_SCALES.items():
        if camera.startswith(name):
            return scale
    return None
