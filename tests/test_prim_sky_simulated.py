"""separateSky / associateSky / skyCorrect on the simulator's seed-shaped datasets.

Skipped until ``draconis.simulate.make_dataset`` exists. Only raw science
frames are used: bias, dark current and the flat pattern are common to a
frame and its skies, so sky subtraction must still leave a background of ~0.
"""
from __future__ import annotations

import glob
import os
from collections import Counter

import numpy as np
import pytest

import draconis
from draconis.kernels.sky import background_level

_NOT_SCIENCE = {"FLAT", "DARK", "BPM", "CAL", "PROCESSED", "STANDARD"}


def science_frames(tmp_path_factory, name: str):
    from draconis import simulate

    outdir = tmp_path_factory.mktemp(name)
    simulate.make_dataset(name, outdir, size=64, seed=1)
    files = sorted(glob.glob(os.path.join(outdir, "**", "*.fits"), recursive=True))
    frames = [draconis.open(f) for f in files if "truth" not in f]
    science = [f for f in frames if "IMAGE" in f.tags and not (f.tags & _NOT_SCIENCE)]
    if not science:
        pytest.skip(f"no science frames recognised in simulated {name}")
    target, _ = Counter(f.phu.get("OBJECT") for f in science).most_common(1)[0]
    chosen = sorted((f for f in science if f.phu.get("OBJECT") == target),
                    key=lambda f: f.descriptor("ut_datetime"))
    return chosen


def test_niri_extended_splits_on_target_and_sky(run_primitive, tmp_path_factory):
    frames = science_frames(tmp_path_factory, "niri-extended")
    ctx = run_primitive.context(streams=dict(main=frames))
    objects = run_primitive("separateSky", frames, ctx)
    skies = ctx.stream("sky")
    assert len(objects) + len(skies) == len(frames)
    assert abs(len(objects) - len(skies)) <= 1  # seed: 5 on target, 5 on sky
    def offset(f):
        return np.hypot(f.descriptor("telescope_x_offset"), f.descriptor("telescope_y_offset"))
    assert max(offset(f) for f in objects) < min(offset(f) for f in skies)


def test_f2_deep_dither_makes_every_frame_both_and_sky_subtracts_to_zero(run_primitive, tmp_path_factory):
    frames = science_frames(tmp_path_factory, "f2-deep")
    ctx = run_primitive.context(streams=dict(main=frames))
    objects = run_primitive("separateSky", frames, ctx)
    assert len(objects) == len(ctx.stream("sky")) == len(frames)
    # the simulator shrinks dithers with the field (15" -> ~0.5" at 64 px): the 3" minimum distance
    # of full-size data would leave no sky, so it is shrunk likewise
    main = run_primitive("associateSky", objects, ctx, distance=0.1)
    assert all(len(f.tables["SKYTABLE"]) >= 3 for f in main)
    out = run_primitive("skyCorrect", main, ctx)
    for before, after in zip(main, out):
        raw_level = background_level(np.asarray(before[0].plane("SCI"), float))
        level = background_level(after[0].plane("SCI").compute())
        noise = np.sqrt(max(raw_level, 1.0))
        assert abs(level) < max(0.5 * noise, 0.005 * raw_level)
