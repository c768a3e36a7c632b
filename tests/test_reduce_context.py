"""RunContext on its own: streams, parameter precedence, internal calls, checkpoints, user calibrations."""
from __future__ import annotations

import logging

import numpy as np
import pytest
from astropy.io import fits

from draconis.frame import Frame, make_extension
from draconis.parameters import P, suffix_param
from draconis.primitives.registry import PRIMITIVES, primitive
from draconis.reduce import RunContext, normalize_ucals
from draconis.recipes.caller import PrimitiveCaller
from draconis.errors import ParameterError


@pytest.fixture
def test_primitives():
    names = ["tstScale", "tstInner", "tstOuter"]

    @primitive("tstScale", suffix_param("_scaled"), P("factor", float, 2.0, "multiply SCI", low=0.0))
    def scale(frames, p, ctx):
        return [f.map_extensions(lambda e: e.with_planes(SCI=e.plane("SCI") * p.factor)) for f in frames]

    @primitive("tstInner", suffix_param("_inner"), P("factor", float, 1.0, "x"), P("offset", float, 0.0, "y"))
    def inner(frames, p, ctx):
        ctx.seen = dict(p)
        return [f.map_extensions(lambda e: e.with_planes(SCI=e.plane("SCI") * p.factor + p.offset)) for f in frames]

    @primitive("tstOuter", suffix_param("_outer"), P("factor", float, 3.0, "x"), P("other", int, 1, "z"),
               calls={"tstInner": ("offset",)})
    def outer(frames, p, ctx):
        return ctx.call("tstInner", frames, offset=5.0)

    yield
    for n in names:
        PRIMITIVES.pop(n, None)


def frame(name: str, value: float) -> Frame:
    ext = make_extension(fits.Header({"EXTNAME": "SCI"}), np.full((8, 6), value, np.float32))
    return Frame(phu=fits.Header({"INSTRUME": "TEST"}), extensions=(ext,), filename=f"{name}.fits")


def sci(f: Frame) -> np.ndarray:
    return np.asarray(f[0].plane("SCI"))


def test_streams_instream_outstream(test_primitives, tmp_path):
    ctx = RunContext(streams={"main": [frame("a", 1.0)]}, workdir=tmp_path)
    p = PrimitiveCaller(ctx)
    p.tstScale(outstream="doubled")
    assert sci(ctx.stream("main")[0])[0, 0] == 1.0  # instream left intact
    assert sci(ctx.stream("doubled")[0])[0, 0] == 2.0
    assert ctx.stream("doubled")[0].filename == "a_scaled.fits"
    p.tstScale(stream="doubled", factor=3)
    assert sci(ctx.stream("doubled")[0])[0, 0] == 6.0
    p.clearStream(stream="doubled")
    assert ctx.stream("doubled") == [] and ctx.stream("nothing") == []


def test_precedence_default_user_recipe(test_primitives, tmp_path, caplog):
    ctx = RunContext(streams={"main": [frame("a", 1.0)]}, workdir=tmp_path, uparms=[("tstScale:factor", "5")])
    assert sci(ctx.run("tstScale")[0])[0, 0] == 5.0
    logger = logging.getLogger("draconis")
    logger.addHandler(caplog.handler)
    try:
        assert sci(ctx.run("tstScale", factor=2.0)[0])[0, 0] == 10.0  # recipe wins over user
    finally:
        logger.removeHandler(caplog.handler)
    assert "the user value '5' is ignored" in caplog.text
    with pytest.raises(ParameterError, match="outside the valid range"):
        ctx.run("tstScale", factor=-1)


def test_skip_primitive(test_primitives, tmp_path):
    ctx = RunContext(streams={"main": [frame("a", 1.0)]}, workdir=tmp_path, uparms={"tstScale:skip_primitive": True})
    assert sci(ctx.run("tstScale")[0])[0, 0] == 1.0


def test_internal_call_gets_only_what_the_caller_names(test_primitives, tmp_path):
    ctx = RunContext(streams={"main": [frame("a", 1.0)]}, workdir=tmp_path,
                     uparms=[("tstInner:offset", 100.0), ("tstOuter:factor", 4.0), ("tstInner:factor", 2.0)])
    out = ctx.run("tstOuter")
    # factor: the user's for tstInner (the caller's own 4.0 is not passed down); offset: the caller's argument
    assert ctx.seen["factor"] == 2.0 and ctx.seen["offset"] == 5.0 and ctx.seen["suffix"] == "_inner"
    assert "other" not in ctx.seen
    assert sci(out[0])[0, 0] == 7.0 and out[0].filename == "a_outer.fits"
    bare = RunContext(streams={"main": [frame("b", 1.0)]}, workdir=tmp_path)
    bare.run("tstOuter")
    assert bare.seen["factor"] == 1.0  # tstInner's own default, not tstOuter's 3.0


def test_checkpoint_round_trip_and_cleanup(test_primitives, tmp_path):
    ctx = RunContext(streams={"main": [frame("a", 1.5), frame("b", 2.5)]}, workdir=tmp_path)
    PrimitiveCaller(ctx).tstScale()
    PrimitiveCaller(ctx).flushPixels()
    frames = ctx.stream("main")
    assert [f.filename for f in frames] == ["a_scaled.fits", "b_scaled.fits"]
    assert "zarr" in frames[0][0].plane("SCI").name or list(tmp_path.rglob("*.zarr"))
    assert sci(frames[1])[0, 0] == 5.0
    ctx.close()
    assert not list(tmp_path.rglob("*.zarr"))


def test_calibration_from_ucals_only(tmp_path):
    dark = frame("d_dark", 3.0)
    ctx = RunContext(streams={"main": [frame("a", 1.0)]}, ucals={"processed_dark": dark}, workdir=tmp_path)
    assert ctx.calibration("processed_dark", ctx.stream("main")[0]) is dark
    assert ctx.calibration("processed_flat", ctx.stream("main")[0]) is None


def test_normalize_ucals_both_forms():
    cals = ["processed_dark:N20120102S0538_dark.fits", "processed_flat:x.fits"]
    assert normalize_ucals(cals) == normalize_ucals(["a.fits"], cals) == {
        "processed_dark": "N20120102S0538_dark.fits", "processed_flat": "x.fits"}
    with pytest.raises(ParameterError):
        normalize_ucals(["dark:x.fits"])
    with pytest.raises(ParameterError):
        normalize_ucals(["processed_dark"])
