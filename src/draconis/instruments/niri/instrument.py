"""NIRI: tag rules and descriptors (instruments.md §2-4)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from astropy.io.fits import Header

from ..base import Instrument
from ..context import HeaderView
from ..gemini_tags import phu_str
from ..keywords import strip_component_id
from ..registry import descriptor
from ..sections import Section
from ..tags import TagSet
from . import lookup

__all__ = ["NIRI"]

_EXCLUDED_WHEEL_WORDS = ("open", "grism", "pupil")
_MAPPING_CI = {tuple(n.lower() for n in key): value for key, value in lookup.FILTER_NAME_MAPPING.items()}


def tag_dark(phu: Header, exts: Sequence[Header]) -> TagSet | None:
    if phu_str(phu, "OBSTYPE") == "DARK":
        return TagSet.of(["DARK", "CAL"], blocks=["IMAGE", "SPECT"])
    return None


def tag_flat(phu: Header, exts: Sequence[Header]) -> TagSet | None:
    return TagSet.of(["FLAT", "CAL"]) if phu_str(phu, "OBSTYPE") == "FLAT" else None


def tag_arc(phu: Header, exts: Sequence[Header]) -> TagSet | None:
    return TagSet.of(["ARC", "CAL"]) if phu_str(phu, "OBSTYPE") == "ARC" else None


def tag_image(phu: Header, exts: Sequence[Header]) -> TagSet | None:
    if "grism" in phu_str(phu, "FILTER3").lower():
        return None
    return TagSet.of(["IMAGE"])


def tag_twilight(phu: Header, exts: Sequence[Header]) -> TagSet | None:
    if "grism" not in phu_str(phu, "FILTER3").lower() and phu_str(phu, "OBJECT").upper() == "TWILIGHT":
        return TagSet.of(["CAL", "FLAT", "TWILIGHT"])
    return None


def tag_spect(phu: Header, exts: Sequence[Header]) -> TagSet | None:
    if "grism" in phu_str(phu, "FILTER3").lower():
        return TagSet.of(["SPECT", "LS"])
    return None


class NIRI(Instrument):
    """NIRI (Gemini North): one 1024x1024 ALADDIN array, ROIs 768/512/256."""

    name = "NIRI"
    n_arrays = 1
    instrument_rules = (tag_dark, tag_flat, tag_arc, tag_image, tag_twilight, tag_spect)
    filter_wavelengths = lookup.FILTER_WAVELENGTHS
    nominal_zeropoints = lookup.NOMINAL_ZEROPOINTS
    coadds_summed = True

    # ------------------------------------------------------------- filters
    def _wheels(self, h: HeaderView) -> list[str]:
        return [str(h.phu_value(f"FILTER{i}")) for i in (1, 2, 3)]

    @descriptor
    def filter_name(self, h: HeaderView, stripID: bool = False, pretty: bool = False, keepID: bool = False) -> str:
        """FILTER1-3 without open/grism/pupil positions, sorted and '&'-joined.

        'blank' when a wheel is blanked off; ``pretty`` maps the combination to
        its usual name (e.g. ('H2v=1-0S1', 'K') -> 'H2 1-0 S1').
        """
        wheels = [w for w in self._wheels(h) if not any(word in w.lower() for word in _EXCLUDED_WHEEL_WORDS)]
        if any(strip_component_id(w).lower() == "blank" for w in wheels):
            return "blank"
        if not wheels:
            return "open"
        if (stripID and not keepID) or pretty:
            wheels = [strip_component_id(w) for w in wheels]
        wheels.sort()
        if pretty:
            return _MAPPING_CI.get(tuple(w.lower() for w in wheels), "&".join(wheels))
        return "&".join(wheels)

    @descriptor
    def disperser(self, h: HeaderView, stripID: bool = False, pretty: bool = False) -> str:
        """The grism in a filter wheel, else 'MIRROR'."""
        for wheel in self._wheels(h):
            if "grism" in wheel.lower():
                return strip_component_id(wheel) if (stripID or pretty) else wheel
        return "MIRROR"

    @descriptor
    def focal_plane_mask(self, h: HeaderView, stripID: bool = False, pretty: bool = False) -> str:
        """Focal-plane mask (FPMASK), e.g. 'f6-cam_G5208'."""
        value = str(h.phu_value("FPMASK"))
        return strip_component_id(value) if (stripID or pretty) else value

    # -------------------------------------------------------------- detector
    @descriptor
    def read_mode(self, h: HeaderView) -> str:
        """'Low/Medium/High Background' from (LNRS, NDAVGS), else 'Unknown'."""
        key = (int(h.phu_float("LNRS")), int(h.phu_float("NDAVGS")))
        return lookup.READ_MODES.get(key, "Unknown")

    @descriptor
    def well_depth_setting(self, h: HeaderView) -> str:
        """'Shallow' or 'Deep' from the bias A_VDDUC - A_VDET, else 'Unknown'."""
        return lookup.well_depth_setting(h.phu_float("A_VDDUC") - h.phu_float("A_VDET"))

    def _well_setting(self, h: HeaderView) -> str:
        # An unrecognised bias is treated as the usual shallow well.
        return "Deep" if h.d("well_depth_setting") == "Deep" else "Shallow"

    def _gain(self, h: HeaderView) -> list[float]:
        return [lookup.GAIN] * h.n_ext

    def _read_noise(self, h: HeaderView) -> list[float]:
        mode = h.d("read_mode")
        mode = mode if mode in lookup.READ_NOISE else "High Background"
        return [lookup.read_noise(mode, h.d("coadds"))] * h.n_ext

    def _saturation_level(self, h: HeaderView) -> list[float]:
        return [lookup.saturation_level(self._well_setting(h), h.d("coadds"))] * h.n_ext

    def _non_linear_level(self, h: HeaderView) -> list[float]:
        return [int(lookup.LINEAR_LIMIT * s) for s in h.d("saturation_level")]

    @descriptor
    def nonlinearity_coeffs(self, h: HeaderView) -> list[Any]:
        """IRDC coefficients for (read mode, rows, well), per extension (None: uncalibrated)."""
        mode, well = h.d("read_mode"), h.d("well_depth_setting")
        return [lookup.nonlinearity(mode, int(ext.get("NAXIS2", 0)), well) for ext in h.exts]

    @descriptor
    def detector_name(self, h: HeaderView, pretty: bool = False) -> str:
        """Array type (ARRAYTYP, e.g. 'ALADDIN_II'), else 'NIRI'."""
        for key in ("DETNAME", "ARRAYTYP", "DETTYPE"):
            value = h.value(key, None)
            if value:
                return str(value)
        return "NIRI"

    # -------------------------------------------------------------- geometry
    def _ir_sections(self, h: HeaderView) -> list[Section]:
        # LOWROW/HIROW/LOWCOL/HICOL are 0-based inclusive; old files may lack them.
        sections = []
        for i, ext in enumerate(h.exts):
            if all(k in ext for k in ("LOWROW", "HIROW", "LOWCOL", "HICOL")):
                sections.append(Section(int(ext["LOWCOL"]), int(ext["HICOL"]) + 1,
                                        int(ext["LOWROW"]), int(ext["HIROW"]) + 1))
            else:
                sections.append(self._shape_section(h, i))
        return sections

    _data_section = _ir_sections
    _detector_section = _ir_sections
    _array_section = _ir_sections

    @descriptor
    def detector_roi_setting(self, h: HeaderView) -> str:
        """'Full Frame' (1024), 'Central<N>' (square N multiple of 256) or 'Custom'."""
        section = h.d("data_section")[0]
        width, height = section.x2 - section.x1, section.y2 - section.y1
        if width == height == lookup.FULL_FRAME:
            return "Full Frame"
        if width == height and width % 256 == 0:
            return f"Central{width}"
        return "Custom"

    def _pixel_scale(self, h: HeaderView) -> float:
        scale = self._wcs_pixel_scale(h)
        if scale is None:
            camera = str(h.phu_value("CAMERA"))
            if camera not in lookup.PIXEL_SCALES:
                raise h.error(f"no usable WCS and unknown camera {camera!r} for the pixel scale")
            scale = lookup.PIXEL_SCALES[camera]
        return scale

    def _flip_x(self, h: HeaderView) -> bool:
        ao = "AOWFS" in (h.d("wavefront_sensor") or "")
        return h.phu_value("INPORT", None) == 1 and not ao

    @descriptor
    def detector_x_offset(self, h: HeaderView) -> float:
        """POFFSET / pixel scale (sign flipped on the bottom port without AO)."""
        offset = h.phu_float("POFFSET") / h.d("pixel_scale")
        return -offset if self._flip_x(h) else offset

    @descriptor
    def detector_y_offset(self, h: HeaderView) -> float:
        """-QOFFSET / pixel scale."""
        return -h.phu_float("QOFFSET") / h.d("pixel_scale")

    def _zeropoint_keys(self, h: HeaderView) -> list[str]:
        return [str(h.phu_value("CAMERA"))] * h.n_ext

