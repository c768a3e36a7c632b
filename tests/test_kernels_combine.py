"""The frame-axis combine kernel against hand-built cases and NumPy/astropy references."""
from __future__ import annotations

import math
import threading
import warnings

import numpy as np
import pytest
from astropy.stats import sigma_clip

from draconis.errors import ParameterError
from draconis.kernels import DQ_HIERARCHY, CombineParameterError, CombineSpec, combine_block, median_along_frames

HALF_PI = math.pi / 2


def _median_var(m: int, lower: bool = False, n_all: int | None = None) -> float:
    """var(median of m unit values): the documented efficiency table (N = n_all when minmax dropped as many
    values at each end), π/2 beyond it."""
    from draconis.kernels._combine_core import _MEDIAN_EFFICIENCY

    n = n_all or m
    if lower and n % 2 == 0 and n > 1:
        n -= 1
    return (_MEDIAN_EFFICIENCY[n - 1] if n <= len(_MEDIAN_EFFICIENCY) else HALF_PI) / n


def _combine(sci, var=None, dq=None, *, zero=None, scale=None, parallel=None, **spec):
    """combine_block with the spec's fields given as keywords (shorter tests)."""
    return combine_block(sci, var, dq, CombineSpec(**spec), zero=zero, scale=scale, parallel=parallel)


def _cube(values, dtype=np.float32):
    """A (N, 1, 1) cube from a list of per-frame values."""
    return np.asarray(values, dtype=dtype).reshape(-1, 1, 1)


def _one(values, var=None, dq=None, keep=(0, 1, 2, 3), **kw):
    """Combine one pixel; returns python scalars (sci, var, dq, n_used), or those in ``keep``."""
    out = _combine(_cube(values), None if var is None else _cube(var),
                        None if dq is None else _cube(dq, np.uint16), **kw)
    return tuple(out[k][0, 0].item() for k in keep)


# --------------------------------------------------------------------------- reference


def _ref_level(d: int) -> int:
    return next(level for level, allowed in enumerate(DQ_HIERARCHY) if d & ~allowed & 0xFFFF == 0)


