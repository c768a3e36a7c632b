"""numba code behind :func:`draconis.kernels.sky_window.window_sky_subtract`.

The skies of a segment arrive as ``(F, P)`` blocks (frame, pixel) in time
order.  Pixels are processed in tiles: a tile is first copied pixel-major
(normalised value, DQ level, variance, DQ of every sky), then each pixel
walks the targets in order and keeps the values of the skies in the
current window sorted by the key ``(DQ level, normalised value, frame)``.
The frames entering the window are inserted and those leaving removed (a
leaving and an entering frame as one replacement, which only moves the
values between their two places), so a step costs a few moves instead of a
sort of the whole window.  A pixel's window (~1 KB) stays in the L1 cache
for its whole walk.

The values of the best DQ level present form one contiguous run of the
order (per-level counts give its bounds), so the direct combine's "use the
best level" rule reads straight off it.  Per-level running sums of the
values and variances make a query O(excluded + rejected): the kept sum is
the run's sum less the target's excluded frames (itself, skies too close)
and the min/max-rejected ends, and the rank of a kept value is found by
comparing its key with the few excluded keys.  The DQ OR of a pixel whose
best level is flagged comes the same way, from per-level counts of each
DQ bit less the excluded and rejected values' bits.  Where running sums
are not exact enough or not enough (the sample variance when there is no
VAR, a non-finite VAR) the kept values are scanned.  The definitions (DQ
levels, minmax counts, median variance) are those of
:mod:`draconis.kernels.combine`, through the same numba helpers.

Measured choices: places are found by counting the smaller values (a loop
the compiler vectorises) rather than by binary search; loops index with
unsigned integers, since numba's wrap-around of negative indices turns
vectorised loads into gathers; moves are one ``memmove`` per array.
"""
from __future__ import annotations

import math

import numba
import numpy as np
from numba.core import cgutils, types
from numba.extending import intrinsic

from ._combine_core import LMEDIAN, MEAN, MEDIAN, _dq_level, median_variance_factor, minmax_range

_NO_LEVEL = 7
#: Sky values per pixel tile (~16k: the tile's pixel-major copy, 19 bytes a value, stays in L2).
_TILE_VALUES = 16384
__all__ = ["walk_pixels", "MEAN", "MEDIAN", "LMEDIAN"]


@intrinsic
def _move_within(typingctx, arr, dst, src, count):
    """``arr[dst:dst+count] = arr[src:src+count]`` for overlapping ranges: one llvm.memmove."""
    sig = types.void(arr, types.int64, types.int64, types.int64)

    def codegen(context, builder, signature, args):
        a, d, s, c = args
        ary = context.make_array(signature.args[0])(context, builder, a)
        itemsize = context.get_abi_sizeof(context.get_data_type(signature.args[0].dtype))
        cgutils.raw_memmove(builder, builder.gep(ary.data, [d]), builder.gep(ary.data, [s]), c, itemsize)
        return context.get_dummy_value()

    return sig, codegen


