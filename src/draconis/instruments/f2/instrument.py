"""Flamingos-2: tag rules and descriptors (instruments.md §2-4)."""
from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from astropy.io.fits import Header

from ..base import Instrument
from ..context import HeaderView
from ..filters import join_filters, pretty_filters
from ..gemini_tags import phu_str
from ..keywords import strip_component_id
from ..registry import descriptor
from ..sections import Section, parse_section
from ..tags import TagSet
from . import lookup

__all__ = ["F2"]

_SPECT_GRISMS = ("JH", "HK", "R3K")


def _grism(phu: Header) -> str:
    return phu_str(phu, "GRISM") or phu_str(phu, "GRISMPOS")


def _is_spect(phu: Header) -> bool:
    return any(re.match(p, phu_str(phu, key)) for p in _SPECT_GRISMS for key in ("GRISM", "GRISMPOS"))


def tag_dark(phu: Header, exts: Sequence[Header]) -> TagSet | None:
    dark_filter = any(re.match("DK.?", phu_str(phu, key)) for key in ("FILTER1", "FILTER2"))
    if dark_filter or phu_str(phu, "OBSTYPE") == "DARK":
        return TagSet.of(["DARK", "CAL"], blocks=["IMAGE", "SPECT"])
    return None


def tag_image(phu: Header, exts: Sequence[Header]) -> TagSet | None:
    if phu_str(phu, "GRISM") == "Open" or phu_str(phu, "GRISMPOS") == "Open":
        return TagSet.of(["IMAGE"])
    return None


def tag_long_slit(phu: Header, exts: Sequence[Header]) -> TagSet | None:
    if not _is_spect(phu):
        return None
    decker = "Long_slit" in (phu_str(phu, "DECKER"), phu_str(phu, "DCKERPOS"))
    if decker or re.match(".?pix-slit", phu_str(phu, "MOSPOS")):
        return TagSet.of(["LS", "SPECT"])
    return None


def tag_mos(phu: Header, exts: Sequence[Header]) -> TagSet | None:
    if not _is_spect(phu):
        return None
    decker = any(phu_str(phu, key).lower() == "mos" for key in ("DECKER", "DCKERPOS"))
    if decker or re.match("mos.?", phu_str(phu, "MOSPOS")):
        return TagSet.of(["MOS", "SPECT"])
    return None


def tag_arc(phu: Header, exts: Sequence[Header]) -> TagSet | None:
    return TagSet.of(["ARC", "CAL"]) if phu_str(phu, "OBSTYPE") == "ARC" else None


def tag_flat(phu: Header, exts: Sequence[Header]) -> TagSet | None:
    return TagSet.of(["FLAT", "CAL"]) if phu_str(phu, "OBSTYPE") == "FLAT" else None


def tag_twilight(phu: Header, exts: Sequence[Header]) -> TagSet | None:
    if phu_str(phu, "OBJECT").upper() != "TWILIGHT":
        return None
    blocks = [] if phu_str(phu, "GRISM") == "Open" else ["FLAT"]
    return TagSet.of(["TWILIGHT", "CAL"], blocks=blocks)


def tag_standard(phu: Header, exts: Sequence[Header]) -> TagSet | None:
    return TagSet.of(["STANDARD", "CAL"]) if "PROCSTND" in phu else None


