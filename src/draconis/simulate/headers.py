"""FITS headers of simulated raw files, in the keyword formats of real Gemini raw data.

Only the keywords draconis' tags and descriptors read (instruments.md §1-3)
plus a few for realism are written.  Raw extensions carry no EXTNAME, as
real raw files do not.
"""
from __future__ import annotations

from datetime import datetime

import numpy as np
from astropy.io import fits

from .datasets import DatasetSpec, FrameSpec
from .instruments import ArrayModel, InstrumentModel

__all__ = ["primary_header", "extension_header"]

_SITE = {"F2": "Gemini-South", "GSAOI": "Gemini-South", "NIRI": "Gemini-North", "GNIRS": "Gemini-North"}
_PROGRAM = {"F2": "GS-2019B-Q-101", "NIRI": "GN-2015B-Q-12", "GNIRS": "GN-2011B-Q-21", "GSAOI": "GS-2017A-Q-5"}


def _ut(ut: datetime) -> str:
    return ut.strftime("%H:%M:%S.") + f"{ut.microsecond // 100000:d}"


def _offsets(inst: str, p: float, q: float, pa: float) -> dict:
    c, s = np.cos(np.radians(pa)), np.sin(np.radians(pa))
    ra_off, dec_off = p * c + q * s, -p * s + q * c
    if inst == "F2":
        x, y = -p, -q  # F2 descriptors swap and negate: telescope_x_offset = q, _y = p
    else:
        x, y = p, q
    return {"XOFFSET": round(x, 4), "YOFFSET": round(y, 4), "POFFSET": round(p, 4), "QOFFSET": round(q, 4),
            "RAOFFSET": round(float(ra_off), 4), "DECOFFSE": round(float(dec_off), 4)}


def primary_header(spec: DatasetSpec, model: InstrumentModel, frame: FrameSpec, index: int,
                   target: tuple[float, float], airmass: float) -> fits.Header:
    """The PHU of one simulated raw file."""
    inst = spec.instrument
    h = fits.Header()
    h["INSTRUME"] = (inst, "Instrument used to acquire data")
    h["OBJECT"] = (frame.object, "Object Name")
    h["OBSTYPE"] = (frame.obstype, "Observation type")
    h["OBSCLASS"] = (frame.obsclass, "Observe class")
    prog = _PROGRAM[inst]
    obs = {"science": 1, "sky": 1, "standard": 2}.get(frame.role, 9)
    h["GEMPRGID"] = (prog, "Gemini programme ID")
    h["OBSID"] = (f"{prog}-{obs}", "Observation ID / Data label")
    h["DATALAB"] = (f"{prog}-{obs}-{index + 1:03d}", "DHS Data Label")
    h["OBSERVAT"] = (_SITE[inst], "Observatory")
    h["TELESCOP"] = (_SITE[inst], "Telescope where data taken")
    h["EQUINOX"] = (2000.0, "Equinox of coordinate system")
    h["RA"] = (round(target[0], 8), "RA of Target")
    h["DEC"] = (round(target[1], 8), "Declination of Target")
    # Darks (and F2 flats) carry no target frame: they get neither SIDEREAL nor AZEL_TARGET.
    if frame.phu.get("FRAME", "FK5") is not None:
        h["TRKFRAME"] = (frame.phu.get("TRKFRAME", "FK5"), "Tracking co-ordinate")
        if frame.phu.get("FRAME") != "AZEL_TOPO":
            h["DECTRACK"] = (0.0, "Differential tracking rate Dec")
            h["RATRACK"] = (0.0, "Differential tracking rate RA")
        h["FRAME"] = (frame.phu.get("FRAME", "FK5"), "Target coordinate system")
    h["UT"] = (_ut(frame.ut), "UT at start of exposure")
    for key, value in _offsets(inst, frame.p, frame.q, frame.pa).items():
        h[key] = value
    h["PA"] = (frame.pa, "Sky Position Angle at start of exposure")
    h["DATE-OBS"] = (frame.ut.strftime("%Y-%m-%d"), "UT date of observation (YYYY-MM-DD)")
    h["TIME-OBS"] = (_ut(frame.ut), "Time of observation")
    h["AIRMASS"] = (round(airmass, 3), "Mean airmass for the observation")
    h["COADDS"] = (1, "Number of coadds")
    h["EXPTIME"] = (frame.exptime, "Exposure time (s)")
    h["RAWGEMQA"] = ("USABLE", "Gemini Quality Assessment")
    h["RAWPIREQ"] = ("YES", "PI Requirements Met")
    h["SIMULATE"] = (True, "simulated by draconis.simulate")
    filters = dict(spec.filters)
    filters.update({k: v for k, v in frame.phu.items() if k.startswith("FILTER")})
    for key, value in filters.items():
        h[key] = (value, "Filter wheel position")
    for key in ("GCALLAMP", "GCALSHUT", "GCALFILT", "GCALDIFF"):
        if key in frame.phu:
            h[key] = (frame.phu[key], "GCAL setting")
    _INSTRUMENT_PHU[inst](h, model, frame)
    return h


