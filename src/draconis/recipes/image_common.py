"""Steps shared by the IMAGE recipes of every instrument (recipes.md §3).

Each helper is a run of primitive calls exactly as the instruments' recipes
list them, so a recipe reads like the observing manual: ``p`` is the
recipe's primitive set, and ``p.name(**arguments)`` runs primitive ``name``
on stream "main" (or the stream its arguments name).
"""
from __future__ import annotations


def two_pass_sky(p, *, flush: bool = False) -> None:
    """Sky-subtract the skies among themselves, mask their objects, then sky-subtract the science frames.

    The sky frames are first sky-subtracted without masks, sources are
    detected on them and their OBJMASKs attached to the sky frames, so the
    real sky subtraction of the science frames can mask objects in the skies.
    """
    p.separateSky()
    p.associateSky(stream="sky")
    p.skyCorrect(instream="sky", mask_objects=False, outstream="skysub")
    p.detectSources(stream="skysub", catalog=False)  # only the masks outlive this stream
    p.transferAttribute(stream="sky", source="skysub", attribute="OBJMASK")
    p.clearStream(stream="skysub")
    p.associateSky()
    p.skyCorrect(mask_objects=True)
    if flush:
        p.flushPixels()


def align_and_stack(p) -> None:
    """Detect sources, align the WCSs, resample onto one grid, match counts and stack."""
    p.detectSources()
    p.adjustWCSToReference()
    p.resampleToCommonFrame()
    p.scaleCountsToReference()
    p.stackFrames()


def part2_mask_transfer(p, *, dilate: bool) -> None:
    """Ultradeep part 2 after its input copy: stack, detect on the stack, push its mask back to every frame.

    F2 resamples the stack's OBJMASK onto the flat-fielded copies
    (``dilate=False``); NIRI and GSAOI also dilate it by 2 pixels.
    """
    p.separateSky()
    require_object_and_sky(p)
    two_pass_sky_steps(p)
    p.detectSources()
    p.adjustWCSToReference()
    p.transferAttribute(stream="flat_corrected", source="main", attribute="wcs")
    p.flushPixels()
    p.resampleToCommonFrame()
    p.scaleCountsToReference()
    p.stackFrames()
    p.detectSources()
    p.writeOutputs()
    if dilate:
        p.transferObjectMask(stream="flat_corrected", source="main")
        p.clearStream(stream="main")
        p.dilateObjectMask(instream="flat_corrected", outstream="main", dilation=2)
    else:
        p.transferObjectMask(instream="flat_corrected", outstream="main", source="main")


def _stream(p, name: str) -> list:
    getter = getattr(p, "stream", None)
    if callable(getter):
        return list(getter(name))
    return list(getattr(p, "streams", {}).get(name, []))


def require_object_and_sky(p) -> None:
    """Ultradeep needs every frame to be both object and sky (a dither on target); RecipeError otherwise."""
    from ..errors import RecipeError

    main = {f.stem for f in _stream(p, "main")}
    sky = {f.stem for f in _stream(p, "sky")}
    if main != sky:
        odd = sorted(main ^ sky)
        raise RecipeError(f"ultradeep needs every frame to be both object and sky (an on-target dither); "
                          f"{len(odd)} frame(s) are only one of them: {', '.join(odd[:5])}"
                          f"{' ...' if len(odd) > 5 else ''}")


def two_pass_sky_steps(p) -> None:
    """The two-pass sky block after separateSky (ultradeep part 2 has already separated the skies)."""
    p.associateSky(stream="sky")
    p.skyCorrect(instream="sky", mask_objects=False, outstream="skysub")
    p.detectSources(stream="skysub", catalog=False)  # only the masks outlive this stream
    p.transferAttribute(stream="sky", source="skysub", attribute="OBJMASK")
    p.clearStream(stream="skysub")
    p.associateSky()
    p.skyCorrect(mask_objects=True)


def stack_with_masks(p) -> None:
    """Sky subtraction with the stack-derived masks, then the final stack."""
    p.separateSky()
    p.associateSky()
    p.skyCorrect(mask_objects=True)
    p.detectSources()
    p.adjustWCSToReference()
    p.resampleToCommonFrame()
    p.scaleCountsToReference()
    p.stackFrames()
    p.writeOutputs()
    p.storeProcessedScience(suffix="_image")
