"""GSAOI: tag rules and descriptors (instruments.md §2-4); four H2RG arrays."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from astropy.io.fits import Header

from .. import gemini_tags
from ..base import Instrument
from ..context import HeaderView
from ..gemini_tags import phu_str
from ..keywords import as_float
from ..registry import descriptor
from ..tags import TagSet
from . import lookup

__all__ = ["GSAOI"]


def tag_dark(phu: Header, exts: Sequence[Header]) -> TagSet | None:
    if phu_str(phu, "OBSTYPE") == "DARK":
        return TagSet.of(["DARK", "CAL"], blocks=["IMAGE"])
    return None


def tag_image(phu: Header, exts: Sequence[Header]) -> TagSet:
    return TagSet.of(["IMAGE"])


def tag_flat(phu: Header, exts: Sequence[Header]) -> TagSet | None:
    return TagSet.of(["FLAT", "CAL"]) if phu_str(phu, "OBSTYPE") == "FLAT" else None


def tag_domeflat(phu: Header, exts: Sequence[Header]) -> TagSet | None:
    if "DOMEFLAT" in phu_str(phu, "OBJECT").upper():
        return TagSet.of(["DOMEFLAT", "FLAT", "CAL"])
    return None


def tag_twilight(phu: Header, exts: Sequence[Header]) -> TagSet | None:
    if "TWILIGHT" in phu_str(phu, "OBJECT").upper():
        return TagSet.of(["TWILIGHT", "FLAT", "CAL"])
    return None


def tag_lamp(phu: Header, exts: Sequence[Header]) -> TagSet | None:
    # GSAOI flats are dome flats: the lamp state is in OBJECT, not in GCAL keywords.
    target = phu_str(phu, "OBJECT").upper()
    if target == "DOMEFLAT":
        return TagSet.of(["LAMPON"])
    if target == "DOMEFLAT OFF":
        return TagSet.of(["LAMPOFF"])
    return None


_GEMINI_RULES = tuple(r for r in gemini_tags.GEMINI_RULES
                      if r not in (gemini_tags.gcal_ir_on, gemini_tags.gcal_ir_off))


class GSAOI(Instrument):
    """GSAOI (Gemini South, with GeMS): a 2x2 mosaic of 2048x2048 H2RG arrays."""

    name = "GSAOI"
    n_arrays = 4
    gemini_rules = _GEMINI_RULES
    instrument_rules = (tag_dark, tag_image, tag_flat, tag_domeflat, tag_twilight, tag_lamp)
    filter_wavelengths = lookup.FILTER_WAVELENGTHS
    nominal_zeropoints = lookup.NOMINAL_ZEROPOINTS
    coadds_summed = False  # GSAOI averages its coadds
    #: where each 2048-px array sits in the mosaic (quick-look pictures place the arrays by it)
    mosaic_geometry = lookup.ARRAY_GEOMETRY
    array_size = lookup.ARRAY_SIZE

    # -------------------------------------------------------------- detector
    @descriptor
    def read_speed_setting(self, h: HeaderView) -> str:
        """'Bright Objects' (LNRS 2), 'Faint Objects' (8), 'Very Faint Objects' (16)."""
        lnrs = int(h.phu_float("LNRS"))
        return lookup.READ_SPEEDS.get(lnrs, "Unknown")

    @descriptor
    def array_name(self, h: HeaderView) -> list[str]:
        """ARRAYID of each extension (e.g. 'H2RG-032-074'), else DETECTOR."""
        names = []
        for i in range(h.n_ext):
            value = h.ext_value(i, "ARRAYID", None) or h.value("DETECTOR", None)
            if not value:
                raise h.missing("ARRAYID", f"in extension {i + 1}")
            names.append(str(value))
        return names

    def _properties(self, h: HeaderView) -> list[lookup.GSAOIArrayProperties | None]:
        speed = h.d("read_speed_setting")
        return [lookup.ARRAY_PROPERTIES.get((speed, name)) for name in h.d("array_name")]

    def _require(self, h: HeaderView) -> list[lookup.GSAOIArrayProperties]:
        props = self._properties(h)
        if any(p is None for p in props):
            raise h.error(f"no array properties for read speed {h.d('read_speed_setting')!r} "
                          f"and arrays {h.d('array_name')}")
        return props  # type: ignore[return-value]

    def _gain(self, h: HeaderView) -> list[float]:
        gains = []
        for i, props in enumerate(self._properties(h)):
            if props is not None:
                gains.append(props.gain)
            else:  # unknown array: the raw files carry their gain
                gains.append(as_float(h.ext_value(i, "GAIN")))
        return gains

    def _read_noise(self, h: HeaderView) -> list[float]:
        coadds = h.d("coadds")
        return [lookup.read_noise(p, coadds) for p in self._require(h)]

    def _saturation_level(self, h: HeaderView) -> list[float]:
        return [lookup.saturation_level(p, g) for p, g in zip(self._require(h), h.d("gain"))]

    def _non_linear_level(self, h: HeaderView) -> list[float]:
        return [p.linear_limit * s for p, s in zip(self._require(h), h.d("saturation_level"))]

    @descriptor
    def nonlinearity_coeffs(self, h: HeaderView) -> list[Any]:
        """Polynomial (a1, a2, a3) for electrons per coadd, per array (None if unknown)."""
        return [p.coeffs if p else None for p in self._properties(h)]

    @descriptor
    def detector_name(self, h: HeaderView, pretty: bool = False) -> str:
        """DETECTOR keyword ('GSAOI')."""
        return str(h.value("DETECTOR", "GSAOI"))

    @descriptor
    def camera(self, h: HeaderView, stripID: bool = False, pretty: bool = False) -> str:
        """GSAOI has a single camera: CAMERA if present, else 'GSAOI'."""
        return str(h.phu_value("CAMERA", "GSAOI"))

    def _zeropoint_keys(self, h: HeaderView) -> list[str]:
        return h.d("array_name")

    # -------------------------------------------------------------- geometry
    def _array_section(self, h: HeaderView):
        return self._keyword_sections(h, "CCDSEC")

    @descriptor
    def detector_roi_setting(self, h: HeaderView) -> str:
        """'Full Frame', 'Central<N>' or 'Custom' from the first array's CCDSEC."""
        return self._roi_name(h.d("array_section")[0], lookup.ARRAY_SIZE)

    def _pixel_scale(self, h: HeaderView) -> float:
        scale = self._wcs_pixel_scale(h)
        return lookup.PIXEL_SCALE if scale is None else scale

    def static_distortions(self, phu: Header, ext_headers: Sequence[Header],
                           tags: frozenset[str] | None = None) -> list[Any]:
        """The packaged static distortion of each array (by ARRAYID), moved to its CCDSEC origin.

        An array without a known ARRAYID gets None (its header WCS is kept).
        """
        from .distortion import array_distortion

        names = self.descriptor("array_name", phu, ext_headers, tags)
        sections = self.descriptor("array_section", phu, ext_headers, tags)
        out: list[Any] = []
        for name, section in zip(names, sections):
            try:
                out.append(array_distortion(str(name)).for_section((section.x1, section.y1)))
            except KeyError:
                out.append(None)
        return out

    @descriptor
    def detector_x_offset(self, h: HeaderView) -> float:
        """-POFFSET / pixel scale: where a star moves along x when the telescope offsets by p.

        GSAOI's arrays see the sky mirrored (real headers at PA 0: CD1_1 > 0,
        RA along +x) and p points east at PA 0 (RAOFFSET = POFFSET), so a
        star moves by -p along x.  DRAGONS' generic +POFFSET sign would move
        frames the wrong way in the offsets fallback of the alignment.
        """
        return -h.phu_float("POFFSET") / h.d("pixel_scale")

    @descriptor
    def detector_y_offset(self, h: HeaderView) -> float:
        """-QOFFSET / pixel scale: where a star moves along y (Dec along +y at PA 0, DECOFFSE = QOFFSET)."""
        return -h.phu_float("QOFFSET") / h.d("pixel_scale")
