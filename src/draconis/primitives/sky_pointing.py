"""Pointing, time and configuration facts about frames, for separateSky and associateSky.

Field centres come from the WCS of the arrays (the mean of the array
centres, so GSAOI's four arrays give the mosaic centre); when a frame has no
celestial WCS, the telescope offsets (arcsec) relative to the target are used.
Results are cached per frame object, since association compares every
science frame with every sky candidate.
"""
from __future__ import annotations

import datetime as dt
import math
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..frame import Frame

_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

#: Descriptors that must be equal for a frame to be a sky of another.
CONFIG_DESCRIPTORS = ("data_section", "detector_roi_setting", "read_mode", "well_depth_setting", "gain_setting",
                      "detector_x_bin", "detector_y_bin", "coadds", "camera", "filter_name", "focal_plane_mask",
                      "disperser")
#: Descriptors compared within a tolerance.
CONFIG_TOLERANCES = {"exposure_time": 0.01, "central_wavelength": 0.001}


def _cached(frame: Frame, name: str, compute):
    entry = _CACHE.setdefault(frame, {})
    if name not in entry:
        entry[name] = compute(frame)
    return entry[name]


def _descriptor(frame: Frame, name: str) -> Any:
    """Descriptor value, or None when it cannot be computed for this frame."""
    try:
        return frame.descriptor(name)
    except Exception:  # noqa: BLE001 - an unavailable descriptor just does not constrain
        return None


def frame_time(frame: Frame) -> dt.datetime:
    """Start of the exposure (ut_datetime)."""
    return _cached(frame, "time", lambda f: f.descriptor("ut_datetime"))


def _wcs_centre(frame: Frame) -> tuple[float, float] | None:
    vectors = []
    for ext in frame.extensions:
        try:
            wcs = ext.wcs
            if not wcs.has_celestial:
                return None
            ny, nx = ext.shape
            ra, dec = wcs.all_pix2world([[(nx - 1) / 2, (ny - 1) / 2]], 0)[0]
        except Exception:  # noqa: BLE001 - no usable WCS
            return None
        vectors.append(_unit(ra, dec))
    if not vectors:
        return None
    v = np.mean(vectors, axis=0)
    return (math.degrees(math.atan2(v[1], v[0])) % 360.0, math.degrees(math.asin(v[2] / np.linalg.norm(v))))


def _unit(ra: float, dec: float) -> np.ndarray:
    r, d = math.radians(ra), math.radians(dec)
    return np.array([math.cos(d) * math.cos(r), math.cos(d) * math.sin(r), math.sin(d)])


def field_centre(frame: Frame) -> tuple[float, float] | None:
    """(RA, Dec) in degrees of the centre of the frame's arrays, or None without a WCS."""
    return _cached(frame, "centre", _wcs_centre)


def target(frame: Frame) -> tuple[float, float] | None:
    """Target (RA, Dec) in degrees from the descriptors, or None."""
    ra, dec = _descriptor(frame, "target_ra"), _descriptor(frame, "target_dec")
    if ra is None or dec is None:
        ra, dec = _descriptor(frame, "ra"), _descriptor(frame, "dec")
    return None if ra is None or dec is None else (float(ra), float(dec))


def separation_arcsec(a: tuple[float, float] | None, b: tuple[float, float] | None) -> float:
    """Angular distance between two (RA, Dec) in arcsec (inf when a position is unknown)."""
    if a is None or b is None:
        return math.inf
    cosang = float(np.clip(np.dot(_unit(*a), _unit(*b)), -1.0, 1.0))
    # For tiny angles use the chord, which stays accurate where acos does not.
    chord = float(np.linalg.norm(_unit(*a) - _unit(*b)))
    angle = 2 * math.asin(min(chord / 2, 1.0)) if chord < 0.1 else math.acos(cosang)
    return math.degrees(angle) * 3600.0