def _f2_phu(h, model, frame):
    h["INPORT"] = (5, "ISS port where F-2 installed")
    h["LNRS"] = (1, "Number of non-destructive read pairs")
    h["READMODE"] = ("Bright", "Detector Readout mode")
    h["GAIN"] = (round(model.arrays[0].gain, 4), "Detector Gain (e/ADU)")
    h["PIXSCALE"] = (model.pixel_scale, "Plate scale in arcsec/pixel")
    h["DECKER"] = ("Open", "Decker Position")
    h["GRISM"] = ("Open", "Grism Wheel Position")
    h["LYOT"] = ("f/16_G5830", "Lyot Wheel Position")
    h["MOSPOS"] = ("Open", "Mos Position")
    h["FILTER"] = (h["FILTER1"], "Effective Filter Position")


def _niri_phu(h, model, frame):
    h["INPORT"] = (1, "Number of ISS port where NIRI installed")
    h["CAMERA"] = ("f6", "NIRI camera (f6|f14|f32)")
    h["FPMASK"] = ("f6-cam_G5208", "Focal plane mask name")
    h["LNRS"] = (1, "Number of non-destructive reads")
    h["NDAVGS"] = (16, "Number of digital averages")
    h["A_VDDUC"] = (-3.5, "VDDUC detector bias voltage")
    h["A_VDET"] = (-2.9, "VDETCOM detector bias voltage")
    h["ARRAYID"] = ("47911", "Array identification")


def _gnirs_phu(h, model, frame):
    h["INPORT"] = (3, "Number of ISS port where GNIRS installed")
    h["ARRAYID"] = (model.arrays[0].array_id, "ID # of array")
    h["DETBIAS"] = (-0.3, "Achieved Detector Bias")
    h["CAMERA"] = ("ShortBlue_G5540", "Camera position")
    h["SLIT"] = ("Acquisition", "slit position")
    h["DECKER"] = ("Acquisition", "decker position")
    h["GRATING"] = ("32/mmSB_G5533", "grating position")
    h["PRISM"] = ("MIR_G5511", "prism position")
    h["ACQMIR"] = ("In", "acquisition mirror position")
    h["LNRS"] = (16, "# of fowler samples")
    h["NDAVGS"] = (16, "# of digital averages")


def _gsaoi_phu(h, model, frame):
    h["INPORT"] = (1, "Number of ISS port where instrument installed")
    h["DETECTOR"] = ("GSAOI", "Detector")
    h["NAMPS"] = (16, "Number of Amplifiers")
    h["READMODE"] = ("FOWLER", "Detector Readout mode")
    h["LNRS"] = (8, "Number of Non-destructive reads")
    h["BUNIT"] = ("ADU", "Units of quantity read from detector array")


_INSTRUMENT_PHU = {"F2": _f2_phu, "NIRI": _niri_phu, "GNIRS": _gnirs_phu, "GSAOI": _gsaoi_phu}


def extension_header(inst: str, array: ArrayModel, pointing: tuple[float, float], pa: float,
                     roi: tuple[int, int, int, int] | None = None) -> fits.Header:
    """Header of one raw pixel extension: WCS about the nominal ``pointing`` and sections.

    ``roi`` (x0, y0, nx, ny) 0-based within the simulated array, or None.
    """
    h = fits.Header()
    (crpix1, crpix2), cd = array.header_wcs(pa)
    x0, y0 = (roi[0], roi[1]) if roi else (0, 0)
    h["CTYPE1"] = ("RA---TAN", "RA---TAN X-axis")
    h["CTYPE2"] = ("DEC--TAN", "DEC--TAN Y-axis")
    h["CRPIX1"] = (float(crpix1) - x0, "Pixel at which reference applies")
    h["CRPIX2"] = (float(crpix2) - y0, "Pixel at which reference applies")
    h["CRVAL1"] = (float(pointing[0]), "Ref pixel value in degrees")
    h["CRVAL2"] = (float(pointing[1]), "Ref pixel value in degrees")
    h["CD1_1"] = (float(cd[0, 0]), "WCS matrix element (1,1) in (deg/pix)")
    h["CD1_2"] = (float(cd[0, 1]), "WCS matrix element (1,2) in (deg/pix)")
    h["CD2_1"] = (float(cd[1, 0]), "WCS matrix element (2,1) in (deg/pix)")
    h["CD2_2"] = (float(cd[1, 1]), "WCS matrix element (2,2) in (deg/pix)")
    if inst == "F2":
        # real F2 raw files describe the (1, N, N) cube's third axis with this one card
        h["CD3_3"] = (1.0, "WCS matrix element (3,3) in (deg/pix)")
    h["RADESYS"] = ("FK5", "R.A./Dec. coordinate system reference")
    h["EQUINOX"] = (2000.0, "Equinox of coordinate system")
    if inst == "GSAOI":
        rows, cols = array.shape
        nx, ny = (roi[2], roi[3]) if roi else (cols, rows)
        ax, ay = array.origin[0] + x0, array.origin[1] + y0
        dx, dy = array.detector_origin
        h["CCDSEC"] = (f"[{ax + 1}:{ax + nx},{ay + 1}:{ay + ny}]", "Array section")
        h["DETSEC"] = (f"[{dx + ax + 1}:{dx + ax + nx},{dy + ay + 1}:{dy + ay + ny}]",
                       "Detector section (wrt mosaic)")
        h["DATASEC"] = (f"[1:{nx},1:{ny}]", "Current datasection of the array")
        h["ARRAYID"] = (array.array_id, "Array serial number")
        h["GAIN"] = (array.gain, "Gain (e-/ADU)")
        h["RDNOISE"] = (array.read_noise, "Read noise (e-)")
    return h
