"""The simulated datasets: file names, roles, exposure times and observing setup.

Each dataset mirrors one seed tutorial's data package (same file names,
counts, exposure times, filters, objects and observation classes).  A
:class:`FrameSpec` describes one raw file; :func:`dataset_frames` lists them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

__all__ = ["FrameSpec", "DatasetSpec", "DATASETS", "dataset_frames"]


@dataclass
class FrameSpec:
    """One raw file to simulate."""

    stem: str
    role: str  # 'science', 'sky', 'dark', 'flat_on', 'flat_off', 'standard'
    group: str  # finer role, e.g. 'dark_5s'
    exptime: float  # header EXPTIME (s)
    obstype: str
    obsclass: str
    object: str
    ut: datetime
    p: float = 0.0  # instrument-frame offsets (arcsec)
    q: float = 0.0
    lamp_e_per_s: float = 0.0  # flat lamp (or dome) signal reaching the array, before the flat pattern
    pa: float = 0.0  # position angle (degrees east of north)
    phu: dict = field(default_factory=dict)  # extra PHU keywords (lamp, frame, ...)
    roi: tuple[int, int, int, int] | None = None  # (x0, y0, nx, ny) 0-based sub-array of every array


@dataclass
class DatasetSpec:
    """Static description of one dataset."""

    name: str
    instrument: str
    target: tuple[float, float]  # RA, Dec (deg)
    target_name: str
    filters: dict  # FILTERn keywords
    sky_e_per_s: float  # mean sky per pixel (e-/s) at the science pointing
    fwhm_arcsec: float  # mean seeing
    bias_e: float
    dark_e_per_s: float  # mean dark current
    default_nframes: int
    sky_offset: tuple[float, float] | None = None  # (p, q) of the offset-to-sky field
    standard: tuple[float, float] | None = None  # RA, Dec of the standard star
    description: str = ""


DATASETS: dict[str, DatasetSpec] = {
    "f2-deep": DatasetSpec(
        "f2-deep", "F2", (4.0912, -30.3845), "Deep field", {"FILTER1": "K-red_G0816", "FILTER2": "Open"},
        1500.0, 0.75, 150.0, 0.4, 18,
        description="F2 K-red deep field, 5 s frames dithered on target; 5 s and 2 s darks; K-red lamp-off flats"),
    "niri-extended": DatasetSpec(
        "niri-extended", "NIRI", (185.4789, 4.4736), "SN2014J host", {"FILTER1": "Kprime_G0206",
                                                                       "FILTER2": "open", "FILTER3": "pupil38_G5207"},
        600.0, 0.6, 200.0, 0.3, 10, sky_offset=(300.0, 300.0), standard=(183.2520, 0.0290),
        description="NIRI extended source with offset to sky, darks, lamp on/off flats, standard FS 17, BPM"),
    "gnirs-keyhole": DatasetSpec(
        "gnirs-keyhole", "GNIRS", (38.0625, 14.2272), "GRB120116A", {"FILTER1": "Open", "FILTER2": "J_G0517"},
        60.0, 0.7, 120.0, 0.2, 20,
        description="GNIRS keyhole imaging of a point source dithered within the keyhole, 60 s darks, J flats"),
    "gsaoi-galaxy": DatasetSpec(
        "gsaoi-galaxy", "GSAOI", (201.3651, -43.0191), "NGC5128", {"FILTER1": "Kshort_G1105", "FILTER2": "Clear"},
        90.0, 0.12, 0.0, 0.02, 16, sky_offset=(-250.0, 300.0), standard=(202.4450, -31.3950),
        description="GSAOI galaxy outskirts with offset to sky, 4 arrays, dome flats, standard 9132 with ROIs"),
}


def _names(prefix: str, first: int, last: int) -> list[str]:
    return [f"{prefix}{n:04d}" for n in range(first, last + 1)]


def _series(stems, start: datetime, exptime: float, overhead: float = 12.0):
    for i, stem in enumerate(stems):
        yield stem, start + timedelta(seconds=i * (exptime + overhead))


def _dither(n: int, step: float, rng: np.random.Generator) -> list[tuple[float, float]]:
    """A dither pattern: a 3x3 grid of ``step`` (arcsec) repeated, plus jitter."""
    grid = [(0, 0), (1, 1), (-1, 1), (-1, -1), (1, -1), (0, 1), (1, 0), (0, -1), (-1, 0)]
    out = []
    for i in range(n):
        gx, gy = grid[i % len(grid)]
        jitter = rng.uniform(-0.2, 0.2, 2) * step if i >= len(grid) else (0.0, 0.0)
        out.append((round(gx * step + float(jitter[0]), 3), round(gy * step + float(jitter[1]), 3)))
    return out


def dataset_frames(name: str, size: int | None, nframes: int | None, seed: int, *,
                   dither: float | None = None) -> list[FrameSpec]:
    """Every raw file of dataset ``name``, in time order per group.

    Parameters
    ----------
    name : str
        A key of :data:`DATASETS`.
    size : int or None
        Array size (None = full); dithers scale with the field.
    nframes : int or None
        Number of science frames (F2, GNIRS) or of on-target + sky frames
        (NIRI, GSAOI); default: the seed's count.
    seed : int
        Seed of the dither jitter.
    dither : float, optional
        Dither step in arcsec (gsaoi-galaxy only; default 5" scaled with the
        array size, at least 1.5"; at small sizes too small to fill the gaps
        between arrays).
    """
    spec = DATASETS[name]
    rng = np.random.default_rng([seed, 999])
    if dither is not None and name != "gsaoi-galaxy":
        raise ValueError(f"a dither step can only be chosen for gsaoi-galaxy, not {name}")
    if name == "gsaoi-galaxy":
        return _gsaoi(spec, size, nframes or spec.default_nframes, rng, dither)
    builder = {"f2-deep": _f2, "niri-extended": _niri, "gnirs-keyhole": _gnirs}[name]
    return builder(spec, size, nframes or spec.default_nframes, rng)


def _f2(spec, size, n, rng):
    frames = []
    full = 2048
    # 15" dithers on the full 6' field, but never under 3.5": F2's associateSky
    # wants skies more than 3" away.
    step = max(15.0 * (size or full) / full, 3.5)
    offsets = _dither(n, step, rng)
    stems = _names("S20200104S", 75, 75 + n - 1)
    for (stem, ut), (p, q) in zip(_series(stems, datetime(2020, 1, 4, 1, 10, 3), 5.0), offsets):
        frames.append(FrameSpec(stem, "science", "science", 5.0, "OBJECT", "science", spec.target_name, ut, p, q))
    darks5 = _names("S20200107S", 49, 55) + _names("S20200111S", 159, 161)
    darks2 = _names("S20200107S", 35, 41) + ["S20200111S0257", "S20200111S0258", "S20200111S0260"]
    for stems_, t, grp in ((darks5, 5.0, "dark_5s"), (darks2, 2.0, "dark_2s")):
        for i, stem in enumerate(stems_):
            ut = datetime(int(stem[1:5]), int(stem[5:7]), int(stem[7:9]), 10, 0, 0) + timedelta(seconds=20 * i)
            frames.append(FrameSpec(stem, "dark", grp, t, "DARK", "dayCal", "Dark", ut,
                                    phu={"FILTER1": "DK_G0807", "FILTER2": "Open", "FRAME": None}))
    for stem, ut in _series(_names("S20200108S", 10, 19), datetime(2020, 1, 8, 9, 0, 0), 2.0):
        frames.append(FrameSpec(stem, "flat_off", "flat", 2.0, "FLAT", "dayCal", "GCALflat", ut,
                                lamp_e_per_s=12000.0,
                                phu={"GCALLAMP": "IRhigh", "GCALSHUT": "CLOSED", "GCALFILT": "ND2.0",
                                     "GCALDIFF": "IR", "FRAME": None}))
    return frames


def _niri(spec, size, n, rng):
    frames = []
    full = 1024
    step = max(10.0 * (size or full) / full, 1.5)
    n_on = (n + 1) // 2
    n_sky = n - n_on
    on = _dither(n_on, step, rng)
    sky = [(spec.sky_offset[0] + p, spec.sky_offset[1] + q) for p, q in _dither(n_sky, step, rng)]
    stems = _names("N20160102S", 270, 270 + n - 1)
    times = dict(_series(stems, datetime(2016, 1, 2, 5, 30, 0), 20.002, 15.0))
    for i, stem in enumerate(stems):
        if i < n_on:
            role, (p, q) = "science", on[i]
        else:
            role, (p, q) = "sky", sky[i - n_on]
        frames.append(FrameSpec(stem, role, role, 20.002, "OBJECT", "science", spec.target_name, times[stem], p, q))
    for stems_, t, grp, day in ((_names("N20160102S", 423, 432), 20.002, "dark_20s", 2),
                                (_names("N20160103S", 463, 472), 1.001, "dark_1s", 3)):
        for stem, ut in _series(stems_, datetime(2016, 1, day, 14, 0, 0), t):
            frames.append(FrameSpec(stem, "dark", grp, t, "DARK", "dayCal", "Dark", ut, phu={"FRAME": None}))
    flat_common = {"GCALLAMP": "IRhigh", "GCALFILT": "ND2.0", "GCALDIFF": "IR", "FRAME": "AZEL_TOPO"}
    for stem, ut in _series(_names("N20160102S", 363, 372), datetime(2016, 1, 2, 15, 0, 0), 10.0):
        frames.append(FrameSpec(stem, "flat_off", "flat_off", 10.0, "FLAT", "dayCal", "GCALflat", ut,
                                lamp_e_per_s=0.0, phu={**flat_common, "GCALSHUT": "CLOSED"}))
    for stem, ut in _series(_names("N20160102S", 373, 382), datetime(2016, 1, 2, 15, 10, 0), 10.0):
        frames.append(FrameSpec(stem, "flat_on", "flat_on", 10.0, "FLAT", "dayCal", "GCALflat", ut,
                                lamp_e_per_s=5000.0, phu={**flat_common, "GCALSHUT": "OPEN"}))
    for (stem, ut), (p, q) in zip(_series(_names("N20160102S", 295, 299), datetime(2016, 1, 2, 7, 0, 0), 1.0),
                                  _dither(5, step, rng)):
        frames.append(FrameSpec(stem, "standard", "standard", 1.0, "OBJECT", "partnerCal", "FS 17", ut, p, q))
    return frames


def _gnirs(spec, size, n, rng):
    from ..instruments.gnirs.lookup import PIXEL_SCALES
    from .keyhole import CIRCLE_RADIUS

    frames = []
    cols = size or 1024
    # Dither within the keyhole's round aperture: on a circle of 60% of its radius.
    radius = CIRCLE_RADIUS * cols * PIXEL_SCALES["ShortBlue"]
    stems = _names("N20120117S", 14, 14 + n - 1)
    for i, (stem, ut) in enumerate(_series(stems, datetime(2012, 1, 17, 3, 12, 0), 60.0, 20.0)):
        angle = 2 * np.pi * i / 5.0
        r = 0.6 * radius if i % 5 else 0.0
        p, q = round(r * np.cos(angle), 3), round(r * np.sin(angle), 3)
        frames.append(FrameSpec(stem, "science", "science", 60.0, "OBJECT", "science", spec.target_name, ut, p, q))
    for stem, ut in _series(_names("N20120102S", 538, 547), datetime(2012, 1, 2, 17, 0, 0), 60.0):
        frames.append(FrameSpec(stem, "dark", "dark_60s", 60.0, "DARK", "dayCal", "Dark", ut,
                                phu={"FRAME": None, "FILTER2": "Dark_G0505"}))
    flat_common = {"GCALLAMP": "IRhigh", "GCALFILT": "ND1.0", "GCALDIFF": "IR", "FRAME": "AZEL_TOPO"}
    for stem, ut in _series(_names("N20120117S", 34, 41), datetime(2012, 1, 17, 4, 0, 0), 5.0):
        frames.append(FrameSpec(stem, "flat_on", "flat_on", 5.0, "FLAT", "partnerCal", "GCALflat", ut,
                                lamp_e_per_s=8000.0, phu={**flat_common, "GCALSHUT": "OPEN"}))
    for stem, ut in _series(_names("N20120117S", 42, 49), datetime(2012, 1, 17, 4, 10, 0), 5.0):
        frames.append(FrameSpec(stem, "flat_off", "flat_off", 5.0, "FLAT", "partnerCal", "GCALflat", ut,
                                lamp_e_per_s=0.0, phu={**flat_common, "GCALSHUT": "CLOSED"}))
    return frames


def _gsaoi(spec, size, n, rng, dither=None):
    frames = []
    full = 2048
    # 5" dithers on the full field, but never under 1.5": GSAOI's associateSky wants skies more than 1" away
    step = max(5.0 * (size or full) / full, 1.5) if dither is None else float(dither)
    n_on = (9 * n + 15) // 16
    on = _dither(n_on, step, rng)
    sky = [(spec.sky_offset[0] + p, spec.sky_offset[1] + q) for p, q in _dither(n - n_on, step, rng)]
    stems = _names("S20170505S", 95, 95 + n - 1)
    for i, (stem, ut) in enumerate(_series(stems, datetime(2017, 5, 5, 2, 40, 0), 60.0, 25.0)):
        role, (p, q) = ("science", on[i]) if i < n_on else ("sky", sky[i - n_on])
        frames.append(FrameSpec(stem, role, role, 60.0, "OBJECT", "science", spec.target_name, ut, p, q))
    dome = {"FRAME": "AZEL_TOPO", "TRKFRAME": "APPT"}
    for stem, ut in _series(_names("S20170505S", 30, 44), datetime(2017, 5, 5, 21, 0, 0), 30.0):
        frames.append(FrameSpec(stem, "flat_on", "flat_on", 30.0, "FLAT", "dayCal", "Domeflat", ut,
                                lamp_e_per_s=1200.0, phu=dome))
    for stem, ut in _series(_names("S20170505S", 60, 74), datetime(2017, 5, 5, 21, 30, 0), 30.0):
        frames.append(FrameSpec(stem, "flat_off", "flat_off", 30.0, "FLAT", "dayCal", "Domeflat OFF", ut,
                                lamp_e_per_s=40.0, phu=dome))
    n_arr = size or full
    roi_n = max(n_arr // 2, 8)
    roi = ((n_arr - roi_n) // 2, (n_arr - roi_n) // 2, roi_n, roi_n)
    for (stem, ut), (p, q) in zip(_series(_names("S20170504S", 114, 117), datetime(2017, 5, 4, 23, 50, 0), 30.0),
                                  _dither(4, step, rng)):
        frames.append(FrameSpec(stem, "standard", "standard", 30.0, "OBJECT", "partnerCal", "9132", ut, p, q,
                                roi=roi))
    return frames
