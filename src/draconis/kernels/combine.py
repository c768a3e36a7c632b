"""Combine N aligned frames pixel by pixel: DQ hierarchy, rejection, combination.

This is the compute-bound heart of stackFrames (and of every sky, dark and
flat stack).  :func:`combine_block` takes one block of the frame cube,
``(N, y, x)``, and returns the combined ``(y, x)`` planes.  It is a pure
NumPy-in/NumPy-out function compiled with numba: it releases the GIL, never
allocates per pixel (one small work buffer per chunk of pixels), and is safe
to call from many threads at once (dask workers do).

Definitions (per output pixel)
------------------------------
*Usable values*: inputs whose transformed value ``sci * scale + zero`` is
finite.  NaN/inf inputs never enter a combination.

*DQ hierarchy* (``apply_dq`` and a DQ cube given): the pixel is formed from
the usable inputs of the best level present, where an input's level is the
first of these whose allowed bits cover all its flags:
0 no flag; 1 only non_linear|saturated (2|4); 2 also cosmic_ray (8);
3 also overlap (32); 4 also bad_pixel (1); 5 also unilluminated (64);
6 anything (no_data 16 and unknown bits).  Without ``apply_dq`` every
usable input is level 0.  The output DQ is the OR of the DQ of the inputs
that entered the final combination; a pixel with no usable input at all is
0 in SCI and VAR, ``n_used`` 0, and its DQ is the OR of every input's DQ.

*minmax*: ``nlow``/``nhigh`` are scaled by ``g / N`` (``g`` usable inputs at
the chosen level) and rounded half up; if that leaves nothing, the larger of
the two (both when equal) is decreased until at least one value remains.

*sigclip*: iterate: centre = median (``mclip``) or mean of the remaining
values, sigma = their standard deviation (ddof=0, about the mean, as
astropy's ``sigma_clip`` with ``stdfunc='std'``); keep ``centre - lsigma*sigma
<= x <= centre + hsigma*sigma``; stop when nothing changes or after
``max_iters`` passes.  *varclip* is the same with sigma replaced by
``sqrt(VAR)`` of each value.  A pass that would reject every value is not
applied.

*Combination*: mean; wtmean ``sum(x/v)/sum(1/v)`` (a plain mean when VAR is
absent or any used VAR is not positive and finite); median (mean of the two
middle values for even n); lmedian (lower middle value).
*Variance*: with VAR: mean ``mean(v)/n``; wtmean ``1/sum(1/v)``;
(l)median ``c(n) * mean(v)/n`` with ``c(n)`` the variance of the median of n
unit Gaussians times n (tabulated to n=40, e.g. 1.35 at 3, 1.19 at 4; pi/2
beyond; the lower median of an even n is that of n-1; after minmax rejection
of as many values at each end, n counts the values before rejection).
Without VAR: ``s**2`` (the sample variance, ddof=1, of the used values) in
place of ``mean(v)``, and 0 when only one value is used.
"""
from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping
from typing import Any

import numba
import numpy as np

from ..errors import ParameterError
from . import _combine_core as core
from ._combine_core import DQ_HIERARCHY

__all__ = [
    "CombineSpec",
    "CombineParameterError",
    "combine_block",
    "median_along_frames",
    "DQ_HIERARCHY",
    "OPERATIONS",
    "REJECT_METHODS",
]

OPERATIONS = ("mean", "wtmean", "median", "lmedian")
REJECT_METHODS = ("none", "minmax", "sigclip", "varclip")

# Pixels handed to one thread at a time: enough to amortise the per-chunk
# buffer allocation, small enough to balance chunks of unequal cost.
_CHUNK = 2048
# Below this many pixels a parallel launch costs more than it saves.
_MIN_PARALLEL_PIXELS = 8192


class CombineParameterError(ParameterError, ValueError):
    """A combine/reject parameter is invalid (also a ValueError for NumPy-style callers)."""


# --------------------------------------------------------------------------- the spec


def _field(default: Any, doc: str, **limits: Any) -> Any:
    """A CombineSpec field: its default, one-line description and valid values (read by showpars and ``-p``)."""
    return dataclasses.field(default=default, metadata={"doc": doc, **limits})


