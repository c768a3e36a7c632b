"""GNIRS: tag rules and descriptors (instruments.md §2-4); imaging is the keyhole mode."""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from astropy.io.fits import Header

from ..base import Instrument
from ..context import HeaderView
from ..gemini_tags import phu_str
from ..keywords import parse_dec, parse_ra, strip_component_id
from ..registry import descriptor
from ..sections import Section
from ..tags import TagSet
from . import lookup

__all__ = ["GNIRS"]

_MAX_WCS_TARGET_SEPARATION = 1000.0  # arcsec


def tag_dark(phu: Header, exts: Sequence[Header]) -> TagSet | None:
    if phu_str(phu, "OBSTYPE") == "DARK":
        return TagSet.of(["DARK", "CAL"], blocks=["IMAGE", "SPECT"])
    return None


def tag_image(phu: Header, exts: Sequence[Header]) -> TagSet | None:
    return TagSet.of(["IMAGE"]) if phu_str(phu, "ACQMIR") == "In" else None


def tag_thruslit(phu: Header, exts: Sequence[Header]) -> TagSet | None:
    if "Acq" in phu_str(phu, "SLIT"):
        return None
    prism = phu_str(phu, "PRISM")
    tags = ["THRUSLIT"]
    if "MIR" in prism:
        tags.append("LS")
    elif "XD" in prism:
        tags.append("XD")
    return TagSet.of(tags, if_present=["IMAGE"])


def tag_spect(phu: Header, exts: Sequence[Header]) -> TagSet | None:
    if phu_str(phu, "ACQMIR") != "Out":
        return None
    slit, prism = phu_str(phu, "SLIT").lower(), phu_str(phu, "PRISM").lower()
    tags = ["SPECT"]
    if "ifu" in slit:
        tags.append("IFU")
    elif ("arcsec" in slit or "pin" in slit) and "mir" in prism:
        tags.append("LS")
    elif ("arcsec" in slit or "pin" in slit) and "xd" in prism:
        tags.append("XD")
    return TagSet.of(tags)


def tag_flat(phu: Header, exts: Sequence[Header]) -> TagSet | None:
    if phu_str(phu, "OBSTYPE") != "FLAT":
        return None
    if "Pinholes" in phu_str(phu, "SLIT"):
        return TagSet.of(["PINHOLE", "CAL"], blocks=["FLAT"], remove=["GCALFLAT"])
    return TagSet.of(["FLAT", "CAL"])


def tag_arc(phu: Header, exts: Sequence[Header]) -> TagSet | None:
    return TagSet.of(["ARC", "CAL"]) if phu_str(phu, "OBSTYPE") == "ARC" else None


def tag_standard(phu: Header, exts: Sequence[Header]) -> TagSet | None:
    return TagSet.of(["STANDARD", "CAL"]) if "PROCSTND" in phu else None


