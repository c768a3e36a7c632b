"""associateSky and separateSky on hand-built frame sequences (times, pointings)."""
from __future__ import annotations

import logging

import numpy as np
import pytest
from astropy.io import fits

from draconis.frame import Frame, make_extension
from draconis.primitives.sky import choose_skies, classify_frames

PIXSCALE = 0.117  # arcsec/pixel (NIRI f/6)
RA0, DEC0 = 150.0, 2.0


def make_frame(index: int, seconds: float, dx: float = 0.0, dy: float = 0.0, *, exptime: float = 20.0,
               filt: str = "Kprime_G0206", shape=(64, 64), guided: bool = True) -> Frame:
    """A NIRI-like frame observed ``seconds`` after 10:00 UT, pointed (dx, dy) arcsec from the target."""
    phu = fits.Header()
    phu.update(INSTRUME="NIRI", TELESCOP="Gemini-North", OBSTYPE="OBJECT", OBSCLASS="science",
               DATE_OBS="x", EXPTIME=exptime, COADDS=1, RA=RA0, DEC=DEC0, FILTER1=filt, FILTER2="open",
               FILTER3="f6-cam_G5212", XOFFSET=dx, YOFFSET=dy)
    del phu["DATE_OBS"]
    phu["DATE-OBS"] = "2016-01-02"
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    phu["UT"] = f"{10 + int(h):02d}:{int(m):02d}:{s:04.1f}"
    if guided:
        phu["PWFS2_ST"] = "guiding"
    hdr = fits.Header()
    cosd = np.cos(np.radians(DEC0))
    hdr.update(CTYPE1="RA---TAN", CTYPE2="DEC--TAN", CRPIX1=(shape[1] + 1) / 2, CRPIX2=(shape[0] + 1) / 2,
               CRVAL1=RA0 + dx / 3600 / cosd, CRVAL2=DEC0 + dy / 3600, CD1_1=-PIXSCALE / 3600, CD1_2=0.0,
               CD2_1=0.0, CD2_2=PIXSCALE / 3600)
    ext = make_extension(hdr, np.zeros(shape, np.float32))
    phu["ORIGNAME"] = f"N20160102S{index:04d}.fits"
    return Frame(phu=phu, extensions=(ext,), filename=phu["ORIGNAME"])


def names(frames):
    return [f.stem for f in frames]


# -- associateSky -------------------------------------------------------------
def dither(n, step_s=30.0, offset=10.0):
    """n frames every step_s seconds on a 2-point dither of ±offset arcsec."""
    return [make_frame(i, i * step_s, dx=offset * (1 if i % 2 else -1)) for i in range(n)]


def test_skies_are_the_frames_within_time_and_beyond_distance():
    frames = dither(10)
    skies = choose_skies(frames[4], frames, time=100.0, distance=1.0, min_skies=3, max_skies=None)
    # within 100 s: frames 1..7 except itself; frames 2, 6 are at the same position (distance 0)
    assert names(skies) == names([frames[1], frames[3], frames[5], frames[7]])


def test_min_skies_overrides_the_time_window(caplog):
    frames = dither(10, step_s=300.0)
    with caplog.at_level(logging.INFO, logger="draconis.test"):
        skies = choose_skies(frames[4], frames, time=100.0, distance=1.0, min_skies=3, max_skies=None,
                             log=logging.getLogger("draconis.test"))
    # nothing within 100 s; the 3 nearest in time at the other dither position: 3, 5 (300 s), then 1 or 7 (900 s)
    assert len(skies) == 3
    assert {frames[3].stem, frames[5].stem} < set(names(skies)) <= {f.stem for f in frames[1:8:2]}
    assert "min_skies=3" in caplog.text


def test_max_skies_caps_and_keeps_the_nearest_in_time():
    frames = dither(10)
    skies = choose_skies(frames[4], frames, time=1000.0, distance=1.0, min_skies=3, max_skies=2)
    assert names(skies) == names([frames[3], frames[5]])


def test_distance_excludes_frames_too_close():
    frames = [make_frame(i, i * 30.0, dx=0.5 * i) for i in range(6)]
    skies = choose_skies(frames[0], frames, time=1000.0, distance=1.2, min_skies=1, max_skies=None)
    assert names(skies) == names(frames[3:])  # 1.5, 2.0, 2.5 arcsec away; 0.5 and 1.0 are too close


def test_configuration_must_match():
    frames = dither(6)
    frames[3] = make_frame(3, 90.0, dx=10.0, filt="J_G0202")
    frames[5] = make_frame(5, 150.0, dx=10.0, exptime=30.0)
    skies = choose_skies(frames[2], frames, time=1000.0, distance=1.0, min_skies=3, max_skies=None)
    assert names(skies) == names([frames[1]])


