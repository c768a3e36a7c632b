"""numba code behind :func:`draconis.kernels.sky_window.window_sky_subtract`.

The skies of a segment arrive as ``(F, P)`` blocks (frame, pixel) in time
order.  Pixels are processed in tiles: a tile is first copied pixel-major
(normalised value, DQ level, variance, DQ of every sky).  Then, per pixel:

1. The segment's ``F`` values are ranked once by the key ``(DQ level,
   normalised value, frame)``: ``rank[f]`` and its inverse ``frame[r]``,
   shared by the pixel's ``S`` targets.  numpy's vectorised sort orders a
   tile's values (~0.8 us for 122 values, where counting the smaller
   values in numba took ~2 us); the order is split by level and equal
   values put in frame order here.
2. The window is a bitset over ranks (``ceil(F/64)`` words).  Walking the
   targets in order, a frame entering the window sets its rank's bit and a
   frame leaving clears it: O(1) per move, where a sorted array moves the
   values between two places.
3. A target's kept values are the bits of the best DQ level present (one
   contiguous range of ranks, since the level leads the key) less its
   excluded frames (itself, skies too close) and the min/max-rejected ends
   (the lowest and highest set bits).  The median is the k-th set bit,
   found with population counts and a bit deposit (BMI2) where the CPU
   has one.

Per-level running sums of the values and variances make a query
O(excluded + rejected): the kept sum is the level's sum less the excluded
and rejected values.  The DQ OR of a pixel whose best level is flagged
comes the same way, from per-level counts of each DQ bit.  Where running
sums are not exact enough or not enough (the sample variance when there is
no VAR, a non-finite VAR) the kept bits are scanned.  The definitions (DQ
levels, minmax counts, median variance) are those of
:mod:`draconis.kernels.combine`, through the same numba helpers.

Measured choices: loops index with unsigned integers where the compiler
should vectorise, since numba's wrap-around of negative indices turns
vectorised loads into gathers.
"""
from __future__ import annotations

import math

import numba
import numpy as np
from llvmlite import binding as llvm
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

from ._combine_core import LMEDIAN, MEAN, MEDIAN, _dq_level, median_variance_factor, minmax_range

_NO_LEVEL = 7
#: Pixels per tile: the tile's pixel-major copy (19 bytes a value) and its order (8 bytes a value) ...
_TILE_PIXELS = 128
#: ... with at most this many bytes in its largest array (float64 values, int64 order). Dask's workers set
#: glibc's trim threshold, which fixes its mmap threshold at 128 KiB: every larger array is new memory
#: from the system, and the order numpy allocates per tile then cost a page fault every 4 KiB (1.4 M
#: faults in a pass over 156 skies; the walk took 56.0 CPU-s with them, 52.4 without).
_TILE_BYTES = 120 * 1024
_ONE = np.uint64(1)
_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)
__all__ = ["walk_pixels", "walk_tile", "load_tile", "window_moves", "MEAN", "MEDIAN", "LMEDIAN"]


@intrinsic
def _popcount(typingctx, word):
    """Set bits of a uint64 (llvm.ctpop), as int64."""
    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return types.int64(types.uint64), codegen


@intrinsic
def _lowest_bit(typingctx, word):
    """Index of the lowest set bit of a non-zero uint64 (llvm.cttz)."""
    def codegen(context, builder, signature, args):
        return builder.cttz(args[0], ir.Constant(ir.IntType(1), 1))

    return types.int64(types.uint64), codegen


@intrinsic
def _leading_zeros(typingctx, word):
    """Zero bits above the highest set bit of a non-zero uint64 (llvm.ctlz)."""
    def codegen(context, builder, signature, args):
        return builder.ctlz(args[0], ir.Constant(ir.IntType(1), 1))

    return types.int64(types.uint64), codegen


@intrinsic
def _deposit(typingctx, source, mask):
    """BMI2's parallel bit deposit (llvm.x86.bmi.pdep.64): the low bits of ``source`` into ``mask``'s set bits."""
    def codegen(context, builder, signature, args):
        i64 = ir.IntType(64)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(i64, [i64, i64]),
                                            "llvm.x86.bmi.pdep.64")
        return builder.call(fn, args)

    return types.uint64(types.uint64, types.uint64), codegen


@numba.njit(nogil=True, cache=True, inline="always")
def _select_deposit(word, k):
    """Index of the ``k``-th (from 0) set bit of ``word``, which has more than ``k``: one bit deposit."""
    return _lowest_bit(_deposit(_ONE << np.uint64(k), word))


