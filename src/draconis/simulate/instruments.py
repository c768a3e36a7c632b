"""Per-instrument detector models of the simulator, built from draconis' lookups.

Each :class:`ArrayModel` holds what the simulator needs for one array of one
instrument configuration: shape, geometry (pixel <-> sky), gain, read noise,
saturation level and the non-linearity to put in (the inverse of the formula
the pipeline corrects with).  Numbers come from
``draconis.instruments.<inst>.lookup`` so simulator and pipeline agree.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..instruments.f2 import lookup as f2
from ..instruments.gnirs import lookup as gnirs
from ..instruments.gsaoi import lookup as gsaoi
from ..instruments.niri import lookup as niri
from ..kernels import nonlinearity as nl
from .geometry import DistortedArray, LinearArray
from .keyhole import keyhole_centre

__all__ = ["ArrayModel", "InstrumentModel", "instrument_model"]


@dataclass
class ArrayModel:
    """One simulated array."""

    shape: tuple[int, int]  # (rows, cols) of the written array
    geometry: LinearArray | DistortedArray
    gain: float  # e-/ADU
    read_noise: float  # e-
    saturation_adu: float
    #: linear e- -> raw e- (inverse of the pipeline's correction), given exposure time; None = linear
    delinearize: Callable[[np.ndarray], np.ndarray] | None
    #: seconds the IRDC correction takes off again (t / (t + time_delta)); 0 for polynomial forms
    time_delta: float = 0.0
    array_id: str = ""
    origin: tuple[int, int] = (0, 0)  # 0-based (x, y) of the written array inside the full array
    detector_origin: tuple[int, int] = (0, 0)  # 0-based (x, y) of the full array on the mosaic

    def header_wcs(self, pa: float):
        """(CRPIX, CD deg/pixel) written in the header."""
        if isinstance(self.geometry, DistortedArray):
            return self.geometry.header_wcs(pa, self.shape)
        return self.geometry.header_wcs(pa)


@dataclass
class InstrumentModel:
    """What the simulator needs to know of one instrument."""

    name: str
    arrays: list[ArrayModel]
    pixel_scale: float


def _delinearize_irdc(coeffs, y: np.ndarray) -> np.ndarray:
    """Raw counts of linear counts ``y`` under IRDC coefficients ``coeffs`` (gamma, eta)."""
    return nl.delinearize_irdc(y, coeffs.gamma, coeffs.eta)


def _tabulated(inverse: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    """``inverse`` evaluated through a dense table and linear interpolation.

    The inverses solve a cubic per pixel by Newton steps (seconds for a
    2048 x 2048 frame); the curves are smooth, so interpolating 8193 exact
    values is accurate to ~1e-4 e- and ~50 times faster.
    """
    def apply(y):
        y = np.asarray(y, dtype=np.float64)
        lo, hi = min(float(y.min()), 0.0), max(float(y.max()), 1.0)
        n = 8192
        step = (hi - lo) / n
        table = inverse(lo + step * np.arange(n + 2))
        # Uniform grid: index arithmetic instead of np.interp's binary search.
        pos = (y - lo) / step
        i = np.minimum(pos.astype(np.int64), n)
        frac = pos - i
        return table[i] + frac * (table[i + 1] - table[i])
    return apply


def _poly(coeffs):
    return _tabulated(lambda y: nl.delinearize_polynomial(y, coeffs))


def _irdc_rows(even: tuple[float, float], odd: tuple[float, float]):
    inv_even = _tabulated(lambda y: nl.delinearize_irdc(y, *even))
    inv_odd = _tabulated(lambda y: nl.delinearize_irdc(y, *odd))

    def apply(y):
        y = np.asarray(y, dtype=np.float64)
        out = np.empty_like(y)
        out[0::2] = inv_even(y[0::2])  # rows [0::2] use the 'even' coefficients, as the pipeline
        out[1::2] = inv_odd(y[1::2])
        return out
    return apply


def instrument_model(inst: str, size: int | None, *, read_mode: str | None = None) -> InstrumentModel:
    """The detector model of ``inst`` ('F2', 'NIRI', 'GNIRS', 'GSAOI') at array size ``size``.

    ``size`` None means the full-size arrays.
    """
    if inst == "F2":
        n = size or 2048
        lnrs = read_mode or "1"
        s = f2.DEFAULT_PIXEL_SCALE
        # Real F2 headers at PA=0: RA runs along +y, Dec along +x.
        geom = LinearArray(np.array([[0.0, s], [s, 0.0]]), ((n + 1) / 2.0, (n + 1) / 2.0))
        arr = ArrayModel((n, n), geom, f2.gain(lnrs), f2.read_noise(lnrs), f2.saturation_level(lnrs),
                         _poly(f2.NONLINEARITY_COEFFS))
        return InstrumentModel("F2", [arr], s)
    if inst == "NIRI":
        n = size or niri.FULL_FRAME
        mode = read_mode or "Medium Background"
        s = niri.PIXEL_SCALES["f6"]
        # NIRI on the bottom port (INPORT 1, as the simulated headers say) without AO is mirrored: real
        # headers at PA=0 have CD1_1 > 0 (RA along +x), which is why detector_x_offset flips sign there.
        geom = LinearArray(np.array([[s, 0.0], [0.0, s]]), ((n + 1) / 2.0, (n + 1) / 2.0))
        irdc = niri.nonlinearity(mode, n, "Shallow")
        delin = _tabulated(functools.partial(_delinearize_irdc, irdc)) if irdc else None
        arr = ArrayModel((n, n), geom, niri.GAIN, niri.read_noise(mode), niri.saturation_level("Shallow"),
                         delin, irdc.time_delta if irdc else 0.0)
        return InstrumentModel("NIRI", [arr], s)
    if inst == "GNIRS":
        cols = size or 1024
        rows = cols - 2
        mode = read_mode or "Faint Objects"
        array_name = "SN7638228.1.2"
        cfg = gnirs.detector_config(array_name, mode, "Shallow")
        coeffs = gnirs.nonlinearity(array_name, mode, "Shallow")
        s = gnirs.PIXEL_SCALES["ShortBlue"]
        r0, c0 = keyhole_centre((rows, cols))
        # Real GNIRS headers (side port, INPORT 3) at PA=0: RA along +y, Dec along -x.
        geom = LinearArray(np.array([[0.0, s], [-s, 0.0]]), (c0 + 1.0, r0 + 1.0))
        delin = None
        if coeffs is not None:
            even = (coeffs.even.gamma, coeffs.even.eta)
            odd = (coeffs.odd.gamma, coeffs.odd.eta)
            delin = _irdc_rows(even, odd)
        arr = ArrayModel((rows, cols), geom, cfg.gain, gnirs.read_noise(cfg), gnirs.saturation_level(cfg),
                         delin, coeffs.time_delta if coeffs else 0.0, array_id=array_name)
        return InstrumentModel("GNIRS", [arr], s)
    if inst == "GSAOI":
        n = size or gsaoi.ARRAY_SIZE
        speed = read_mode or "Faint Objects"
        full = gsaoi.ARRAY_SIZE
        arrays = []
        for index, array_id in enumerate(gsaoi.ARRAY_IDS):
            det = gsaoi.ARRAY_DETECTOR_ORIGINS[array_id]
            # Keep the corner of each array nearest the mosaic centre so that
            # the four cropped arrays still surround the pointing.
            ox = 0 if det[0] > 0 else full - n
            oy = 0 if det[1] > 0 else full - n
            props = gsaoi.array_properties(speed, array_id)
            arrays.append(ArrayModel((n, n), DistortedArray(index, (ox, oy)), props.gain,
                                     gsaoi.read_noise(props), gsaoi.saturation_level(props),
                                     _poly(props.coeffs), array_id=array_id, origin=(ox, oy),
                                     detector_origin=det))
        return InstrumentModel("GSAOI", arrays, gsaoi.PIXEL_SCALE)
    raise ValueError(f"unknown instrument {inst!r}")
