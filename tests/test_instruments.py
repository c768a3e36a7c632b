"""Instrument layer on synthetic headers: seed tag lines, descriptor rules, errors."""
from __future__ import annotations

import datetime as dt
import math

import pytest
from astropy.io.fits import Header

from draconis.errors import DescriptorError, InputError, UnknownInstrumentError
from draconis.instruments import INSTRUMENTS, Section, format_section, instrument_for, parse_section
from draconis.instruments.f2 import lookup as f2_lookup
from draconis.instruments.gnirs import lookup as gnirs_lookup
from draconis.instruments.gsaoi import lookup as gsaoi_lookup
from draconis.instruments.keywords import parse_date, parse_dec, parse_ra, strip_component_id
from draconis.instruments.niri import lookup as niri_lookup
from draconis.instruments.tags import TagSet, resolve_tags

GSAOI_ARRAYS = gsaoi_lookup.ARRAY_IDS


def make(phu_cards: dict, ext_cards: list[dict] | None = None, n_ext: int = 1,
         shape: tuple[int, int] = (64, 64)) -> tuple[Header, list[Header]]:
    """A PHU and ``n_ext`` extension headers from keyword dicts."""
    phu = Header()
    for key, value in phu_cards.items():
        phu[key] = value
    exts = []
    for i in range(n_ext):
        ext = Header()
        ext["NAXIS"] = 2
        ext["NAXIS1"], ext["NAXIS2"] = shape[1], shape[0]
        ext["EXTNAME"] = "SCI"
        for key, value in (ext_cards[i] if ext_cards else {}).items():
            ext[key] = value
        exts.append(ext)
    return phu, exts


class Frame:
    """Headers plus their instrument, as frame.py uses them."""

    def __init__(self, phu_cards: dict, ext_cards: list[dict] | None = None, n_ext: int = 1,
                 path: str = "test.fits", shape: tuple[int, int] = (64, 64)):
        self.phu, self.exts = make(phu_cards, ext_cards, n_ext, shape)
        self.path = path
        self.inst = instrument_for(self.phu, path)
        self.tags = self.inst.tags(self.phu, self.exts)

    def d(self, name: str, **kwargs):
        return self.inst.descriptor(name, self.phu, self.exts, self.tags, self.path, **kwargs)


def tag_line(tags: frozenset[str]) -> str:
    """Tags as typewalk prints them."""
    return " ".join(f"({t})" for t in sorted(tags))


SOUTH_SIDEREAL = {"OBSERVAT": "Gemini-South", "TELESCOP": "Gemini-South", "TRKFRAME": "FK5", "FRAME": "FK5",
                  "RATRACK": 0.0, "DECTRACK": 0.0}
F2_BASE = {"INSTRUME": "F2", **SOUTH_SIDEREAL, "OBJECT": "NGC 1", "OBSTYPE": "OBJECT", "OBSCLASS": "science",
           "GRISM": "Open", "DECKER": "Open", "MOSPOS": "Open", "LYOT": "f/16_G5830", "FILTER1": "Open",
           "FILTER2": "K-red_G0815", "LNRS": 1, "COADDS": 1, "EXPTIME": 5.0, "READMODE": "Bright",
           "DATE-OBS": "2020-01-04", "TIME-OBS": "01:02:03.5", "RA": 60.0, "DEC": -30.0, "PA": 10.0,
           "XOFFSET": 1.0, "YOFFSET": 2.0, "POFFSET": 2.0, "QOFFSET": -1.0, "INPORT": 5, "AIRMASS": 1.2}
GSAOI_BASE = {"INSTRUME": "GSAOI", **SOUTH_SIDEREAL, "OBJECT": "NGC 6440", "OBSTYPE": "OBJECT",
              "OBSCLASS": "science", "FILTER1": "Kshort_G1105", "FILTER2": "Clear", "LNRS": 2, "COADDS": 1,
              "EXPTIME": 60.0, "READMODE": "FOWLER", "DETECTOR": "GSAOI", "DATE-OBS": "2017-05-04",
              "TIME-OBS": "04:00:00", "AIRMASS": 1.3}
