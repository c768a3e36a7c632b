"""Instrument layer: tags, descriptors and lookup tables for F2, NIRI, GNIRS and GSAOI.

It works on headers only (astropy ``Header`` objects); opening files is the
job of :mod:`draconis.frame`.

>>> inst = instrument_for(phu, path)                    # doctest: +SKIP
>>> tags = inst.tags(phu, ext_headers)                  # doctest: +SKIP
>>> inst.descriptor("filter_name", phu, ext_headers, tags, path, pretty=True)  # doctest: +SKIP
"""
from __future__ import annotations

from astropy.io.fits import Header

from ..errors import InputError, UnknownInstrumentError
from .base import Instrument
from .f2.instrument import F2
from .gnirs.instrument import GNIRS
from .gsaoi.instrument import GSAOI
from .niri.instrument import NIRI
from .sections import Section, format_section, parse_section

__all__ = ["instrument_for", "all_descriptor_names", "Instrument", "Section", "parse_section", "format_section",
           "INSTRUMENTS",
           "F2", "NIRI", "GNIRS", "GSAOI"]

#: One shared (stateless) instance per instrument, by name.
INSTRUMENTS: dict[str, Instrument] = {cls.name: cls() for cls in (F2, NIRI, GNIRS, GSAOI)}

_ALIASES = {"F2": "F2", "FLAM": "F2", "NIRI": "NIRI", "GNIRS": "GNIRS", "GSAOI": "GSAOI"}


def instrument_for(phu: Header, path: object = None) -> Instrument:
    """The :class:`Instrument` that handles a file, from its PHU ``INSTRUME``.

    Parameters
    ----------
    phu : astropy.io.fits.Header
        Primary header.
    path : str, optional
        File name, for error messages.

    Raises
    ------
    InputError
        No INSTRUME keyword.
    UnknownInstrumentError
        INSTRUME names an instrument draconis does not reduce.
    """
    if "INSTRUME" not in phu:
        raise InputError(path, "no INSTRUME keyword: not a Gemini raw or processed file")
    value = str(phu["INSTRUME"]).strip()
    name = _ALIASES.get(value.upper())
    if name is None:
        raise UnknownInstrumentError(path, f"instrument {value!r} is not supported "
                                           f"(expected one of F2, NIRI, GNIRS, GSAOI)")
    return INSTRUMENTS[name]


def all_descriptor_names() -> list[str]:
    """Sorted names of the descriptors of every instrument (for expression checking)."""
    return sorted({name for inst in INSTRUMENTS.values() for name in inst.descriptor_names()})