@numba.njit(nogil=True, cache=True, inline="always")
def _select_halving(word, k):
    """Index of the ``k``-th (from 0) set bit of ``word``, which has more than ``k``: six halvings."""
    pos = np.int64(0)
    w = word
    for half in (32, 16, 8, 4, 2, 1):
        low = _popcount(w & ((_ONE << np.uint64(half)) - _ONE))
        if k >= low:
            k -= low
            w >>= np.uint64(half)
            pos += half
    return pos


def _target_has_bmi2() -> bool:
    """Whether numba compiles for a CPU with BMI2 (the host, unless NUMBA_CPU_NAME names a portable target)."""
    config = numba.core.config  # set from the environment when numba is imported
    if getattr(config, "CPU_NAME", None):
        return "+bmi2" in (getattr(config, "CPU_FEATURES", None) or "")
    return bool(llvm.get_host_cpu_features().get("bmi2", False))


#: The median is the k-th kept bit; a bit deposit finds it in a few cycles (measured 11 % of the walk).
_select = _select_deposit if _target_has_bmi2() else _select_halving


@numba.njit(nogil=True, cache=True)
def load_tile(sci, var, dq, mul, add, p0, t, use_levels, ty, tl, tv, td):
    """Pixels ``p0..p0+t`` of every sky, pixel-major: normalised value, DQ level (7: not usable), variance, DQ.

    Done once per tile and read by every target of the walk, so a pixel's
    walk reads one contiguous row instead of one cache line per sky.
    """
    has_var = var.shape[0] > 0
    has_dq = dq.shape[0] > 0
    # frame by frame: each sky's pixels are read in order (its row of the band); writing the tile
    # row by row instead (pixel-major, reading one value of every sky per pixel) was 2x slower on
    # the pass's real layout, 156 skies of 128 x 2048 (1f76079)
    for f in range(sci.shape[0]):
        m = mul[f]
        a = add[f]
        m2 = m * m
        for k in range(t):
            y = np.float64(sci[f, p0 + k]) * m + a
            d = np.int64(dq[f, p0 + k]) if has_dq else 0
            ty[k, f] = y
            if not math.isfinite(y):
                tl[k, f] = _NO_LEVEL
            elif use_levels and has_dq:
                tl[k, f] = _dq_level(d)
            else:
                tl[k, f] = 0
            tv[k, f] = np.float64(var[f, p0 + k]) * m2 if has_var else 0.0
            td[k, f] = d


@numba.njit(nogil=True, cache=True)
def window_moves(lo, hi, skip):
    """Frames leaving and entering the window at each target: ``(lptr, lidx, eptr, eidx)``."""
    ns = lo.shape[0]
    lptr = np.zeros(ns + 1, np.int64)
    eptr = np.zeros(ns + 1, np.int64)
    total = np.int64(0)
    for t in range(ns):
        total += hi[t] - lo[t]
    lidx = np.empty(total, np.int64)
    eidx = np.empty(total, np.int64)
    cur_lo = 0
    cur_hi = 0
    nl = 0
    ne = 0
    for t in range(ns):
        if not skip[t]:
            for f in range(cur_lo, cur_hi):
                if f < lo[t] or f >= hi[t]:
                    lidx[nl] = f
                    nl += 1
            for f in range(lo[t], hi[t]):
                if f < cur_lo or f >= cur_hi:
                    eidx[ne] = f
                    ne += 1
            cur_lo = lo[t]
            cur_hi = hi[t]
        lptr[t + 1] = nl
        eptr[t + 1] = ne
    return lptr, lidx, eptr, eidx


@numba.njit(nogil=True, cache=True)
def _rank_pixel(ty_r, tl_r, order_r, nf, lstart, ends, rank, frame):
    """Rank one pixel's ``nf`` values by ``(level, value, frame)``; ``lstart[l]``: first rank of level ``l``.

    ``order_r`` is the values' order (numpy's argsort); splitting it by level,
    in that order, gives the key's order but for equal values, which are then
    put in frame order. Values that are not usable (level 7) come last and
    never enter a window.
    """
    for level in range(_NO_LEVEL + 2):
        lstart[level] = 0
    for f in range(nf):
        lstart[tl_r[f] + 1] += 1
    for level in range(_NO_LEVEL + 1):
        lstart[level + 1] += lstart[level]
        ends[level] = lstart[level]
    for j in range(nf):
        f = order_r[j]
        level = tl_r[f]
        frame[ends[level]] = f
        ends[level] += 1
    for i in range(1, lstart[_NO_LEVEL]):  # equal values of a level (rare): frame order, as a stable sort
        f = frame[i]
        y = ty_r[f]
        k = i
        while k > 0 and ty_r[frame[k - 1]] == y and tl_r[frame[k - 1]] == tl_r[f] and frame[k - 1] > f:
            frame[k] = frame[k - 1]
            k -= 1
        frame[k] = f
    for i in range(nf):
        rank[frame[i]] = i