class F2(Instrument):
    """Flamingos-2 (Gemini South): one 2048x2048 HAWAII-2 array, raw cube 1x2048x2048."""

    name = "F2"
    n_arrays = 1
    instrument_rules = (tag_dark, tag_image, tag_long_slit, tag_mos, tag_arc, tag_flat, tag_twilight,
                        tag_standard)
    filter_wavelengths = lookup.FILTER_WAVELENGTHS
    nominal_zeropoints = lookup.NOMINAL_ZEROPOINTS
    coadds_summed = True

    # ------------------------------------------------------------- filters
    def _filter_wheels(self, h: HeaderView) -> list[str]:
        if "FILTER1" in h.phu and "FILTER2" in h.phu:
            wheels = [str(h.phu_value("FILTER1")), str(h.phu_value("FILTER2"))]
        elif "FILT1POS" in h.phu and "FILT2POS" in h.phu:  # files before 2010-03
            wheels = [str(h.phu_value("FILT1POS")), str(h.phu_value("FILT2POS"))]
        else:
            raise h.missing("FILTER1/FILTER2")
        lyot = str(h.phu_value("LYOT", ""))
        # The Lyot wheel holds extra filters besides the f/16 and GeMS stops.
        if lyot and not lyot.startswith(("f", "GEMS", "Hart")):
            wheels.append(lyot)
        return wheels

    @descriptor
    def filter_name(self, h: HeaderView, stripID: bool = False, pretty: bool = False, keepID: bool = False) -> str:
        """'&'-joined FILTER1, FILTER2 (and a Lyot-wheel filter); pretty e.g. 'K-red'."""
        wheels = self._filter_wheels(h)
        if not pretty:
            return join_filters(wheels, strip_id=stripID and not keepID)
        bare = [strip_component_id(w) for w in wheels]
        if any("Block" in w or "Dark" in w for w in bare):
            return "blank"
        if any(w.startswith("DK") for w in bare):
            return "dark"
        return pretty_filters(bare)

    @descriptor
    def lyot_stop(self, h: HeaderView, stripID: bool = False, pretty: bool = False) -> str:
        """Lyot wheel position (LYOT), e.g. 'f/16_G5830'."""
        value = str(h.phu_value("LYOT"))
        return strip_component_id(value) if (stripID or pretty) else value

    @descriptor
    def disperser(self, h: HeaderView, stripID: bool = False, pretty: bool = False) -> str:
        """Grism wheel position (GRISM, old GRISMPOS), 'Open' for imaging."""
        value = str(h.phu_value("GRISM", None) or h.phu_value("GRISMPOS"))
        return strip_component_id(value) if (stripID or pretty) else value

    @descriptor
    def focal_plane_mask(self, h: HeaderView, stripID: bool = False, pretty: bool = False) -> str:
        """MOS wheel position (MOSPOS), 'Open' for imaging."""
        value = str(h.phu_value("MOSPOS"))
        return strip_component_id(value) if (stripID or pretty) else value

    @descriptor
    def camera(self, h: HeaderView, stripID: bool = False, pretty: bool = False) -> str:
        """Camera from the Lyot stop ('f/16_G5830'), else FOCUS, else 'f/16'."""
        lyot = str(h.phu_value("LYOT", ""))
        if lyot.startswith("f/"):
            value = lyot
        else:
            focus = str(h.phu_value("FOCUS", ""))
            if focus.startswith("f/"):
                value = focus
            elif h.d("pixel_scale") > 0.1:
                value = "f/16"
            else:
                raise h.missing("LYOT/FOCUS")
        return strip_component_id(value) if (stripID or pretty) else value

    def _zeropoint_keys(self, h: HeaderView) -> list[str]:
        return [h.d("camera", pretty=True)] * h.n_ext

    # -------------------------------------------------------------- detector
    @descriptor
    def read_mode(self, h: HeaderView) -> str:
        """Number of read pairs as a string: str(LNRS) ('1', '4', '6', '8')."""
        return str(int(h.phu_float("LNRS")))

    def _properties(self, h: HeaderView) -> lookup.F2ArrayProperties:
        mode = h.d("read_mode")
        try:
            return lookup.array_properties(mode)
        except KeyError:
            raise h.error(f"no detector properties for read mode LNRS={mode}") from None

    def _gain(self, h: HeaderView) -> list[float]:
        self._properties(h)
        return [lookup.gain(h.d("read_mode"))] * h.n_ext

    def _read_noise(self, h: HeaderView) -> list[float]:
        return [self._properties(h).read_noise] * h.n_ext

    def _saturation_level(self, h: HeaderView) -> list[float]:
        well = self._properties(h).well_depth
        return [int(well / g) for g in h.d("gain")]

    def _non_linear_level(self, h: HeaderView) -> list[float]:
        fraction = self._properties(h).linear_limit
        return [int(fraction * s) for s in h.d("saturation_level")]

    @descriptor
    def nonlinearity_coeffs(self, h: HeaderView) -> list[Any]:
        """Polynomial (a1, a2, a3) for electrons per coadd, per extension."""
        props = lookup.ARRAY_PROPERTIES.get(h.d("read_mode"))
        return [props.coeffs if props else None] * h.n_ext

    @descriptor
    def detector_name(self, h: HeaderView, pretty: bool = False) -> str:
        """Detector name (DETNAME/DETECTOR/DETTYPE, else 'F2')."""
        for key in ("DETNAME", "DETECTOR", "DETTYPE"):
            value = h.value(key, None)
            if value:
                return str(value)
        return "F2"

    # -------------------------------------------------------------- geometry
    @descriptor
    def pixel_scale(self, h: HeaderView) -> float:
        """Plate scale from the WCS CD matrix, else PIXSCALE, else 0.18"/px."""
        if h.prepared and h.exts and "PIXSCALE" in h.exts[0]:
            return float(h.exts[0]["PIXSCALE"])
        scale = self._wcs_pixel_scale(h)
        if scale is None:
            scale = float(h.phu_value("PIXSCALE", lookup.DEFAULT_PIXEL_SCALE))
        return scale

    def _array_section(self, h: HeaderView) -> list[Section]:
        return [parse_section(lookup.RAW_ARRAY_SECTION)] * h.n_ext

    def _data_section(self, h: HeaderView) -> list[Section]:
        return self._array_section(h)

    def _detector_section(self, h: HeaderView) -> list[Section]:
        return self._array_section(h)

    @descriptor
    def detector_roi_setting(self, h: HeaderView) -> str:
        """F2 reads the whole array: 'Full Frame'."""
        return "Full Frame"

    @descriptor
    def position_angle(self, h: HeaderView) -> float:
        """(PA + 90) mod 360: F2's detector is rotated relative to the PA."""
        return (h.phu_float("PA") + 90.0) % 360.0

    @descriptor
    def telescope_x_offset(self, h: HeaderView) -> float:
        """-YOFFSET (F2's slit runs along detector x)."""
        return -h.phu_float("YOFFSET")

    @descriptor
    def telescope_y_offset(self, h: HeaderView) -> float:
        """-XOFFSET."""
        return -h.phu_float("XOFFSET")

    @descriptor
    def detector_x_offset(self, h: HeaderView) -> float:
        """-QOFFSET / pixel scale."""
        return -h.phu_float("QOFFSET") / h.d("pixel_scale")

    @descriptor
    def detector_y_offset(self, h: HeaderView) -> float:
        """-POFFSET / pixel scale, sign flipped on the bottom port (INPORT 1)."""
        offset = -h.phu_float("POFFSET") / h.d("pixel_scale")
        return -offset if h.phu_value("INPORT", None) == 1 else offset