GSAOI_EXTS = [{"ARRAYID": a, "DETSEC": s} for a, s in zip(
    GSAOI_ARRAYS, ("[2049:4096,1:2048]", "[1:2048,1:2048]", "[1:2048,2049:4096]", "[2049:4096,2049:4096]"))]


# ------------------------------------------------------------------ seed tag lines
def test_seed_f2_science_tags():
    assert tag_line(Frame(F2_BASE).tags) == "(F2) (GEMINI) (IMAGE) (RAW) (SIDEREAL) (SOUTH) (UNPREPARED)"


def test_seed_f2_dark_tags():
    dark = {**F2_BASE, "OBSTYPE": "DARK", "OBJECT": "Dark", "FILTER1": "DK_G0807", "TRKFRAME": "No Value",
            "FRAME": "No Value", "OBSCLASS": "dayCal"}
    assert tag_line(Frame(dark).tags) == "(CAL) (DARK) (F2) (GEMINI) (RAW) (SOUTH) (UNPREPARED)"


def test_seed_f2_kred_flat_tags():
    flat = {**F2_BASE, "OBSTYPE": "FLAT", "OBJECT": "GCALflat", "GCALLAMP": "IRhigh", "GCALSHUT": "CLOSED",
            "TRKFRAME": "No Value", "FRAME": "No Value"}
    assert tag_line(Frame(flat).tags) == ("(CAL) (F2) (FLAT) (GCALFLAT) (GCAL_IR_OFF) (GEMINI) (IMAGE) (LAMPOFF) "
                                          "(RAW) (SOUTH) (UNPREPARED)")


def test_seed_gsaoi_science_tags():
    frame = Frame(GSAOI_BASE, GSAOI_EXTS, n_ext=4)
    assert tag_line(frame.tags) == "(GEMINI) (GSAOI) (IMAGE) (RAW) (SIDEREAL) (SOUTH) (UNPREPARED)"


@pytest.mark.parametrize("target, lamp", [("Domeflat", "LAMPON"), ("Domeflat OFF", "LAMPOFF")])
def test_seed_gsaoi_domeflat_tags(target, lamp):
    cards = {**GSAOI_BASE, "OBJECT": target, "OBSTYPE": "FLAT", "OBSCLASS": "dayCal", "FRAME": "AZEL_TOPO",
             "TRKFRAME": "FK5", "RATRACK": 0.01, "DECTRACK": -0.2, "AIRMASS": 1.05,
             "GCALLAMP": "No Value", "GCALSHUT": "CLOSED"}  # would be GCAL lamp-off: GSAOI ignores it
    frame = Frame(cards, GSAOI_EXTS, n_ext=4)
    assert tag_line(frame.tags) == (f"(AZEL_TARGET) (CAL) (DOMEFLAT) (FLAT) (GEMINI) (GSAOI) (IMAGE) ({lamp}) "
                                    "(NON_SIDEREAL) (RAW) (SOUTH) (UNPREPARED)")


GNIRS_BASE = {"INSTRUME": "GNIRS", "OBSERVAT": "Gemini-North", "TRKFRAME": "FK5", "FRAME": "FK5",
              "RATRACK": 0.0, "DECTRACK": 0.0, "OBJECT": "M1", "OBSTYPE": "OBJECT", "OBSCLASS": "science",
              "ACQMIR": "In", "SLIT": "Acq_G5530", "DECKER": "Acq_G5531", "PRISM": "MIR_G5537",
              "GRATING": "32/mmSB_G5533", "CAMERA": "ShortBlue_G5540", "FILTER1": "Open", "FILTER2": "J_G0517",
              "ARRAYID": "SN7638228.1.2", "LNRS": 16, "NDAVGS": 16, "DETBIAS": -0.6, "COADDS": 2,
              "EXPTIME": 30.0, "DATE-OBS": "2012-01-02", "TIME-OBS": "10:00:00", "PA": 300.0,
              "POFFSET": 3.0, "QOFFSET": 1.5, "INPORT": 1, "RA": 100.0, "DEC": 20.0}


def test_gnirs_keyhole_image_tags():
    frame = Frame(GNIRS_BASE, shape=(1022, 1024))
    assert tag_line(frame.tags) == "(GEMINI) (GNIRS) (IMAGE) (NORTH) (RAW) (SIDEREAL) (UNPREPARED)"


