"""skyCorrect on synthetic dithered sequences with a known sky: levels, scaling, masking, shared stacks."""
from __future__ import annotations

import logging

import dask.array as da
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from draconis.frame import Frame, make_extension
from draconis.kernels.sky import background_level
from draconis.primitives.registry import get_primitive
from draconis.testing import raise_if_dask_computes


SHAPE = (64, 96)
PIXSCALE = 0.117


def pattern() -> np.ndarray:
    """A multiplicative sky pattern (like an imperfect flat), mean 1."""
    y, x = np.mgrid[:SHAPE[0], :SHAPE[1]]
    return 1.0 + 0.1 * (x / SHAPE[1] - 0.5) + 0.05 * np.sin(y / 7.0)


def make_frame(i, level, *, dx=0.0, sources=(), objmask=None, seed=None, noise=True):
    """Frame ``i`` (30 s apart) with sky ``level`` × pattern, optional sources (x, y, peak, sigma)."""
    rng = np.random.default_rng(i if seed is None else seed)
    y, x = np.mgrid[:SHAPE[0], :SHAPE[1]]
    image = level * pattern()
    for sx, sy, peak, sig in sources:
        image = image + peak * np.exp(-((x - sx) ** 2 + (y - sy) ** 2) / (2 * sig * sig))
    sci = (rng.poisson(image) if noise else image).astype(np.float32)
    phu = fits.Header()
    phu.update(INSTRUME="NIRI", TELESCOP="Gemini-North", OBSTYPE="OBJECT", EXPTIME=20.0, COADDS=1,
               FILTER1="Kprime_G0206", FILTER2="open", FILTER3="f6-cam_G5212", RA=150.0, DEC=2.0,
               ORIGNAME=f"N20160102S{i:04d}.fits")
    phu["DATE-OBS"] = "2016-01-02"
    phu["UT"] = f"10:{(30 * i) // 60:02d}:{(30 * i) % 60:02d}.0"
    hdr = fits.Header()
    hdr.update(CTYPE1="RA---TAN", CTYPE2="DEC--TAN", CRPIX1=SHAPE[1] / 2, CRPIX2=SHAPE[0] / 2,
               CRVAL1=150.0 + dx / 3600, CRVAL2=2.0, CD1_1=-PIXSCALE / 3600, CD1_2=0.0, CD2_1=0.0,
               CD2_2=PIXSCALE / 3600)
    chunks = (16, -1)
    ext = make_extension(hdr, da.from_array(sci, chunks=chunks), da.from_array(image.astype(np.float32), chunks=chunks),
                         da.zeros(SHAPE, dtype=np.uint16, chunks=chunks),
                         None if objmask is None else da.from_array(objmask.astype(np.uint8), chunks=chunks))
    return Frame(phu=phu, extensions=(ext,), filename=phu["ORIGNAME"])


def with_skies(frame, skies):
    return frame.replace(tables={"SKYTABLE": Table({"SKYNAME": [s.filename for s in skies]})})


def residual(frame):
    return frame[0].plane("SCI").compute().astype(np.float64)


LEVELS = [1000.0, 1040.0, 980.0, 1100.0, 1010.0, 1060.0]


@pytest.fixture(scope="module")
def sequence():
    return [make_frame(i, level, dx=10.0 * (i % 2)) for i, level in enumerate(LEVELS)]


def test_default_sky_correct_leaves_zero_background(run_primitive, sequence):
    science = [with_skies(f, [s for s in sequence if s is not f][:4]) for f in sequence[4:]]
    science.insert(0, with_skies(sequence[0], sequence[1:5]))
    ctx = run_primitive.context(streams=dict(main=science, sky=sequence))
    with raise_if_dask_computes():
        out = run_primitive("skyCorrect", science, ctx)
    for frame in out:
        res = residual(frame)
        # scale_sky matches levels; the median of 2 (after min/max of 4) skies adds noise ~0.8 × pixel noise
        assert abs(np.median(res)) < 3.0
        assert 1.0 * np.sqrt(1000) < res.std() < 1.6 * np.sqrt(1000)
        assert "SKYTABLE" not in frame.tables and "SUBSKY" in frame.phu
        assert frame.filename.endswith("_skyCorrected.fits")
    var = out[0][0].plane("VAR").compute()
    assert np.all(var > science[0][0].plane("VAR").compute())  # sky variance added


