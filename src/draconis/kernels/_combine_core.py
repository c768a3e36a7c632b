"""numba code behind :func:`draconis.kernels.combine.combine_block`.

The block arrives flattened to ``(N, npix)``.  Reading one pixel's N values
straight from it touches N pages per pixel, which no prefetcher follows, so
pixels are processed in tiles: a tile of T pixels is first copied (and
normalised) into a pixel-major ``(T, N)`` buffer with contiguous reads of
each frame, then every pixel works on one contiguous row.  All buffers are
allocated once per chunk of pixels, never per pixel.  The definitions
implemented here are documented in :mod:`draconis.kernels.combine`.
"""
from __future__ import annotations

import math

import numba
import numpy as np

from ._select import insertion_sort, median_sorted, median_unsorted, sort_pairs

MEAN, WTMEAN, MEDIAN, LMEDIAN = 0, 1, 2, 3
NONE, MINMAX, SIGCLIP, VARCLIP = 0, 1, 2, 3

#: Flags accepted at each level of the DQ hierarchy, best level first.
DQ_HIERARCHY = (0, 2 | 4, 2 | 4 | 8, 2 | 4 | 8 | 32, 2 | 4 | 8 | 32 | 1, 2 | 4 | 8 | 32 | 1 | 64, 0xFFFF)
_L1, _L2, _L3, _L4, _L5 = (0xFFFF ^ m for m in DQ_HIERARCHY[1:6])
_NO_LEVEL = 7  # marks a non-finite value: never used

# Up to this many values a branch-free rank sort (O(n^2) compares that the
# compiler vectorises) beats quicksort, whose cost on random data is branch
# misprediction: measured 0.45 us against 1.5 us for 50 values.
_RANK_SORT_MAX = 96
# Values per tile buffer (T * N): ~32k float64 keeps a tile's SCI+VAR+DQ in L2.
_TILE_VALUES = 32768
#: N x var(median of N unit Gaussians), N = 1..40 (Monte Carlo, 2-4e5 draws each); π/2 beyond.  The
#: asymptotic π/2 overstates a small median's variance by up to 30 % (N = 4) and even N are lower
#: than odd N (the two middle values are averaged).
_MEDIAN_EFFICIENCY = np.array([
    1.000, 1.001, 1.347, 1.192, 1.435, 1.287, 1.470, 1.350, 1.498, 1.385, 1.506, 1.417, 1.521, 1.433, 1.526,
    1.447, 1.530, 1.461, 1.541, 1.463, 1.538, 1.475, 1.543, 1.492, 1.549, 1.492, 1.548, 1.495, 1.548, 1.505,
    1.551, 1.510, 1.551, 1.507, 1.553, 1.514, 1.558, 1.519, 1.550, 1.515])


@numba.njit(nogil=True, cache=True, inline="always")
def median_variance_factor(n, lower):
    """var(median of n values) / var(one value); the lower median of an even n is one order statistic."""
    if lower and n % 2 == 0 and n > 1:
        n = n - 1
    if n <= _MEDIAN_EFFICIENCY.shape[0]:
        return _MEDIAN_EFFICIENCY[n - 1] / n
    return 0.5 * math.pi / n


@numba.njit(nogil=True, cache=True, inline="always")
def _dq_level(d):
    if d == 0:
        return 0
    if d & _L1 == 0:
        return 1
    if d & _L2 == 0:
        return 2
    if d & _L3 == 0:
        return 3
    if d & _L4 == 0:
        return 4
    if d & _L5 == 0:
        return 5
    return 6


@numba.njit(nogil=True, cache=True)
def _load_tile(sci, var, dq, p0, t, scl, zer, ts, tv, td):
    """Copy pixels ``p0..p0+t`` of every frame, normalised, into the pixel-major tiles."""
    for i in range(sci.shape[0]):
        s = scl[i]
        z = zer[i]
        for k in range(t):
            ts[k, i] = np.float64(sci[i, p0 + k]) * s + z
        if tv.shape[1] > 0:
            s2 = s * s
            for k in range(t):
                tv[k, i] = np.float64(var[i, p0 + k]) * s2
        if td.shape[1] > 0:
            for k in range(t):
                td[k, i] = dq[i, p0 + k]


