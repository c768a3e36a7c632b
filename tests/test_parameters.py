"""Parameter declarations: shared groups, unsupported parameters, runner-opened files, explicit flow."""
from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

import draconis
from draconis.errors import DraconisError, InputError, ParameterError
from draconis.frame import Frame
from draconis.kernels.combine import CombineSpec
from draconis.primitives.registry import get_primitive
from draconis.primitives.stack import COMBINE, STACK

STACKERS = ("stackFrames", "stackDarks", "stackFlats", "makeLampFlat", "skyCorrect")


def _declared(name: str) -> dict:
    return {p.name: p for p in get_primitive(name).params}


@pytest.mark.parametrize("name", STACKERS)
def test_stackers_take_the_one_stack_group(name):
    declared = _declared(name)
    for group_param in STACK:
        if group_param.name not in declared:
            continue
        mine = declared[group_param.name]
        # everything but the default (and whether it is refused) comes from the one declaration
        same = dataclasses.replace(mine, default=group_param.default, unsupported=group_param.unsupported)
        assert same == group_param, (name, group_param.name)
    assert set(COMBINE.names()) <= set(declared)


def test_combine_group_is_the_kernel_spec():
    fields = {f.name: f.default for f in dataclasses.fields(CombineSpec)}
    assert {p.name: p.default for p in COMBINE} == fields
    params = get_primitive("skyCorrect").resolve(None, None, {"nlow": 2})
    spec = CombineSpec.from_params(params)
    assert (spec.operation, spec.reject_method, spec.nlow, spec.nhigh) == ("median", "minmax", 2, 1)
    darks = CombineSpec.from_params(get_primitive("stackDarks").resolve(None, None))
    assert darks.reject_method == "varclip"


def test_unsupported_parameter_is_refused_by_name_unless_default():
    spec = get_primitive("stackDarks")
    assert spec.resolve(None, None, {"statsec": None})["statsec"] is None
    with pytest.raises(ParameterError, match=r"stackDarks:statsec='\[1:10,1:10\]' is not supported .*never normalises"):
        spec.resolve(None, None, {"statsec": "[1:10,1:10]"})
    with pytest.raises(ParameterError, match="stackFrames:save_rejection_map=True is not supported"):
        get_primitive("stackFrames").resolve(None, None, {"save_rejection_map": "True"})
    from draconis.commands.showpars import format_showpars

    text = format_showpars({"F2"}, spec, spec.defaults(), show_all=True)
    assert "Not supported by draconis (stackDarks never normalises its inputs): only the default" in text


# -- files named by parameters are opened by the runner ------------------------------------------
def _fits_file(path, value=1.0):
    phu = fits.PrimaryHDU()
    phu.header.update(INSTRUME="F2", OBJECT="test", ORIGNAME=os.path.basename(path))
    sci = fits.ImageHDU(np.full((8, 10), value, np.float32))
    sci.header.update(EXTNAME="SCI", EXTVER=1)
    fits.HDUList([phu, sci]).writeto(path)
    return str(path)


def test_runner_opens_frame_files_once_and_passes_other_values(run_primitive, tmp_path):
    ctx = run_primitive.context()
    sky = get_primitive("associateSky")
    paths = [_fits_file(tmp_path / f"S2020010{i}S0001.fits") for i in range(2)]
    params = ctx.open_files(sky, sky.resolve(None, None, {"sky": ",".join(paths)}))
    assert [type(f) for f in params["sky"]] == [Frame, Frame]
    assert [f.filename for f in params["sky"]] == [os.path.basename(p) for p in paths]
    again = ctx.open_files(sky, sky.resolve(None, None, {"sky": paths[:1]}))
    assert again["sky"][0] is params["sky"][0]  # opened once per run
    add_dq = get_primitive("addDQ")
    kept = ctx.open_files(add_dq, add_dq.resolve(None, None, {"user_bpm": paths[1]}))
    assert kept["static_bpm"] == "default" and kept["user_bpm"] is params["sky"][1]


def test_a_frame_parameter_may_name_an_input(run_primitive, tmp_path):
    ctx = run_primitive.context()
    inputs = [draconis.open(_fits_file(tmp_path / f"S2020010{i}S0001.fits")) for i in range(2)]
    spec = get_primitive("resampleToCommonFrame")
    params = ctx.open_files(spec, spec.resolve(None, None, {"reference": "S20200101S0001"}), inputs)
    assert params["reference"] is inputs[1]


def test_a_missing_or_unreadable_file_is_named_with_its_parameter(run_primitive, tmp_path):
    ctx = run_primitive.context()
    spec = get_primitive("associateSky")
    with pytest.raises(InputError, match=r"nosuch.fits: no such file \(given as associateSky:sky\)"):
        ctx.open_files(spec, spec.resolve(None, None, {"sky": str(tmp_path / "nosuch.fits")}))
    bad = tmp_path / "cat.ecsv"
    bad.write_text("this is not a table\x00\x01")
    refcat = get_primitive("addReferenceCatalog")
    with pytest.raises(InputError, match=r"cat.ecsv: cannot be read as a table \(addReferenceCatalog:source\)"):
        ctx.open_files(refcat, refcat.resolve(None, None, {"source": str(bad), "format": "ascii.ecsv"}))