def test_identical_sky_lists_share_one_sky_graph(run_primitive, sequence):
    a, b = sequence[:3], sequence[3:]
    science = [with_skies(f, b) for f in a] + [with_skies(f, a) for f in b[:2]] + [with_skies(b[2], a[:2])]
    ctx = run_primitive.context(streams=dict(main=science, sky=sequence))
    with raise_if_dask_computes():
        out = run_primitive("skyCorrect", science, ctx)
    stacks = [{name for name in f[0].plane("SCI").dask.layers if name.startswith("sky-stack")} for f in out]
    assert all(len(s) == 1 for s in stacks)
    assert len(set.union(*stacks)) == 3  # three distinct sky lists
    assert stacks[0] == stacks[1] == stacks[2] and stacks[3] == stacks[4] != stacks[5]
    layers = set().union(*(f[0].plane("SCI").dask.layers for f in out))
    assert not any(name.startswith("rechunk") for name in layers)  # the frame axis is never rechunked
    # all six frames computed together: each sky stack is built once
    results = da.compute(*[f[0].plane("SCI") for f in out])
    assert all(abs(np.median(r)) < 5 for r in results)


def test_scale_sky_offset_sky_and_neither(run_primitive):
    pat_level = 1000.0
    skies = [make_frame(10 + i, pat_level * (1 + 0.02 * i), dx=20.0, noise=False) for i in range(3)]
    target = with_skies(make_frame(0, 1.2 * pat_level, noise=False), skies)
    ctx = run_primitive.context(streams=dict(main=[target], sky=skies))
    scaled = residual(run_primitive("skyCorrect", [target], ctx)[0])
    offset = residual(run_primitive("skyCorrect", [target], ctx, scale_sky=False, offset_sky=True)[0])
    neither = residual(run_primitive("skyCorrect", [target], ctx, scale_sky=False)[0])
    both = residual(run_primitive("skyCorrect", [target], ctx, scale_sky=True, offset_sky=True)[0])
    reset = residual(run_primitive("skyCorrect", [target], ctx, reset_sky=True)[0])
    # the sky stack has the first sky's level (skies normalised to it): 1000
    assert abs(np.median(neither) - 200.0 * np.median(pattern())) < 2.0
    assert np.max(np.abs(scaled)) < 0.5  # multiplicative pattern removed exactly
    assert abs(np.median(offset)) < 1.0 and 5.0 < np.ptp(offset) < 50.0  # level matched, pattern residual left
    np.testing.assert_allclose(both, scaled, atol=1e-3)  # scale wins over offset
    science_level = background_level(target[0].plane("SCI").compute())
    assert abs(science_level - 1200.0 * np.median(pattern())) < 10.0
    np.testing.assert_allclose(reset - scaled, science_level, atol=0.01)


def test_gsaoi_defaults_use_zero_and_offset():
    spec = get_primitive("skyCorrect")
    defaults = spec.defaults("GSAOI", "IMAGE")
    assert defaults["zero"] is True and defaults["offset_sky"] is True
    assert defaults["scale_sky"] is False and defaults["scale"] is False and defaults["dilation"] == 6.0
    niri = spec.defaults("NIRI", "IMAGE")  # the overlay is GSAOI's only
    assert (niri["zero"], niri["offset_sky"], niri["scale_sky"], niri["dilation"]) == (False, False, True, 2.0)


def test_zero_normalisation_with_offset_sky(run_primitive):
    skies = [make_frame(10 + i, 200.0 + 30 * i, dx=20.0) for i in range(4)]
    target = with_skies(make_frame(0, 260.0), skies)
    ctx = run_primitive.context(streams=dict(main=[target], sky=skies))
    res = residual(run_primitive("skyCorrect", [target], ctx, scale=False, zero=True, scale_sky=False,
                                 offset_sky=True)[0])
    assert abs(np.median(res)) < 2.0


