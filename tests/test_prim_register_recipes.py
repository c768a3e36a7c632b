"""The IMAGE recipe libraries call the DRAGONS sequences (recipes.md §3).

That every primitive a recipe calls is registered, with valid arguments, is
tests/test_recipes.py::test_every_recipe_calls_registered_primitives_with_valid_arguments.
"""
from __future__ import annotations

import importlib

import pytest

class Recorder:
    """Stands in for the recipe's primitive set: records (name, arguments) of each call."""

    def __init__(self, streams=None):
        self.calls = []
        self.streams = streams or {}

    def stream(self, name):
        return self.streams.get(name, [])

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda **kw: self.calls.append((name, kw))


def calls(library, recipe):
    rec = Recorder()
    getattr(importlib.import_module(f"draconis.recipes.{library}"), recipe)(rec)
    return rec.calls


def names(library, recipe):
    return [c[0] for c in calls(library, recipe)]


def test_f2_reduce_sequence():
    assert names("image_f2", "reduce") == [
        "prepare", "addDQ", "ADUToElectrons", "addVAR", "nonlinearityCorrect", "darkCorrect", "flatCorrect",
        "flushPixels", "separateSky", "associateSky", "skyCorrect", "detectSources", "transferAttribute",
        "clearStream", "associateSky", "skyCorrect", "flushPixels", "detectSources", "adjustWCSToReference",
        "resampleToCommonFrame", "scaleCountsToReference", "stackFrames", "writeOutputs", "storeProcessedScience"]
    seq = calls("image_f2", "reduce")
    assert seq[10] == ("skyCorrect", {"instream": "sky", "mask_objects": False, "outstream": "skysub"})
    # the skysub stream's catalogues are thrown away with it: only its object masks are measured
    assert seq[11] == ("detectSources", {"stream": "skysub", "catalog": False})
    assert seq[17] == ("detectSources", {})
    assert seq[-1] == ("storeProcessedScience", {"suffix": "_image"})


def test_niri_and_gnirs_reduce():
    niri = names("image_niri", "reduce")
    assert niri[:3] == ["prepare", "addDQ", "removeFirstFrame"] and "flushPixels" not in niri
    assert niri[niri.index("cleanReadout") + 1:] == ["detectSources", "adjustWCSToReference",
                                                      "resampleToCommonFrame", "scaleCountsToReference",
                                                      "stackFrames", "storeProcessedScience"]
    gnirs = calls("image_gnirs", "reduce")
    assert ("skyCorrect", {"mask_objects": False}) in gnirs and ("applyDQPlane", {}) in gnirs
    assert [c[0] for c in gnirs].count("skyCorrect") == 1


def test_gsaoi_has_no_dark_and_nostack_stops_after_detection():
    full = names("image_gsaoi", "reduce")
    assert "darkCorrect" not in full
    assert full.index("addReferenceCatalog") < full.index("adjustWCSToReference")
    nostack = names("image_gsaoi", "reduce_nostack")
    assert nostack[-2:] == ["detectSources", "writeOutputs"] and "stackFrames" not in nostack
    # the seed's DRAGONS: reduce writes _flatCorrected and _skyCorrected frames and does not stack
    import draconis.recipes.image_gsaoi as gsaoi

    assert gsaoi._default is gsaoi.reduce_nostack


def test_ultradeep_is_its_three_parts():
    for lib, dilated in (("image_f2", False), ("image_niri", True), ("image_gsaoi", True)):
        mod = importlib.import_module(f"draconis.recipes.{lib}")
        one = names(lib, "ultradeep")
        # part 1, its checkpoint, then parts 2 and 3 as run from the part-1 files (part 2 copies its inputs)
        assert one == (names(lib, "ultradeep_part1") + ["flushPixels"] + names(lib, "ultradeep_part2")
                       + names(lib, "ultradeep_part3"))
        # the checkpoint replaces the main stream, which part 2 reads: not only the flat_corrected copy
        steps = calls(lib, "ultradeep")
        flush = steps.index(("flushPixels", {}))
        assert steps[flush + 1] == ("copyInputs", {"outstream": "flat_corrected"})
        assert ("dilateObjectMask" in one) == dilated
        assert mod._default is (mod.reduce_nostack if lib == "image_gsaoi" else mod.reduce)
        assert mod.RECIPES["ultradeep"] is mod.ultradeep


def test_ultradeep_part2_requires_on_target_dither():
    from draconis.errors import RecipeError

    class F:
        def __init__(self, stem):
            self.stem = stem

    mod = importlib.import_module("draconis.recipes.image_f2")
    rec = Recorder({"main": [F("a"), F("b")], "sky": [F("a")]})
    with pytest.raises(RecipeError, match="both object and sky"):
        mod.ultradeep_part2(rec)