@dataclasses.dataclass(frozen=True)
class CombineSpec:
    """How the values of one pixel in N frames become one value: rejection, then combination.

    This is the one declaration of the combine parameter group: stackFrames,
    stackDarks, stackFlats, makeLampFlat and skyCorrect declare their
    parameters from these fields (types, defaults, descriptions, limits),
    build a spec from their resolved values with :meth:`from_params`, and
    hand it unchanged to :func:`combine_block`.  The field defaults are
    stackFrames'; each primitive may declare other defaults.

    Raises
    ------
    CombineParameterError
        On construction, for an unknown operation or rejection method or a
        threshold or count out of range.
    """

    apply_dq: bool = _field(True, "ignore DQ-flagged pixels when combining")
    operation: str = _field("mean", "combiner: mean | wtmean (inverse-variance) | median | lmedian (lower median)",
                            choices=OPERATIONS)
    reject_method: str = _field("sigclip", "none | minmax | sigclip | varclip", choices=REJECT_METHODS)
    hsigma: float = _field(3.0, "upper clipping threshold (sigma)", low=0.0)
    lsigma: float = _field(3.0, "lower clipping threshold (sigma)", low=0.0)
    mclip: bool = _field(True, "use median (not mean) as clipping centre")
    max_iters: int | None = _field(None, "iteration limit (None = until convergence)", low=1)
    nlow: int = _field(0, "number of lowest values rejected per pixel", low=0)
    nhigh: int = _field(0, "number of highest values rejected per pixel", low=0)

    def __post_init__(self) -> None:
        _check_choice(self.operation, OPERATIONS, "operation")
        _check_choice(self.reject_method, REJECT_METHODS, "reject_method")
        if self.lsigma < 0 or self.hsigma < 0:
            raise CombineParameterError(f"lsigma={self.lsigma}, hsigma={self.hsigma}: clipping thresholds must "
                                        "be >= 0")
        if self.max_iters is not None and self.max_iters < 1:
            raise CombineParameterError(f"max_iters={self.max_iters} must be None or >= 1")
        if self.nlow < 0 or self.nhigh < 0:
            raise CombineParameterError(f"nlow={self.nlow}, nhigh={self.nhigh} must be >= 0")

    @classmethod
    def from_params(cls, values: Mapping[str, Any]) -> CombineSpec:
        """The spec from a primitive's resolved parameters (every field must be among them)."""
        return cls(**{f.name: values[f.name] for f in dataclasses.fields(cls)})

    def for_inputs(self, n: int) -> CombineSpec:
        """The spec made usable with ``n`` inputs: min/max rejection needs ``nlow + nhigh < n``.

        Both counts are lowered together while equal (so the kept values stay
        centred), else the larger one; with nothing left to reject the method
        becomes 'none'.  Returns ``self`` when nothing needs to change.
        """
        if self.reject_method != "minmax" or self.nlow + self.nhigh < n:
            return self
        nlow, nhigh = self.nlow, self.nhigh
        while nlow + nhigh >= n and nlow + nhigh > 0:
            if nlow == nhigh:
                nlow, nhigh = nlow - 1, nhigh - 1
            elif nlow > nhigh:
                nlow -= 1
            else:
                nhigh -= 1
        return dataclasses.replace(self, nlow=nlow, nhigh=nhigh,
                                   reject_method="minmax" if nlow or nhigh else "none")


# --------------------------------------------------------------------------- dispatch

# numba's "workqueue" threading layer aborts the process when two threads
# launch parallel kernels at once; "omp" and "tbb" do not.  Until we know the
# layer is one of the safe ones, only the thread holding this lock runs the
# parallel kernel and the others run the serial one (which releases the GIL,
# so they still run concurrently).
_PARALLEL_LOCK = threading.Lock()


def _layer_is_threadsafe() -> bool:
    try:
        return numba.threading_layer() in ("omp", "tbb")
    except ValueError:  # no parallel kernel has run yet
        return False


def _run(serial, parallel_kernel, npix: int, parallel: bool | None, args: tuple) -> None:
    """Run ``serial(0, npix, *args)`` or ``parallel_kernel(*args, chunk)``, thread-safely."""
    if parallel is None:
        # Off the main thread we are most likely one of a dask worker's task
        # threads: the pool is the parallelism, more threads would oversubscribe.
        parallel = threading.current_thread() is threading.main_thread()
    if not parallel or npix < _MIN_PARALLEL_PIXELS or numba.get_num_threads() == 1:
        serial(0, npix, *args)
    elif _layer_is_threadsafe():
        parallel_kernel(*args, _CHUNK)
    elif _PARALLEL_LOCK.acquire(blocking=False):
        try:
            parallel_kernel(*args, _CHUNK)
        finally:
            _PARALLEL_LOCK.release()
    else:
        serial(0, npix, *args)


_ABSENT_F32 = np.zeros((0, 1), np.float32)
_ABSENT_U16 = np.zeros((0, 1), np.uint16)
_ABSENT_BOOL = np.zeros((0, 1), np.bool_)


def _as_cube(a, dtype, name: str, shape: tuple | None = None) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 3:
        raise CombineParameterError(f"{name} must be a 3-d (frame, y, x) array, got shape {a.shape}")
    if shape is not None and a.shape != shape:
        raise CombineParameterError(f"{name} has shape {a.shape}, expected {shape} like sci")
    return np.ascontiguousarray(a, dtype=dtype)


def _per_frame(values, default: float, n: int, name: str) -> np.ndarray:
    if values is None:
        return np.full(n, default, np.float64)
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.size != n:
        raise CombineParameterError(f"{name} has {arr.size} values, expected one per frame ({n})")
    return np.ascontiguousarray(arr)


def _check_choice(value: str, choices: tuple, name: str) -> int:
    if value not in choices:
        raise CombineParameterError(f"{name}={value!r} is not one of {', '.join(choices)}")
    return choices.index(value)


