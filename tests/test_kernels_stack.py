"""The stack's per-band kernel, and sigma clipping without sorting against an independent reference."""
from __future__ import annotations

import numpy as np
import pytest

from draconis.kernels.combine import CombineSpec, combine_block
from draconis.kernels.stack import combine_blocks, combine_tile


def _reference_sigclip_mean(values: np.ndarray, lsig=3.0, hsig=3.0, max_iters=None):
    """Mean and kept values of one pixel: iterate centre = median, sigma = std (ddof 0), keep within bounds."""
    kept = values[np.isfinite(values)].astype(np.float64)
    it = 0
    while kept.size > 1 and (max_iters is None or it < max_iters):
        centre, sigma = np.median(kept), kept.std()
        new = kept[(kept >= centre - lsig * sigma) & (kept <= centre + hsig * sigma)]
        if new.size in (0, kept.size):
            break
        kept, it = new, it + 1
    return kept.mean(), kept


@pytest.mark.parametrize("n", [5, 40, 157])
def test_sigclip_matches_a_direct_reference_with_skewed_and_outlying_values(n):
    rng = np.random.default_rng(n)
    sci = (rng.standard_normal((n, 6, 50)) * 15).astype(np.float32)
    sci[:, 1] = rng.exponential(20.0, (n, 50))          # skewed: the median is far from the mean
    sci[:, 2] = rng.standard_normal((n, 50)) * 15 + np.where(np.arange(n) < n // 3, 400, 0)[:, None]  # bimodal
    sci[: max(1, n // 10), 3] += 2000                   # a few huge outliers drag the mean
    sci[:, 4, :25] = 7.0                                 # all equal
    sci[rng.integers(0, n, n // 2), 5, 10] = np.nan
    out, var, dq, used = combine_block(sci, spec=CombineSpec(reject_method="sigclip"), parallel=False)
    for y in range(6):
        for x in range(50):
            mean, kept = _reference_sigclip_mean(sci[:, y, x])
            assert used[y, x] == kept.size, (y, x)
            assert out[y, x] == pytest.approx(mean, rel=1e-6, abs=1e-4), (y, x)


def test_sigclip_max_iters_and_thresholds_follow_the_reference():
    rng = np.random.default_rng(3)
    sci = (rng.standard_normal((60, 4, 40)) * 10).astype(np.float32)
    sci[:6] += rng.uniform(30, 80, (6, 4, 40)).astype(np.float32)
    for kw, ref in (({"max_iters": 1}, {"max_iters": 1}), ({"lsigma": 1.0, "hsigma": 2.0}, {"lsig": 1.0, "hsig": 2.0})):
        out, _, _, used = combine_block(sci, spec=CombineSpec(reject_method="sigclip", **kw), parallel=False)
        for y in range(4):
            for x in range(40):
                mean, kept = _reference_sigclip_mean(sci[:, y, x], **ref)
                assert used[y, x] == kept.size and out[y, x] == pytest.approx(mean, rel=1e-6, abs=1e-4)


def test_combine_tile_packs_sci_var_dq_of_combine_block():
    rng = np.random.default_rng(0)
    sci = (rng.standard_normal((12, 8, 9)) * 5 + 100).astype(np.float32)
    var = np.full(sci.shape, 25.0, np.float32)
    dq = np.zeros(sci.shape, np.uint16)
    dq[3, 2, 2] = 8
    dq[:, 5, 5] = 1  # every input flagged: the output carries their DQ
    options = {"spec": CombineSpec(operation="mean", reject_method="sigclip")}
    packed = combine_tile(sci, var, dq, options)
    s, v, d, _ = combine_block(sci, var, dq, **options)
    assert packed.shape == (3, 8, 9) and packed.dtype == np.float32
    np.testing.assert_array_equal(packed[0], s)
    np.testing.assert_array_equal(packed[1], v)
    np.testing.assert_array_equal(packed[2].astype(np.uint16), d)
    assert packed[2, 5, 5] == 1
    # blockwise form: blocks in order SCI, VAR, DQ with the absent ones left out
    np.testing.assert_array_equal(combine_blocks(sci, dq, has_var=False, has_dq=True, options=options),
                                  combine_tile(sci, None, dq, options))
    no_var = combine_tile(sci, None, None, options)
    assert np.all(no_var[2] == 0) and np.all(no_var[1] > 0)  # variance from the scatter