def test_reference_catalogue_is_read_by_the_runner_with_its_format(run_primitive, tmp_path):
    path = tmp_path / "refcat.txt"
    Table({"RAJ2000": [10.0, 10.1], "DEJ2000": [-20.0, -20.1]}).write(path, format="ascii.csv")
    frame = draconis.open(_fits_file(tmp_path / "S20200101S0001.fits"))
    (out,) = run_primitive("addReferenceCatalog", [frame], source=str(path), format="ascii.csv")
    assert list(out.tables["REFCAT"]["RAJ2000"]) == [10.0, 10.1]
    (skipped,) = run_primitive("addReferenceCatalog", [frame])  # '2mass': an online catalogue, not a file
    assert "REFCAT" not in skipped.tables


def test_a_stream_parameter_takes_a_stream_or_files(run_primitive, tmp_path):
    source_path = _fits_file(tmp_path / "S20200101S0001.fits", value=5.0)
    source = draconis.open(source_path)
    ctx = run_primitive.context(streams={"masks": [source]})
    spec = get_primitive("transferAttribute")
    assert ctx.open_files(spec, spec.resolve(None, None, {"source": "masks"}))["source"] == [source]
    from_file = ctx.open_files(spec, spec.resolve(None, None, {"source": source_path}))["source"]
    assert [f.path for f in from_file] == [source_path]
    with pytest.raises(InputError, match="nomasks: no such file"):
        ctx.open_files(spec, spec.resolve(None, None, {"source": "nomasks"}))


# -- explicit parameter flow in internal calls ---------------------------------------------------
def _f2_raw(path, value, *, obstype):
    phu = fits.PrimaryHDU()
    phu.header.update(INSTRUME="F2", OBSTYPE=obstype, EXPTIME=5.0, COADDS=1, LNRS=1, OBSERVAT="Gemini-South",
                      GRISM="Open", FILTER1="K-red_G0812", FILTER2="Open", LYOT="f/16_G5830")
    phu.header["DATE-OBS"], phu.header["TIME-OBS"] = "2020-01-04", "01:02:03.0"
    sci = fits.ImageHDU(np.asarray(value, np.int32)[np.newaxis])
    fits.HDUList([phu, sci]).writeto(path)
    return draconis.open(path)


def test_user_value_reaches_the_primitive_another_calls(run_primitive, tmp_path):
    """-p stackDarks:... applies to the stackDarks makeLampFlat calls (makeLampFlat's own values do not)."""
    dark = np.zeros((16, 16))
    darks = [_f2_raw(tmp_path / f"S20200104S000{i}.fits", dark, obstype="DARK") for i in range(3)]
    hot = darks[2].path
    with fits.open(hot, mode="update") as hdul:
        hdul[1].data[0, 5, 5] = 300  # one dark with a hot pixel: a mean of 100 unless it is rejected
    darks[2] = draconis.open(hot)
    flats = [_f2_raw(tmp_path / f"S20200104S001{i}.fits", dark + 1000, obstype="FLAT") for i in range(3)]
    inputs = flats + darks
    (default,) = run_primitive("makeLampFlat", inputs)
    assert float(default[0].plane("SCI")[5, 5]) == pytest.approx(900.0)  # stackDarks' varclip keeps 300
    ctx = run_primitive.context(uparms={"stackDarks:reject_method": "minmax", "stackDarks:nhigh": 1,
                                        "makeLampFlat:reject_method": "none"})
    (flat,) = run_primitive("makeLampFlat", inputs, ctx)
    assert float(flat[0].plane("SCI")[5, 5]) == pytest.approx(1000.0)  # the user's minmax dropped it


def test_internal_calls_are_declared_and_shown():
    from draconis.commands.showpars import format_showpars

    lamp = get_primitive("makeLampFlat")
    assert lamp.sets_on("stackDarks") == ()
    with pytest.raises(DraconisError, match="does not list"):
        lamp.check_call("stackFrames", {})
    with pytest.raises(DraconisError, match="sets nlow on stackDarks"):
        lamp.check_call("stackDarks", {"nlow": 1})
    darks = get_primitive("stackDarks")
    text = format_showpars({"F2"}, darks, darks.defaults())
    assert "Called by makeLampFlat, which sets none of these" in text
    assert "Calls stackDarks, setting none of its parameters" in format_showpars({"F2"}, lamp, lamp.defaults())


# -- no declared parameter that no code reads ----------------------------------------------------
#: read by the runner for every primitive (RunContext.run / open_files)
RUNNER_READS = {"suffix", "skip_primitive", "write_outputs", "stream", "format"}
_PARAM_NAMES = {"p", "params"}


