"""Per-block NumPy kernels of the calibration stage (pure, thread-safe, no I/O).

Each function takes NumPy blocks (a row band of one detector array, or the
whole array where the operation is global, e.g. connected regions) and
returns a new array; inputs are never modified.  Primitives in
``draconis.primitives.prepare``/``calibrate``/``calmaking`` apply them
lazily with ``dask.array.map_blocks``.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from . import nonlinearity as nl

# DQ bit values (data-model.md §3).
BAD_PIXEL, NON_LINEAR, SATURATED, COSMIC_RAY, NO_DATA, OVERLAP, UNILLUMINATED = 1, 2, 4, 8, 16, 32, 64

#: Largest connected region (pixels) below the non-linear level counted as a
#: wrapped saturated core ("hidden saturation").
HIDDEN_SATURATION_MAX_AREA = 10000

__all__ = [
    "BAD_PIXEL", "NON_LINEAR", "SATURATED", "COSMIC_RAY", "NO_DATA", "OVERLAP", "UNILLUMINATED",
    "saturation_dq", "hidden_saturation_dq", "latency_dq", "poisson_var", "linearize_block",
    "divide_var", "divide_sci", "subtract_sci", "sum_var", "scale_block", "threshold_dq", "bpm_block",
]


def saturation_dq(sci: np.ndarray, *, saturation: float | None, non_linear: float | None) -> np.ndarray:
    """DQ bits 4 (``sci >= saturation``) and 2 (``non_linear <= sci < saturation``).

    A missing level (None) sets no bit; a non-linear level at or above the
    saturation level sets no non-linear bit.
    """
    out = np.zeros(sci.shape, np.uint16)
    if saturation is not None:
        out[sci >= saturation] |= SATURATED
    if non_linear is not None and (saturation is None or non_linear < saturation):
        upper = np.inf if saturation is None else saturation
        out[(sci >= non_linear) & (sci < upper)] |= NON_LINEAR
    return out


def hidden_saturation_dq(sci: np.ndarray, *, non_linear: float,
                         max_area: int = HIDDEN_SATURATION_MAX_AREA) -> np.ndarray:
    """Bit 4 on small connected regions below ``non_linear`` (wrapped saturated cores).

    The pixels below the non-linear level are labelled in 4-connected regions;
    every region of at most ``max_area`` pixels is flagged, except the largest
    region (the background), which is never a hidden core even when the array
    itself is small.

    Parameters
    ----------
    sci : ndarray
        One whole detector array (regions cross any row band).
    non_linear : float
        Non-linear level in the units of ``sci``.
    """
    low = sci < non_linear
    labels, n = ndimage.label(low)
    out = np.zeros(sci.shape, np.uint16)
    if n <= 1:
        return out
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    hidden = sizes <= max_area
    hidden[0] = False
    hidden[int(np.argmax(sizes))] = False
    out[hidden[labels]] = SATURATED
    return out


def latency_dq(*earlier_dq: np.ndarray, bits: int = SATURATED) -> np.ndarray:
    """Bit 8 where any earlier frame's DQ has one of ``bits`` (detector persistence)."""
    if not earlier_dq:
        raise ValueError("latency_dq needs at least one earlier DQ block")
    hit = np.zeros(earlier_dq[0].shape, bool)
    for dq in earlier_dq:
        hit |= (dq & bits) != 0
    return np.where(hit, COSMIC_RAY, 0).astype(np.uint16)


def poisson_var(sci: np.ndarray, *, divisor: float) -> np.ndarray:
    """Poisson variance ``max(sci, 0) / divisor`` (divisor: gain if in ADU, times averaged coadds)."""
    return (np.maximum(sci, 0) / divisor).astype(np.float32)


