"""Sky subtraction of a time-ordered sequence with a sliding window (pure NumPy/numba, no Dask, no I/O).

Each target frame's sky is the combination (stackSkyFrames) of its sky
frames, which for a dithered sequence are the frames within a time window
of it, less a few that are too close on the sky (and the frame itself).
Consecutive targets share all but a few of their skies, so instead of
combining ``k`` frames per target, :func:`window_sky_subtract` walks the
targets of a segment in order and keeps, per pixel, the window's values
sorted: a step inserts the skies entering the window and removes those
leaving it. The cost of a target is then a few insertions per pixel, not a
sort of ``k`` values, and each sky band is read once per segment instead of
once per target.

Normalisation without the target: stackSkyFrames brings every sky ``i`` to
the first sky's level, ``s_i * L0 / L_i`` ("scale") or ``s_i + L0 - L_i``
("zero"). The order of the values does not depend on ``L0``, so the window
keeps ``s_i / L_i`` (or ``s_i - L_i``) and the order statistic is multiplied
by the target's ``L0`` (or ``L0`` added). The result is then matched to the
target and subtracted exactly as :func:`draconis.kernels.sky.subtract_sky_block`
does (the same function is called).

Equal to the direct combine (:func:`draconis.kernels.sky.stack_sky_tile`)
to float32 rounding for mean, median and lower median with no or min/max
rejection, with and without DQ (the same DQ hierarchy: the values of the
best level present are combined), with and without VAR (the same variance
formulas, including the small-n efficiency of the median); targets whose
skies have a level the normalisation cannot use (not positive for "scale",
not finite) are combined directly, by that same function.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from . import _sky_walk as walk
from .combine import CombineParameterError, CombineSpec
from .sky import sky_match, stack_sky_tile, subtract_sky_block

__all__ = ["SkySubtractSpec", "SkyWindows", "window_sky_subtract", "WINDOW_OPERATIONS", "WINDOW_REJECTIONS"]

#: Combiners and rejections the sliding window computes (others: the direct combine).
WINDOW_OPERATIONS = ("mean", "median", "lmedian")
WINDOW_REJECTIONS = ("none", "minmax")
_OPCODE = {"mean": walk.MEAN, "median": walk.MEDIAN, "lmedian": walk.LMEDIAN}
#: Bytes of sky values (SCI, VAR, DQ) copied to one contiguous pass of the walk.
_PASS_BYTES = 32 * 2 ** 20
_ABSENT_F32 = np.zeros((0, 1), np.float32)
_ABSENT_U16 = np.zeros((0, 1), np.uint16)


@dataclass(frozen=True)
class SkySubtractSpec:
    """How skies are combined (stackSkyFrames) and subtracted (subtractSky).

    Attributes
    ----------
    operation : {'mean', 'median', 'lmedian'}
    reject_method : {'none', 'minmax'}
        The rejection counts are per target (:class:`SkyWindows`).
    apply_dq : bool
        Combine the values of the best DQ level present (the DQ hierarchy).
    normalise : {'scale', 'zero', None}
        Skies brought to the first sky's level multiplicatively or additively.
    match : {'scale', 'offset', None}
        The sky matched to the target's level (scale_sky / offset_sky).
    reset : bool
        Add the target's level back after the subtraction (reset_sky).
    with_sky : bool
        Also return each target's sky (SCI, VAR, DQ).
    """

    operation: str = "median"
    reject_method: str = "minmax"
    apply_dq: bool = True
    normalise: str | None = "scale"
    match: str | None = "scale"
    reset: bool = False
    with_sky: bool = False

    def __post_init__(self):
        if self.operation not in WINDOW_OPERATIONS:
            raise CombineParameterError(f"sliding-window sky: operation={self.operation!r} is not one of "
                                        f"{', '.join(WINDOW_OPERATIONS)}")
        if self.reject_method not in WINDOW_REJECTIONS:
            raise CombineParameterError(f"sliding-window sky: reject_method={self.reject_method!r} is not one of "
                                        f"{', '.join(WINDOW_REJECTIONS)}")
        if self.normalise not in ("scale", "zero", None) or self.match not in ("scale", "offset", None):
            raise CombineParameterError(f"sliding-window sky: normalise={self.normalise!r}, match={self.match!r}")


@dataclass(frozen=True)
class SkyWindows:
    """The targets of a segment and their skies, as windows over the segment's time-ordered skies.

    Target ``t``'s skies are frames ``lo[t] .. hi[t]-1`` except
    ``excluded[t]``; ``lo[t]`` must be one of them (its first sky, whose
    level the skies are normalised to). ``nlow``/``nhigh`` are its min/max
    rejection counts, already fitted to its number of skies.
    """

    lo: np.ndarray
    hi: np.ndarray
    excluded: tuple[np.ndarray, ...]
    nlow: np.ndarray
    nhigh: np.ndarray

    def __len__(self) -> int:
        return len(self.lo)

    def skies(self, t: int) -> np.ndarray:
        """Indices of target ``t``'s skies, in order."""
        frames = np.arange(self.lo[t], self.hi[t])
        return frames[~np.isin(frames, self.excluded[t])]

    def check(self, nframes: int) -> None:
        """Raise CombineParameterError unless every window is a valid, non-empty range of the frames."""
        for t in range(len(self)):
            lo, hi, ex = int(self.lo[t]), int(self.hi[t]), np.asarray(self.excluded[t])
            if not 0 <= lo < hi <= nframes:
                raise CombineParameterError(f"target {t}: window {lo}..{hi} outside the {nframes} sky frames")
            if ex.size and (ex.min() <= lo or ex.max() >= hi or np.unique(ex).size != ex.size):
                raise CombineParameterError(f"target {t}: excluded frames {ex.tolist()} must be distinct and "
                                            f"inside its window, after its first sky {lo}")
            if self.nlow[t] < 0 or self.nhigh[t] < 0 or self.nlow[t] + self.nhigh[t] >= hi - lo - ex.size:
                raise CombineParameterError(f"target {t}: nlow={self.nlow[t]}, nhigh={self.nhigh[t]} leave "
                                            f"nothing of {hi - lo - ex.size} skies")


