"""Detector non-linearity formulas (instruments.md §5).

Kernels shared by the nonlinearityCorrect primitive (forward: raw -> linear)
and the simulator (inverse: linear -> raw).

All functions work on counts in **electrons per coadd** and accept NumPy
arrays or scalars; they are pure and thread-safe.

* F2, GSAOI (polynomial): ``x_lin = x * (a1 + a2*x + a3*x**2)``
* NIRI, GNIRS (IRDC form): ``x_lin = x * (1 + gamma*x + eta*x**2)``, then the
  data are scaled by ``t / (t + time_delta)`` (t = raw exposure time per coadd);
  GNIRS uses separate (gamma, eta) for even and odd rows.
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "linearize_polynomial",
    "linearize_irdc",
    "delinearize_polynomial",
    "delinearize_irdc",
    "linearize_irdc_rows",
    "delinearize_irdc_rows",
    "exposure_scale",
]

_NEWTON_ITERATIONS = 30


def linearize_polynomial(x, coeffs: tuple[float, float, float]):
    """Polynomial correction ``x * (a1 + a2*x + a3*x**2)`` (F2, GSAOI)."""
    a1, a2, a3 = coeffs
    x = np.asarray(x, dtype=np.float64)
    return x * (a1 + x * (a2 + a3 * x))


def linearize_irdc(x, gamma: float, eta: float):
    """IRDC correction ``x * (1 + gamma*x + eta*x**2)`` (NIRI, GNIRS)."""
    return linearize_polynomial(x, (1.0, gamma, eta))


def _invert(y, coeffs: tuple[float, float, float]):
    # Newton's method on f(x) = a1 x + a2 x^2 + a3 x^3 - y, started at y / a1.
    a1, a2, a3 = coeffs
    y = np.asarray(y, dtype=np.float64)
    x = y / a1
    for _ in range(_NEWTON_ITERATIONS):
        f = x * (a1 + x * (a2 + a3 * x)) - y
        df = a1 + x * (2.0 * a2 + 3.0 * a3 * x)
        step = f / np.where(df == 0, 1.0, df)
        x = x - step
        if np.all(np.abs(step) <= 1e-9 * np.maximum(np.abs(x), 1.0)):
            break
    return x


def delinearize_polynomial(y, coeffs: tuple[float, float, float]):
    """Inverse of :func:`linearize_polynomial`: raw counts giving linear counts ``y``."""
    return _invert(y, coeffs)


def delinearize_irdc(y, gamma: float, eta: float):
    """Inverse of :func:`linearize_irdc`."""
    return _invert(y, (1.0, gamma, eta))


def linearize_irdc_rows(x, even: tuple[float, float], odd: tuple[float, float]):
    """IRDC correction of a 2-D array with (gamma, eta) per row parity (GNIRS).

    ``even`` applies to numpy rows ``[0::2]``, ``odd`` to rows ``[1::2]``.
    """
    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    out[0::2] = linearize_irdc(x[0::2], *even)
    out[1::2] = linearize_irdc(x[1::2], *odd)
    return out


def delinearize_irdc_rows(y, even: tuple[float, float], odd: tuple[float, float]):
    """Inverse of :func:`linearize_irdc_rows`."""
    y = np.asarray(y, dtype=np.float64)
    out = np.empty_like(y)
    out[0::2] = delinearize_irdc(y[0::2], *even)
    out[1::2] = delinearize_irdc(y[1::2], *odd)
    return out


def exposure_scale(exptime_per_coadd: float, time_delta: float) -> float:
    """Factor ``t / (t + time_delta)`` applied after the IRDC correction."""
    return exptime_per_coadd / (exptime_per_coadd + time_delta)