def test_object_masking_removes_the_bias_of_a_source_in_the_skies(run_primitive):
    blob = (40.0, 30.0, 3000.0, 4.0)
    y, x = np.mgrid[:SHAPE[0], :SHAPE[1]]
    footprint = np.hypot(x - 40, y - 30) < 9
    skies = [make_frame(10 + i, 1000.0, dx=20.0, sources=[blob] if i < 2 else (),
                        objmask=footprint if i < 2 else np.zeros(SHAPE, bool)) for i in range(4)]
    target = with_skies(make_frame(0, 1000.0), skies)
    ctx = run_primitive.context(streams=dict(main=[target], sky=skies))
    unmasked = residual(run_primitive("skyCorrect", [target], ctx, mask_objects=False)[0])
    masked = residual(run_primitive("skyCorrect", [target], ctx, mask_objects=True)[0])
    core = np.hypot(x - 40, y - 30) < 3
    assert np.mean(unmasked[core]) < -1000.0  # the source in two of four skies is over-subtracted
    assert abs(np.mean(masked[core])) < 30.0


def test_missing_objmask_is_warned_and_frames_without_skies_pass(run_primitive, caplog, sequence):
    target = with_skies(sequence[0], sequence[1:4])
    ctx = run_primitive.context(streams=dict(main=[target, sequence[5]], sky=sequence))
    with caplog.at_level(logging.WARNING, logger="draconis"):
        out = run_primitive("skyCorrect", [target, sequence[5]], ctx)
    assert "has no OBJMASK" in caplog.text and "no associated sky frames" in caplog.text
    assert out[1].extensions is sequence[5].extensions and "SUBSKY" not in out[1].phu  # passed unchanged


def test_two_skies_reduce_minmax_rejection(run_primitive, caplog, sequence):
    target = with_skies(sequence[0], sequence[1:3])
    ctx = run_primitive.context(streams=dict(main=[target], sky=sequence))
    with caplog.at_level(logging.WARNING, logger="draconis"):
        out = run_primitive("skyCorrect", [target], ctx)
    assert "rejection reduced" in caplog.text
    assert abs(np.median(residual(out[0]))) < 5.0


def test_save_sky_puts_the_stacks_in_a_stream(run_primitive, sequence):
    target = with_skies(sequence[0], sequence[1:5])
    ctx = run_primitive.context(streams=dict(main=[target], sky=sequence))
    run_primitive("skyCorrect", [target], ctx, save_sky=True)
    saved = ctx.stream("sky_stacks")
    assert [f.filename for f in saved] == ["N20160102S0000_sky.fits"]
    level = background_level(saved[0][0].plane("SCI").compute())
    assert abs(level - LEVELS[1] * np.median(pattern())) < 15  # normalised to the first sky


def test_background_level_is_the_mode_not_the_mean():
    rng = np.random.default_rng(7)
    values = np.concatenate([rng.normal(500.0, 20.0, 20000), rng.uniform(500, 5000, 3000)])
    assert abs(background_level(values) - 500.0) < 3.0
    assert np.mean(values) > 750
    assert background_level(np.full(100, 3.0)) == 3.0
    assert np.isnan(background_level(np.array([np.nan])))


def test_two_pass_sky_block_masks_an_extended_source(run_primitive):
    """The F2/NIRI/GSAOI block: skies sky-subtracted, sources detected, masks attached, then science."""
    y, x = np.mgrid[:SHAPE[0], :SHAPE[1]]
    frames = [make_frame(i, 1000.0 + 10 * i, dx=0.6 * i, sources=[(30.0 + 4 * i, 32.0, 600.0, 3.0)])
              for i in range(6)]
    ctx = run_primitive.context(streams=dict(main=frames))
    main = run_primitive("separateSky", frames, ctx)
    assert len(main) == len(ctx.stream("sky")) == 6  # dither on target: every frame is both
    ctx.set_stream("sky", run_primitive("associateSky", ctx.stream("sky"), ctx, time=900.0, distance=0.1))
    with raise_if_dask_computes():
        skysub = run_primitive("skyCorrect", ctx.stream("sky"), ctx, mask_objects=False)
    detected = run_primitive("detectSources", skysub, ctx, detect_minarea=20, detect_thresh=3.0)
    # transferAttribute(stream=sky, source=skysub, attribute=OBJMASK)
    ctx.set_stream("sky", [f.with_extensions([e.with_planes(OBJMASK=d[0].plane("OBJMASK"))
                                              for e in f.extensions])
                           for f, d in zip(ctx.stream("sky"), detected)])
    main = run_primitive("associateSky", main, ctx, time=900.0, distance=0.1)
    with raise_if_dask_computes():
        final = run_primitive("skyCorrect", main, ctx, mask_objects=True)
    for i in (2, 3):
        centre = np.hypot(x - (30 + 4 * i), y - 32) < 4
        first, second = residual(skysub[i]), residual(final[i])
        truth = 600.0 * np.exp(-((x - 30 - 4 * i) ** 2 + (y - 32) ** 2) / 18.0)
        bias_first = np.mean((first - truth)[centre])
        bias_second = np.mean((second - truth)[centre])
        assert bias_first < -20.0  # the source overlaps in the skies: over-subtracted without masks
        assert abs(bias_second) < 0.3 * abs(bias_first)