@numba.njit(nogil=True, cache=True, inline="always")
def _gather(ts, td, r, use_levels, vals, ix, lev):
    """Copy the usable values of the best DQ level of tile row ``r`` into ``vals[:g]``.

    Returns ``(g, or_of_all_dq)``; ``ix[:g]`` are the frame indices.  Tiles
    are indexed, never sliced, per pixel: a view costs two atomic refcounts.
    """
    n = ts.shape[1]
    has_dq = td.shape[1] > 0
    # Fast path for the common pixel where every value is finite and unflagged:
    # one branch-free pass instead of per-value level bookkeeping.
    alldq = 0
    nbad = 0
    for i in range(n):  # copy optimistically; the slow path below overwrites
        x = ts[r, i]
        d = np.int64(td[r, i]) if has_dq else 0
        alldq |= d
        nbad += np.int64(not math.isfinite(x)) + np.int64(d != 0 and use_levels)
        vals[i] = x
        ix[i] = i
    if nbad == 0:
        return n, alldq
    best = _NO_LEVEL
    for i in range(n):
        if not math.isfinite(ts[r, i]):
            lev[i] = _NO_LEVEL
            continue
        level = _dq_level(np.int64(td[r, i])) if (use_levels and has_dq) else 0
        lev[i] = level
        best = min(best, level)
    g = 0
    if best == _NO_LEVEL:
        return 0, alldq
    for i in range(n):
        if lev[i] <= best:
            vals[g] = ts[r, i]
            ix[g] = i
            g += 1
    return g, alldq


@numba.njit(nogil=True, cache=True, inline="always")
def _rank_sort_pairs(vals, ix, g, sv, si):
    """Sort ``vals[:g]`` (with ``ix``) by computing each value's rank; ties keep input order."""
    for i in range(g):
        x = vals[i]
        c = np.int32(0)
        for j in range(g):  # full-length loops vectorise; split ones measured slower
            c += np.int32(vals[j] < x)
        for j in range(i):  # equal values before i rank lower: ties keep input order
            c += np.int32(vals[j] == x)
        sv[c] = x
        si[c] = ix[i]
    for i in range(g):
        vals[i] = sv[i]
        ix[i] = si[i]


@numba.njit(nogil=True, cache=True, inline="always")
def _sort(vals, ix, g, sv, si, stack):
    if g <= _RANK_SORT_MAX:
        _rank_sort_pairs(vals, ix, g, sv, si)
    else:
        sort_pairs(vals, ix, 0, g, stack)


@numba.njit(nogil=True, cache=True, inline="always")
def minmax_range(g, n, nlow, nhigh):
    """Kept range ``[nl, g - nh)`` of ``g`` sorted usable values out of ``n`` inputs."""
    if g == n:
        nl, nh = nlow, nhigh
    else:
        nl = int(math.floor(nlow * g / n + 0.5))
        nh = int(math.floor(nhigh * g / n + 0.5))
    while nl + nh >= g:
        if nl > nh:
            nl -= 1
        elif nh > nl:
            nh -= 1
        else:
            nl -= 1
            nh -= 1
    return nl, g - nh


@numba.njit(nogil=True, cache=True, inline="always")
def _centre_and_std(vals, lo, hi, mclip):
    n = hi - lo
    s = 0.0
    for k in range(lo, hi):
        s += vals[k]
    mean = s / n
    ss = 0.0
    for k in range(lo, hi):
        d = vals[k] - mean
        ss += d * d
    centre = median_sorted(vals, lo, hi, False) if mclip else mean
    return centre, math.sqrt(ss / n)


@numba.njit(nogil=True, cache=True, inline="always")
def _sigclip(vals, lo, hi, lsig, hsig, mclip, max_iters):
    """Iterative clip of the sorted ``vals[lo:hi]``; returns the kept range.

    On sorted data the kept values are always a contiguous range, so each
    pass only moves the two ends inwards.
    """
    it = 0
    while hi - lo > 1 and (max_iters < 0 or it < max_iters):
        centre, std = _centre_and_std(vals, lo, hi, mclip)
        low = centre - lsig * std
        high = centre + hsig * std
        a = lo
        while a < hi and vals[a] < low:
            a += 1
        b = hi
        while b > a and vals[b - 1] > high:
            b -= 1
        if b == a or (a == lo and b == hi):
            break
        lo, hi = a, b
        it += 1
    return lo, hi


