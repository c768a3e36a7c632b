"""Recipe libraries: selection by tags, -r resolution, and every called primitive registered."""
from __future__ import annotations

import pytest

from draconis.errors import RecipeError
from draconis.parameters import _OVERRIDES
from draconis.primitives.registry import PRIMITIVES, get_primitive, load_all
from draconis.recipes import Library, find_recipe, libraries, select_library
from draconis.recipes.caller import record
import draconis.recipes as recipes_mod

INSTRUMENTS = ("F2", "NIRI", "GNIRS", "GSAOI")


def test_every_recipe_calls_registered_primitives_with_valid_arguments():
    load_all()
    names = {lib.name for lib in libraries()}
    # the image libraries of the four instruments and the calibration libraries are all checked
    assert {"image_f2", "image_niri", "image_gnirs", "image_gsaoi"} <= names and len(names) >= 8
    for lib in libraries():
        for name, func in lib.recipes.items():
            calls = record(func)
            assert calls, f"{lib.name}.{name} calls no primitive"
            for call in calls:
                spec = get_primitive(call.name)  # raises ParameterError for an unregistered primitive
                args = {k: v for k, v in call.arguments.items() if k not in ("stream", "instream", "outstream")}
                spec.resolve(None, None, {}, args)  # raises on unknown parameters / bad values


@pytest.mark.parametrize("inst", INSTRUMENTS)
def test_library_selection(inst):
    assert select_library({inst, "CAL", "DARK", "RAW"}).name == f"{inst.lower()}_DARK"
    assert select_library({inst, "IMAGE", "CAL", "FLAT", "LAMPON"}).name == f"{inst.lower()}_FLAT_IMAGE"
    assert find_recipe("_default", {inst, "IMAGE", "CAL", "FLAT"}).name == "makeProcessedFlat"
    bpm = [c.name for c in record(find_recipe("makeProcessedBPM", {inst, "IMAGE", "CAL", "FLAT"}).func)]
    assert bpm[-1] == "makeBPM" and "stackFrames" in bpm


def test_dark_recipes_per_instrument():
    names = {inst: [c.name for c in record(find_recipe("_default", {inst, "CAL", "DARK"}).func)]
             for inst in INSTRUMENTS}
    assert "nonlinearityCorrect" not in names["GNIRS"]
    assert names["NIRI"][2:4] == ["nonlinearityCorrect", "ADUToElectrons"]
    assert names["F2"][-2:] == ["stackDarks", "storeProcessedDark"]
    first = record(find_recipe("_default", {"F2", "CAL", "DARK"}).func)[1]
    assert first.name == "addDQ" and first.arguments == {"add_illum_mask": False}


def test_tie_and_missing_library_are_errors(monkeypatch):
    extra = Library("clash", frozenset({"F2", "CAL", "DARK"}), {"x": lambda p: None}, "x")
    original = recipes_mod.libraries
    monkeypatch.setattr(recipes_mod, "libraries", lambda mode="sq": [*original(mode), extra])
    with pytest.raises(RecipeError, match="ambiguous"):
        select_library({"F2", "CAL", "DARK"})
    with pytest.raises(RecipeError, match="no sq recipe library"):
        select_library({"TRECS", "IMAGE"})


def test_recipe_resolution_user_file_and_primitive(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.py").write_text("def quick(p):\n    p.prepare()\n    p.addVAR(read_noise=True)\n")
    tags = {"F2", "CAL", "DARK"}
    for spec in ("mine.py:quick", "mine.quick", str(tmp_path / "mine.py") + ":quick"):
        assert [c.name for c in record(find_recipe(spec, tags).func)] == ["prepare", "addVAR"]
    assert [c.name for c in record(find_recipe("checkWCS" if "checkWCS" in PRIMITIVES else "prepare", tags).func)]
    with pytest.raises(RecipeError, match="no function 'nope'"):
        find_recipe("mine.py:nope", tags)
    with pytest.raises(RecipeError, match="makeProcessedDark"):
        find_recipe("makeProcessedFlat", tags)


def test_instrument_overlays_name_declared_parameters():
    load_all()
    checked = 0
    for (inst, kind), table in _OVERRIDES.items():
        assert inst in INSTRUMENTS and kind in ("DARK", "IMAGE")
        for prim, values in table.items():
            if prim in ("stackSkyFrames", "subtractSky") and prim not in PRIMITIVES:
                continue  # folded into skyCorrect here
            spec = get_primitive(prim)
            for name, value in values.items():
                assert spec.param(name).coerce(value) == value
                checked += 1
    assert checked > 50


@pytest.mark.parametrize("inst,kind,prim,expected", [
    ("GSAOI", "IMAGE", "skyCorrect", {"scale_sky": False, "offset_sky": True, "scale": False, "zero": True,
                                      "dilation": 6.0}),
    ("GNIRS", "IMAGE", "associateSky", {"time": 600.0, "distance": 1.0, "min_skies": 3}),
    ("F2", "IMAGE", "associateSky", {"distance": 3.0}),
    ("NIRI", "DARK", "associateSky", {"time": 900.0}),
    ("F2", "IMAGE", "addDQ", {"add_illum_mask": True, "latency": False}),
    ("F2", "DARK", "makeBPM", {"dark_lo_thresh": None, "flat_hi_thresh": None}),
    ("F2", "IMAGE", "makeBPM", {"dark_lo_thresh": -150.0, "dark_hi_thresh": 3050.0, "flat_lo_thresh": 0.68}),
    ("NIRI", "IMAGE", "detectSources", {"detect_minarea": 40, "detect_thresh": 1.5, "back_filtersize": 3}),
    ("GSAOI", "IMAGE", "resampleToCommonFrame", {"force_affine": False}),
    ("GNIRS", "IMAGE", "adjustWCSToReference", {"first_pass": 2.0, "min_sources": 1, "rotate": True}),
])
def test_instrument_defaults(inst, kind, prim, expected):
    defaults = get_primitive(prim).defaults(inst, kind)
    assert {k: defaults[k] for k in expected} == expected
