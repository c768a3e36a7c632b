"""The sliding-window sky kernel against a brute-force NumPy reference and the direct combine.

Random sky bands with NaNs, every DQ level, ties and object-mask flags;
windows that slide, jump and hold excluded frames (the target itself, skies
too close); min/max rejection reduced for short windows; every
normalisation and matching mode.
"""
from __future__ import annotations

import math
import zlib

import numpy as np
import pytest

from draconis.kernels._combine_core import _MEDIAN_EFFICIENCY, DQ_HIERARCHY
from draconis.kernels.combine import CombineParameterError, CombineSpec
from draconis.kernels.sky import stack_sky_tile, subtract_sky_block, sky_match, subtract_sky_tile
from draconis.kernels.sky_window import SkySubtractSpec, SkyWindows, window_sky_subtract

SHAPE = (5, 9)


def _level(d: int) -> int:
    return next(i for i, allowed in enumerate(DQ_HIERARCHY) if d & ~allowed & 0xFFFF == 0)


def _fit(nlow: int, nhigh: int, k: int) -> tuple[int, int]:
    """Rejection counts that leave at least one of ``k`` values (trimmed from the larger side first)."""
    while nlow + nhigh >= k:
        nlow, nhigh = (nlow - 1, nhigh) if nlow >= nhigh else (nlow, nhigh - 1)
    return nlow, nhigh