@numba.njit(nogil=True, cache=True)
def _load_tile(sci, var, dq, mul, add, p0, t, use_levels, ty, tl, tv, td):
    """Pixels ``p0..p0+t`` of every sky, pixel-major: normalised value, DQ level (7: not usable), variance, DQ.

    Done once per tile and read by every target of the walk, so a pixel's
    walk reads one contiguous row instead of one cache line per sky.
    """
    has_var = var.shape[0] > 0
    has_dq = dq.shape[0] > 0
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
def _moves(lo, hi, skip):
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
def walk_pixels(sci, var, dq, mul, add, lo, hi, xptr, xidx, kin, nlow, nhigh, skip, scale_out, add_out,
                op, use_minmax, use_levels, out_s, out_v, out_d):
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

    Notes
    -----
    The step and the query are written out here rather than in helper
    functions: numba's inlining re-binds every array argument with an
    atomic reference-count pair that its pruning cannot remove around
    loops, which made a query ~12x slower (measured 200 ns against 17 ns).
    Helpers of the hot path take scalars only.
    """
    nf, npix = sci.shape
    ns = lo.shape[0]
    has_var = var.shape[0] > 0
    has_dq = dq.shape[0] > 0
    width = 1
    maxex = 1
    for t in range(ns):
        width = max(width, hi[t] - lo[t])
        maxex = max(maxex, xptr[t + 1] - xptr[t])
    lptr, lidx, eptr, eidx = _moves(lo, hi, skip)
    tile = max(8, min(256, _TILE_VALUES // nf))
    ty = np.empty((tile, nf), np.float64)
    tl = np.empty((tile, nf), np.int8)
    tv = np.empty((tile, nf), np.float64)
    td = np.empty((tile, nf), np.uint16)
    # one pixel's sorted window: values and frames, with per-level counts and running sums
    ys = np.empty(width + 1, np.float64)
    ids = np.empty(width + 1, np.int32)
    lcnt = np.zeros(8, np.int64)
    lbad = np.zeros(8, np.int64)
    lsy = np.zeros(8, np.float64)
    lsv = np.zeros(8, np.float64)
    # per level, how many of the window's values carry each DQ bit: the DQ OR of a flagged pixel's kept
    # values without scanning them (an unilluminated region is flagged in every frame: ~20 % of F2 pixels)
    lbits = np.zeros((8, 16), np.int64)
    qbits = np.zeros(16, np.int64)
    exl = np.zeros(8, np.int64)
    ey = np.empty(maxex, np.float64)
    ef = np.empty(maxex, np.int64)
    ends = np.zeros(8, np.int64)
    sort_y = np.empty(width + 1, np.float64)
    sort_f = np.empty(width + 1, np.int32)
    lower = op == LMEDIAN
    for p0 in range(0, npix, tile):
        t_pix = min(tile, npix - p0)
        _load_tile(sci, var, dq, mul, add, p0, t_pix, use_levels, ty, tl, tv, td)
        for r in range(t_pix):
            p = p0 + r
            n = 0
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
                # ---- move the window: frames leaving and entering, paired as replacements
                la, lb, ea, eb = lptr[t], lptr[t + 1], eptr[t], eptr[t + 1]
                if n == 0:
                    # an empty window (a segment's first frame) is filled at once: the values go to
                    # their level's bucket in frame order, then each bucket is sorted by rank
                    # (measured 1.6x faster than inserting them one by one, 70 skies)
                    for i in range(ea, eb):
                        f = eidx[i]
                        level = tl[r, f]
                        if level != _NO_LEVEL:
                            lcnt[level] += 1
                    a = np.int64(0)
                    for level in range(_NO_LEVEL):
                        ends[level] = a
                        a += lcnt[level]
                    n = a
                    for i in range(ea, eb):
                        f = eidx[i]
                        level = tl[r, f]
                        if level != _NO_LEVEL:
                            y = ty[r, f]
                            ys[ends[level]] = y
                            ids[ends[level]] = f
                            ends[level] += 1
                            dqv = np.int64(td[r, f])
                            if dqv != 0:
                                for b in range(16):
                                    lbits[level, b] += (dqv >> b) & 1
                            v = tv[r, f]
                            lsy[level] += y
                            if math.isfinite(v):
                                lsv[level] += v
                            else:
                                lbad[level] += 1
                    for level in range(_NO_LEVEL):
                        a = ends[level] - lcnt[level]
                        c = lcnt[level]
                        if c < 2:
                            continue
                        for i in range(c):
                            y = ys[a + i]
                            k = np.int64(0)
                            for j in range(np.uint64(a), np.uint64(a + c)):
                                k += np.int64(ys[j] < y)
                            for j in range(np.uint64(a), np.uint64(a + i)):  # equal values: frame order
                                k += np.int64(ys[j] == y)
                            sort_y[k] = y
                            sort_f[k] = ids[a + i]
                        for i in range(c):
                            ys[a + i] = sort_y[i]
                            ids[a + i] = sort_f[i]
                    la = lb
                    ea = eb
                for i in range(max(lb - la, eb - ea)):
                    out_level = _NO_LEVEL
                    in_level = _NO_LEVEL
                    f_out = 0
                    f_in = 0
                    out_pos = 0
                    in_pos = 0
                    if la + i < lb:
                        f_out = lidx[la + i]
                        out_level = tl[r, f_out]
                    if ea + i < eb:
                        f_in = eidx[ea + i]
                        in_level = tl[r, f_in]
                    if out_level != _NO_LEVEL:
                        # its place: the values of lower levels, then the smaller ones of its level
                        y = ty[r, f_out]
                        a = np.int64(0)
                        for lev in range(out_level):
                            a += lcnt[lev]
                        c = np.int64(0)
                        for j in range(np.uint64(a), np.uint64(a + lcnt[out_level])):
                            c += np.int64(ys[j] < y)
                        if c < lcnt[out_level] and ys[a + c] == y:
                            # equal values (rare): the frame order decides, as the direct combine's stable sort
                            for j in range(np.uint64(a), np.uint64(a + lcnt[out_level])):
                                c += np.int64((ys[j] == y) & (ids[j] < f_out))
                        out_pos = a + c
                    if in_level != _NO_LEVEL:
                        # its place, counted with the leaving value still in
                        y = ty[r, f_in]
                        a = np.int64(0)
                        for lev in range(in_level):
                            a += lcnt[lev]
                        c = np.int64(0)
                        for j in range(np.uint64(a), np.uint64(a + lcnt[in_level])):
                            c += np.int64(ys[j] < y)
                        if c < lcnt[in_level] and ys[a + c] == y:
                            for j in range(np.uint64(a), np.uint64(a + lcnt[in_level])):
                                c += np.int64((ys[j] == y) & (ids[j] < f_in))
                        in_pos = a + c
                    if out_level != _NO_LEVEL:
                        v = tv[r, f_out]
                        lcnt[out_level] -= 1
                        dqv = np.int64(td[r, f_out])
                        if dqv != 0:
                            for b in range(16):
                                lbits[out_level, b] -= (dqv >> b) & 1
                        lsy[out_level] -= ty[r, f_out]
                        if math.isfinite(v):
                            lsv[out_level] -= v
                        else:
                            lbad[out_level] -= 1
                    if in_level != _NO_LEVEL:
                        v = tv[r, f_in]
                        lcnt[in_level] += 1
                        dqv = np.int64(td[r, f_in])
                        if dqv != 0:
                            for b in range(16):
                                lbits[in_level, b] += (dqv >> b) & 1
                        lsy[in_level] += ty[r, f_in]
                        if math.isfinite(v):
                            lsv[in_level] += v
                        else:
                            lbad[in_level] += 1
                    if out_level != _NO_LEVEL and in_level != _NO_LEVEL:
                        # a replacement: only the values between the two places move
                        if in_pos > out_pos:
                            in_pos -= 1
                            _move_within(ys, out_pos, out_pos + 1, in_pos - out_pos)
                            _move_within(ids, out_pos, out_pos + 1, in_pos - out_pos)
                        else:
                            _move_within(ys, in_pos + 1, in_pos, out_pos - in_pos)
                            _move_within(ids, in_pos + 1, in_pos, out_pos - in_pos)
                    elif out_level != _NO_LEVEL:
                        _move_within(ys, out_pos, out_pos + 1, n - 1 - out_pos)
                        _move_within(ids, out_pos, out_pos + 1, n - 1 - out_pos)
                        n -= 1
                    elif in_level != _NO_LEVEL:
                        _move_within(ys, in_pos + 1, in_pos, n - in_pos)
                        _move_within(ids, in_pos + 1, in_pos, n - in_pos)
                        n += 1
                    if in_level != _NO_LEVEL:
                        ys[in_pos] = ty[r, f_in]
                        ids[in_pos] = f_in
                # ---- the target's sky from the window
                xa, xb = xptr[t], xptr[t + 1]
                for level in range(_NO_LEVEL + 1):
                    exl[level] = 0
                for j in range(xa, xb):
                    exl[tl[r, xidx[j]]] += 1
                best = -1
                g = 0
                start = np.int64(0)
                for level in range(_NO_LEVEL):
                    c = lcnt[level] - exl[level]
                    if c > 0:
                        best = level
                        g = c
                        break
                    start += lcnt[level]
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
                end = start + lcnt[best]
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
                # the excluded values of the best level: out of the sums, their keys kept
                ne = 0
                for j in range(xa, xb):
                    e = xidx[j]
                    if tl[r, e] == best:
                        ey[ne] = ty[r, e]
                        ef[ne] = e
                        sy -= ty[r, e]
                        sv -= tv[r, e]
                        ne += 1
                        if count_dq:
                            dqv = np.int64(td[r, e])
                            for b in range(16):
                                qbits[b] -= (dqv >> b) & 1
                if use_minmax:
                    nl, keep_end = minmax_range(g, kin[t], nlow[t], nhigh[t])
                else:
                    nl, keep_end = 0, g
                m = keep_end - nl
                # the min/max-rejected ends out of the sums
                pos = start
                taken = 0
                while taken < nl:
                    f = ids[pos]
                    excluded = False
                    for j in range(ne):
                        excluded |= ef[j] == f
                    if not excluded:
                        sy -= ys[pos]
                        sv -= tv[r, f]
                        taken += 1
                        if count_dq:
                            dqv = np.int64(td[r, f])
                            for b in range(16):
                                qbits[b] -= (dqv >> b) & 1
                    pos += 1
                pos = end - 1
                taken = 0
                while taken < g - keep_end:
                    f = ids[pos]
                    excluded = False
                    for j in range(ne):
                        excluded |= ef[j] == f
                    if not excluded:
                        sy -= ys[pos]
                        sv -= tv[r, f]
                        taken += 1
                        if count_dq:
                            dqv = np.int64(td[r, f])
                            for b in range(16):
                                qbits[b] -= (dqv >> b) & 1
                    pos -= 1
                outdq = 0
                if count_dq:
                    for b in range(16):
                        if qbits[b] > 0:
                            outdq |= 1 << b
                if scan:
                    # scan the kept values: their DQ, and sums that the running ones cannot give exactly
                    sy = 0.0
                    sv = 0.0
                    rank = 0
                    for pos in range(start, end):
                        f = ids[pos]
                        excluded = False
                        for j in range(ne):
                            excluded |= ef[j] == f
                        if excluded:
                            continue
                        if nl <= rank < keep_end:
                            sy += ys[pos]
                            sv += tv[r, f]
                            if need_dq:
                                outdq |= np.int64(td[r, f])
                        rank += 1
                    if not has_var:
                        # the sample variance of the kept values stands in for mean(VAR)
                        mean = sy / m
                        ss = 0.0
                        rank = 0
                        for pos in range(start, end):
                            f = ids[pos]
                            excluded = False
                            for j in range(ne):
                                excluded |= ef[j] == f
                            if excluded:
                                continue
                            if nl <= rank < keep_end:
                                d = ys[pos] - mean
                                ss += d * d
                            rank += 1
                        sv = ss / (m - 1) * m if m > 1 else 0.0
                mean_var = sv / m
                s2 = scale_out[t] * scale_out[t]
                if op == MEAN:
                    out_s[t, p] = sy / m * scale_out[t] + add_out[t]
                    out_v[t, p] = mean_var / m * s2
                    out_d[t, p] = outdq
                    continue
                # the median's place: the least fixed point of start + rank + #(excluded keys <= key there)
                rank = nl + (m - 1) // 2
                pos = start + rank
                while True:
                    y = ys[pos]
                    f = ids[pos]
                    c = np.int64(0)
                    for j in range(ne):
                        c += np.int64((ey[j] < y) | ((ey[j] == y) & (ef[j] <= f)))
                    if start + rank + c == pos:
                        break
                    pos = start + rank + c
                value = ys[pos]
                if m % 2 == 0 and not lower:
                    pos += 1  # the next kept value
                    while True:
                        excluded = False
                        for j in range(ne):
                            excluded |= ef[j] == ids[pos]
                        if not excluded:
                            break
                        pos += 1
                    value = 0.5 * (value + ys[pos])
                n_median = g if (use_minmax and nl == g - keep_end) else m
                out_s[t, p] = value * scale_out[t] + add_out[t]
                out_v[t, p] = median_variance_factor(n_median, lower) * mean_var * s2
                out_d[t, p] = outdq