@numba.njit(nogil=True, cache=True)
def walk_tile(ty, tl, tv, td, order, p0, t_pix, has_var, has_dq, lo, hi, xptr, xidx, kin, nlow, nhigh, skip,
              moves, scale_out, add_out, op, use_minmax, use_levels, out_s, out_v, out_d):
    """Sky values of every target at pixels ``p0 .. p0 + t_pix`` from their pixel-major copy (:func:`load_tile`).

    ``order`` is each pixel's frames in order of value (``np.argsort(ty)``);
    ``moves`` the frames leaving and entering the window at each target
    (:func:`window_moves`); the other arguments are those of
    :func:`walk_pixels`.

    Notes
    -----
    The step and the query are written out here rather than in helper
    functions: numba's inlining re-binds every array argument with an
    atomic reference-count pair that its pruning cannot remove around
    loops, which made a query ~12x slower (measured 200 ns against 17 ns).
    Helpers of the hot path take scalars only. The excluded and rejected
    frames' updates are written out in each loop for the same reason:
    collecting those frames in a scratch array and updating the sums in
    one loop was ~6 % slower on the synthetic walk, and one loop over
    signed moves (leaving and entering) slower still.
    """
    nf = ty.shape[1]
    ns = lo.shape[0]
    nw = (nf + 63) // 64
    lptr, lidx, eptr, eidx = moves
    # one pixel: the ranks of its values, the window as a bitset over ranks, per-level counts and running sums
    rank = np.empty(nf, np.int64)
    frame = np.empty(nf, np.int64)
    lstart = np.zeros(_NO_LEVEL + 2, np.int64)
    ends = np.zeros(_NO_LEVEL + 1, np.int64)
    window = np.zeros(nw, np.uint64)
    kept = np.zeros(nw, np.uint64)
    lcnt = np.zeros(8, np.int64)
    lbad = np.zeros(8, np.int64)
    lsy = np.zeros(8, np.float64)
    lsv = np.zeros(8, np.float64)
    # per level, how many of the window's values carry each DQ bit: the DQ OR of a flagged pixel's kept
    # values without scanning them (an unilluminated region is flagged in every frame: ~20 % of F2 pixels)
    lbits = np.zeros((8, 16), np.int64)
    qbits = np.zeros(16, np.int64)
    exl = np.zeros(8, np.int64)
    lower = op == LMEDIAN
    for r in range(t_pix):
        p = p0 + r
        _rank_pixel(ty[r], tl[r], order[r], nf, lstart, ends, rank, frame)
        for w in range(nw):
            window[w] = 0
        for level in range(8):
            lcnt[level] = 0
            lbad[level] = 0
            lsy[level] = 0.0
            lsv[level] = 0.0
            for b in range(16):
                lbits[level, b] = 0
        for t in range(ns):
            if skip[t]:
                continue
            # ---- move the window: clear the bits of the frames leaving, set those of the frames entering
            for i in range(lptr[t], lptr[t + 1]):
                f = lidx[i]
                level = tl[r, f]
                if level == _NO_LEVEL:
                    continue
                k = rank[f]
                window[k >> 6] &= ~(_ONE << np.uint64(k & 63))
                lcnt[level] -= 1
                lsy[level] -= ty[r, f]
                v = tv[r, f]
                if math.isfinite(v):
                    lsv[level] -= v
                else:
                    lbad[level] -= 1
                dqv = np.int64(td[r, f])
                while dqv != 0:
                    bit = _lowest_bit(np.uint64(dqv))
                    lbits[level, bit] -= 1
                    dqv &= dqv - 1
            for i in range(eptr[t], eptr[t + 1]):
                f = eidx[i]
                level = tl[r, f]
                if level == _NO_LEVEL:
                    continue
                k = rank[f]
                window[k >> 6] |= _ONE << np.uint64(k & 63)
                lcnt[level] += 1
                lsy[level] += ty[r, f]
                v = tv[r, f]
                if math.isfinite(v):
                    lsv[level] += v
                else:
                    lbad[level] += 1
                dqv = np.int64(td[r, f])
                while dqv != 0:
                    bit = _lowest_bit(np.uint64(dqv))
                    lbits[level, bit] += 1
                    dqv &= dqv - 1
            # ---- the target's sky from the window
            xa, xb = xptr[t], xptr[t + 1]
            for level in range(_NO_LEVEL + 1):
                exl[level] = 0
            for j in range(xa, xb):
                exl[tl[r, xidx[j]]] += 1
            best = -1
            g = 0
            for level in range(_NO_LEVEL):
                c = lcnt[level] - exl[level]
                if c > 0:
                    best = level
                    g = c
                    break
            if best < 0:
                # nothing usable: 0, 0 and the OR of every input's DQ (as the direct combine)
                alldq = 0
                if has_dq:
                    j = xa
                    for f in range(lo[t], hi[t]):  # xidx is ascending
                        if j < xb and xidx[j] == f:
                            j += 1
                        else:
                            alldq |= np.int64(td[r, f])
                out_s[t, p] = 0.0
                out_v[t, p] = 0.0
                out_d[t, p] = alldq
                continue
            # the kept set: the window's bits in the best level's ranks ...
            first = lstart[best]
            last = lstart[best + 1] - 1
            wa = first >> 6
            wb = last >> 6
            for w in range(wa, wb + 1):
                kept[w] = window[w]
            kept[wa] &= _ALL << np.uint64(first & 63)
            kept[wb] &= _ALL >> np.uint64(63 - (last & 63))
            sy = lsy[best]
            sv = lsv[best]
            need_dq = has_dq and (best > 0 or not use_levels)
            # the kept values are scanned where running sums cannot give the result exactly; otherwise
            # a flagged pixel's DQ OR is its level's bit counts less the excluded and rejected values'
            scan = not has_var or lbad[best] > 0
            count_dq = need_dq and not scan
            if count_dq:
                for b in range(16):
                    qbits[b] = lbits[best, b]
            # ... less the excluded frames ...
            for j in range(xa, xb):
                f = xidx[j]
                if tl[r, f] == best:
                    k = rank[f]
                    kept[k >> 6] &= ~(_ONE << np.uint64(k & 63))
                    sy -= ty[r, f]
                    sv -= tv[r, f]
                    if count_dq:
                        dqv = np.int64(td[r, f])
                        while dqv != 0:
                            bit = _lowest_bit(np.uint64(dqv))
                            qbits[bit] -= 1
                            dqv &= dqv - 1
            if use_minmax:
                nl, keep_end = minmax_range(g, kin[t], nlow[t], nhigh[t])
            else:
                nl, keep_end = 0, g
            m = keep_end - nl
            # ... less the min/max-rejected ends: the lowest and highest bits
            w = wa
            for _ in range(nl):
                while kept[w] == 0:
                    w += 1
                bit = _lowest_bit(kept[w])
                kept[w] &= kept[w] - _ONE
                f = frame[w * 64 + bit]
                sy -= ty[r, f]
                sv -= tv[r, f]
                if count_dq:
                    dqv = np.int64(td[r, f])
                    while dqv != 0:
                        bit = _lowest_bit(np.uint64(dqv))
                        qbits[bit] -= 1
                        dqv &= dqv - 1
            w = wb
            for _ in range(g - keep_end):
                while kept[w] == 0:
                    w -= 1
                bit = 63 - _leading_zeros(kept[w])
                kept[w] &= ~(_ONE << np.uint64(bit))
                f = frame[w * 64 + bit]
                sy -= ty[r, f]
                sv -= tv[r, f]
                if count_dq:
                    dqv = np.int64(td[r, f])
                    while dqv != 0:
                        bit = _lowest_bit(np.uint64(dqv))
                        qbits[bit] -= 1
                        dqv &= dqv - 1
            outdq = 0
            if count_dq:
                for b in range(16):
                    if qbits[b] > 0:
                        outdq |= 1 << b
            if scan:
                # scan the kept values in rank order: their DQ, and sums the running ones cannot give exactly
                sy = 0.0
                sv = 0.0
                for w in range(wa, wb + 1):
                    bits = kept[w]
                    while bits != 0:
                        f = frame[w * 64 + _lowest_bit(bits)]
                        bits &= bits - _ONE
                        sy += ty[r, f]
                        sv += tv[r, f]
                        if need_dq:
                            outdq |= np.int64(td[r, f])
                if not has_var:
                    # the sample variance of the kept values stands in for mean(VAR)
                    mean = sy / m
                    ss = 0.0
                    for w in range(wa, wb + 1):
                        bits = kept[w]
                        while bits != 0:
                            f = frame[w * 64 + _lowest_bit(bits)]
                            bits &= bits - _ONE
                            d = ty[r, f] - mean
                            ss += d * d
                    sv = ss / (m - 1) * m if m > 1 else 0.0
            mean_var = sv / m
            s2 = scale_out[t] * scale_out[t]
            if op == MEAN:
                out_s[t, p] = sy / m * scale_out[t] + add_out[t]
                out_v[t, p] = mean_var / m * s2
                out_d[t, p] = outdq
                continue
            # the median: the ((m-1)//2)-th kept bit, and for an even m (not lower) the next one too
            k = (m - 1) // 2
            w = wa
            c = _popcount(kept[w])
            while k >= c:
                k -= c
                w += 1
                c = _popcount(kept[w])
            bit = _select(kept[w], k)
            value = ty[r, frame[w * 64 + bit]]
            if m % 2 == 0 and not lower:
                # the next kept bit: above this one in its word, else the lowest of the next non-empty word
                above = kept[w] & ~(_ALL >> np.uint64(63 - bit))
                while above == 0:
                    w += 1
                    above = kept[w]
                value = 0.5 * (value + ty[r, frame[w * 64 + _lowest_bit(above)]])
            n_median = g if (use_minmax and nl == g - keep_end) else m
            out_s[t, p] = value * scale_out[t] + add_out[t]
            out_v[t, p] = median_variance_factor(n_median, lower) * mean_var * s2
            out_d[t, p] = outdq