#: Half-width of the window about the mean in which :func:`_median_near` looks for the median first, in units of
#: sigma / sqrt(n): the median of n Gaussian values is within 2.5 sigma/sqrt(n) of their mean 99.9 % of the time
#: (their difference has a standard deviation of 0.76 sigma/sqrt(n)), and the window holds ~2 sqrt(n) values,
#: so sorting them costs O(n) whatever n.
_MEDIAN_WINDOW = 2.5


@numba.njit(nogil=True, cache=True, inline="always")
def _median_near(vals, m, mean, std, work):
    """Median of ``vals[:m]`` (unchanged), found among the values near ``mean`` when it lies there.

    One branch-free pass counts the values below ``mean - w`` and copies those
    within ``mean +- w`` (``w = _MEDIAN_WINDOW * std / sqrt(m)``); when both
    middle ranks fall among the copied few, they are sorted and the median read off.
    Otherwise (skewed values) a quickselect of all of them.  Either way the
    result is exactly the median.
    """
    w = _MEDIAN_WINDOW * std / math.sqrt(m)
    p1 = mean - w
    p2 = mean + w
    below = 0
    nb = 0
    for k in range(m):
        x = vals[k]
        below += np.int64(x < p1)
        work[nb] = x
        nb += np.int64(x >= p1) & np.int64(x <= p2)
    k_lo = (m - 1) // 2
    k_hi = m // 2
    if nb > 0 and below <= k_lo and k_hi < below + nb:
        insertion_sort(work, 0, nb)
        return 0.5 * (work[k_lo - below] + work[k_hi - below])
    for k in range(m):
        work[k] = vals[k]
    return median_unsorted(work, 0, m, False)


@numba.njit(nogil=True, cache=True, inline="always")
def _sigclip_unsorted(vals, ix, g, lsig, hsig, mclip, max_iters, work):
    """:func:`_sigclip` without sorting; returns ``m``, the number of values kept.

    The kept values are compacted to ``vals[:m]`` (``ix`` alongside), in
    input order.

    Sorting every pixel's values costs ~n log n mispredicted branches; a pass
    here is a few linear loops (mean, deviation, a quickselect median on a
    copy, a count and a compaction), and most pixels stop after two passes.
    The same values are kept as by the sorted form (a value is kept when
    ``centre - lsig*sigma <= x <= centre + hsig*sigma``); sums are taken in
    input order instead of sorted order (float64 rounding).
    """
    m = g
    it = 0
    while m > 1 and (max_iters < 0 or it < max_iters):
        s = 0.0
        for k in range(m):
            s += vals[k]
        mean = s / m
        ss = 0.0
        for k in range(m):
            d = vals[k] - mean
            ss += d * d
        std = math.sqrt(ss / m)
        centre = _median_near(vals, m, mean, std, work) if mclip else mean
        low = centre - lsig * std
        high = centre + hsig * std
        kept = 0
        for k in range(m):
            kept += np.int64(low <= vals[k] <= high)
        if kept == 0 or kept == m:
            break
        w = 0
        for k in range(m):
            x = vals[k]
            if low <= x <= high:
                vals[w] = x
                ix[w] = ix[k]
                w += 1
        m = w
        it += 1
    return m


@numba.njit(nogil=True, cache=True, inline="always")
def _within(x, v, centre, lsig, hsig):
    sd = math.sqrt(max(v, 0.0))
    return centre - lsig * sd <= x <= centre + hsig * sd