def test_gnirs_dark_tags():
    frame = Frame({**GNIRS_BASE, "OBSTYPE": "DARK"})
    assert tag_line(frame.tags) == "(CAL) (DARK) (GEMINI) (GNIRS) (NORTH) (RAW) (SIDEREAL) (UNPREPARED)"


def test_gnirs_thruslit_needs_image():
    through = Frame({**GNIRS_BASE, "SLIT": "0.30arcsec_G5530"})
    assert {"IMAGE", "THRUSLIT", "LS"} <= through.tags
    spect = Frame({**GNIRS_BASE, "SLIT": "0.30arcsec_G5530", "ACQMIR": "Out"})
    assert "THRUSLIT" not in spect.tags and {"SPECT", "LS"} <= spect.tags


def test_gnirs_pinhole_flat():
    frame = Frame({**GNIRS_BASE, "ACQMIR": "Out", "OBSTYPE": "FLAT", "SLIT": "SmPinholes_G5530",
                   "GCALLAMP": "QH", "GCALSHUT": "CLOSED"})
    assert {"PINHOLE", "CAL"} <= frame.tags
    assert not {"FLAT", "GCALFLAT", "GCAL_IR_OFF"} & frame.tags


NIRI_BASE = {"INSTRUME": "NIRI", "OBSERVAT": "Gemini-North", "TRKFRAME": "FK5", "FRAME": "FK5",
             "RATRACK": 0.0, "DECTRACK": 0.0, "OBJECT": "FS 17", "OBSTYPE": "OBJECT",
             "FILTER1": "H_G0203", "FILTER2": "open", "FILTER3": "pupil38_G5207", "CAMERA": "f6",
             "LNRS": 16, "NDAVGS": 16, "A_VDDUC": -3.49, "A_VDET": -2.89, "COADDS": 4, "EXPTIME": 1.001,
             "DATE-OBS": "2016-01-02", "TIME-OBS": "03:04:05", "POFFSET": 6.0, "QOFFSET": -3.0, "INPORT": 3}


def test_niri_image_and_dark_tags():
    assert tag_line(Frame(NIRI_BASE).tags) == "(GEMINI) (IMAGE) (NIRI) (NORTH) (RAW) (SIDEREAL) (UNPREPARED)"
    dark = Frame({**NIRI_BASE, "OBSTYPE": "DARK", "FILTER2": "blank"})
    assert tag_line(dark.tags) == "(CAL) (DARK) (GEMINI) (NIRI) (NORTH) (RAW) (SIDEREAL) (UNPREPARED)"
    twilight = Frame({**NIRI_BASE, "OBJECT": "Twilight"})
    assert {"IMAGE", "CAL", "FLAT", "TWILIGHT"} <= twilight.tags


# --------------------------------------------------------------- generic tag rules
def test_processed_science_blocks_raw_and_bpm_blocks_image():
    science = Frame({**F2_BASE, "GEM-TLM": "2020-01-01", "PREPARE": "x", "PROCSCI": "x"})
    assert {"PROCESSED_SCIENCE", "PROCESSED", "PREPARED"} <= science.tags
    assert not {"RAW", "UNPREPARED"} & science.tags
    bpm = Frame({**F2_BASE, "OBSTYPE": "BPM", "BPMASK": "x", "GEM-TLM": "x", "RATRACK": 1.0,
                 "FRAME": "AZEL_TOPO", "TRKFRAME": "FK5"})
    assert {"BPM", "CAL", "PROCESSED"} <= bpm.tags
    assert not {"IMAGE", "DARK", "NON_SIDEREAL", "AZEL_TARGET", "RAW"} & bpm.tags


def test_processed_flat_keeps_gcalflat_but_not_lamp_tags():
    frame = Frame({**F2_BASE, "OBSTYPE": "FLAT", "GCALLAMP": "IRhigh", "GCALSHUT": "OPEN", "PROCFLAT": "x"})
    assert {"GCALFLAT", "FLAT", "PROCESSED"} <= frame.tags
    assert not {"GCAL_IR_ON", "LAMPON"} & frame.tags