def walk_pixels(sci, var, dq, mul, add, lo, hi, xptr, xidx, kin, nlow, nhigh, skip, scale_out, add_out,
                op, use_minmax, use_levels, out_s, out_v, out_d) -> None:
    """Sky planes of every target at every pixel of the ``(F, P)`` blocks.

    Parameters (arrays; ``var``/``dq`` of shape ``(0, 1)`` are absent)
    ----------
    sci, var, dq : (F, P) float32, float32, uint16
    mul, add : (F,) float64
        Normalised value of a sky: ``sci * mul + add`` (non-finite: never used).
    lo, hi : (S,) int64
        Window of each target: frames ``lo..hi-1``.
    xptr, xidx : int64
        Frames of the window that are not the target's skies, ascending:
        ``xidx[xptr[t]:xptr[t+1]]``.
    kin, nlow, nhigh : (S,) int64
        Number of skies, and min/max rejection counts, of each target.
    skip : (S,) bool
        Targets left to the caller (outputs untouched).
    scale_out, add_out : (S,) float64
        Sky value = combined normalised value * scale_out + add_out.
    out_s, out_v, out_d : (S, P)
        float32, float32, uint16 outputs.

    Pixels go by tiles: numba copies a tile pixel-major, numpy orders each
    pixel's values (its vectorised quicksort: ~0.8 us for 122 values, against
    ~2 us for ranking by counting in numba), and numba walks the tile.
    """
    nf, npix = sci.shape
    tile = max(8, min(_TILE_PIXELS, _TILE_BYTES // (8 * max(1, nf)), npix))
    ty = np.empty((tile, nf), np.float64)
    tl = np.empty((tile, nf), np.int8)
    tv = np.empty((tile, nf), np.float64)
    td = np.empty((tile, nf), np.uint16)
    moves = window_moves(lo, hi, skip)
    has_var, has_dq = var.shape[0] > 0, dq.shape[0] > 0
    for p0 in range(0, npix, tile):
        n = min(tile, npix - p0)
        load_tile(sci, var, dq, mul, add, p0, n, use_levels, ty, tl, tv, td)
        order = np.argsort(ty[:n], axis=1)
        walk_tile(ty, tl, tv, td, order, p0, n, has_var, has_dq, lo, hi, xptr, xidx, kin, nlow, nhigh, skip, moves,
                  scale_out, add_out, op, use_minmax, use_levels, out_s, out_v, out_d)