def test_too_few_candidates_is_warned(caplog):
    frames = dither(3)
    with caplog.at_level(logging.WARNING, logger="draconis.test"):
        skies = choose_skies(frames[0], frames, time=600.0, distance=1.0, min_skies=3, max_skies=None,
                             log=logging.getLogger("draconis.test"))
    assert names(skies) == names([frames[1]])
    assert "only 1 sky candidate" in caplog.text and "min_skies=3" in caplog.text


def test_associate_sky_primitive_stores_skytable_and_moves_orphans(run_primitive, caplog):
    objects = [make_frame(i, i * 30.0) for i in range(4)]
    skies = [make_frame(10 + i, 200.0 + i * 30.0, dx=300.0) for i in range(3)]
    lonely = make_frame(20, 5000.0, filt="J_G0202")
    ctx = run_primitive.context(streams=dict(main=objects + [lonely], sky=skies))
    with caplog.at_level(logging.WARNING, logger="draconis.test"):
        out = run_primitive("associateSky", objects + [lonely], ctx, time=900.0)
    assert names(out) == names(objects)
    assert all(f.filename.endswith("_skyAssociated.fits") for f in out)
    assert list(out[0].tables["SKYTABLE"]["SKYNAME"]) == [s.filename for s in skies]
    assert names(ctx.stream("no_skies")) == [lonely.stem]
    assert "no sky frames" in caplog.text
    assert "SKYTABLE" not in objects[0].tables  # inputs untouched


def test_use_all_ignores_time_and_configuration(run_primitive):
    frames = dither(6, step_s=1000.0)
    frames[5] = make_frame(5, 5000.0, dx=10.0, filt="J_G0202")
    ctx = run_primitive.context(streams=dict(main=frames, sky=[]))
    out = run_primitive("associateSky", frames, ctx, use_all=True, time=10.0)
    assert list(out[0].tables["SKYTABLE"]["SKYNAME"]) == [frames[i].filename for i in (1, 3, 5)]


# -- separateSky ----------------------------------------------------------------
def test_dither_on_target_makes_every_frame_both(run_primitive):
    frames = [make_frame(i, i * 30.0, dx=5.0 * (i % 3), dy=-4.0 * (i % 2)) for i in range(6)]
    ctx = run_primitive.context(streams=dict(main=frames))
    out = run_primitive("separateSky", frames, ctx)
    assert names(out) == names(frames) == names(ctx.stream("sky"))
    assert all(f.phu["OBJFRAME"] and f.phu["SKYFRAME"] for f in out)


def test_offset_to_sky_splits_by_distance_to_target(run_primitive):
    objects = [make_frame(i, i * 30.0, dx=3.0 * (i % 2)) for i in range(5)]
    skies = [make_frame(10 + i, 150.0 + i * 30.0, dx=200.0 + 3.0 * (i % 2), dy=150.0) for i in range(5)]
    frames = [f for pair in zip(objects, skies) for f in pair]
    ctx = run_primitive.context(streams=dict(main=frames))
    out = run_primitive("separateSky", frames, ctx)
    assert names(out) == names(objects)
    assert names(ctx.stream("sky")) == names(skies)
    assert all(f.filename.endswith("_skySeparated.fits") for f in out)


def test_ref_obj_and_headers_from_an_earlier_run(run_primitive):
    frames = [make_frame(i, i * 30.0) for i in range(4)]
    is_obj, is_sky = classify_frames(frames, ref_obj=f"{frames[0].stem}.fits,{frames[1].stem}")
    assert is_obj == [True, True, False, False] and is_sky == [False, False, True, True]
    ctx = run_primitive.context(streams=dict(main=frames))
    out = run_primitive("separateSky", frames, ctx, ref_sky=frames[3].filename)
    again = run_primitive.context(streams=dict(main=out + ctx.stream("sky")))
    assert names(run_primitive("separateSky", out + ctx.stream("sky"), again)) == names(frames[:3])


def test_unguided_frames_are_sky():
    frames = [make_frame(i, i * 30.0, guided=i != 2) for i in range(4)]
    is_obj, is_sky = classify_frames(frames)
    assert is_obj == [True, True, False, True] and is_sky == [True, True, True, True]


@pytest.mark.parametrize("frac", [0.3, 1.0])
def test_frac_fov_decides_overlap(frac):
    # field 64 px * 0.117" = 7.5": two pointings 4" apart overlap at frac_FOV=1 but not at 0.3
    frames = [make_frame(i, i * 30.0, dx=4.0 * (i >= 2)) for i in range(4)]
    is_obj, is_sky = classify_frames(frames, frac_fov=frac)
    if frac == 1.0:
        assert all(is_obj) and all(is_sky)
    else:
        assert is_obj == [True, True, False, False]