def test_twilight_blocks_flat_only_with_a_grism():
    imaging = Frame({**F2_BASE, "OBJECT": "Twilight", "OBSTYPE": "FLAT"})
    assert {"TWILIGHT", "FLAT"} <= imaging.tags
    spect = Frame({**F2_BASE, "OBJECT": "Twilight", "OBSTYPE": "FLAT", "GRISM": "JH_G5801"})
    assert "TWILIGHT" in spect.tags and "FLAT" not in spect.tags


def test_acquisition_and_zenith_tags():
    frame = Frame({**F2_BASE, "OBSCLASS": "acq", "FRAME": "AZEL_TOPO", "AIRMASS": 1.0})
    assert {"ACQUISITION", "AZEL_TARGET", "AT_ZENITH"} <= frame.tags


def test_tag_engine_semantics():
    base = TagSet.of(["A"])
    needs_a = TagSet.of(["B"], if_present=["A"])
    blocked = TagSet.of(["C", "D"], blocked_by=["B"])
    blocker = TagSet.of(["E"], blocks=["F"])
    blocked_set = TagSet.of(["F", "G"])  # dropped entirely: it adds a blocked tag
    assert resolve_tags([base, needs_a, blocked, blocker, blocked_set, None]) == {"A", "B", "E"}
    remover = TagSet.of(["H"], remove=["G"])
    assert resolve_tags([TagSet.of(["G", "K"]), remover]) == {"K", "H"}
    assert resolve_tags([TagSet.of(["X"], if_present=["Y"])]) == frozenset()


# ---------------------------------------------------------------- F2 descriptors
def test_f2_descriptors():
    frame = Frame({**F2_BASE, "LNRS": 4, "COADDS": 2})
    assert frame.d("read_mode") == "4"
    assert frame.d("gain") == [pytest.approx(1.11)]
    assert frame.d("read_noise") == [6.0]
    assert frame.d("saturation_level") == [int(155400 / 1.11)]
    assert frame.d("exposure_time") == pytest.approx(10.0)  # 5 s x 2 coadds (summed)
    assert frame.d("filter_name") == "Open&K-red_G0815"
    assert frame.d("filter_name", stripID=True) == "Open&K-red"
    assert frame.d("filter_name", pretty=True) == "K-red"
    assert frame.d("wavelength_band") == "K"
    assert frame.d("position_angle") == pytest.approx(100.0)
    assert frame.d("telescope_x_offset") == -2.0 and frame.d("telescope_y_offset") == -1.0
    assert frame.d("pixel_scale") == pytest.approx(0.18)  # no WCS, no PIXSCALE: nominal f/16
    assert frame.d("detector_x_offset") == pytest.approx(1.0 / 0.18)
    assert frame.d("detector_y_offset") == pytest.approx(-2.0 / 0.18)
    assert frame.d("binning") == "1x1"
    assert frame.d("ut_datetime") == dt.datetime(2020, 1, 4, 1, 2, 3, 500000)
    assert frame.d("ut_date") == dt.date(2020, 1, 4)
    assert frame.d("lyot_stop") == "f/16_G5830"
    assert frame.d("instrument") == "F2"


def test_f2_bottom_port_flips_y_offset():
    frame = Frame({**F2_BASE, "INPORT": 1})
    assert frame.d("detector_y_offset") == pytest.approx(2.0 / 0.18)


def test_f2_old_filter_keywords_and_flam_alias():
    cards = {k: v for k, v in F2_BASE.items() if k not in ("FILTER1", "FILTER2")}
    frame = Frame({**cards, "INSTRUME": "FLAM", "FILT1POS": "J_G0802", "FILT2POS": "Open"})
    assert frame.inst.name == "F2"
    assert frame.d("filter_name", pretty=True) == "J"


def test_f2_pixel_scale_from_cd_matrix_and_zeropoint():
    cd = 0.18 / 3600
    frame = Frame({**F2_BASE, "FILTER2": "Ks_G0804"}, [{"CD1_1": cd, "CD2_2": -cd, "CD1_2": 0.0, "CD2_1": 0.0}])
    assert frame.d("pixel_scale") == pytest.approx(0.18)
    assert frame.d("nominal_photometric_zeropoint") == [pytest.approx(26.12 - 2.5 * math.log10(4.44))]


