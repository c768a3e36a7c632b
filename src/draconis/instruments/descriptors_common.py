"""Gemini-level descriptors (instruments.md §3), inherited by every instrument.

Methods marked ``@descriptor`` take a :class:`HeaderView` ``h``.  Methods
whose names start with ``_`` are the per-instrument hooks that subclasses
override (e.g. ``_gain`` computes the raw gain; ``gain`` first honours the
keyword written by prepare).
"""
from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from typing import Any, ClassVar

from .context import HeaderView
from .filters import filter_wavelength, join_filters, nearest_band, pretty_filters
from .keywords import (
    apparent_to_icrs,
    as_float,
    combine_date_time,
    parse_date,
    parse_dec,
    parse_ra,
    parse_time,
    strip_component_id,
)
from .registry import descriptor
from .sections import Section, format_section, full_section, parse_section

__all__ = ["CommonDescriptors"]

_WFS_KEYWORDS = (("AOWFS_ST", "AOWFS"), ("OIWFS_ST", "OIWFS"), ("PWFS1_ST", "PWFS1"), ("PWFS2_ST", "PWFS2"),
                 ("GWFS1_ST", "GEMS"), ("GWFS2_ST", "GEMS"), ("GWFS3_ST", "GEMS"), ("ODGW1_ST", "GEMS"))
_SANE_PIXEL_SCALE = (1e-3, 10.0)  # arcsec/pixel: anything else is a broken WCS


def _fmt_sections(sections: Sequence[Section | None], pretty: bool) -> list[Any]:
    return [format_section(s) if (pretty and s is not None) else s for s in sections]


