"""Tag rules common to every Gemini instrument (instruments.md §1).

Each rule takes the primary header and the pixel-extension headers and
returns a :class:`~draconis.instruments.tags.TagSet` or None.
"""
from __future__ import annotations

from collections.abc import Sequence

from astropy.io.fits import Header

from .keywords import as_float
from .tags import TagSet

__all__ = ["GEMINI_RULES", "phu_str"]

_PROCESSED_KEYWORDS = ("PROCARC", "GBIAS", "PROCBIAS", "PROCDARK", "GIFLAT", "PROCFLAT", "GIFRINGE",
                       "PROCFRNG", "PROCPNHL", "PROCSTND", "PROCILLM")
_GCAL_IR_LAMPS = ("IRhigh", "IRlow")


def phu_str(phu: Header, keyword: str) -> str:
    """A PHU keyword as a stripped string ('' if absent)."""
    value = phu.get(keyword)
    return "" if value is None else str(value).strip()


def gemini(phu: Header, exts: Sequence[Header]) -> TagSet:
    return TagSet.of(["GEMINI"])


def site(phu: Header, exts: Sequence[Header]) -> TagSet | None:
    observatory = phu_str(phu, "OBSERVAT").upper()
    if observatory == "GEMINI-NORTH":
        return TagSet.of(["NORTH"])
    if observatory == "GEMINI-SOUTH":
        return TagSet.of(["SOUTH"])
    return None


def raw(phu: Header, exts: Sequence[Header]) -> TagSet | None:
    if "GEM-TLM" not in phu:
        return TagSet.of(["RAW"], blocked_by=["PROCESSED_SCIENCE"])
    return None


def prepared(phu: Header, exts: Sequence[Header]) -> TagSet:
    if any("PREPAR" in key for key in phu.keys()):
        return TagSet.of(["PREPARED"])
    return TagSet.of(["UNPREPARED"])


def processed(phu: Header, exts: Sequence[Header]) -> TagSet | None:
    if any(key in phu for key in _PROCESSED_KEYWORDS):
        return TagSet.of(["PROCESSED"])
    return None


def processed_science(phu: Header, exts: Sequence[Header]) -> TagSet | None:
    if phu_str(phu, "OBSTYPE") == "OBJECT" and ("GMOSAIC" in phu or "PROCSCI" in phu):
        return TagSet.of(["PROCESSED_SCIENCE", "PROCESSED"], blocks=["RAW"])
    return None


def acquisition(phu: Header, exts: Sequence[Header]) -> TagSet | None:
    if phu_str(phu, "OBSCLASS") in ("acq", "acqCal"):
        return TagSet.of(["ACQUISITION"])
    return None


def azel_target(phu: Header, exts: Sequence[Header]) -> TagSet | None:
    if phu_str(phu, "FRAME") != "AZEL_TOPO":
        return None
    try:
        at_zenith = as_float(phu.get("AIRMASS")) == 1.0
    except (TypeError, ValueError):
        at_zenith = False
    return TagSet.of(["AZEL_TARGET", "AT_ZENITH"] if at_zenith else ["AZEL_TARGET"])


def sidereal(phu: Header, exts: Sequence[Header]) -> TagSet | None:
    frames = {phu_str(phu, "TRKFRAME"), phu_str(phu, "FRAME")}
    if not frames & {"FK5", "APPT"}:
        return None
    try:
        if as_float(phu["DECTRACK"]) == 0 and as_float(phu["RATRACK"]) == 0:
            return TagSet.of(["SIDEREAL"])
    except (KeyError, TypeError, ValueError):
        pass
    return TagSet.of(["NON_SIDEREAL"])


def _gcal_ir_lamp(phu: Header) -> bool:
    lamp = phu_str(phu, "GCALLAMP")
    return lamp in _GCAL_IR_LAMPS or lamp.startswith("QH")


def gcal_flat(phu: Header, exts: Sequence[Header]) -> TagSet | None:
    lamp = phu_str(phu, "GCALLAMP")
    if lamp == "IRhigh" or lamp.startswith("QH"):
        return TagSet.of(["GCALFLAT", "FLAT", "CAL"])
    return None


def gcal_ir_on(phu: Header, exts: Sequence[Header]) -> TagSet | None:
    if _gcal_ir_lamp(phu) and phu_str(phu, "GCALSHUT") == "OPEN":
        return TagSet.of(["GCAL_IR_ON", "LAMPON"], blocked_by=["PROCESSED"])
    return None


def gcal_ir_off(phu: Header, exts: Sequence[Header]) -> TagSet | None:
    shutter = phu_str(phu, "GCALSHUT")
    if _gcal_ir_lamp(phu) and shutter == "CLOSED":
        return TagSet.of(["GCAL_IR_OFF", "LAMPOFF"], blocked_by=["PROCESSED", "PINHOLE"])
    if phu_str(phu, "GCALLAMP") == "No Value" and shutter == "CLOSED":
        return TagSet.of(["GCAL_IR_OFF", "LAMPOFF"])
    return None


def bpm(phu: Header, exts: Sequence[Header]) -> TagSet | None:
    if "BPMASK" in phu or "PROCBPM" in phu:
        return TagSet.of(["BPM", "CAL", "PROCESSED"],
                         blocks=["IMAGE", "SPECT", "NON_SIDEREAL", "AZEL_TARGET", "GCALFLAT", "LAMPON",
                                 "GCAL_IR_ON", "GCAL_IR_OFF", "DARK"])
    return None


def nodchop(phu: Header, exts: Sequence[Header]) -> TagSet | None:
    if phu_str(phu, "DATATYPE") == "marked-nodandchop":
        return TagSet.of(["NODCHOP"])
    return None


def mask(phu: Header, exts: Sequence[Header]) -> TagSet | None:
    if phu_str(phu, "OBSTYPE") == "MASK":
        return TagSet.of(["MASK"], blocks=["IMAGE", "SPECT"])
    return None


def generic_image(phu: Header, exts: Sequence[Header]) -> TagSet | None:
    """OBSMODE-based IMAGE/SPECT rule (used only by instruments without their own)."""
    mode = phu_str(phu, "OBSMODE").upper()
    if mode == "IMAGE":
        return TagSet.of(["IMAGE"])
    if mode:
        return TagSet.of([mode, "SPECT"])
    return None


#: Rules every instrument applies (instrument classes add their own IMAGE rule).
GEMINI_RULES = (gemini, site, raw, prepared, processed, processed_science, acquisition, azel_target,
                sidereal, gcal_flat, gcal_ir_on, gcal_ir_off, bpm, nodchop, mask)