def test_f2_prepared_uses_extension_keywords():
    prepared = {**F2_BASE, "PREPARE": "2020-01-01T00:00:00", "GEM-TLM": "x", "COADDS": 3, "EXPTIME": 15.0}
    ext = {"GAIN": 1.0, "RDNOISE": 11.7, "SATLEVEL": 155400.0, "NONLINEA": 111888.0, "BUNIT": "electron",
           "PIXSCALE": 0.179}
    frame = Frame(prepared, [ext])
    assert "PREPARED" in frame.tags and "RAW" not in frame.tags
    assert frame.d("gain") == [1.0]
    assert frame.d("saturation_level") == [155400.0]
    assert frame.d("non_linear_level") == [111888.0]
    assert frame.d("exposure_time") == 15.0  # prepared: EXPTIME already the total
    assert frame.d("is_in_adu") is False
    assert frame.d("pixel_scale") == 0.179
    assert frame.d("nominal_photometric_zeropoint") == [None]  # no K-red zeropoint in the table


# -------------------------------------------------------------- NIRI descriptors
def test_niri_descriptors():
    frame = Frame(NIRI_BASE, [{"LOWROW": 256, "HIROW": 767, "LOWCOL": 256, "HICOL": 767}], shape=(512, 512))
    assert frame.d("read_mode") == "Low Background"
    assert frame.d("well_depth_setting") == "Shallow"  # -3.49 - -2.89 = -0.60
    assert frame.d("read_noise") == [pytest.approx(12.3 * 2)]
    assert frame.d("saturation_level") == [int(200000 * 4 / 12.3)]
    assert frame.d("exposure_time") == pytest.approx(4.004)
    assert frame.d("data_section") == [Section(256, 768, 256, 768)]
    assert frame.d("detector_section", pretty=True) == ["[257:768,257:768]"]
    assert frame.d("detector_roi_setting") == "Central512"
    assert frame.d("filter_name", pretty=True) == "H"
    assert frame.d("nonlinearity_coeffs") == [None]  # (Low Background, 512, Shallow) is uncalibrated
    assert frame.d("pixel_scale") == pytest.approx(0.1171)  # no WCS: nominal f/6
    assert frame.d("detector_x_offset") == pytest.approx(6.0 / 0.1171)
    assert frame.d("detector_y_offset") == pytest.approx(3.0 / 0.1171)


@pytest.mark.parametrize("wheels, raw, pretty", [
    (("K_G0204", "H2v=1-0S1_G0216", "pupil38"), "H2v=1-0S1_G0216&K_G0204", "H2 1-0 S1"),
    (("PK50_G0201", "Y_G0241", "open"), "PK50_G0201&Y_G0241", "Y"),
    (("Brgamma_G0218", "open", "pupil"), "Brgamma_G0218", "Br(gamma)"),
    (("Kshort_G0205", "blank", "pupil"), "blank", "blank"),
    (("open", "open", "Kgrism_G5204"), "open", "open"),
])
def test_niri_filter_names(wheels, raw, pretty):
    frame = Frame({**NIRI_BASE, "FILTER1": wheels[0], "FILTER2": wheels[1], "FILTER3": wheels[2]})
    assert frame.d("filter_name") == raw
    assert frame.d("filter_name", pretty=True) == pretty


def test_niri_read_modes_and_deep_well():
    assert Frame({**NIRI_BASE, "LNRS": 1, "NDAVGS": 1}).d("read_mode") == "High Background"
    assert Frame({**NIRI_BASE, "LNRS": 2, "NDAVGS": 4}).d("read_mode") == "Unknown"
    deep = Frame({**NIRI_BASE, "A_VDET": -2.62, "LNRS": 1, "NDAVGS": 1}, shape=(1024, 1024))
    assert deep.d("well_depth_setting") == "Deep"
    assert deep.d("nonlinearity_coeffs")[0] == niri_lookup.NONLINEARITY[("High Background", 1024, "Deep")]


def test_niri_old_date_format():
    frame = Frame({**NIRI_BASE, "DATE-OBS": "19/06/02", "TIME-OBS": "", "UT": "21:23:59.5"})
    assert frame.d("ut_datetime") == dt.datetime(2002, 6, 19, 21, 23, 59, 500000)


