"""Filter names and wavelengths shared by the instruments.

The raw filter name joins the wheel positions with '&'; the "pretty" name
drops open/clear positions and component IDs, and maps blocking positions
to 'blank' (or 'dark' for F2's 'DK').
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

from .keywords import strip_component_id

__all__ = [
    "WAVELENGTH_BANDS",
    "GENERIC_FILTER_WAVELENGTHS",
    "join_filters",
    "pretty_filters",
    "is_open",
    "nearest_band",
    "filter_wavelength",
]

#: Effective wavelength (microns) of the standard bands.
WAVELENGTH_BANDS: dict[str, float] = {
    "u": 0.350, "g": 0.475, "r": 0.630, "i": 0.780, "Z": 0.900, "Y": 1.020, "X": 1.100,
    "J": 1.200, "H": 1.650, "K": 2.200, "L": 3.400, "M": 4.800, "N": 11.70, "Q": 18.30,
}

#: Central wavelengths (microns) used when an instrument's table lacks a filter.
GENERIC_FILTER_WAVELENGTHS: dict[str, float] = {
    "u": 0.3500, "g": 0.4750, "r": 0.6300, "i": 0.7800, "z": 0.9250, "Y": 1.0200,
    "J": 1.2500, "H": 1.6350, "K": 2.2000, "FeII": 1.6440,
}

_OPEN_WORDS = ("open", "clear")


def is_open(name: str) -> bool:
    """True for an empty wheel position ('Open', 'open', 'Clear', 'nd*' neutral density)."""
    lowered = strip_component_id(name).lower()
    return lowered.startswith(_OPEN_WORDS) or lowered.startswith("nd") or lowered == ""


def join_filters(names: Iterable[str], *, strip_id: bool = False) -> str:
    """'&'-join wheel positions, optionally without component IDs."""
    parts = [strip_component_id(n) if strip_id else str(n).strip() for n in names]
    return "&".join(parts)


def pretty_filters(names: Iterable[str]) -> str:
    """Pretty filter name from wheel positions (spec rules for generic Gemini).

    Open/clear/ND positions are dropped, IDs stripped; any 'Block'/'Dark'
    position gives 'blank' and F2's 'DK' gives 'dark'; nothing left -> 'open'.
    """
    kept = []
    for name in names:
        bare = strip_component_id(name)
        lowered = bare.lower()
        if lowered.startswith(("block", "dark", "blank")):
            return "blank"
        if lowered == "dk" or lowered.startswith("dk_"):
            return "dark"
        if is_open(bare):
            continue
        kept.append(bare)
    return "&".join(kept) if kept else "open"


def nearest_band(wavelength_um: float | None) -> str | None:
    """The standard band whose effective wavelength is closest (None for None)."""
    if wavelength_um is None:
        return None
    return min(WAVELENGTH_BANDS, key=lambda band: abs(WAVELENGTH_BANDS[band] - wavelength_um))


def filter_wavelength(pretty_name: str, table: Mapping[str, float]) -> float | None:
    """Central wavelength of a pretty filter name from an instrument table.

    Falls back to the generic table, then to the first '&' component found.
    """
    for source in (table, GENERIC_FILTER_WAVELENGTHS):
        if pretty_name in source:
            return source[pretty_name]
    for part in pretty_name.split("&"):
        for source in (table, GENERIC_FILTER_WAVELENGTHS):
            if part in source:
                return source[part]
    return None
