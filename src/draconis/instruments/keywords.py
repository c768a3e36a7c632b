"""Parsing of header keyword values shared by every instrument.

Pure functions: sexagesimal or decimal coordinates, the several DATE-OBS /
TIME-OBS forms found in Gemini raw files, component-ID stripping.
"""
from __future__ import annotations

import datetime as dt
import math
import re

__all__ = [
    "parse_ra",
    "parse_dec",
    "parse_date",
    "parse_time",
    "combine_date_time",
    "strip_component_id",
    "as_float",
    "apparent_to_icrs",
]

_ID_RE = re.compile(r"_G\d{4}.*$")


def strip_component_id(name: str) -> str:
    """Remove a Gemini component ID such as ``'_G0812'`` (and what follows).

    ``'K-red_G0815'`` -> ``'K-red'``; ``'HK_G0806_good'`` -> ``'HK'``.
    """
    return _ID_RE.sub("", str(name)).strip()


def as_float(value: object) -> float:
    """Convert a header value (number or numeric string) to float.

    Raises
    ------
    ValueError
        If it cannot be converted.
    """
    if isinstance(value, bool):
        raise ValueError(f"not a number: {value!r}")
    return float(str(value).strip()) if isinstance(value, str) else float(value)  # type: ignore[arg-type]


def _sexagesimal(text: str) -> float:
    parts = re.split(r"[:\s]+", text.strip())
    if not 1 <= len(parts) <= 3:
        raise ValueError(f"not a sexagesimal value: {text!r}")
    sign = -1.0 if parts[0].startswith("-") else 1.0
    values = [abs(float(parts[0]))] + [float(p) for p in parts[1:]]
    total = sum(v / 60.0 ** i for i, v in enumerate(values))
    return sign * total


def parse_ra(value: object) -> float:
    """Right ascension in degrees from degrees or an 'HH:MM:SS.s' string."""
    if isinstance(value, str) and (":" in value or " " in value.strip()):
        return _sexagesimal(value) * 15.0
    return as_float(value)


def parse_dec(value: object) -> float:
    """Declination in degrees from degrees or a '+DD:MM:SS.s' string."""
    if isinstance(value, str) and (":" in value or " " in value.strip()):
        return _sexagesimal(value)
    return as_float(value)


def parse_date(text: str) -> tuple[dt.date, dt.time | None]:
    """Parse a DATE-OBS value.

    Accepts ``'YYYY-MM-DD'``, full ISO ``'YYYY-MM-DDThh:mm:ss[.s]'`` (the time is
    returned too) and the old ``'DD/MM/YY'`` form (YY < 50 means 20YY).

    Raises
    ------
    ValueError
        If the value has none of these forms.
    """
    text = str(text).strip()
    if "T" in text:
        date_part, time_part = text.split("T", 1)
        return dt.date.fromisoformat(date_part), parse_time(time_part)
    match = re.fullmatch(r"(\d{1,2})/(\d{1,2})/(\d{2,4})", text)
    if match:
        day, month, year = (int(v) for v in match.groups())
        if year < 100:
            year += 2000 if year < 50 else 1900
        return dt.date(year, month, day), None
    return dt.date.fromisoformat(text), None


def parse_time(text: str) -> dt.time:
    """Parse 'hh:mm:ss[.ffffff]' (any number of decimals) into a time."""
    match = re.fullmatch(r"\s*(\d{1,2}):(\d{1,2}):(\d{1,2})(?:\.(\d*))?\s*Z?\s*", str(text))
    if not match:
        raise ValueError(f"not a time: {text!r}")
    hour, minute, second = (int(v) for v in match.groups()[:3])
    frac = match.group(4) or ""
    micro = int(round(float("0." + frac) * 1e6)) if frac else 0
    if micro >= 1_000_000:  # rounding of e.g. .9999999
        micro = 999_999
    if second >= 60:  # leap-second style values: clamp
        second = 59
    return dt.time(hour % 24, minute, second, micro)


def combine_date_time(date: dt.date, time: dt.time | None) -> dt.datetime:
    """A naive UTC datetime from a date and an optional time (midnight if None)."""
    return dt.datetime.combine(date, time or dt.time(0, 0))


def finite_or_none(value: float) -> float | None:
    """Return the value unless it is NaN or infinite."""
    return value if math.isfinite(value) else None


def apparent_to_icrs(ra: float, dec: float, when: dt.datetime) -> tuple[float, float]:
    """Convert apparent (true equator and equinox of date) RA/Dec to ICRS, degrees."""
    # Imported here: astropy.coordinates is slow to import and rarely needed.
    import astropy.units as u
    from astropy.coordinates import ICRS, TETE, SkyCoord
    from astropy.time import Time

    coord = SkyCoord(ra * u.deg, dec * u.deg, frame=TETE(obstime=Time(when, scale="utc")))
    icrs = coord.transform_to(ICRS())
    return float(icrs.ra.deg), float(icrs.dec.deg)