@numba.njit(nogil=True, cache=True, inline="always")
def _varclip(vals, ix, lo, hi, tv, r, lsig, hsig, mclip, max_iters):
    """As :func:`_sigclip` but each value's own sqrt(VAR) is its sigma.

    Kept values are compacted to the front of the range, preserving order.
    """
    it = 0
    while hi - lo > 1 and (max_iters < 0 or it < max_iters):
        centre, _ = _centre_and_std(vals, lo, hi, mclip)
        kept = 0
        for k in range(lo, hi):
            kept += _within(vals[k], tv[r, ix[k]], centre, lsig, hsig)
        if kept == 0 or kept == hi - lo:
            break
        w = lo
        for k in range(lo, hi):
            if _within(vals[k], tv[r, ix[k]], centre, lsig, hsig):
                vals[w] = vals[k]
                ix[w] = ix[k]
                w += 1
        hi = w
        it += 1
    return lo, hi


@numba.njit(nogil=True, cache=True, inline="always")
def _combine_used(vals, ix, lo, hi, tv, td, r, op, is_sorted, n_median):
    """Combine the used values ``vals[lo:hi]`` of tile row ``r``; returns (value, variance, dq).

    ``n_median`` is the number of values the median's noise comes from: more
    than ``hi - lo`` when minmax rejection dropped as many values at each end
    (the median of what is left is the median of them all).
    """
    n = hi - lo
    has_var = tv.shape[1] > 0
    has_dq = td.shape[1] > 0
    sx = 0.0
    sv = 0.0
    sw = 0.0
    sxw = 0.0
    weighted = has_var and op == WTMEAN  # divisions are dear: only when needed
    wt_ok = weighted
    outdq = 0
    for k in range(lo, hi):
        i = ix[k]
        x = vals[k]
        sx += x
        if has_dq:
            outdq |= np.int64(td[r, i])
        if has_var:
            v = tv[r, i]
            sv += v
            if weighted:
                if v > 0.0 and math.isfinite(v):
                    sw += 1.0 / v
                    sxw += x / v
                else:
                    wt_ok = False
    mean = sx / n
    if not has_var:
        ss = 0.0
        for k in range(lo, hi):
            d = vals[k] - mean
            ss += d * d
        sv = ss / (n - 1) if n > 1 else 0.0  # sample variance stands in for mean(VAR)
    else:
        sv = sv / n
    if op == MEAN or (op == WTMEAN and not wt_ok):
        return mean, sv / n, outdq
    if op == WTMEAN:
        return sxw / sw, 1.0 / sw, outdq
    lower = op == LMEDIAN
    if is_sorted:
        med = median_sorted(vals, lo, hi, lower)
    else:
        med = median_unsorted(vals, lo, hi, lower)
    return med, median_variance_factor(n_median, lower) * sv, outdq


@numba.njit(nogil=True, cache=True, inline="always")
def _level_of(x, d, use_levels):
    if not math.isfinite(x):
        return _NO_LEVEL
    return _dq_level(d) if use_levels else 0


@numba.njit(nogil=True, cache=True)
def _mean_none_tile(p0, t, sci, var, dq, scl, zer, use_levels, weighted, lev, best, alldq,
                    cnt, sx, sv, sw, sxw, outdq):
    """Per-pixel sums over one tile of pixels for :func:`_mean_none_pixels`.

    Each quantity gets its own simple loop over (frame, pixel): branch-free
    bodies vectorise, and re-reading a frame row from L1/L2 is cheaper than
    one loop with every optional plane behind a branch.
    """
    n = sci.shape[0]
    has_var = var.shape[0] > 0
    has_dq = dq.shape[0] > 0
    best[:t] = _NO_LEVEL
    alldq[:t] = 0
    for i in range(n):  # pass 1: each input's level and the best level at each pixel
        for k in range(t):
            d = np.int64(dq[i, p0 + k]) if has_dq else 0
            alldq[k] |= d
            level = _level_of(np.float64(sci[i, p0 + k]) * scl[i] + zer[i], d, use_levels)
            lev[i, k] = level
            best[k] = min(best[k], level)
    for k in range(t):
        if best[k] == _NO_LEVEL:  # nothing usable: let no input match
            best[k] = -1
    cnt[:t] = 0
    sx[:t] = 0.0
    for i in range(n):
        for k in range(t):
            u = lev[i, k] == best[k]
            cnt[k] += np.int64(u)
            x = np.float64(sci[i, p0 + k]) * scl[i] + zer[i]
            sx[k] += x if u else 0.0
    outdq[:t] = 0
    if has_dq:
        for i in range(n):
            for k in range(t):
                outdq[k] |= np.int64(dq[i, p0 + k]) if lev[i, k] == best[k] else 0
    sv[:t] = 0.0
    if has_var:
        for i in range(n):
            s2 = scl[i] * scl[i]
            for k in range(t):
                sv[k] += np.float64(var[i, p0 + k]) * s2 if lev[i, k] == best[k] else 0.0
    else:  # sample variance about the mean stands in for mean(VAR)
        for i in range(n):
            for k in range(t):
                dev = np.float64(sci[i, p0 + k]) * scl[i] + zer[i] - sx[k] / max(cnt[k], 1)
                sv[k] += dev * dev if lev[i, k] == best[k] else 0.0
    if weighted:
        sw[:t] = 0.0
        sxw[:t] = 0.0
        for i in range(n):
            s2 = scl[i] * scl[i]
            for k in range(t):
                if lev[i, k] == best[k]:
                    v = np.float64(var[i, p0 + k]) * s2
                    x = np.float64(sci[i, p0 + k]) * scl[i] + zer[i]
                    if v > 0.0 and math.isfinite(v):
                        sw[k] += 1.0 / v
                        sxw[k] += x / v
                    else:
                        sw[k] = -math.inf  # marks "fall back to the plain mean"


