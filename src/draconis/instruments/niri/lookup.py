"""NIRI detector and filter lookup values (plain data, no I/O).

``GAIN``
    e-/ADU (12.3).
``READ_NOISE``
    ``{read_mode: electrons}`` for one coadd ('Low Background' 12.3,
    'Medium Background' 35, 'High Background' 70); multiply by sqrt(coadds).
``READ_MODES``
    ``{(LNRS, NDAVGS): read_mode}``.
``WELL_DEPTH``
    ``{well_depth_setting: electrons}`` ('Shallow' 200000, 'Deep' 280000).
``DETECTOR_BIAS``
    ``{well_depth_setting: volts}`` (A_VDDUC - A_VDET); ``BIAS_TOLERANCE`` is the
    match tolerance (0.05 V).
``LINEAR_LIMIT``
    fraction of saturation where non-linearity starts (0.7).
``NONLINEARITY``
    ``{(read_mode, naxis2, well_depth_setting): IRDCCoeffs}``: the IRDC form
    x_lin = x*(1 + gamma*x + eta*x**2) for x in electrons per coadd, and the
    exposure-time offset ``time_delta`` (s).  Missing key: no correction.
``FILTER_NAME_MAPPING``
    ``{sorted tuple of filter-wheel names (IDs removed): pretty name}``.
``FILTER_WAVELENGTHS``
    central wavelength (microns) by pretty filter name.
``NOMINAL_ZEROPOINTS``
    ``{(pretty filter, camera): zeropoint}`` in magnitudes for 1 electron/s.
``PIXEL_SCALES``
    nominal arcsec/pixel by camera, a fallback when the WCS is unusable.

Helpers: :func:`read_noise`, :func:`saturation_level`, :func:`non_linear_level`,
:func:`well_depth_setting`, :func:`nonlinearity`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "IRDCCoeffs",
    "GAIN",
    "READ_NOISE",
    "READ_MODES",
    "WELL_DEPTH",
    "DETECTOR_BIAS",
    "BIAS_TOLERANCE",
    "LINEAR_LIMIT",
    "NONLINEARITY",
    "FILTER_NAME_MAPPING",
    "FILTER_WAVELENGTHS",
    "NOMINAL_ZEROPOINTS",
    "PIXEL_SCALES",
    "FULL_FRAME",
    "read_noise",
    "saturation_level",
    "non_linear_level",
    "well_depth_setting",
    "nonlinearity",
]


@dataclass(frozen=True)
class IRDCCoeffs:
    """IRDC-style non-linearity coefficients (counts in electrons per coadd)."""

    max_counts: float  # electrons; historical flagging level, informative only
    time_delta: float  # seconds added to the exposure time per coadd
    gamma: float
    eta: float


GAIN: float = 12.3

READ_NOISE: dict[str, float] = {
    "Low Background": 12.3,
    "Medium Background": 35.0,
    "High Background": 70.0,
}

READ_MODES: dict[tuple[int, int], str] = {
    (16, 16): "Low Background",
    (1, 16): "Medium Background",
    (1, 1): "High Background",
}

WELL_DEPTH: dict[str, float] = {"Shallow": 200000.0, "Deep": 280000.0}

DETECTOR_BIAS: dict[str, float] = {"Shallow": -0.6, "Deep": -0.87}
BIAS_TOLERANCE: float = 0.05

LINEAR_LIMIT: float = 0.7

#: Full-frame size of the NIRI Aladdin array (pixels per side).
FULL_FRAME: int = 1024

NONLINEARITY: dict[tuple[str, int, str], IRDCCoeffs] = {
    ("Low Background", 1024, "Shallow"): IRDCCoeffs(12000 * 12.3, 1.2662732, 6.006310407e-07, 1.282732019e-12),
    ("Medium Background", 1024, "Shallow"): IRDCCoeffs(12000 * 12.3, 0.09442515154, 2.787629143e-07, 3.178236042e-12),
    ("Medium Background", 256, "Shallow"): IRDCCoeffs(12000 * 12.3, 0.01029262589, 5.540988347e-07, 1.404726339e-12),
    ("High Background", 1024, "Shallow"): IRDCCoeffs(12000 * 12.3, 0.009697324059, 2.471574550e-07, 3.067478573e-12),
    ("High Background", 1024, "Deep"): IRDCCoeffs(21000 * 12.3, 0.007680816203, 2.912125336e-07, 1.203254464e-12),
}

FILTER_NAME_MAPPING: dict[tuple[str, ...], str] = {
    ("PK50", "Y"): "Y",
    ("J",): "J",
    ("H",): "H",
    ("Kprime",): "K(prime)",
    ("K",): "K",
    ("Lprime",): "L(prime)",
    ("Mprime",): "M(prime)",
    ("Jcon(121)", "PK50"): "Jcon(121)",
    ("Hcon(157)", "PK50"): "H-con(157)",
    ("CH4short", "PK50"): "CH4(short)",
    ("CH4long", "PK50"): "CH4(long)",
    ("FeII", "PK50"): "FeII",
    ("HeI(2p2s)", "Kprime"): "HeI(2p2s)",
    ("H2Oice204",): "H2Oice(2045)",
    ("kcon(209)",): "Kcon(209)",
    ("kcon(227)",): "Kcon(227)",
    ("H2v=1-0S1", "K"): "H2 1-0 S1",
    ("Brgamma",): "Br(gamma)",
    ("CH4ice227",): "CH4ice(2275)",
    ("Jsort",): "J order sort",
    ("Hsort", "PK50"): "H order sort",
    ("Ksort",): "K order sort",
    ("Lsort",): "L order sort",
    ("Msort",): "M order sort",
    ("Jcon1065", "PK50"): "Jcon(1065)",
    ("Jcon(112)", "PK50"): "Jcon(112)",
    ("Kshort",): "K(short)",
    ("H2v=2-1S1",): "H2 2-1 S1",
    ("PK50", "Pabeta"): "Pa(beta)",
    ("PaGamma",): "Pa(gamma)",
    ("HeI",): "HeI",
    ("Bra",): "Br(alpha)",
    ("H2Oice",): "H2O ice",
    ("hydrocarb",): "hydrocarb",
    ("Bracont",): "Br(alpha)Con",
    ("COv=2-0bh",): "CO 2-0 (bh)",
}

FILTER_WAVELENGTHS: dict[str, float] = {
    "Y": 1.020,
    "J": 1.250,
    "Jcon(1065)": 1.0650,
    "HeI": 1.0830,
    "Pa(gamma)": 1.0940,
    "Jcon(112)": 1.1220,
    "Jcon(121)": 1.2070,
    "Pa(beta)": 1.2820,
    "H-con(157)": 1.5700,
    "CH4(short)": 1.5800,
    "H": 1.6500,
    "FeII": 1.6440,
    "CH4(long)": 1.6900,
    "H2Oice(2045)": 2.0450,
    "HeI(2p2s)": 2.0590,
    "Kcon(209)": 2.0975,
    "K(prime)": 2.1200,
    "H2 1-0 S1": 2.1239,
    "K(short)": 2.1500,
    "Br(gamma)": 2.1686,
    "K": 2.2000,
    "H2 2-1 S1": 2.2465,
    "Kcon(227)": 2.2718,
    "CH4ice(2275)": 2.2750,
    "CO 2-0 (bh)": 2.2890,
    "H2O ice": 3.0500,
    "hydrocarb": 3.2950,
    "L(prime)": 3.7800,
    "Br(alpha)Con": 3.9900,
    "Br(alpha)": 4.0520,
    "M(prime)": 4.6800,
}

# Zeropoints in electrons: the ADU values plus 2.5 log10(12.3) = 2.72.
NOMINAL_ZEROPOINTS: dict[tuple[str, str], float] = {
    ("Y", "f6"): 22.99 + 2.72,
    ("J", "f6"): 23.97 + 2.72,
    ("J", "f32"): 23.33 + 2.72,
    ("H", "f6"): 24.05 + 2.72,
    ("H", "f32"): 23.62 + 2.72,
    ("K", "f6"): 23.43 + 2.72,
    ("K", "f32"): 22.99 + 2.72,
    ("K(short)", "f6"): 23.40 + 2.72,
    ("K(short)", "f32"): 22.95 + 2.72,
    ("K(prime)", "f6"): 23.68 + 2.72,
    ("K(prime)", "f32"): 23.60 + 2.72,
}

#: Nominal plate scales (arcsec/pixel) by camera.
PIXEL_SCALES: dict[str, float] = {"f6": 0.1171, "f14": 0.0499, "f13.9": 0.0499, "f32": 0.0219}


def read_noise(read_mode: str, coadds: int = 1) -> float:
    """Read noise (electrons) of a NIRI frame: table value times sqrt(coadds)."""
    return READ_NOISE[read_mode] * math.sqrt(coadds)


def saturation_level(well_setting: str, coadds: int = 1) -> int:
    """Saturation level (ADU): ``int(well * coadds / gain)``."""
    return int(WELL_DEPTH[well_setting] * coadds / GAIN)


def non_linear_level(well_setting: str, coadds: int = 1) -> int:
    """Start of the non-linear regime (ADU): ``int(0.7 * saturation)``."""
    return int(LINEAR_LIMIT * saturation_level(well_setting, coadds))


def well_depth_setting(bias_volts: float) -> str:
    """'Shallow', 'Deep' or 'Unknown' from the detector bias A_VDDUC - A_VDET."""
    for setting, volts in DETECTOR_BIAS.items():
        if abs(bias_volts - volts) < BIAS_TOLERANCE:
            return setting
    return "Unknown"


def nonlinearity(read_mode: str, naxis2: int, well_setting: str) -> IRDCCoeffs | None:
    """Non-linearity coefficients for a configuration, or None if uncalibrated."""
    return NONLINEARITY.get((read_mode, int(naxis2), well_setting))