class CommonDescriptors:
    """Descriptors whose Gemini-level rule serves all four instruments."""

    name: ClassVar[str]
    #: central wavelengths (microns) by pretty filter name
    filter_wavelengths: dict[str, float] = {}
    #: nominal zeropoints {(pretty filter, camera or array): mag for 1 e-/s}
    nominal_zeropoints: dict[tuple[str, str], float] = {}
    #: coadds are summed in raw data (False: averaged, as GSAOI)
    coadds_summed: bool = True

    # ---------------------------------------------------------------- identity
    @descriptor
    def instrument(self, h: HeaderView) -> str:
        """Instrument name ('F2', 'NIRI', 'GNIRS', 'GSAOI')."""
        return self.name

    @descriptor
    def telescope(self, h: HeaderView) -> str:
        """Telescope (TELESCOP, else OBSERVAT), e.g. 'Gemini-South'."""
        value = h.phu_value("TELESCOP", None)
        return value if value else h.phu_value("OBSERVAT")

    @descriptor
    def object(self, h: HeaderView) -> str:
        """Target name (OBJECT)."""
        return h.phu_value("OBJECT")

    @descriptor
    def observation_class(self, h: HeaderView) -> str:
        """OBSCLASS: 'science', 'partnerCal', 'progCal', 'dayCal', 'acq', 'acqCal'."""
        return h.phu_value("OBSCLASS")

    @descriptor
    def observation_type(self, h: HeaderView) -> str:
        """OBSTYPE: 'OBJECT', 'DARK', 'FLAT', 'ARC', 'BPM'..."""
        return h.phu_value("OBSTYPE")

    @descriptor
    def observation_id(self, h: HeaderView) -> str:
        """OBSID, e.g. 'GS-2023A-LP-103-23'."""
        return h.phu_value("OBSID")

    @descriptor
    def data_label(self, h: HeaderView) -> str:
        """DATALAB, e.g. 'GS-2023A-LP-103-23-017'."""
        return h.phu_value("DATALAB")

    @descriptor
    def qa_state(self, h: HeaderView) -> str:
        """'Pass', 'Usable', 'Fail', 'CHECK' or 'Undefined' from RAWPIREQ/RAWGEMQA."""
        pireq = str(h.phu_value("RAWPIREQ", "UNKNOWN")).upper()
        gemqa = str(h.phu_value("RAWGEMQA", "UNKNOWN")).upper()
        if gemqa == "BAD":
            return "Fail"
        if "UNKNOWN" in (pireq, gemqa):
            return "Undefined"
        if gemqa == "USABLE":
            return "Pass" if pireq == "YES" else "Usable"
        if "CHECK" in (pireq, gemqa):
            return "CHECK"
        return f"{pireq}:{gemqa}"

    @descriptor
    def binning(self, h: HeaderView) -> str:
        """Detector binning: always '1x1' for these infrared arrays."""
        return "1x1"

    @descriptor
    def detector_x_bin(self, h: HeaderView) -> int:
        """Binning along x (1)."""
        return 1

    @descriptor
    def detector_y_bin(self, h: HeaderView) -> int:
        """Binning along y (1)."""
        return 1

    @descriptor
    def is_in_adu(self, h: HeaderView) -> bool:
        """True while the pixels are in ADU (BUNIT absent or 'ADU')."""
        unit = h.exts[0].get("BUNIT") if h.exts else None
        if unit is None:
            unit = h.phu.get("BUNIT", "ADU")
        return str(unit).strip().upper() in ("ADU", "COUNTS", "")

    # -------------------------------------------------------------- exposure
    @descriptor
    def coadds(self, h: HeaderView) -> int:
        """Number of coadds (COADDS, default 1)."""
        return int(h.phu_value("COADDS", 1) or 1)

    @descriptor
    def exposure_time(self, h: HeaderView) -> float | None:
        """Total exposure time (s): EXPTIME, times COADDS for raw summed coadds.

        Prepared data carry the total in EXPTIME.  Negative values give None.
        """
        exptime = h.phu_float("EXPTIME")
        if exptime < 0:
            return None
        if self.coadds_summed and not h.prepared:
            exptime *= h.d("coadds")
        return exptime

    # ----------------------------------------------------------------- filters
    def _filter_wheels(self, h: HeaderView) -> list[str]:
        return [str(h.phu_value("FILTER1")), str(h.phu_value("FILTER2"))]

    @descriptor
    def filter_name(self, h: HeaderView, stripID: bool = False, pretty: bool = False, keepID: bool = False) -> str:
        """Filter name: wheel positions '&'-joined (FILTER1&FILTER2).

        ``stripID`` removes component IDs such as '_G0812'; ``pretty`` also
        drops open/clear positions and maps blocking ones to 'blank'/'dark'.
        """
        wheels = self._filter_wheels(h)
        if pretty:
            return pretty_filters(wheels)
        return join_filters(wheels, strip_id=stripID and not keepID)

    @descriptor
    def central_wavelength(self, h: HeaderView, asMicrometers: bool = True, asNanometers: bool = False,
                           asAngstroms: bool = False) -> float | None:
        """Imaging: the filter's central wavelength, in microns by default."""
        microns = self._central_wavelength_um(h)
        if microns is None:
            return None
        if asNanometers:
            return microns * 1e3
        if asAngstroms:
            return microns * 1e4
        return microns

    def _central_wavelength_um(self, h: HeaderView) -> float | None:
        return filter_wavelength(h.d("filter_name", pretty=True), self.filter_wavelengths)

    @descriptor
    def wavelength_band(self, h: HeaderView) -> str | None:
        """Standard band (J, H, K...) closest to the central wavelength."""
        return nearest_band(h.d("central_wavelength"))

    @descriptor
    def disperser(self, h: HeaderView, stripID: bool = False, pretty: bool = False) -> str:
        """Dispersing element; 'MIRROR' for imaging instruments without one."""
        return "MIRROR"

    @descriptor
    def focal_plane_mask(self, h: HeaderView, stripID: bool = False, pretty: bool = False) -> str | None:
        """Focal-plane mask name (instrument specific); None when not applicable."""
        return None

    # ---------------------------------------------------------- lamps / WFS
    @descriptor
    def gcal_lamp(self, h: HeaderView) -> str | None:
        """GCALLAMP value, or None."""
        return h.phu_value("GCALLAMP", None)

    @descriptor
    def gcal_shutter(self, h: HeaderView) -> str | None:
        """GCALSHUT value ('OPEN'/'CLOSED'), or None."""
        return h.phu_value("GCALSHUT", None)

    @descriptor
    def lamp_state(self, h: HeaderView) -> str | None:
        """'on' (LAMPON tag), 'off' (LAMPOFF tag) or None."""
        if "LAMPON" in h.tags:
            return "on"
        if "LAMPOFF" in h.tags:
            return "off"
        return None

    @descriptor
    def wavefront_sensor(self, h: HeaderView) -> str | None:
        """Guiding wavefront sensors ('&'-joined, sorted), from the *_ST keywords."""
        names = {label for key, label in _WFS_KEYWORDS
                 if str(h.phu_value(key, "")).strip().lower() == "guiding"}
        return "&".join(sorted(names)) if names else None

    # ------------------------------------------------------------------ time
    @descriptor
    def ut_datetime(self, h: HeaderView) -> dt.datetime:
        """Start of the observation (naive UTC datetime) from DATE-OBS and TIME-OBS/UT."""
        date_text = h.phu_value("DATE-OBS", None) or h.phu_value("DATE", None)
        if not date_text:
            raise h.missing("DATE-OBS")
        try:
            date, time = parse_date(date_text)
        except ValueError:
            raise h.error(f"keyword DATE-OBS not a date ({date_text!r})") from None
        if time is None:
            for key in ("TIME-OBS", "UT", "UTSTART"):
                text = h.phu_value(key, None)
                if text:
                    try:
                        time = parse_time(text)
                        break
                    except ValueError:
                        continue
        return combine_date_time(date, time)

    @descriptor
    def ut_date(self, h: HeaderView) -> dt.date:
        """UT date of the observation."""
        return h.d("ut_datetime").date()

    @descriptor
    def ut_time(self, h: HeaderView) -> dt.time:
        """UT time of the start of the observation."""
        return h.d("ut_datetime").time()

    @descriptor
    def local_time(self, h: HeaderView) -> dt.time | None:
        """LT keyword as a time, or None."""
        text = h.phu_value("LT", None)
        try:
            return parse_time(text) if text else None
        except ValueError:
            return None

    # ------------------------------------------------------------- pointing
    @descriptor
    def ra(self, h: HeaderView) -> float:
        """Target right ascension (RA keyword) in degrees."""
        return self._coord(h, "RA", parse_ra)

    @descriptor
    def dec(self, h: HeaderView) -> float:
        """Target declination (DEC keyword) in degrees."""
        return self._coord(h, "DEC", parse_dec)

    @staticmethod
    def _coord(h: HeaderView, keyword: str, parser) -> float:
        value = h.phu_value(keyword)
        try:
            return parser(value)
        except (TypeError, ValueError):
            raise h.error(f"keyword {keyword} is not a coordinate ({value!r})") from None

    @descriptor
    def target_ra(self, h: HeaderView, offset: bool = False) -> float:
        """Target RA (degrees); with ``offset`` the RAOFFSET (arcsec) is applied."""
        ra = h.d("ra")
        if offset:
            dec = h.d("dec")
            ra += h.phu_float("RAOFFSET", 0.0) / 3600.0 / max(math.cos(math.radians(dec)), 1e-6)
        return ra

    @descriptor
    def target_dec(self, h: HeaderView, offset: bool = False) -> float:
        """Target Dec (degrees); with ``offset`` the DECOFFSE (arcsec) is applied."""
        dec = h.d("dec")
        if offset:
            dec += h.phu_float("DECOFFSE", 0.0) / 3600.0
        return dec

    def _wcs_reference(self, h: HeaderView) -> tuple[float, float]:
        for header in (*h.exts[:1], h.phu):
            ctype1 = str(header.get("CTYPE1", "")).upper()
            if ctype1.startswith("RA") and "CRVAL1" in header and "CRVAL2" in header:
                return float(header["CRVAL1"]), float(header["CRVAL2"])
        raise h.error("no celestial WCS (CTYPE1 'RA---TAN' with CRVAL1/CRVAL2) in extension 1 or PHU")

    def _wcs_icrs(self, h: HeaderView) -> tuple[float, float]:
        ra, dec = self._wcs_reference(h)
        apparent = "APPT" in (str(h.phu_value("TRKFRAME", "")), str(h.phu_value("FRAME", "")))
        if "NON_SIDEREAL" in h.tags and apparent:
            # Non-sidereal targets are tracked (and their WCS written) in apparent coordinates.
            ra, dec = apparent_to_icrs(ra, dec, h.d("ut_datetime"))
        return ra, dec

    @descriptor
    def wcs_ra(self, h: HeaderView) -> float:
        """RA (degrees, ICRS) of the WCS reference point of the first extension."""
        return self._wcs_icrs(h)[0]

    @descriptor
    def wcs_dec(self, h: HeaderView) -> float:
        """Dec (degrees, ICRS) of the WCS reference point of the first extension."""
        return self._wcs_icrs(h)[1]

    @descriptor
    def airmass(self, h: HeaderView) -> float:
        """AIRMASS keyword."""
        return h.phu_float("AIRMASS")

    @descriptor
    def position_angle(self, h: HeaderView) -> float:
        """Sky position angle (PA keyword), degrees."""
        return h.phu_float("PA")

    @descriptor
    def telescope_x_offset(self, h: HeaderView) -> float:
        """Telescope offset p (XOFFSET), arcsec."""
        return h.phu_float("XOFFSET")

    @descriptor
    def telescope_y_offset(self, h: HeaderView) -> float:
        """Telescope offset q (YOFFSET), arcsec."""
        return h.phu_float("YOFFSET")

    @descriptor
    def detector_x_offset(self, h: HeaderView) -> float:
        """Offset along detector x in pixels (POFFSET / pixel scale)."""
        return h.phu_float("POFFSET") / h.d("pixel_scale")

    @descriptor
    def detector_y_offset(self, h: HeaderView) -> float:
        """Offset along detector y in pixels (QOFFSET / pixel scale)."""
        return h.phu_float("QOFFSET") / h.d("pixel_scale")

    # ------------------------------------------------------------ pixel scale
    @descriptor
    def pixel_scale(self, h: HeaderView) -> float:
        """Plate scale (arcsec/pixel): PIXSCALE once prepared, else from the WCS."""
        if h.prepared and h.exts and "PIXSCALE" in h.exts[0]:
            return float(h.exts[0]["PIXSCALE"])
        return self._pixel_scale(h)

    def _pixel_scale(self, h: HeaderView) -> float:
        scale = self._wcs_pixel_scale(h)
        if scale is None:
            raise h.error("no usable WCS (CD matrix) to derive the pixel scale")
        return scale

    @staticmethod
    def _wcs_pixel_scale(h: HeaderView) -> float | None:
        """3600 * sqrt|det CD| from extension 1 then the PHU; None if unusable."""
        for header in (*h.exts[:1], h.phu):
            try:
                cd11, cd12 = float(header.get("CD1_1", 0.0)), float(header.get("CD1_2", 0.0))
                cd21, cd22 = float(header.get("CD2_1", 0.0)), float(header.get("CD2_2", 0.0))
            except (TypeError, ValueError):
                continue
            scale = 3600.0 * math.sqrt(abs(cd11 * cd22 - cd12 * cd21))
            if _SANE_PIXEL_SCALE[0] < scale < _SANE_PIXEL_SCALE[1]:
                return scale
        return None

    # ------------------------------------------------------------- detector
    @descriptor
    def gain(self, h: HeaderView) -> list[float]:
        """Gain (e-/ADU) per extension; the GAIN keyword once prepared."""
        prepared = self._prepared_keyword(h, "GAIN")
        return prepared if prepared is not None else self._gain(h)

    @descriptor
    def read_noise(self, h: HeaderView) -> list[float]:
        """Read noise (electrons) per extension; RDNOISE once prepared."""
        prepared = self._prepared_keyword(h, "RDNOISE")
        return prepared if prepared is not None else self._read_noise(h)

    @descriptor
    def saturation_level(self, h: HeaderView) -> list[float]:
        """Saturation level (data units) per extension; SATLEVEL once prepared."""
        prepared = self._prepared_keyword(h, "SATLEVEL")
        return prepared if prepared is not None else self._saturation_level(h)

    @descriptor
    def non_linear_level(self, h: HeaderView) -> list[float]:
        """Start of the non-linear regime per extension; NONLINEA once prepared."""
        prepared = self._prepared_keyword(h, "NONLINEA")
        return prepared if prepared is not None else self._non_linear_level(h)

    @staticmethod
    def _prepared_keyword(h: HeaderView, keyword: str) -> list[float] | None:
        # "use_keyword_if_prepared": prepare wrote the value into each extension.
        if h.prepared and h.exts and all(keyword in ext for ext in h.exts):
            return [float(ext[keyword]) for ext in h.exts]
        return None

    def _gain(self, h: HeaderView) -> list[float]:
        return [as_float(v) for v in h.ext_values("GAIN")]

    def _read_noise(self, h: HeaderView) -> list[float]:
        return [as_float(v) for v in h.ext_values("RDNOISE")]

    def _saturation_level(self, h: HeaderView) -> list[float]:
        return [as_float(v) for v in h.ext_values("SATLEVEL")]

    def _non_linear_level(self, h: HeaderView) -> list[float]:
        return [as_float(v) for v in h.ext_values("NONLINEA")]

    @descriptor
    def nonlinearity_coeffs(self, h: HeaderView) -> list[Any]:
        """Non-linearity lookup entry per extension (None where uncalibrated)."""
        return [None] * h.n_ext

    @descriptor
    def gain_setting(self, h: HeaderView) -> str | None:
        """Gain setting: the IR arrays have a single gain, so None."""
        return None

    @descriptor
    def well_depth_setting(self, h: HeaderView) -> str | None:
        """Well-depth setting ('Shallow'/'Deep'); None where not selectable."""
        return None

    @descriptor
    def read_mode(self, h: HeaderView) -> str:
        """Read mode (READMODE keyword)."""
        return str(h.phu_value("READMODE"))

    @descriptor
    def camera(self, h: HeaderView, stripID: bool = False, pretty: bool = False) -> str:
        """Camera (CAMERA keyword)."""
        value = str(h.phu_value("CAMERA"))
        return strip_component_id(value) if (stripID or pretty) else value

    @descriptor
    def detector_name(self, h: HeaderView, pretty: bool = False) -> str:
        """Detector name (DETNAME, else DETECTOR, else DETTYPE)."""
        for key in ("DETNAME", "DETECTOR", "DETTYPE"):
            value = h.value(key, None)
            if value:
                return str(value)
        raise h.missing("DETNAME")

    @descriptor
    def array_name(self, h: HeaderView) -> str | None:
        """Array name (ARRAYID keyword), or None."""
        value = h.value("ARRAYID", None)
        return str(value) if value else None

    @descriptor
    def detector_roi_setting(self, h: HeaderView) -> str:
        """'Full Frame', 'Central<N>' or 'Custom' from the first array's section."""
        return self._roi_name(h.d("detector_section")[0], self._full_frame(h))

    def _full_frame(self, h: HeaderView) -> int:
        return 2048

    @staticmethod
    def _roi_name(section: Section, full: int) -> str:
        width, height = section.x2 - section.x1, section.y2 - section.y1
        if width == full and height == full:
            return "Full Frame"
        centred = section.x1 + section.x2 == full and section.y1 + section.y2 == full
        if width == height and width % 256 == 0 and centred:
            return f"Central{width}"
        return "Custom"

    # ------------------------------------------------------------- sections
    def _shape_section(self, h: HeaderView, index: int) -> Section:
        header = h.exts[index]
        try:
            return full_section(int(header["NAXIS1"]), int(header["NAXIS2"]))
        except KeyError:
            raise h.missing("NAXIS1/NAXIS2", f"in extension {index + 1}") from None

    def _keyword_sections(self, h: HeaderView, keyword: str) -> list[Section]:
        sections = []
        for i, header in enumerate(h.exts):
            text = header.get(keyword)
            if text is None:
                sections.append(self._shape_section(h, i))
                continue
            try:
                sections.append(parse_section(text))
            except ValueError:
                raise h.error(f"keyword {keyword} in extension {i + 1} is not a section ({text!r})") from None
        return sections

    @descriptor
    def data_section(self, h: HeaderView, pretty: bool = False) -> list[Any]:
        """Section of each extension holding data (DATASEC, else the whole array)."""
        return _fmt_sections(self._data_section(h), pretty)

    @descriptor
    def detector_section(self, h: HeaderView, pretty: bool = False) -> list[Any]:
        """Where each extension sits on the detector (DETSEC, else the whole array)."""
        return _fmt_sections(self._detector_section(h), pretty)

    @descriptor
    def array_section(self, h: HeaderView, pretty: bool = False) -> list[Any]:
        """Section of the physical array read out (ARRAYSEC, else the whole array)."""
        return _fmt_sections(self._array_section(h), pretty)

    def _data_section(self, h: HeaderView) -> list[Section]:
        return self._keyword_sections(h, "DATASEC")

    def _detector_section(self, h: HeaderView) -> list[Section]:
        return self._keyword_sections(h, "DETSEC")

    def _array_section(self, h: HeaderView) -> list[Section]:
        return self._keyword_sections(h, "ARRAYSEC")

    # ------------------------------------------------------------ photometry
    def _zeropoint_keys(self, h: HeaderView) -> list[str]:
        """Second key of the zeropoint table per extension (camera or array)."""
        return [str(h.d("camera", stripID=True))] * h.n_ext

    @descriptor
    def nominal_photometric_zeropoint(self, h: HeaderView) -> list[float | None]:
        """Nominal zeropoint per extension (mag for 1 count/s in current units)."""
        filt = h.d("filter_name", pretty=True)
        in_adu = h.d("is_in_adu")
        gains = h.d("gain") if in_adu else [1.0] * h.n_ext
        values: list[float | None] = []
        for key, gain in zip(self._zeropoint_keys(h), gains):
            zp = self.nominal_zeropoints.get((filt, key))
            if zp is not None and in_adu:
                zp -= 2.5 * math.log10(gain)
            values.append(zp)
        return values