@numba.njit(nogil=True, cache=True)
def _mean_none_pixels(start, stop, sci, var, dq, scl, zer, use_levels, op,
                      out_s, out_v, out_d, out_n):
    """Mean/wtmean without rejection, frame-major.

    Each frame's rows are read in order and accumulated into per-pixel sums,
    with no per-pixel transposition.

    Same definitions and summation order as the per-pixel path.
    """
    n = sci.shape[0]
    has_var = var.shape[0] > 0
    weighted = has_var and op == WTMEAN
    tile = 256
    lev = np.empty((n, tile), np.int8)
    best = np.empty(tile, np.int8)
    alldq = np.empty(tile, np.int64)
    outdq = np.empty(tile, np.int64)
    cnt = np.empty(tile, np.int64)
    sx = np.empty(tile, np.float64)
    sv = np.empty(tile, np.float64)
    sw = np.empty(tile, np.float64)
    sxw = np.empty(tile, np.float64)
    for p0 in range(start, stop, tile):
        t = min(tile, stop - p0)
        _mean_none_tile(p0, t, sci, var, dq, scl, zer, use_levels, weighted, lev, best, alldq,
                        cnt, sx, sv, sw, sxw, outdq)
        for k in range(t):
            p = p0 + k
            m = cnt[k]
            if m == 0:
                out_s[p], out_v[p], out_d[p], out_n[p] = 0.0, 0.0, alldq[k], 0
                continue
            if has_var:
                mean_var = sv[k] / m
            else:
                mean_var = sv[k] / (m - 1) if m > 1 else 0.0
            if weighted and sw[k] > 0.0:
                out_s[p], out_v[p] = sxw[k] / sw[k], 1.0 / sw[k]
            else:
                out_s[p], out_v[p] = sx[k] / m, mean_var / m
            out_d[p] = outdq[k]
            out_n[p] = min(m, 65535)