def test_statsec_restricts_the_level_statistics(run_primitive):
    skies = [make_frame(10 + i, 1000.0, dx=20.0, noise=False) for i in range(3)]
    # a science frame whose right half is brighter (a large object): statsec on the left half ignores it
    target = make_frame(0, 1000.0, noise=False, sources=[(80.0, 32.0, 400.0, 12.0)])
    target = with_skies(target, skies)
    ctx = run_primitive.context(streams=dict(main=[target], sky=skies))
    res = residual(run_primitive("skyCorrect", [target], ctx, statsec="[1:30,1:64]")[0])
    assert np.max(np.abs(res[:, :30])) < 0.5
    from draconis.errors import ParameterError
    with pytest.raises(ParameterError, match="statsec"):
        run_primitive("skyCorrect", [target], ctx, statsec="[30:1,1:64]")


def test_single_pass_block_through_the_runner(tmp_path):
    """GNIRS-style block run as recipe steps: separateSky -> associateSky -> skyCorrect -> detectSources."""
    from draconis.reduce.context import RunContext

    frames = [make_frame(i, 1000.0 + 5 * i, dx=6.0 * (i % 3), sources=[(30.0 + 10 * (i % 3), 32.0, 900.0, 1.5)])
              for i in range(6)]
    ctx = RunContext(streams={"main": frames}, workdir=tmp_path)
    ctx.run("separateSky")
    ctx.run("associateSky", distance=1.0)
    with raise_if_dask_computes():
        ctx.run("skyCorrect", mask_objects=False)
    ctx.run("detectSources", detect_minarea=5)
    out = ctx.stream("main")
    assert [f.filename for f in out] == [f"N20160102S{i:04d}_sourcesDetected.fits" for i in range(6)]
    for i, frame in enumerate(out):
        cat = frame[0].objcat
        best = np.min(np.hypot(cat["X_IMAGE"] - 1 - (30 + 10 * (i % 3)), cat["Y_IMAGE"] - 33))
        assert best < 0.3
        assert "SKYTABLE" not in frame.tables and "SUBSKY" in frame.phu
    ctx.close()


def _clipped_stats_reference(values, nsigma=3.0, iters=5):
    """The clipping of background_level written with numpy medians over the whole sample (as it was)."""
    centre = float(np.median(values))
    sigma = 1.4826 * float(np.median(np.abs(values - centre)))
    for _ in range(iters):
        if not sigma > 0:
            break
        kept = values[np.abs(values - centre) < nsigma * sigma]
        if kept.size < 3:
            break
        centre = float(np.median(kept))
        sigma = 1.4826 * float(np.median(np.abs(kept - centre)))
    return centre, sigma


@pytest.mark.parametrize("case", ["normal", "sources", "integers", "odd", "tiny", "flat"])
def test_clipped_stats_on_sorted_values_equal_numpy_medians(case):
    """The bisection/merge clipping of the level gives exactly the numpy medians' centre and sigma."""
    from draconis.kernels.sky import _clipped_stats

    rng = np.random.default_rng(len(case))
    values = {
        "normal": rng.normal(1000.0, 12.0, 40001),
        "sources": np.concatenate([rng.normal(50.0, 3.0, 30000), rng.exponential(400.0, 3000) + 50.0]),
        "integers": np.round(rng.normal(200.0, 4.0, 10000)),  # many ties, deviations equal either side
        "odd": rng.standard_cauchy(999) * 5.0 + 7.0,
        "tiny": np.array([3.0, 1.0, 2.0, 100.0]),
        "flat": np.full(60, 4.5),
    }[case].astype(np.float64)
    got = _clipped_stats(np.sort(values))
    assert got == _clipped_stats_reference(values)