# ------------------------------------------------------------- GNIRS descriptors
def test_gnirs_descriptors():
    frame = Frame(GNIRS_BASE, shape=(1022, 1024))
    assert frame.d("read_mode") == "Faint Objects"
    assert frame.d("well_depth_setting") == "Deep"
    assert frame.d("read_noise") == [pytest.approx(10.0 * math.sqrt(2))]
    assert frame.d("saturation_level") == [int(190000 * 2 / 13.5)]
    assert frame.d("non_linear_level") == [int(0.95 * int(190000 * 2 / 13.5))]
    assert frame.d("nonlinearity_coeffs")[0].time_delta == pytest.approx(1.4466383436198411)
    assert frame.d("pixel_scale") == pytest.approx(0.15170)
    assert frame.d("position_angle") == pytest.approx(30.0)  # (300 + 90) mod 360
    assert frame.d("detector_x_offset") == pytest.approx(-1.5 / 0.1517)  # INPORT 1 flips x
    assert frame.d("detector_y_offset") == pytest.approx(-3.0 / 0.1517)
    assert frame.d("data_section") == [Section(0, 1024, 0, 1022)]
    assert frame.d("filter_name", pretty=True) == "J"
    assert frame.d("ra") == 100.0  # no WCS: the target


def test_gnirs_controller_suffix_and_read_mode_keyword():
    frame = Frame({**GNIRS_BASE, "CONID": "ARC-III", "READMODE": "Very Bright Objects", "DETBIAS": 0.3})
    assert frame.d("array_name") == "SN7638228.1.2+ARC-III"
    assert frame.d("read_mode") == "Very Bright Objects"
    assert frame.d("well_depth_setting") == "Shallow"
    assert frame.d("gain") == [13.5]  # SN7638228.1.2 values (controller suffix not in the table)


def test_gnirs_ra_dec_prefers_wcs_unless_far_off():
    near = Frame(GNIRS_BASE, [{"CTYPE1": "RA---TAN", "CRVAL1": 100.01, "CRVAL2": 20.01}])
    assert near.d("ra") == pytest.approx(100.01) and near.d("dec") == pytest.approx(20.01)
    far = Frame(GNIRS_BASE, [{"CTYPE1": "RA---TAN", "CRVAL1": 101.0, "CRVAL2": 20.0}])
    assert far.d("ra") == pytest.approx(100.0)


# ------------------------------------------------------------- GSAOI descriptors
def test_gsaoi_descriptors():
    frame = Frame({**GSAOI_BASE, "COADDS": 4, "LNRS": 16}, GSAOI_EXTS, n_ext=4, shape=(2048, 2048))
    assert frame.inst.n_arrays == 4
    assert frame.d("read_speed_setting") == "Very Faint Objects"
    assert frame.d("read_mode") == "FOWLER"
    assert frame.d("exposure_time") == 60.0  # coadds averaged
    assert frame.d("array_name") == list(GSAOI_ARRAYS)
    assert frame.d("read_noise") == [5.11, 3.72, 5.3, 6.39]  # RN / sqrt(4), rounded to 0.01
    assert frame.d("saturation_level") == [52400.0, 50250.0, 53700.0, 52300.0]
    assert frame.d("non_linear_level")[1] == pytest.approx(0.64 * 50250)
    assert frame.d("detector_section")[0] == Section(2048, 4096, 0, 2048)
    assert frame.d("detector_roi_setting") == "Full Frame"
    assert frame.d("filter_name", pretty=True) == "Kshort"
    assert frame.d("nominal_photometric_zeropoint")[3] == pytest.approx(26.192 - 2.5 * math.log10(2.644))


def test_gsaoi_after_adu_to_electrons():
    phu = {**GSAOI_BASE, "PREPARE": "x", "GEM-TLM": "x", "ADUTOELE": "x"}
    exts = [{**e, "GAIN": 1.0, "RDNOISE": 26.53, "BUNIT": "electron",
             "SATLEVEL": 52400.0 * g, "NONLINEA": 0.7 * 52400.0 * g}
            for e, g in zip(GSAOI_EXTS, (2.434, 2.010, 2.411, 2.644))]
    frame = Frame(phu, exts, n_ext=4)
    assert frame.d("gain") == [1.0] * 4
    assert frame.d("saturation_level")[0] == pytest.approx(52400.0 * 2.434)
    assert frame.d("is_in_adu") is False
    assert frame.d("nominal_photometric_zeropoint")[0] == pytest.approx(26.201)