def brute_sky(sci, var, dq, levels, skies, nlow, nhigh, spec: SkySubtractSpec):
    """One target's sky, pixel by pixel, from the definitions (module docstring of kernels.combine)."""
    lev = levels[skies]
    k = len(skies)
    scale, zero = np.ones(k), np.zeros(k)
    if spec.normalise == "scale" and lev[0] > 0:
        scale = np.array([lev[0] / x if x > 0 else 1.0 for x in lev])
    elif spec.normalise == "zero":
        zero = lev[0] - lev
    npix = sci.shape[1]
    out = np.zeros((3, npix))
    for p in range(npix):
        x = sci[skies, p].astype(float) * scale + zero
        v = None if var is None else var[skies, p].astype(float) * scale ** 2
        d = np.zeros(k, int) if dq is None else dq[skies, p].astype(int)
        levs = np.array([(_level(di) if (spec.apply_dq and dq is not None) else 0) if np.isfinite(xi) else 7
                         for xi, di in zip(x, d)])
        best = levs.min()
        if best == 7:
            out[:, p] = 0.0, 0.0, np.bitwise_or.reduce(d)
            continue
        use = np.flatnonzero(levs == best)
        order = use[np.argsort(x[use], kind="stable")]
        g = order.size
        nl, nh = 0, 0
        if spec.reject_method == "minmax":
            nl, nh = (nlow, nhigh) if g == k else (math.floor(nlow * g / k + 0.5), math.floor(nhigh * g / k + 0.5))
            while nl + nh >= g:
                if nl > nh:
                    nl -= 1
                elif nh > nl:
                    nh -= 1
                else:
                    nl, nh = nl - 1, nh - 1
        kept = order[nl:g - nh]
        m = kept.size
        xs = x[kept]
        mean_var = v[kept].mean() if v is not None else (xs.var(ddof=1) if m > 1 else 0.0)
        if spec.operation == "mean":
            value, variance = xs.mean(), mean_var / m
        else:
            lower = spec.operation == "lmedian"
            value = xs[(m - 1) // 2] if (m % 2 or lower) else 0.5 * (xs[m // 2 - 1] + xs[m // 2])
            n = g if (spec.reject_method == "minmax" and nl == nh) else m
            if lower and n % 2 == 0 and n > 1:
                n -= 1
            eff = _MEDIAN_EFFICIENCY[n - 1] / n if n <= len(_MEDIAN_EFFICIENCY) else 0.5 * np.pi / n
            variance = eff * mean_var
        out[:, p] = value, variance, np.bitwise_or.reduce(d[kept])
    return out


def random_skies(rng, nf, *, ties=False, nan_frac=0.03, dq_frac=0.25):
    """``nf`` sky bands (SCI float32, VAR, DQ) with NaNs, every DQ level, optionally many ties."""
    base = rng.normal(1000.0, 30.0, (nf,) + SHAPE)
    if ties:
        base = np.round(base / 20.0) * 20.0  # a handful of distinct values: ties everywhere
    sci = base.astype(np.float32)
    sci[rng.random(sci.shape) < nan_frac] = np.nan
    var = rng.uniform(20.0, 60.0, sci.shape).astype(np.float32)
    bits = np.array([1, 2, 4, 8, 16, 32, 64, 1 | 64, 2 | 8, 128], np.uint16)
    dq = np.where(rng.random(sci.shape) < dq_frac, rng.choice(bits, sci.shape), 0).astype(np.uint16)
    dq[:, 0, :3] = 64  # a column flagged in every frame (an unilluminated corner): the best level is not 0
    dq[:, 1, 0] = 1 | 64
    sci[:, 2, 0] = np.nan  # a pixel with nothing usable
    # flagged in every frame, with rarer bits of the same level on some: the DQ OR of the kept values
    # changes as frames are excluded, rejected, enter and leave
    extra = np.array([0, 1, 2, 8, 32, 1 | 32], np.uint16)
    dq[:, 4, 4:] = 64 | np.where(rng.random((nf, SHAPE[1] - 4)) < 0.3,
                                 rng.choice(extra, (nf, SHAPE[1] - 4)), 0).astype(np.uint16)
    return sci, var, dq


def random_windows(rng, nf, *, width, nlow=1, nhigh=1, exclusions=2, min_k=1):
    """A target per frame: its skies are the frames within ``width`` of it, less itself and a few others."""
    lo, hi, excluded, nl, nh = [], [], [], [], []
    for t in range(nf):
        a, b = max(0, t - width), min(nf, t + width + 1)
        frames = list(range(a, b))
        drop = {t} | set(rng.choice(frames, size=min(exclusions, len(frames)), replace=False).tolist())
        skies = [f for f in frames if f not in drop]
        if len(skies) < min_k:
            skies = [f for f in frames if f != t][:max(min_k, 1)]
        a, b = skies[0], skies[-1] + 1
        lo.append(a)
        hi.append(b)
        excluded.append(np.array([f for f in range(a, b) if f not in skies], np.int64))
        low, high = _fit(nlow, nhigh, len(skies))
        nl.append(low)
        nh.append(high)
    return SkyWindows(np.array(lo), np.array(hi), tuple(excluded), np.array(nl), np.array(nh))


def check(spec, sci, var, dq, levels, windows, rng, *, direct_too=True):
    nf = sci.shape[0]
    ns = len(windows)
    tsci = [rng.normal(1100.0, 30.0, SHAPE).astype(np.float32) for _ in range(ns)]
    tvar = [rng.uniform(20, 60, SHAPE).astype(np.float32) for _ in range(ns)]
    tdq = [np.where(rng.random(SHAPE) < 0.1, 8, 0).astype(np.uint16) for _ in range(ns)]
    tlev = rng.normal(1100.0, 20.0, ns)
    spec = SkySubtractSpec(**{**spec.__dict__, "with_sky": True})
    out = window_sky_subtract(list(sci), None if var is None else list(var), None if dq is None else list(dq),
                              levels, tsci, tvar, tdq, tlev, windows, spec)
    assert out.shape == (ns, 6) + SHAPE and out.dtype == np.float32
    flat = sci.reshape(nf, -1)
    for t in range(ns):
        skies = windows.skies(t)
        ref = brute_sky(flat, None if var is None else var.reshape(nf, -1), None if dq is None else dq.reshape(nf, -1),
                        levels, skies, int(windows.nlow[t]), int(windows.nhigh[t]), spec)
        got = out[t, 3:].reshape(3, -1)
        np.testing.assert_allclose(got[0], ref[0], rtol=2e-7, atol=1e-4, err_msg=f"sky SCI of target {t}")
        np.testing.assert_allclose(got[1], ref[1], rtol=2e-6, atol=1e-6, err_msg=f"sky VAR of target {t}")
        np.testing.assert_array_equal(got[2], ref[2], err_msg=f"sky DQ of target {t}")
        if direct_too:  # the direct combine that skyCorrect uses is the same to float32 rounding
            minmax = spec.reject_method == "minmax" and (windows.nlow[t] or windows.nhigh[t])
            combine = CombineSpec(apply_dq=spec.apply_dq, operation=spec.operation,
                                  reject_method="minmax" if minmax else "none", nlow=int(windows.nlow[t]),
                                  nhigh=int(windows.nhigh[t]))
            cube = stack_sky_tile(sci[skies], None if var is None else var[skies],
                                  dq[skies] if dq is not None else None, levels[skies], combine, mode=spec.normalise)
            np.testing.assert_allclose(out[t, 3:5], cube[:2], rtol=2e-6, atol=1e-4)
            np.testing.assert_array_equal(out[t, 5], cube[2])
            sky_level = levels[skies][0] if spec.normalise else np.median(levels[skies])
            expect = subtract_sky_tile(tsci[t], cube, tlev[t], sky_level, tvar[t], tdq[t], mode=spec.match,
                                       reset=spec.reset, sky_has_var=var is not None)
            np.testing.assert_allclose(out[t, :3], expect, rtol=2e-6, atol=2e-3)
    return out


@pytest.mark.parametrize("operation,reject,normalise,match,apply_dq", [
    ("median", "minmax", "scale", "scale", True),   # skyCorrect's defaults
    ("median", "minmax", "zero", "offset", True),   # GSAOI's
    ("mean", "minmax", "scale", None, True),
    ("lmedian", "none", None, "scale", True),
    ("median", "none", "scale", "offset", False),
    ("mean", "none", "zero", None, False),
])
def test_window_matches_brute_force(operation, reject, normalise, match, apply_dq):
    rng = np.random.default_rng(zlib.crc32(f"{operation}{reject}{normalise}{match}{apply_dq}".encode()))
    nf = 26
    sci, var, dq = random_skies(rng, nf, ties=operation == "median")
    levels = rng.uniform(900.0, 1100.0, nf)
    windows = random_windows(rng, nf, width=6, exclusions=3)
    spec = SkySubtractSpec(operation=operation, reject_method=reject, apply_dq=apply_dq, normalise=normalise,
                           match=match, reset=operation == "mean")
    check(spec, sci, var, dq, levels, windows, rng)


def test_short_windows_reduce_rejection_and_no_var():
    """1-3 skies per target (min/max reduced symmetrically), windows that jump back and forth, no VAR."""
    rng = np.random.default_rng(3)
    nf = 12
    sci, var, dq = random_skies(rng, nf, ties=True)
    levels = rng.uniform(900.0, 1100.0, nf)
    lo = np.array([0, 1, 5, 2, 9, 0, 3])
    hi = np.array([1, 3, 8, 6, 12, 4, 4])
    excluded = (np.zeros(0, int), np.zeros(0, int), np.array([6]), np.array([3, 4]), np.array([10]),
                np.array([1, 2]), np.zeros(0, int))
    k = [hi[t] - lo[t] - excluded[t].size for t in range(len(lo))]
    fitted = [_fit(2, 1, n) for n in k]
    windows = SkyWindows(lo, hi, excluded, np.array([f[0] for f in fitted]), np.array([f[1] for f in fitted]))
    spec = SkySubtractSpec(operation="median", reject_method="minmax")
    check(spec, sci, None, dq, levels, windows, rng)
    check(SkySubtractSpec(operation="mean", reject_method="minmax", normalise="zero"), sci, None, dq, levels,
          windows, rng)


def test_unusable_levels_fall_back_to_the_direct_combine():
    """A sky whose level is not positive cannot be scaled: its targets are combined as stackSkyFrames does."""
    rng = np.random.default_rng(5)
    nf = 14
    sci, var, dq = random_skies(rng, nf)
    levels = rng.uniform(900.0, 1100.0, nf)
    levels[4], levels[9] = -3.0, np.nan
    windows = random_windows(rng, nf, width=3, exclusions=1)
    check(SkySubtractSpec(), sci, var, dq, levels, windows, rng)
    check(SkySubtractSpec(normalise="zero", match="offset"), sci, var, dq, levels, windows, rng)


def test_long_segments_span_several_bitset_words():
    """150 skies: the window's bitset spans three 64-bit words, and a DQ level's ranks cross word boundaries."""
    rng = np.random.default_rng(11)
    nf = 150
    sci, var, dq = random_skies(rng, nf, ties=True, dq_frac=0.4)
    levels = rng.uniform(900.0, 1100.0, nf)
    windows = random_windows(rng, nf, width=40, nlow=2, nhigh=3, exclusions=4)
    assert max(windows.hi - windows.lo) > 64
    check(SkySubtractSpec(), sci, var, dq, levels, windows, rng, direct_too=False)
    check(SkySubtractSpec(operation="mean", reject_method="minmax", normalise="zero", match="offset"), sci, None, dq,
          levels, windows, rng, direct_too=False)


def test_equal_values_are_ordered_by_frame():
    """Equal skies (the same level, values on a coarse grid): ties are ordered by frame, as the stable sort.

    The order decides which frame's VAR and DQ a min/max rejection removes, and which frames a median takes.
    """
    rng = np.random.default_rng(12)
    nf = 90
    sci, var, dq = random_skies(rng, nf, ties=True, dq_frac=0.3)
    levels = np.full(nf, 1000.0)
    windows = random_windows(rng, nf, width=30, nlow=2, nhigh=2, exclusions=3)
    for operation in ("median", "lmedian", "mean"):
        check(SkySubtractSpec(operation=operation, reject_method="minmax"), sci, var, dq, levels, windows, rng)
    check(SkySubtractSpec(normalise=None, match="offset"), sci, None, dq, levels, windows, rng)


def test_results_written_over_the_targets_equal_the_cube():
    """out= the target arrays themselves (a band task's own reads): the same SCI, VAR, DQ as the returned cube."""
    rng = np.random.default_rng(13)
    nf = 30
    sci, var, dq = random_skies(rng, nf)
    levels = rng.uniform(900.0, 1100.0, nf)
    windows = random_windows(rng, nf, width=8, exclusions=2)
    ns = len(windows)
    tsci = rng.normal(1100.0, 30.0, (ns,) + SHAPE).astype(np.float32)
    tvar = rng.uniform(20, 60, (ns,) + SHAPE).astype(np.float32)
    tdq = np.where(rng.random((ns,) + SHAPE) < 0.1, 8, 0).astype(np.uint16)
    tlev = rng.normal(1100.0, 20.0, ns)
    args = (list(sci), list(var), list(dq), levels)
    cube = window_sky_subtract(*args, tsci.copy(), tvar.copy(), tdq.copy(), tlev, windows, SkySubtractSpec())
    assert window_sky_subtract(*args, tsci, tvar, tdq, tlev, windows, SkySubtractSpec(), out=(tsci, tvar, tdq)) is None
    np.testing.assert_array_equal(tsci, cube[:, 0])
    np.testing.assert_array_equal(tvar, cube[:, 1])
    np.testing.assert_array_equal(tdq, cube[:, 2])
    with pytest.raises(CombineParameterError, match="with_sky"):
        window_sky_subtract(*args, tsci, tvar, tdq, tlev, windows, SkySubtractSpec(with_sky=True),
                            out=(tsci, tvar, tdq))


@pytest.mark.parametrize("pass_bytes", [3000, 2 ** 25])
@pytest.mark.parametrize("targets", ["all", "some, out of order"])
def test_results_written_over_the_skies_cubes_equal_the_cube(monkeypatch, pass_bytes, targets):
    """out= the skies' own planes (every target is a sky too, as in a band task): the same results.

    A pass's rows are overwritten only after every sky value of them was used: with passes of one row
    (3000 bytes) and of the whole band, with a sky combined directly (its level is not usable), and with
    targets that are some of the skies in another order (out= then lists of the skies' planes).
    """
    from draconis.kernels import sky_window

    rng = np.random.default_rng(14)
    nf = 30
    sci, var, dq = random_skies(rng, nf)
    levels = rng.uniform(900.0, 1100.0, nf)
    levels[17] = np.nan
    every = random_windows(rng, nf, width=8, exclusions=2)
    assert len(every) == nf  # target t is sky t
    pick = np.arange(nf) if targets == "all" else np.array([f for f in range(nf) if f % 7 != 3])[::-1]
    windows = SkyWindows(every.lo[pick], every.hi[pick], tuple(every.excluded[i] for i in pick), every.nlow[pick],
                         every.nhigh[pick])
    spec = SkySubtractSpec()
    monkeypatch.setattr(sky_window, "_PASS_BYTES", pass_bytes)
    untouched = [p[[f for f in range(nf) if f not in pick]] for p in (sci, var, dq)]
    cube = window_sky_subtract(list(sci), list(var), list(dq), levels, list(sci[pick]), list(var[pick]),
                               list(dq[pick]), levels[pick], windows, spec)
    if targets == "all":
        out = (sci, var, dq)
    else:
        out = tuple([p[f] for f in pick] for p in (sci, var, dq))  # views of the skies' planes
    assert window_sky_subtract(sci, var, dq, levels, *out, levels[pick], windows, spec, out=out) is None
    np.testing.assert_array_equal(sci[pick], cube[:, 0])
    np.testing.assert_array_equal(var[pick], cube[:, 1])
    np.testing.assert_array_equal(dq[pick], cube[:, 2])
    for before, p in zip(untouched, (sci, var, dq)):  # the skies that are not targets are left as they were
        np.testing.assert_array_equal(p[[f for f in range(nf) if f not in pick]], before)


def test_kth_set_bit_by_deposit_and_by_halving():
    """Both ways of finding the median's bit (BMI2's deposit where the CPU has it, halving where not)."""
    import numba

    from draconis.kernels import _sky_walk

    def selects(select):
        @numba.njit
        def run(words, ks, out):
            for i in range(words.shape[0]):
                out[i] = select(words[i], ks[i])
        return run

    rng = np.random.default_rng(2)
    words = rng.integers(1, 2 ** 63, 500, dtype=np.uint64) << rng.integers(0, 2, 500).astype(np.uint64)
    words[:3] = [1, 2 ** 63, 2 ** 64 - 1]
    ks = np.array([rng.integers(0, bin(int(w)).count("1")) for w in words], np.int64)
    expect = [[i for i in range(64) if int(w) >> i & 1][k] for w, k in zip(words, ks)]
    out = np.zeros(words.size, np.int64)
    selects(_sky_walk._select_halving)(words, ks, out)
    np.testing.assert_array_equal(out, expect)
    if _sky_walk._target_has_bmi2():  # the deposit can only be compiled for a CPU with BMI2
        out[:] = -1
        selects(_sky_walk._select_deposit)(words, ks, out)
        np.testing.assert_array_equal(out, expect)


def test_bad_windows_are_refused():
    rng = np.random.default_rng(0)
    sci, var, dq = random_skies(rng, 4)
    tgt = [sci[0]]
    bad = [SkyWindows(np.array([0]), np.array([5]), (np.zeros(0, int),), np.array([0]), np.array([0])),
           SkyWindows(np.array([0]), np.array([3]), (np.array([0]),), np.array([0]), np.array([0])),
           SkyWindows(np.array([0]), np.array([2]), (np.zeros(0, int),), np.array([1]), np.array([1]))]
    for w in bad:
        with pytest.raises(CombineParameterError):
            window_sky_subtract(list(sci), list(var), list(dq), np.ones(4), tgt, [None], [None], np.ones(1), w,
                                SkySubtractSpec())
    with pytest.raises(CombineParameterError, match="sigclip"):
        SkySubtractSpec(reject_method="sigclip")


def test_subtract_block_matches_its_definition():
    rng = np.random.default_rng(1)
    sci = rng.normal(100, 5, SHAPE).astype(np.float32)
    sky = rng.normal(50, 5, SHAPE).astype(np.float32)
    skv = rng.uniform(1, 2, SHAPE).astype(np.float32)
    skd = np.where(rng.random(SHAPE) < 0.3, 1, 0).astype(np.uint16)
    var = rng.uniform(3, 4, SHAPE).astype(np.float32)
    dq = np.where(rng.random(SHAPE) < 0.3, 8, 0).astype(np.uint16)
    factor, offset = sky_match(110.0, 55.0, "scale")
    assert (factor, offset) == (2.0, 0.0) and sky_match(110.0, 55.0, "offset") == (1.0, 55.0)
    assert sky_match(110.0, -1.0, "scale") == (1.0, 0.0) and sky_match(1.0, 2.0, None) == (1.0, 0.0)
    out = subtract_sky_block(sci, sky, skv, skd, var, dq, factor=factor, offset=offset, reset_level=7.0)
    np.testing.assert_allclose(out[0], sci - 2.0 * sky + 7.0, rtol=1e-6)
    np.testing.assert_allclose(out[1], var + 4.0 * skv, rtol=1e-6)
    np.testing.assert_array_equal(out[2], skd | dq)
    out = subtract_sky_block(sci, sky, None, skd, None, None, factor=1.0, offset=3.0)
    np.testing.assert_allclose(out[0], sci - sky - 3.0, rtol=1e-6)
    assert not out[1].any()
