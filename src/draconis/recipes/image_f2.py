"""F2 IMAGE recipes (science quality): the library the tags {F2, IMAGE} select (recipes.md §3.1, §3.5-3.7)."""
from __future__ import annotations

from .image_common import align_and_stack, part2_mask_transfer, stack_with_masks, two_pass_sky

recipe_tags = frozenset({"F2", "IMAGE"})


def reduce(p) -> None:
    """Default: calibrate, two-pass sky subtraction with object masks, align, resample and stack."""
    p.prepare()
    p.addDQ()
    p.ADUToElectrons()
    p.addVAR(read_noise=True, poisson_noise=True)
    p.nonlinearityCorrect()
    p.darkCorrect()
    p.flatCorrect()
    p.flushPixels()
    two_pass_sky(p, flush=True)
    p.detectSources()
    p.adjustWCSToReference()
    p.resampleToCommonFrame()
    p.scaleCountsToReference()
    p.stackFrames()
    p.writeOutputs()
    p.storeProcessedScience(suffix="_image")


def ultradeep(p) -> None:
    """Parts 1-3 in one run: a first stack's object mask drives a second, fully masked, sky subtraction."""
    _calibrate(p)
    # both streams read the checkpoint: part 2 (two sky passes, detection, a stack) reads main, and
    # recomputing the calibration from the raw files in each of those reads cost ~1 min at 156 frames
    p.flushPixels()
    p.copyInputs(outstream="flat_corrected")
    part2_mask_transfer(p, dilate=False)
    stack_with_masks(p)


def ultradeep_part1(p) -> None:
    """Calibrate to ``_flatCorrected`` frames."""
    _calibrate(p)


def ultradeep_part2(p) -> None:
    """From ``_flatCorrected`` frames to ``_objmaskTransferred`` frames carrying the deep stack's mask."""
    p.copyInputs(outstream="flat_corrected")
    part2_mask_transfer(p, dilate=False)


def ultradeep_part3(p) -> None:
    """From ``_objmaskTransferred`` frames: sky subtraction with those masks and the final stack."""
    stack_with_masks(p)


def alignAndStack(p) -> None:  # noqa: N802 - DRAGONS recipe name
    """Stack already sky-subtracted frames or sub-stacks."""
    align_and_stack(p)


def _calibrate(p) -> None:
    p.prepare()
    p.addDQ()
    p.ADUToElectrons()
    p.addVAR(read_noise=True, poisson_noise=True)
    p.nonlinearityCorrect()
    p.darkCorrect()
    p.flatCorrect()


_default = reduce
#: Recipes by the names users type with ``-r``.
RECIPES = {"reduce": reduce, "ultradeep": ultradeep, "ultradeep_part1": ultradeep_part1,
           "ultradeep_part2": ultradeep_part2, "ultradeep_part3": ultradeep_part3,
           "alignAndStack": alignAndStack}