# ---------------------------------------------------------- coordinates and dates
def test_sexagesimal_coordinates_and_iso_date():
    frame = Frame({**F2_BASE, "RA": "12:30:00.0", "DEC": "-30:30:00", "DATE-OBS": "2020-01-04T23:59:59.25"})
    assert frame.d("ra") == pytest.approx(187.5)
    assert frame.d("dec") == pytest.approx(-30.5)
    assert frame.d("ut_datetime") == dt.datetime(2020, 1, 4, 23, 59, 59, 250000)
    assert frame.d("target_dec", offset=False) == pytest.approx(-30.5)


def test_date_with_ut_only():
    cards = {k: v for k, v in F2_BASE.items() if k != "TIME-OBS"}
    assert Frame({**cards, "UT": "05:06:07"}).d("ut_time") == dt.time(5, 6, 7)


def test_keyword_parsers():
    assert parse_ra("00:00:36") == pytest.approx(0.15)
    assert parse_dec("-00:30:00") == pytest.approx(-0.5)
    assert parse_ra(12.5) == 12.5
    assert parse_date("01/12/99") == (dt.date(1999, 12, 1), None)
    assert parse_date("2002-06-20")[0] == dt.date(2002, 6, 20)
    assert strip_component_id("HK_G0806_good") == "HK"
    assert strip_component_id("K-red_G0815") == "K-red"


# -------------------------------------------------------------------- sections
def test_sections_round_trip():
    section = parse_section("[2049:4096,1:2048]")
    assert section == Section(2048, 4096, 0, 2048)
    assert section.shape == (2048, 2048)
    assert format_section(section) == "[2049:4096,1:2048]"
    assert section.as_slices() == (slice(0, 2048), slice(2048, 4096))
    with pytest.raises(ValueError):
        parse_section("[1:10]")


# --------------------------------------------------------------------- lookups
def test_lookup_helpers():
    assert f2_lookup.gain("8") == pytest.approx(0.555)
    assert f2_lookup.non_linear_level(1) == 25200
    assert niri_lookup.well_depth_setting(-0.86) == "Deep"
    assert niri_lookup.well_depth_setting(-0.75) == "Unknown"
    assert gnirs_lookup.pixel_scale("LongRed_G5543") == pytest.approx(0.05095)
    assert gnirs_lookup.nonlinearity("UNKNOWN", "Faint Objects", "Deep") is None
    props = gsaoi_lookup.array_properties("Bright Objects", "H2RG-032-061")
    assert gsaoi_lookup.read_noise(props, coadds=4) == pytest.approx(16.13)
    assert gsaoi_lookup.ARRAY_GEOMETRY[gsaoi_lookup.ARRAY_DETECTOR_ORIGINS["H2RG-032-074"]][1] == pytest.approx(
        0.033606)


# ---------------------------------------------------------------------- errors
def test_missing_instrume_is_an_input_error():
    phu, exts = make({"OBJECT": "x"})
    with pytest.raises(InputError, match="bad.fits: no INSTRUME keyword"):
        instrument_for(phu, "bad.fits")


def test_unknown_instrument():
    phu, _ = make({"INSTRUME": "GMOS-N"})
    with pytest.raises(UnknownInstrumentError, match="gmos.fits: instrument 'GMOS-N' is not supported"):
        instrument_for(phu, "gmos.fits")


def test_missing_exptime_names_file_and_keyword():
    cards = {k: v for k, v in F2_BASE.items() if k != "EXPTIME"}
    frame = Frame(cards, path="/data/S20200104S0075.fits")
    with pytest.raises(DescriptorError) as info:
        frame.d("exposure_time")
    message = str(info.value)
    assert "/data/S20200104S0075.fits" in message and "EXPTIME" in message and "exposure_time" in message


def test_unknown_descriptor_and_bad_option():
    frame = Frame(F2_BASE)
    with pytest.raises(DescriptorError, match="unknown descriptor 'nonsense'.*exposure_time"):
        frame.d("nonsense")
    with pytest.raises(DescriptorError, match="bad options"):
        frame.d("exposure_time", pretty=True)