def _normalisation(levels: np.ndarray, mode: str | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per sky: ``(mul, add, usable)`` of the target-free normalised value ``sci * mul + add``."""
    finite = np.isfinite(levels)
    with np.errstate(divide="ignore", invalid="ignore"):
        if mode == "scale":
            usable = finite & (levels > 0)
            return np.where(usable, 1.0 / np.where(usable, levels, 1.0), np.nan), np.zeros_like(levels), usable
        if mode == "zero":
            return np.ones_like(levels), np.where(finite, -levels, np.nan), finite
    return np.ones_like(levels), np.zeros_like(levels), np.ones(levels.shape, bool)


def window_sky_subtract(sky_sci: Sequence[np.ndarray], sky_var: Sequence[np.ndarray] | None,
                        sky_dq: Sequence[np.ndarray] | None, sky_levels: np.ndarray,
                        target_sci: Sequence[np.ndarray], target_var: Sequence[np.ndarray | None],
                        target_dq: Sequence[np.ndarray | None], target_levels: np.ndarray,
                        windows: SkyWindows, spec: SkySubtractSpec,
                        out: tuple[Sequence[np.ndarray], Sequence[np.ndarray], Sequence[np.ndarray]] | None = None
                        ) -> np.ndarray | None:
    """Sky-subtract the targets of a segment, their skies combined with a sliding window.

    Parameters
    ----------
    sky_sci, sky_var, sky_dq
        The ``F`` sky frames' bands, ``(rows, width)`` each, in time order:
        SCI (float32), VAR (None: no sky has VAR) and DQ (uint16, with the
        object-mask bit already OR-ed in; None: no DQ).
    sky_levels
        The ``F`` skies' background levels.
    target_sci, target_var, target_dq
        The ``S`` targets' bands (VAR/DQ entries may be None).
    target_levels
        The ``S`` targets' levels (used by ``spec.match`` and ``spec.reset``).
    windows
        Each target's skies (:class:`SkyWindows`).
    spec
        :class:`SkySubtractSpec`.
    out
        Where to write the targets' SCI, VAR and DQ instead (not with
        ``spec.with_sky``): ``(S, rows, width)`` float32, float32 and uint16
        arrays (or sequences of ``S`` such planes). They may be the target
        arrays themselves (a pixel is read before it is written), sparing
        the memory of a new cube, and views of the skies' planes (targets
        that are skies too): the rows of a pass are written only after
        every sky value of those rows has been used.

    Returns
    -------
    numpy.ndarray or None
        float32 ``(S, 3, rows, width)``: each target's SCI, VAR, DQ after
        the subtraction; ``(S, 6, rows, width)`` with ``spec.with_sky``,
        planes 3-5 being its sky's SCI, VAR, DQ. None when ``out`` is given.

    Raises
    ------
    CombineParameterError
        Inconsistent shapes, windows or counts.
    """
    nf, ns = len(sky_sci), len(windows)
    if nf == 0 or ns == 0 or len(target_sci) != ns:
        raise CombineParameterError(f"window_sky_subtract: {nf} skies and {len(target_sci)} targets for "
                                    f"{ns} windows")
    windows.check(nf)
    ny, nx = np.shape(sky_sci[0])
    levels = np.asarray(sky_levels, dtype=np.float64).reshape(-1)
    mul, add, usable = _normalisation(levels, spec.normalise)
    lo = np.asarray(windows.lo, np.int64)
    hi = np.asarray(windows.hi, np.int64)
    skies = [windows.skies(t) for t in range(ns)]
    kin = np.array([s.size for s in skies], np.int64)
    # targets with a sky the normalisation cannot use are combined directly, as stackSkyFrames does
    direct = np.array([not usable[s].all() for s in skies], bool)
    first = levels[lo]
    if spec.normalise == "scale":
        scale_out, add_out = np.where(direct, 1.0, first), np.zeros(ns)
    elif spec.normalise == "zero":
        scale_out, add_out = np.ones(ns), np.where(direct, 0.0, first)
    else:
        scale_out, add_out = np.ones(ns), np.zeros(ns)
    sky_level = first if spec.normalise else np.array([np.median(levels[s]) for s in skies])
    tlev = np.asarray(target_levels, dtype=np.float64).reshape(-1)
    match = [sky_match(tlev[t], sky_level[t], spec.match) for t in range(ns)]
    xptr = np.zeros(ns + 1, np.int64)
    xptr[1:] = np.cumsum([np.asarray(e).size for e in windows.excluded])
    xidx = np.concatenate([np.sort(np.asarray(e, np.int64).reshape(-1)) for e in windows.excluded]
                          + [np.zeros(0, np.int64)])
    has_var = sky_var is not None
    has_dq = sky_dq is not None
    if out is not None and spec.with_sky:
        raise CombineParameterError("window_sky_subtract: out= cannot hold the skies (with_sky)")
    cube = np.empty((ns, 6 if spec.with_sky else 3, ny, nx), np.float32) if out is None else None
    rows = max(1, min(ny, _PASS_BYTES // max(1, nf * nx * (4 + 4 * has_var + 2 * has_dq))))
    # a pass's buffers are made once and reused: memory written for the first time costs page faults
    size = rows * nx

    def frames(blocks) -> int:  # sky planes given as one (F, rows, width) cube are walked where they are
        return 0 if blocks is None or _is_cube(blocks) else nf
    buffers = [np.empty(n * size, dtype) for n, dtype in ((frames(sky_var), np.float32), (frames(sky_sci), np.float32),
                                                            (frames(sky_dq), np.uint16), (ns, np.float32),
                                                            (ns, np.float32), (ns, np.uint16))]

    def parts(npix: int) -> list[np.ndarray]:  # C-contiguous (frames, npix) views of the buffers
        return [b[:b.size // size * npix].reshape(-1, npix) for b in buffers]

    for r0 in range(0, ny, rows):
        r1 = min(ny, r0 + rows)
        buf_var, buf_sci, buf_dq, sky_s, sky_v, sky_d = parts((r1 - r0) * nx)
        sci = _gather(sky_sci, r0, r1, buf_sci)
        var = _gather(sky_var, r0, r1, buf_var) if sky_var is not None else _ABSENT_F32
        dq = _gather(sky_dq, r0, r1, buf_dq) if sky_dq is not None else _ABSENT_U16
        # every target's sky is written, by the walk or by the direct combine below: no zeroing first
        walk.walk_pixels(sci, var, dq, mul, add, lo, hi, xptr, xidx, kin,
                         np.asarray(windows.nlow, np.int64), np.asarray(windows.nhigh, np.int64), direct,
                         scale_out, add_out, _OPCODE[spec.operation], spec.reject_method == "minmax",
                         bool(spec.apply_dq), sky_s, sky_v, sky_d)
        for t in np.flatnonzero(direct).tolist():
            sky_s[t], sky_v[t], sky_d[t] = _direct(sci, var if has_var else None, dq if has_dq else None,
                                                   levels, skies[t], windows, t, spec)
        for t in range(ns):
            shape = (r1 - r0, nx)
            s, v, d = sky_s[t].reshape(shape), sky_v[t].reshape(shape), sky_d[t].reshape(shape)
            factor, offset = match[t]
            tvar, tdq = target_var[t], target_dq[t]
            planes: np.ndarray | list[np.ndarray] = (cube[t, :3, r0:r1] if cube is not None
                                                      else [o[t][r0:r1] for o in out or ()])
            subtract_sky_block(np.asarray(target_sci[t])[r0:r1], s, v if has_var else None, d,
                               None if tvar is None else np.asarray(tvar)[r0:r1],
                               None if tdq is None else np.asarray(tdq)[r0:r1], factor=factor, offset=offset,
                               reset_level=tlev[t] if spec.reset else None, out=planes)
            if spec.with_sky and cube is not None:
                cube[t, 3, r0:r1], cube[t, 4, r0:r1], cube[t, 5, r0:r1] = s, v, d
    return cube


def _is_cube(blocks) -> bool:
    return isinstance(blocks, np.ndarray) and blocks.ndim == 3


def _gather(blocks: Sequence[np.ndarray], r0: int, r1: int, out: np.ndarray) -> np.ndarray:
    """Rows ``r0:r1`` of every block as an ``(F, pixels)`` array whose rows are contiguous.

    A view of a ``(F, rows, width)`` cube (each frame's rows are contiguous: copying
    them into ``out`` was ~3 % of a window task); else copied into ``out``.
    """
    if _is_cube(blocks):
        return np.asarray(blocks)[:, r0:r1].reshape(len(blocks), -1)
    for i, b in enumerate(blocks):
        out[i] = np.asarray(b)[r0:r1].reshape(-1)
    return out


def _direct(sci, var, dq, levels, skies, windows: SkyWindows, t: int, spec: SkySubtractSpec):
    """Target ``t``'s sky by the direct combine of its skies (flattened pixels)."""
    nlow, nhigh = int(windows.nlow[t]), int(windows.nhigh[t])
    minmax = spec.reject_method == "minmax" and (nlow or nhigh)
    combine = CombineSpec(apply_dq=spec.apply_dq, operation=spec.operation,
                          reject_method="minmax" if minmax else "none", nlow=nlow, nhigh=nhigh)
    cube = stack_sky_tile(sci[skies][:, None], None if var is None else var[skies][:, None],
                          None if dq is None else dq[skies][:, None], levels[skies], combine, mode=spec.normalise)
    return cube[0, 0], cube[1, 0], cube[2, 0].astype(np.uint16)