@numba.njit(nogil=True, cache=True)
def combine_pixels(start, stop, sci, var, dq, scl, zer, use_levels, op, rej,
                   lsig, hsig, mclip, max_iters, nlow, nhigh, out_s, out_v, out_d, out_n):
    """Combine pixels ``start..stop`` of the flattened block, with its own work buffers.

    ``var``/``dq`` of shape ``(0, 1)`` mean the plane is absent.
    """
    if rej == NONE and op <= WTMEAN:
        _mean_none_pixels(start, stop, sci, var, dq, scl, zer, use_levels, op, out_s, out_v, out_d, out_n)
        return
    n = sci.shape[0]
    tile = max(8, min(256, _TILE_VALUES // n))
    ts = np.empty((tile, n), np.float64)
    tv = np.empty((tile, n if var.shape[0] > 0 else 0), np.float64)
    td = np.empty((tile, n if dq.shape[0] > 0 else 0), np.uint16)
    vals = np.empty(n, np.float64)
    ix = np.empty(n, np.int64)
    sv = np.empty(n, np.float64)
    si = np.empty(n, np.int64)
    lev = np.empty(n, np.int8)
    stack = np.empty(128, np.int64)
    work = np.empty(n + 1, np.float64)
    for p0 in range(start, stop, tile):
        t = min(tile, stop - p0)
        _load_tile(sci, var, dq, p0, t, scl, zer, ts, tv, td)
        for k in range(t):
            p = p0 + k
            g, alldq = _gather(ts, td, k, use_levels, vals, ix, lev)
            if g == 0:
                out_s[p] = 0.0
                out_v[p] = 0.0
                out_d[p] = alldq
                out_n[p] = 0
                continue
            lo = 0
            hi = g
            # sorted values serve minmax/varclip rejection and medians alike; the rank sort is faster than
            # quickselect for the usual few tens of frames. sigclip needs no sort (_sigclip_unsorted).
            is_sorted = (rej != NONE and rej != SIGCLIP) or (op >= MEDIAN and g <= _RANK_SORT_MAX)
            if is_sorted:
                _sort(vals, ix, g, sv, si, stack)
            if rej == SIGCLIP and not is_sorted:
                hi = _sigclip_unsorted(vals, ix, g, lsig, hsig, mclip, max_iters, work)
            elif rej != NONE:
                if rej == MINMAX:
                    lo, hi = minmax_range(g, n, nlow, nhigh)
                elif rej == SIGCLIP:
                    lo, hi = _sigclip(vals, 0, g, lsig, hsig, mclip, max_iters)
                else:
                    lo, hi = _varclip(vals, ix, 0, g, tv, k, lsig, hsig, mclip, max_iters)
            n_median = g if (rej == MINMAX and lo == g - hi) else hi - lo
            value, variance, outdq = _combine_used(vals, ix, lo, hi, tv, td, k, op, is_sorted, n_median)
            out_s[p] = value
            out_v[p] = variance
            out_d[p] = outdq
            out_n[p] = min(hi - lo, 65535)


@numba.njit(nogil=True, cache=True, parallel=True)
def combine_parallel(sci, var, dq, scl, zer, use_levels, op, rej, lsig, hsig,
                     mclip, max_iters, nlow, nhigh, out_s, out_v, out_d, out_n, chunk):
    npix = sci.shape[1]
    nchunks = (npix + chunk - 1) // chunk
    for c in numba.prange(nchunks):
        combine_pixels(c * chunk, min((c + 1) * chunk, npix), sci, var, dq, scl, zer,
                       use_levels, op, rej, lsig, hsig, mclip, max_iters, nlow,
                       nhigh, out_s, out_v, out_d, out_n)


@numba.njit(nogil=True, cache=True)
def median_pixels(start, stop, sci, mask, lower, fill, out):
    """Median of the unmasked finite values of pixels ``start..stop``, else ``fill``."""
    n = sci.shape[0]
    tile = max(8, min(256, _TILE_VALUES // n))
    ts = np.empty((tile, n), np.float64)
    tm = np.empty((tile, n if mask.shape[0] > 0 else 0), np.bool_)
    ones = np.ones(n)
    zeros = np.zeros(n)
    vals = np.empty(n, np.float64)
    for p0 in range(start, stop, tile):
        t = min(tile, stop - p0)
        _load_tile(sci, sci, mask, p0, t, ones, zeros, ts, ts[:, :0], tm)
        for k in range(t):
            g = 0
            for i in range(n):
                x = ts[k, i]
                if math.isfinite(x) and not (tm.shape[1] > 0 and tm[k, i]):
                    vals[g] = x
                    g += 1
            out[p0 + k] = median_unsorted(vals, 0, g, lower) if g > 0 else fill


@numba.njit(nogil=True, cache=True, parallel=True)
def median_parallel(sci, mask, lower, fill, out, chunk):
    npix = sci.shape[1]
    nchunks = (npix + chunk - 1) // chunk
    for c in numba.prange(nchunks):
        median_pixels(c * chunk, min((c + 1) * chunk, npix), sci, mask, lower, fill, out)