def test_every_instrument_lists_the_required_descriptors():
    required = {"exposure_time", "filter_name", "object", "observation_class", "observation_type",
                "observation_id", "data_label", "read_mode", "well_depth_setting", "coadds", "gain", "read_noise",
                "saturation_level", "non_linear_level", "nonlinearity_coeffs", "pixel_scale", "ut_datetime",
                "ut_date", "ut_time", "ra", "dec", "wcs_ra", "wcs_dec", "telescope_x_offset", "telescope_y_offset",
                "detector_x_offset", "detector_y_offset", "position_angle", "airmass", "data_section",
                "detector_section", "array_section", "array_name", "camera", "detector_name",
                "detector_roi_setting", "instrument", "telescope", "wavelength_band", "central_wavelength",
                "disperser", "focal_plane_mask", "binning", "qa_state", "wavefront_sensor",
                "nominal_photometric_zeropoint", "gain_setting", "is_in_adu", "target_ra", "target_dec",
                "lamp_state"}
    for inst in INSTRUMENTS.values():
        assert required <= set(inst.descriptor_names()), inst.name
    assert "lyot_stop" in INSTRUMENTS["F2"].descriptor_names()
    assert "read_speed_setting" in INSTRUMENTS["GSAOI"].descriptor_names()


# ---------------------------------------------------------------- non-linearity
def test_nonlinearity_formulas_round_trip():
    import numpy as np

    from draconis.kernels import nonlinearity as nl

    rng = np.random.default_rng(42)
    electrons = rng.uniform(0, 150000, size=(8, 16))
    coeffs = f2_lookup.NONLINEARITY_COEFFS
    linear = nl.linearize_polynomial(electrons, coeffs)
    assert linear[0, 0] == pytest.approx(electrons[0, 0] * (coeffs[0] + coeffs[1] * electrons[0, 0]
                                                           + coeffs[2] * electrons[0, 0] ** 2))
    assert np.allclose(nl.delinearize_polynomial(linear, coeffs), electrons, rtol=1e-9, atol=1e-6)
    niri = niri_lookup.NONLINEARITY[("Medium Background", 1024, "Shallow")]
    assert np.allclose(nl.delinearize_irdc(nl.linearize_irdc(electrons, niri.gamma, niri.eta), niri.gamma,
                                           niri.eta), electrons, rtol=1e-9, atol=1e-6)
    gn = gnirs_lookup.nonlinearity("SN7638228.1.2", "Bright Objects", "Shallow")
    even, odd = (gn.even.gamma, gn.even.eta), (gn.odd.gamma, gn.odd.eta)
    rows = nl.linearize_irdc_rows(electrons, even, odd)
    assert rows[1, 3] == pytest.approx(nl.linearize_irdc(electrons[1, 3], *odd))
    assert rows[2, 3] == pytest.approx(nl.linearize_irdc(electrons[2, 3], *even))
    assert np.allclose(nl.delinearize_irdc_rows(rows, even, odd), electrons, rtol=1e-9, atol=1e-6)
    assert nl.exposure_scale(10.0, niri.time_delta) == pytest.approx(10.0 / (10.0 + 0.09442515154))


def test_non_sidereal_wcs_is_converted_from_apparent_to_icrs():
    cards = {**NIRI_BASE, "TRKFRAME": "APPT", "FRAME": "APPT", "RATRACK": 0.1, "DATE-OBS": "2021-10-17",
             "TIME-OBS": "05:31:24.5"}
    wcs = {"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRVAL1": 325.07561954, "CRVAL2": -15.1543014}
    frame = Frame(cards, [wcs])
    assert "NON_SIDEREAL" in frame.tags
    # Precession from 2021.8 back to J2000 moves this position by ~0.3 deg in RA.
    assert frame.d("wcs_ra") == pytest.approx(324.779, abs=2e-3)
    assert frame.d("wcs_dec") == pytest.approx(-15.252, abs=2e-3)
    sidereal = Frame(NIRI_BASE, [wcs])
    assert sidereal.d("wcs_ra") == pytest.approx(325.07561954)


def test_all_descriptor_names_is_the_union():
    from draconis.instruments import all_descriptor_names

    names = all_descriptor_names()
    assert "lyot_stop" in names and "read_speed_setting" in names and "exposure_time" in names
    assert names == sorted(set(names))