def _ref_pixel(x, v, d, *, operation, reject_method, lsigma=3.0, hsigma=3.0, mclip=True,
               max_iters=None, nlow=0, nhigh=0):
    """Plain NumPy version of one output pixel, written from the documented definitions."""
    n = len(x)
    levels = np.array([_ref_level(int(q)) for q in d]) if d is not None else np.zeros(n, int)
    use = np.flatnonzero(levels == levels.min())
    order = use[np.argsort(x[use], kind="stable")]
    n_all = None
    if reject_method == "minmax":
        g = len(order)
        nl, nh = (nlow, nhigh) if g == n else (math.floor(nlow * g / n + 0.5), math.floor(nhigh * g / n + 0.5))
        while nl + nh >= g:
            nl, nh = (nl - 1, nh) if nl > nh else (nl, nh - 1) if nh > nl else (nl - 1, nh - 1)
        order = order[nl:g - nh]
        n_all = g if nl == nh else None
    elif reject_method in ("sigclip", "varclip"):
        iters = 0
        while len(order) > 1 and (max_iters is None or iters < max_iters):
            vals = x[order]
            centre = np.median(vals) if mclip else vals.mean()
            sigma = np.sqrt(v[order]) if reject_method == "varclip" else vals.std()
            keep = (vals >= centre - lsigma * sigma) & (vals <= centre + hsigma * sigma)
            if keep.all() or not keep.any():
                break
            order = order[keep]
            iters += 1
    vals = x[order]
    m = len(vals)
    if v is not None:
        mean_var = v[order].mean()
    else:
        mean_var = vals.var(ddof=1) if m > 1 else 0.0
    if operation == "mean":
        value, variance = vals.mean(), mean_var / m
    elif operation == "wtmean":
        w = 1.0 / v[order]
        value, variance = (vals * w).sum() / w.sum(), 1.0 / w.sum()
    elif operation == "median":
        value, variance = np.median(vals), _median_var(m, False, n_all) * mean_var
    else:
        value, variance = np.sort(vals)[(m - 1) // 2], _median_var(m, True, n_all) * mean_var
    outdq = int(np.bitwise_or.reduce(d[order])) if d is not None else 0
    return value, variance, outdq, m


def _random_stack(rng, n, ny, nx, *, with_dq=True):
    sci = rng.normal(1000.0, 20.0, (n, ny, nx))
    hits = rng.random(sci.shape) < 0.05
    sci[hits] += rng.uniform(200, 3000, hits.sum())
    sci = sci.astype(np.float32)
    var = rng.uniform(300.0, 500.0, sci.shape).astype(np.float32)
    dq = None
    if with_dq:
        flags = np.array([0, 0, 0, 0, 0, 0, 1, 2, 4, 6, 8, 16, 32, 64, 9, 128], np.uint16)
        dq = flags[rng.integers(0, len(flags), sci.shape)]
        dq[:, 0, 0] = 16  # one pixel where every input is no_data
        dq[:, 0, 1] = 4   # one where every input is saturated
    return sci, var, dq


def _assert_matches_reference(sci, var, dq, **kw):
    out = _combine(sci, var, dq, **kw)
    x64 = sci.astype(np.float64)
    v64 = None if var is None else var.astype(np.float64)
    for y in range(sci.shape[1]):
        for xpix in range(sci.shape[2]):
            ref = _ref_pixel(x64[:, y, xpix], None if v64 is None else v64[:, y, xpix],
                             None if dq is None else dq[:, y, xpix], **kw)
            got = [o[y, xpix] for o in out]
            assert got[3] == ref[3], (y, xpix, kw)
            assert got[2] == ref[2], (y, xpix, kw)
            np.testing.assert_allclose(got[0], ref[0], rtol=1e-6, err_msg=str((y, xpix, kw)))
            np.testing.assert_allclose(got[1], ref[1], rtol=1e-5, atol=1e-9, err_msg=str((y, xpix, kw)))


# --------------------------------------------------------------------------- against references


@pytest.mark.parametrize("operation", ["mean", "wtmean", "median", "lmedian"])
@pytest.mark.parametrize("reject_method", ["none", "minmax", "sigclip", "varclip"])
def test_random_stack_matches_reference(operation, reject_method):
    rng = np.random.default_rng(42)
    sci, var, dq = _random_stack(rng, 12, 6, 7)
    _assert_matches_reference(sci, var, dq, operation=operation, reject_method=reject_method,
                              nlow=2, nhigh=3, lsigma=2.0, hsigma=2.5)


@pytest.mark.parametrize("operation", ["mean", "median", "lmedian"])
@pytest.mark.parametrize("reject_method", ["none", "minmax", "sigclip"])
def test_without_var_and_dq_matches_reference(operation, reject_method):
    rng = np.random.default_rng(7)
    sci, _, _ = _random_stack(rng, 9, 5, 6, with_dq=False)
    _assert_matches_reference(sci, None, None, operation=operation, reject_method=reject_method,
                              nlow=1, nhigh=1, mclip=False, max_iters=2)


@pytest.mark.parametrize("n", [97, 300])
@pytest.mark.parametrize("reject_method", ["sigclip", "varclip", "minmax"])
def test_many_frames_use_the_large_n_sort(n, reject_method):
    rng = np.random.default_rng(n)
    sci, var, dq = _random_stack(rng, n, 3, 4)
    _assert_matches_reference(sci, var, dq, operation="median", reject_method=reject_method,
                              nlow=5, nhigh=9)


@pytest.mark.parametrize("mclip", [True, False])
@pytest.mark.parametrize("max_iters", [None, 1, 3])
def test_sigclip_agrees_with_astropy(mclip, max_iters):
    rng = np.random.default_rng(3)
    sci, _, _ = _random_stack(rng, 25, 16, 20, with_dq=False)
    sci[:, 3, 4] = 5.0  # a constant pixel: zero scatter, nothing rejected
    s, v, d, n_used = _combine(sci, operation="mean", reject_method="sigclip", lsigma=2.5,
                                    hsigma=3.0, mclip=mclip, max_iters=max_iters)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = sigma_clip(sci.astype(np.float64), sigma_lower=2.5, sigma_upper=3.0, maxiters=max_iters,
                         cenfunc="median" if mclip else "mean", stdfunc="std", axis=0)
    np.testing.assert_array_equal(n_used, (~ref.mask).sum(axis=0))
    np.testing.assert_allclose(s, ref.mean(axis=0).filled(np.nan), rtol=1e-6)
    # without a VAR plane the variance is the scatter of the kept values
    np.testing.assert_allclose(v, ref.var(axis=0, ddof=1).filled(np.nan) / n_used, rtol=1e-4)
    assert d.dtype == np.uint16 and not d.any()
    assert n_used[3, 4] == 25 and s[3, 4] == 5.0 and v[3, 4] == 0.0


def test_sigclip_removes_injected_outliers():
    rng = np.random.default_rng(11)
    sci = rng.normal(100.0, 1.0, (20, 8, 8)).astype(np.float32)
    sci[5, 2, 3] = 1e4
    sci[7, 2, 3] = -1e4
    s, _, _, n_used = _combine(sci, reject_method="sigclip")
    assert n_used[2, 3] == 18
    assert abs(s[2, 3] - 100.0) < 1.0


def test_median_none_agrees_with_numpy_on_a_large_block():
    rng = np.random.default_rng(5)
    sci = rng.normal(0.0, 1.0, (8, 120, 100)).astype(np.float32)  # > 8192 pixels: parallel path
    for operation, ref in (("median", np.median(sci, axis=0)), ("mean", sci.mean(axis=0, dtype=np.float64))):
        for parallel in (None, False):
            s, v, _, n_used = _combine(sci, operation=operation, reject_method="none", parallel=parallel)
            np.testing.assert_allclose(s, ref, rtol=1e-6, atol=1e-6)
            assert (n_used == 8).all()


# --------------------------------------------------------------------------- exact small cases


def test_median_and_lmedian_odd_and_even():
    assert _one([5, 1, 3], operation="median", reject_method="none")[0] == 3.0
    assert _one([5, 1, 3, 9], operation="median", reject_method="none")[0] == 4.0
    assert _one([5, 1, 3, 9], operation="lmedian", reject_method="none")[0] == 3.0
    assert _one([5, 1, 3], operation="lmedian", reject_method="none")[0] == 3.0
    assert _one([2, 2, 2, 7, 7, 7], operation="median", reject_method="none")[0] == 4.5


def test_minmax_drops_lowest_and_highest():
    s, v, d, n = _one([10, 1, 7, 100, 4, 6], operation="mean", reject_method="minmax", nlow=1, nhigh=2)
    assert (s, n) == (np.float32(17 / 3), 3)
    s, _, _, n = _one([10, 1, 7, 100, 4], operation="median", reject_method="minmax", nlow=2, nhigh=0)
    assert (s, n) == (10.0, 3)
    # ties at the rejection boundary: only one of the equal lowest values goes
    s, _, _, n = _one([3, 3, 3, 9], operation="mean", reject_method="minmax", nlow=1, nhigh=1)
    assert (s, n) == (3.0, 2)


def test_minmax_counts_scale_with_the_good_fraction():
    values = [1, 2, 3, 4, 5, 6, 7, 8, 9, 100]
    dq = [0] * 9 + [1]  # 9 of 10 good: nlow=nhigh=1 scaled to round(0.9) = 1
    s, _, d, n = _one(values, dq=dq, operation="mean", reject_method="minmax", nlow=1, nhigh=1)
    assert (s, d, n) == (5.0, 0, 7)
    # 2 of 4 good: round(0.5) = 1 each would leave nothing, so both drop to 0
    s, _, d, n = _one([1, 2, 50, 60], dq=[0, 0, 1, 1], operation="mean", reject_method="minmax",
                      nlow=1, nhigh=1)
    assert (s, d, n) == (1.5, 0, 2)
    # 3 of 10 good: round(0.3) = 0, nothing rejected
    s, _, _, n = _one(values, dq=[0, 0, 0] + [1] * 7, reject_method="minmax", nlow=1, nhigh=1)
    assert (s, n) == (2.0, 3)


def test_wtmean_and_variance_formulas():
    x = np.array([10.0, 20.0, 40.0])
    v = np.array([1.0, 4.0, 2.0])
    w = 1 / v
    s, var, _, n = _one(x, var=v, operation="wtmean", reject_method="none")
    assert s == pytest.approx((x * w).sum() / w.sum(), rel=1e-6)
    assert var == pytest.approx(1 / w.sum(), rel=1e-6) and n == 3
    s, var, _, _ = _one(x, var=v, operation="mean", reject_method="none")
    assert (s, var) == (pytest.approx(70 / 3), pytest.approx(v.mean() / 3))
    s, var, _, _ = _one(x, var=v, operation="median", reject_method="none")
    assert (s, var) == (20.0, pytest.approx(_median_var(3) * v.mean()))
    s, var, _, _ = _one(x, var=v, operation="lmedian", reject_method="none")
    assert (s, var) == (20.0, pytest.approx(_median_var(3, True) * v.mean()))
    # a non-positive variance makes the weights meaningless: plain mean instead
    s, var, _, _ = _one(x, var=[1.0, 0.0, 2.0], operation="wtmean", reject_method="none")
    assert (s, var) == (pytest.approx(70 / 3), pytest.approx(1.0 / 3))


def test_variance_from_scatter_without_var():
    x = np.array([1.0, 2.0, 4.0, 7.0])
    _, var, _, _ = _one(x, operation="mean", reject_method="none")
    assert var == pytest.approx(x.var(ddof=1) / 4)
    _, var, _, _ = _one(x, operation="median", reject_method="none")
    assert var == pytest.approx(_median_var(4) * x.var(ddof=1))
    _, var, _, _ = _one(x, operation="wtmean", reject_method="none")
    assert var == pytest.approx(x.var(ddof=1) / 4)
    assert _one([3.0], reject_method="none") == (3.0, 0.0, 0, 1)


def test_varclip_uses_each_values_own_variance():
    # 130 is 30 above the median of 100: 1.7 sigma of its own VAR 300 (kept),
    # but 30 sigma of VAR 1 (rejected), whatever the scatter of the stack
    x = [100, 100, 100, 101, 99, 130]
    s, _, _, n = _one(x, var=[1] * 5 + [300], reject_method="varclip")
    assert n == 6
    s, _, _, n = _one(x, var=[1] * 6, reject_method="varclip")
    assert (s, n) == (100.0, 5)
    # without VAR it is sigclip
    rng = np.random.default_rng(2)
    sci = _random_stack(rng, 15, 4, 4, with_dq=False)[0]
    for a, b in zip(_combine(sci, reject_method="varclip"), _combine(sci, reject_method="sigclip")):
        np.testing.assert_array_equal(a, b)


def test_zero_and_scale_are_applied_before_combining():
    x = np.array([1.0, 2.0, 3.0])
    v = np.array([1.0, 1.0, 1.0])
    scale = np.array([1.0, 2.0, 0.5])
    zero = np.array([0.0, 10.0, -1.0])
    s, var, _, _ = _one(x, var=v, operation="mean", reject_method="none", scale=scale, zero=zero)
    assert s == pytest.approx((x * scale + zero).mean())
    assert var == pytest.approx((v * scale**2).mean() / 3)
    s, _, _, _ = _one(x, operation="median", reject_method="none", zero=[5, 0, 0])
    assert s == 3.0


# --------------------------------------------------------------------------- DQ hierarchy


def test_dq_hierarchy():
    x = [10.0, 20.0, 30.0, 1000.0]
    # all good
    assert _one(x, dq=[0, 0, 0, 0], reject_method="none") == (265.0, pytest.approx(
        np.var(x, ddof=1) / 4, rel=1e-6), 0, 4)
    # one flagged input is left out and its flag does not reach the output
    assert _one(x, dq=[0, 0, 0, 1], reject_method="none", keep=(0, 2, 3)) == (20.0, 0, 3)
    # all saturated: they are used and the output carries the flag
    s, _, d, n = _one(x, dq=[4, 4, 4, 4], reject_method="none")
    assert (s, d, n) == (265.0, 4, 4)
    # non_linear|saturated beats cosmic_ray, which beats overlap, bad_pixel, unilluminated, no_data
    assert _one(x, dq=[8, 6, 2, 1], reject_method="none", keep=(0, 2, 3)) == (25.0, 6, 2)
    assert _one(x, dq=[8, 32, 1, 16], reject_method="none", keep=(0, 2, 3)) == (10.0, 8, 1)
    assert _one(x, dq=[64, 32, 1, 16], reject_method="none", keep=(0, 2, 3)) == (20.0, 32, 1)
    assert _one(x, dq=[64, 16, 1, 16], reject_method="none", keep=(0, 2, 3)) == (30.0, 1, 1)
    assert _one(x, dq=[64, 16, 80, 16], reject_method="none", keep=(0, 2, 3)) == (10.0, 64, 1)
    # all no_data: the last level, output flagged no_data
    s, _, d, n = _one([0.0, 0.0, 0.0], dq=[16, 16, 16], reject_method="none")
    assert (s, d, n) == (0.0, 16, 3)
    # apply_dq=False uses everything and ORs the flags of what it used
    got = _one(x, dq=[0, 2, 0, 1], reject_method="minmax", nhigh=1, apply_dq=False, keep=(0, 2, 3))
    assert got == (20.0, 2, 3)


def test_output_dq_is_or_of_inputs_kept_after_rejection():
    x = [10.0, 11.0, 12.0, 11.0, 11.0, 500.0]
    s, _, d, n = _one(x, dq=[2, 4, 2, 4, 2, 6], reject_method="sigclip", lsigma=2, hsigma=2)
    assert n == 5 and d == 6
    s, _, d, n = _one(x, dq=[2, 2, 2, 2, 2, 4], reject_method="sigclip", lsigma=2, hsigma=2)
    assert (n, d) == (5, 2)


def test_no_usable_input():
    s, v, d, n = _one([np.nan, np.inf, np.nan], dq=[16, 1, 16], reject_method="none")
    assert (s, v, d, n) == (0.0, 0.0, 17, 0)
    s, v, d, n = _one([np.nan, 5.0, np.nan], dq=[0, 1, 0], reject_method="none")
    assert (s, d, n) == (5.0, 1, 1)


# --------------------------------------------------------------------------- errors and helpers


def test_parameter_errors():
    sci = np.zeros((4, 2, 2), np.float32)
    with pytest.raises(CombineParameterError, match="nlow=2 \\+ nhigh=2"):
        _combine(sci, reject_method="minmax", nlow=2, nhigh=2)
    with pytest.raises(ValueError):
        _combine(sci, reject_method="minmax", nlow=4)
    with pytest.raises(ParameterError, match="operation='average'"):
        _combine(sci, operation="average")
    with pytest.raises(ParameterError, match="reject_method"):
        _combine(sci, reject_method="avsigclip")
    with pytest.raises(ParameterError, match="var has shape"):
        _combine(sci, var=np.zeros((3, 2, 2), np.float32))
    with pytest.raises(ParameterError, match="scale has 3 values"):
        _combine(sci, scale=[1, 2, 3])
    with pytest.raises(ParameterError, match="max_iters"):
        _combine(sci, max_iters=0)
    # nlow/nhigh do not matter for other rejection methods
    assert _combine(sci, reject_method="sigclip", nlow=4)[3].tolist() == [[4, 4], [4, 4]]


def test_spec_is_checked_when_made_and_fitted_to_short_inputs():
    with pytest.raises(CombineParameterError, match="lsigma=-1"):
        CombineSpec(lsigma=-1.0)
    with pytest.raises(CombineParameterError, match="nlow=-1"):
        CombineSpec(nlow=-1)
    spec = CombineSpec(reject_method="minmax", nlow=2, nhigh=1)
    assert spec.for_inputs(4) is spec
    assert (spec.for_inputs(3).nlow, spec.for_inputs(3).nhigh) == (1, 1)
    assert spec.for_inputs(2) == CombineSpec(reject_method="none")  # equal counts drop together
    assert CombineSpec(reject_method="minmax", nlow=2).for_inputs(2) == CombineSpec(reject_method="minmax", nlow=1)
    assert CombineSpec().for_inputs(1) == CombineSpec()  # sigclip needs no fitting


def test_outputs_have_documented_types_and_accept_other_input_types():
    sci = np.arange(24, dtype=np.float64).reshape(3, 2, 4)[:, :, ::2]  # non-contiguous float64
    out = _combine(sci, np.ones_like(sci), np.zeros(sci.shape, np.int32), reject_method="none")
    assert [o.dtype for o in out] == [np.float32, np.float32, np.uint16, np.uint16]
    assert all(o.shape == (2, 2) for o in out)
    np.testing.assert_array_equal(out[0], sci.mean(axis=0))


def test_median_along_frames():
    rng = np.random.default_rng(9)
    sci = rng.normal(size=(7, 10, 12)).astype(np.float32)
    mask = rng.random(sci.shape) < 0.3
    mask[:, 0, 0] = True
    sci[2, 1, 1] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # all-NaN slice
        ref = np.nanmedian(np.where(mask, np.nan, sci), axis=0)
    got = median_along_frames(sci, mask)
    np.testing.assert_allclose(got, ref, rtol=1e-6, equal_nan=True)
    assert np.isnan(got[0, 0])
    assert median_along_frames(sci, mask, fill=-1.0)[0, 0] == -1.0
    np.testing.assert_array_equal(median_along_frames(sci[:4], lower=True),
                                  np.sort(sci[:4], axis=0)[1])


@pytest.mark.parametrize("kw", [dict(operation="median", reject_method="sigclip"),
                                dict(operation="wtmean", reject_method="none")])
def test_concurrent_calls_match_serial(kw):
    rng = np.random.default_rng(21)
    blocks = [_random_stack(rng, 10, 96, 96) for _ in range(4)]  # 9216 px: parallel path
    expected = [_combine(*b, parallel=False, **kw) for b in blocks]
    results: dict[int, tuple] = {}
    barrier = threading.Barrier(4)

    def work(i: int) -> None:
        barrier.wait()
        for _ in range(3):
            results[i] = _combine(*blocks[i], parallel=bool(i % 2), **kw)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(4):
        for got, exp in zip(results[i], expected[i]):
            np.testing.assert_array_equal(got, exp)


@pytest.mark.parametrize("nframes, reject", [(4, "none"), (5, "none"), (8, "minmax"), (9, "none"), (60, "none")])
def test_median_variance_matches_the_scatter_of_medians(nframes, reject):
    """Truth: the VAR of a median of Gaussian frames is the variance of the medians themselves."""
    rng = np.random.default_rng(nframes)
    sigma = 3.0
    sci = rng.normal(0.0, sigma, (nframes, 200, 200)).astype(np.float32)
    var = np.full(sci.shape, sigma ** 2, np.float32)
    s, v, _, _ = _combine(sci, var=var, operation="median", reject_method=reject, nlow=1, nhigh=1)
    measured = float(np.var(s))
    assert float(np.median(v)) == pytest.approx(measured, rel=0.03)