def linearize_block(sci: np.ndarray, *, form: str, to_electrons: float, coeffs: tuple,
                    odd_coeffs: tuple | None = None, row0: int = 0, exposure_scale: float = 1.0) -> np.ndarray:
    """Linearised counts of one block, in the input's units.

    Parameters
    ----------
    sci : ndarray
        Counts in the data units.
    form : {'polynomial', 'irdc'}
        ``x (a1 + a2 x + a3 x^2)`` with ``coeffs=(a1, a2, a3)``, or
        ``x (1 + gamma x + eta x^2)`` with ``coeffs=(gamma, eta)``.
    to_electrons : float
        Factor taking data units to electrons per coadd (gain / coadds summed).
    odd_coeffs : tuple, optional
        (gamma, eta) for odd detector rows (row-dependent IRDC form).
    row0 : int
        Detector row of the block's first row (parity of the rows).
    exposure_scale : float
        Factor applied after linearisation (IRDC: ``t / (t + time_delta)``).
    """
    x = sci.astype(np.float64) * to_electrons
    if form == "polynomial":
        lin = nl.linearize_polynomial(x, tuple(coeffs))
    elif odd_coeffs is None:
        lin = nl.linearize_irdc(x, *coeffs)
    else:
        even, odd = (coeffs, odd_coeffs) if row0 % 2 == 0 else (odd_coeffs, coeffs)
        lin = nl.linearize_irdc_rows(x, even, odd)
    return (lin / to_electrons * exposure_scale).astype(np.float32)


def subtract_sci(sci: np.ndarray, cal: np.ndarray) -> np.ndarray:
    """``sci - cal`` in float32 (darkCorrect: the dark is not scaled)."""
    return (np.asarray(sci, np.float32) - np.asarray(cal, np.float32)).astype(np.float32, copy=False)


def sum_var(var: np.ndarray, cal_var: np.ndarray | None = None) -> np.ndarray:
    """Variance of a difference: ``var + cal_var`` in float32 (an absent ``cal_var`` counts as 0)."""
    out = np.asarray(var, np.float32)
    return (out if cal_var is None else out + np.asarray(cal_var, np.float32)).astype(np.float32, copy=False)


def scale_block(values: np.ndarray, *, factor: float) -> np.ndarray:
    """``values * factor`` in float32 (ADUToElectrons: SCI times the gain, VAR times its square)."""
    return (np.asarray(values, np.float32) * np.float32(factor)).astype(np.float32, copy=False)


def divide_var(sci: np.ndarray, var: np.ndarray, flat: np.ndarray, flat_var: np.ndarray) -> np.ndarray:
    """Variance of ``sci / flat``: ``(var + (sci/flat)^2 flat_var) / flat^2`` (0 where flat is 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = sci / flat
        out = (var + ratio * ratio * flat_var) / (flat * flat)
    return np.where(flat == 0, 0, out).astype(np.float32)


def divide_sci(sci: np.ndarray, flat: np.ndarray) -> np.ndarray:
    """``sci / flat`` with 0 where the flat is 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = sci / flat
    return np.where(flat == 0, 0, out).astype(np.float32)


def threshold_dq(sci: np.ndarray, dq: np.ndarray, *, lower: float, upper: float) -> np.ndarray:
    """DQ with bit 64 added where ``sci < lower`` or ``sci > upper`` and not already bad_pixel."""
    out = (sci < lower) | (sci > upper)
    out &= (dq & BAD_PIXEL) == 0
    return (dq | np.where(out, UNILLUMINATED, 0)).astype(np.uint16)


def bpm_block(flat: np.ndarray | None, flat_dq: np.ndarray | None, dark: np.ndarray | None, *,
              flat_lo: float | None, flat_hi: float | None, dark_lo: float | None, dark_hi: float | None,
              keep_unilluminated: bool) -> np.ndarray:
    """Bad pixel mask (int16: 1 bad, +64 unilluminated) from a normalised flat and a dark.

    Flat pixels flagged unilluminated (64) are not judged against the flat
    thresholds: they are outside the illuminated field, not bad; with
    ``keep_unilluminated`` they carry 64 into the mask.
    """
    reference = flat if flat is not None else dark
    if reference is None:
        raise ValueError("bpm_block needs a flat, a dark or both")
    shape = reference.shape
    bad = np.zeros(shape, bool)
    unillum = np.zeros(shape, bool) if flat_dq is None else (flat_dq & UNILLUMINATED) != 0
    if flat is not None:
        if flat_lo is not None:
            bad |= (flat < flat_lo) & ~unillum
        if flat_hi is not None:
            bad |= (flat > flat_hi) & ~unillum
    if dark is not None:
        if dark_lo is not None:
            bad |= dark < dark_lo
        if dark_hi is not None:
            bad |= dark > dark_hi
    out = bad.astype(np.int16)
    if keep_unilluminated:
        out |= np.where(unillum, UNILLUMINATED, 0).astype(np.int16)
    return out