def _check_counts(spec: CombineSpec, n: int) -> None:
    if spec.reject_method == "minmax" and spec.nlow + spec.nhigh >= n:
        raise CombineParameterError(
            f"minmax rejection of nlow={spec.nlow} + nhigh={spec.nhigh} values leaves nothing of {n} inputs")


# --------------------------------------------------------------------------- public API


def combine_block(
    sci: np.ndarray,
    var: np.ndarray | None = None,
    dq: np.ndarray | None = None,
    spec: CombineSpec = CombineSpec(),
    *,
    zero: np.ndarray | None = None,
    scale: np.ndarray | None = None,
    parallel: bool | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Combine a block of N aligned frames along the frame axis.

    Parameters
    ----------
    sci : ndarray, shape (N, y, x)
        Pixel values (converted to C-contiguous float32 if they are not).
    var, dq : ndarray, shape (N, y, x), optional
        Variance (float32) and data-quality flags (uint16) of the inputs.
    spec : CombineSpec
        Rejection and combination (operation, reject_method, lsigma/hsigma,
        mclip, max_iters, nlow/nhigh, apply_dq); 'varclip' without ``var``
        behaves as 'sigclip'; 'minmax' counts are scaled per pixel by the
        fraction of usable inputs (see the module notes).
    zero, scale : array of N floats, optional
        Per-frame normalisation applied first: ``sci * scale + zero``,
        ``var * scale**2``.
    parallel : bool or None
        Use numba threads inside this call (for blocks of at least 8192
        pixels).  None (default): only when called from the main thread, so
        that dask task threads, which already keep every core busy, run
        serially.  Any setting is thread-safe.

    Returns
    -------
    sci, var : ndarray of float32, shape (y, x)
        Combined values and their variance.
    dq : ndarray of uint16, shape (y, x)
        OR of the DQ of the inputs used at each pixel.
    n_used : ndarray of uint16, shape (y, x)
        Number of values that entered each pixel's final combination.

    Raises
    ------
    CombineParameterError
        (a ParameterError and a ValueError) for bad shapes or
        ``nlow + nhigh >= N`` with 'minmax' (see :meth:`CombineSpec.for_inputs`).

    Notes
    -----
    The exact definitions (DQ levels, rounding of minmax counts, the sigma
    used by sigclip, the variance formulas) are in the module docstring.
    """
    cube = _as_cube(sci, np.float32, "sci")
    n, ny, nx = cube.shape
    if n == 0:
        raise CombineParameterError("combine_block needs at least one input frame")
    _check_counts(spec, n)
    # the numba core takes plain scalars: method names become the core's integer codes here only
    op, rej = OPERATIONS.index(spec.operation), REJECT_METHODS.index(spec.reject_method)
    iters = -1 if spec.max_iters is None else int(spec.max_iters)
    has_var = var is not None
    if rej == core.VARCLIP and not has_var:
        rej = core.SIGCLIP
    var2 = _as_cube(var, np.float32, "var", cube.shape).reshape(n, -1) if has_var else _ABSENT_F32
    dq2 = _as_cube(dq, np.uint16, "dq", cube.shape).reshape(n, -1) if dq is not None else _ABSENT_U16
    npix = ny * nx
    outs = (np.empty(npix, np.float32), np.empty(npix, np.float32),
            np.empty(npix, np.uint16), np.empty(npix, np.uint16))
    args = (cube.reshape(n, -1), var2, dq2, _per_frame(scale, 1.0, n, "scale"),
            _per_frame(zero, 0.0, n, "zero"), bool(spec.apply_dq and dq is not None), op, rej,
            float(spec.lsigma), float(spec.hsigma), bool(spec.mclip), iters, int(spec.nlow), int(spec.nhigh)) + outs
    if npix:
        _run(core.combine_pixels, core.combine_parallel, npix, parallel, args)
    sci_out, var_out, dq_out, n_used = (o.reshape(ny, nx) for o in outs)
    return sci_out, var_out, dq_out, n_used


def median_along_frames(
    sci: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    lower: bool = False,
    fill: float = np.nan,
    parallel: bool | None = None,
) -> np.ndarray:
    """Median of each pixel over the frame axis, ignoring masked and non-finite values.

    Parameters
    ----------
    sci : ndarray, shape (N, y, x)
        Pixel values.
    mask : ndarray of bool, shape (N, y, x), optional
        True where a value must not be used.
    lower : bool
        For an even count return the lower middle value instead of the mean
        of the two middle values.
    fill : float
        Output where no value is usable.
    parallel : bool or None
        As for :func:`combine_block`.

    Returns
    -------
    ndarray of float32, shape (y, x)
    """
    cube = _as_cube(sci, np.float32, "sci")
    n, ny, nx = cube.shape
    mask2 = _as_cube(mask, np.bool_, "mask", cube.shape).reshape(n, -1) if mask is not None else _ABSENT_BOOL
    out = np.empty(ny * nx, np.float32)
    if out.size:
        _run(core.median_pixels, core.median_parallel, out.size, parallel,
             (cube.reshape(n, -1), mask2, bool(lower), float(fill), out))
    return out.reshape(ny, nx)