class GNIRS(Instrument):
    """GNIRS: one ALADDIN array read as 1022 x 1024 (keyhole imaging through the acquisition mirror)."""

    name = "GNIRS"
    n_arrays = 1
    instrument_rules = (tag_dark, tag_image, tag_thruslit, tag_spect, tag_flat, tag_arc, tag_standard)
    filter_wavelengths = lookup.FILTER_WAVELENGTHS
    nominal_zeropoints = lookup.NOMINAL_ZEROPOINTS
    coadds_summed = True

    # -------------------------------------------------------------- detector
    @descriptor
    def read_mode(self, h: HeaderView) -> str:
        """READMODE, else from (LNRS, NDAVGS): 'Very Faint/Faint/Bright/Very Bright Objects'."""
        value = h.phu_value("READMODE", None)
        if value:
            return str(value)
        key = (int(h.phu_float("LNRS")), int(h.phu_float("NDAVGS")))
        return lookup.READ_MODES.get(key, "Unknown")

    @descriptor
    def well_depth_setting(self, h: HeaderView) -> str:
        """'Shallow' (|DETBIAS| ~0.3 V) or 'Deep' (~0.6 V), else 'Unknown'."""
        return lookup.well_depth_setting(h.phu_float("DETBIAS"))

    @descriptor
    def array_name(self, h: HeaderView) -> str:
        """ARRAYID, with '+' CONID when the controller is named (e.g. 'SN7638228.1.3+ARC-III')."""
        array_id = str(h.value("ARRAYID"))
        conid = h.value("CONID", None)
        return f"{array_id}+{conid}" if conid else array_id

    def _config(self, h: HeaderView) -> lookup.GNIRSDetectorConfig:
        array, mode, well = h.d("array_name"), h.d("read_mode"), h.d("well_depth_setting")
        try:
            return lookup.detector_config(array, mode, well)
        except KeyError:
            raise h.error(f"no detector properties for array {array!r}, read mode {mode!r}, "
                          f"well {well!r}") from None

    def _gain(self, h: HeaderView) -> list[float]:
        return [self._config(h).gain] * h.n_ext

    def _read_noise(self, h: HeaderView) -> list[float]:
        return [lookup.read_noise(self._config(h), h.d("coadds"))] * h.n_ext

    def _saturation_level(self, h: HeaderView) -> list[float]:
        return [lookup.saturation_level(self._config(h), h.d("coadds"))] * h.n_ext

    def _non_linear_level(self, h: HeaderView) -> list[float]:
        fraction = self._config(h).linear_limit
        return [int(fraction * s) for s in h.d("saturation_level")]

    @descriptor
    def nonlinearity_coeffs(self, h: HeaderView) -> list[Any]:
        """Row-parity IRDC coefficients per extension (None: uncalibrated configuration)."""
        coeffs = lookup.nonlinearity(h.d("array_name"), h.d("read_mode"), h.d("well_depth_setting"))
        return [coeffs] * h.n_ext

    @descriptor
    def detector_name(self, h: HeaderView, pretty: bool = False) -> str:
        """Array type (ARRAYTYP, e.g. 'ALADDIN_III_1024'), else 'GNIRS'."""
        for key in ("DETNAME", "ARRAYTYP", "DETTYPE"):
            value = h.value(key, None)
            if value:
                return str(value)
        return "GNIRS"

    # --------------------------------------------------------------- optics
    @descriptor
    def disperser(self, h: HeaderView, stripID: bool = False, pretty: bool = False) -> str:
        """GRATING, with '&' PRISM when a prism (not the mirror) is in."""
        grating, prism = str(h.phu_value("GRATING")), str(h.phu_value("PRISM", ""))
        if stripID or pretty:
            grating, prism = strip_component_id(grating), strip_component_id(prism)
        if prism and "MIR" not in prism:
            return f"{grating}&{prism}"
        return grating

    @descriptor
    def focal_plane_mask(self, h: HeaderView, stripID: bool = False, pretty: bool = False) -> str:
        """SLIT '&' DECKER, e.g. 'Acq_G5530&Acq_G5531' ('Acq&Acq' with stripID)."""
        slit, decker = str(h.phu_value("SLIT")), str(h.phu_value("DECKER", ""))
        if stripID or pretty:
            slit, decker = strip_component_id(slit), strip_component_id(decker)
        return f"{slit}&{decker}" if decker else slit

    # -------------------------------------------------------------- geometry
    def _shape_sections(self, h: HeaderView) -> list[Section]:
        # The array is read as e.g. 1022 rows: always use the stored shape.
        return [self._shape_section(h, i) for i in range(h.n_ext)]

    _data_section = _shape_sections
    _detector_section = _shape_sections
    _array_section = _shape_sections

    @descriptor
    def detector_roi_setting(self, h: HeaderView) -> str:
        """GNIRS reads the whole array: 'Full Frame'."""
        return "Full Frame"

    def _pixel_scale(self, h: HeaderView) -> float:
        scale = lookup.pixel_scale(str(h.phu_value("CAMERA", "")))
        if scale is None:
            scale = self._wcs_pixel_scale(h)
        if scale is None:
            raise h.error("unknown CAMERA and no usable WCS for the pixel scale")
        return scale

    @descriptor
    def position_angle(self, h: HeaderView) -> float:
        """(PA + 90) mod 360."""
        return (h.phu_float("PA") + 90.0) % 360.0

    def _flip_x(self, h: HeaderView) -> bool:
        ao = "AOWFS" in (h.d("wavefront_sensor") or "")
        return h.phu_value("INPORT", None) == 1 and not ao

    @descriptor
    def detector_x_offset(self, h: HeaderView) -> float:
        """QOFFSET / pixel scale (sign flipped on the bottom port without AO)."""
        offset = h.phu_float("QOFFSET") / h.d("pixel_scale")
        return -offset if self._flip_x(h) else offset

    @descriptor
    def detector_y_offset(self, h: HeaderView) -> float:
        """-POFFSET / pixel scale."""
        return -h.phu_float("POFFSET") / h.d("pixel_scale")

    def _pointing(self, h: HeaderView) -> tuple[float, float]:
        # The WCS unless it is far (>1000") from the target: then the target.
        target = (h.d("target_ra", offset=True), h.d("target_dec", offset=True))
        try:
            wcs = self._wcs_reference(h)
        except Exception:  # no celestial WCS: the target coordinates are all we have
            return target
        dra = (wcs[0] - target[0]) * math.cos(math.radians(target[1]))
        separation = 3600.0 * math.hypot(dra, wcs[1] - target[1])
        return target if separation > _MAX_WCS_TARGET_SEPARATION else wcs

    @descriptor
    def ra(self, h: HeaderView) -> float:
        """RA (degrees) of the WCS reference point, or the target's if the WCS is off by >1000"."""
        return self._pointing(h)[0]

    @descriptor
    def dec(self, h: HeaderView) -> float:
        """Dec (degrees), same rule as ``ra``."""
        return self._pointing(h)[1]

    @descriptor
    def target_ra(self, h: HeaderView, offset: bool = False) -> float:
        """Target RA from the RA keyword (plus RAOFFSET with ``offset``)."""
        ra = self._coord(h, "RA", parse_ra)
        if offset:
            dec = self._coord(h, "DEC", parse_dec)
            ra += h.phu_float("RAOFFSET", 0.0) / 3600.0 / max(math.cos(math.radians(dec)), 1e-6)
        return ra

    @descriptor
    def target_dec(self, h: HeaderView, offset: bool = False) -> float:
        """Target Dec from the DEC keyword (plus DECOFFSE with ``offset``)."""
        dec = self._coord(h, "DEC", parse_dec)
        if offset:
            dec += h.phu_float("DECOFFSE", 0.0) / 3600.0
        return dec