def _reached(func) -> list:
    """Functions and classes of draconis that ``func`` refers to, transitively (by name, through globals)."""
    import inspect
    import types

    seen, todo, out = set(), [func], []
    while todo:
        obj = todo.pop()
        if id(obj) in seen or not getattr(obj, "__module__", "").startswith("draconis"):
            continue
        seen.add(id(obj))
        out.append(obj)
        if inspect.isclass(obj):
            todo += [v for v in vars(obj).values() if inspect.isfunction(v)]
            todo += [v.__func__ for v in vars(obj).values() if isinstance(v, (classmethod, staticmethod))]
            continue
        codes, names = [obj.__code__], set()
        while codes:
            code = codes.pop()
            names |= set(code.co_names)
            codes += [c for c in code.co_consts if isinstance(c, types.CodeType)]
        for name in names:
            target = obj.__globals__.get(name)
            if inspect.isfunction(target) or inspect.isclass(target):
                todo.append(target)
            elif inspect.ismodule(target) and target.__name__.startswith("draconis"):
                todo += [getattr(target, n) for n in names if inspect.isfunction(getattr(target, n, None))]
    return out


def _is_params(node) -> bool:
    import ast

    return (isinstance(node, ast.Name) and node.id in _PARAM_NAMES) or (
        isinstance(node, ast.Attribute) and node.attr in _PARAM_NAMES)


def _names_read(objects) -> set[str]:
    """Parameter names read as ``p.name``, ``p["name"]`` or ``p.get("name")`` (p, params, self.p), and the
    fields of the specs built with ``Spec.from_params``."""
    import ast
    import dataclasses
    import inspect
    import textwrap

    read = set()
    for obj in objects:
        if inspect.isclass(obj):
            if dataclasses.is_dataclass(obj) and hasattr(obj, "from_params"):
                read |= {f.name for f in dataclasses.fields(obj)}
            continue
        try:
            source = textwrap.dedent(inspect.getsource(obj))
        except (OSError, TypeError):  # generated code (a dataclass __init__): no parameter reads
            continue
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Attribute) and _is_params(node.value):
                read.add(node.attr)
            elif isinstance(node, ast.Subscript) and _is_params(node.value) and isinstance(node.slice, ast.Constant):
                read.add(node.slice.value)
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
                  and _is_params(node.func.value) and node.args and isinstance(node.args[0], ast.Constant)):
                read.add(node.args[0].value)
    return read


def test_every_declared_parameter_is_read_or_refused():
    from draconis.primitives.registry import PRIMITIVES, load_all

    load_all()
    unread = {}
    for name, spec in sorted(PRIMITIVES.items()):
        read = _names_read(_reached(spec.func)) | RUNNER_READS
        missing = [p.name for p in spec.params if p.name not in read and not p.unsupported]
        if missing:
            unread[name] = missing
    assert not unread, f"declared parameters no code reads (implement, remove or declare unsupported): {unread}"


def test_unsupported_parameter_accepts_the_instrument_default(monkeypatch):
    # no declared parameter is both unsupported and given another default by an instrument today
    # (resampleToCommonFrame:force_affine was, until it was implemented): a declaration made for the test
    from draconis import parameters
    from draconis.parameters import P, register_overrides
    from draconis.primitives.registry import PrimitiveSpec

    spec = PrimitiveSpec("testPrimitive", lambda frames, p, ctx: frames,
                         (P("fast", bool, True, "a shortcut", unsupported="not implemented"),), "")
    monkeypatch.setattr(parameters, "_OVERRIDES", dict(parameters._OVERRIDES))  # the test's instrument goes after it
    register_overrides("TESTINSTRUMENT", "IMAGE", {"testPrimitive": {"fast": False}})
    assert spec.resolve("TESTINSTRUMENT", "IMAGE", {"fast": False})["fast"] is False  # the instrument's default
    with pytest.raises(ParameterError, match="fast=False is not supported"):
        spec.resolve("F2", "IMAGE", {"fast": False})


def test_flush_pixels_force_and_write_outputs_overwrite(run_primitive, tmp_path):
    stored = draconis.open(_fits_file(tmp_path / "S20200101S0001.fits"))
    ctx = run_primitive.context()
    assert run_primitive("flushPixels", [stored], ctx)[0] is stored  # read straight from disk: nothing to flush
    assert run_primitive("flushPixels", [stored], ctx, force=True)[0] is not stored
    doubled = stored.map_extensions(lambda e: e.with_planes(SCI=e.plane("SCI") * 2))
    (flushed,) = run_primitive("flushPixels", [doubled], ctx)
    assert flushed[0].plane("SCI").sum().compute() == 160.0  # computed once, read back from its checkpoint
    assert run_primitive("flushPixels", [flushed], ctx)[0] is flushed
    (written,) = run_primitive("writeOutputs", [stored.with_suffix("_copy")], ctx)
    assert os.path.exists(os.path.join(ctx.outdir, "S20200101S0001_copy.fits"))
    with pytest.raises(InputError, match="S20200101S0001_copy.fits: exists and overwrite=False"):
        run_primitive("writeOutputs", [stored.with_suffix("_copy")], ctx, overwrite=False)