def _tangent(centre: tuple[float, float], origin: tuple[float, float]) -> tuple[float, float]:
    """Gnomonic projection (arcsec) of ``centre`` about ``origin``."""
    ra, dec = map(math.radians, centre)
    ra0, dec0 = map(math.radians, origin)
    cosc = math.sin(dec0) * math.sin(dec) + math.cos(dec0) * math.cos(dec) * math.cos(ra - ra0)
    x = math.cos(dec) * math.sin(ra - ra0) / cosc
    y = (math.cos(dec0) * math.sin(dec) - math.sin(dec0) * math.cos(dec) * math.cos(ra - ra0)) / cosc
    return math.degrees(x) * 3600.0, math.degrees(y) * 3600.0


def pointing_positions(frames: Sequence[Frame]) -> tuple[np.ndarray, np.ndarray]:
    """Field positions (n, 2) in arcsec on a common tangent plane, and the target's position there.

    WCS centres projected about the target when every frame has a WCS;
    otherwise the telescope offsets (whose origin is the target).
    """
    found = [field_centre(f) for f in frames]
    centres = [c for c in found if c is not None]
    if len(centres) == len(found):
        origin = target(frames[0]) or centres[0]
        return np.array([_tangent(c, origin) for c in centres]), np.zeros(2)
    offsets = [(_descriptor(f, "telescope_x_offset"), _descriptor(f, "telescope_y_offset")) for f in frames]
    return np.array([[x or 0.0, y or 0.0] for x, y in offsets], dtype=float), np.zeros(2)


def field_size_arcsec(frame: Frame) -> float:
    """Smaller side (arcsec) of the box covering all the frame's arrays, from the WCS or pixel scale."""
    return _cached(frame, "size", _field_size)


def _field_size(frame: Frame) -> float:
    centre = field_centre(frame)
    if centre is not None:
        points: list[tuple[float, float]] = []
        for ext in frame.extensions:
            ny, nx = ext.shape
            pix = [[-0.5, -0.5], [nx - 0.5, -0.5], [-0.5, ny - 0.5], [nx - 0.5, ny - 0.5]]
            points.extend(_tangent((float(c[0]), float(c[1])), centre) for c in ext.wcs.all_pix2world(pix, 0))
        corners = np.array(points)
        return float(min(np.ptp(corners[:, 0]), np.ptp(corners[:, 1])))
    scale = _descriptor(frame, "pixel_scale") or 1.0
    return float(scale) * min(min(ext.shape) for ext in frame.extensions)


def group_positions(positions: np.ndarray, threshold: float) -> list[np.ndarray]:
    """Single-link groups: positions closer than ``threshold`` (directly or through others) share a group."""
    n = len(positions)
    labels = -np.ones(n, dtype=int)
    current = 0
    for start in range(n):
        if labels[start] >= 0:
            continue
        labels[start] = current
        todo = [start]
        while todo:
            i = todo.pop()
            near = np.hypot(*(positions - positions[i]).T) < threshold
            for j in np.flatnonzero(near & (labels < 0)):
                labels[j] = current
                todo.append(int(j))
        current += 1
    return [np.flatnonzero(labels == g) for g in range(current)]


def config_key(frame: Frame) -> dict[str, Any]:
    """The instrument configuration a sky must share with its science frame."""
    def compute(f: Frame) -> dict[str, Any]:
        key: dict[str, Any] = {"shape": tuple(ext.shape for ext in f.extensions)}
        for name in (*CONFIG_DESCRIPTORS, *CONFIG_TOLERANCES):
            key[name] = _descriptor(f, name)
        return key
    return _cached(frame, "config", compute)


def same_config(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two configuration keys match (tolerances for exposure time and wavelength)."""
    for name, value in a.items():
        other = b.get(name)
        if name in CONFIG_TOLERANCES:
            if value is not None and other is not None and abs(float(value) - float(other)) > CONFIG_TOLERANCES[name]:
                return False
        elif repr(value) != repr(other):
            return False
    return True
