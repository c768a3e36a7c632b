"""NIRI IMAGE recipes (science quality): the library the tags {NIRI, IMAGE} select (recipes.md §3.2, §3.5-3.6)."""
from __future__ import annotations

from .image_common import align_and_stack, part2_mask_transfer, stack_with_masks, two_pass_sky

recipe_tags = frozenset({"NIRI", "IMAGE"})


def reduce(p) -> None:
    """Default: calibrate (first frame dropped), two-pass sky subtraction, align, resample and stack."""
    _calibrate(p)
    two_pass_sky(p)
    p.cleanReadout()
    p.detectSources()
    p.adjustWCSToReference()
    p.resampleToCommonFrame()
    p.scaleCountsToReference()
    p.stackFrames()
    p.storeProcessedScience(suffix="_image")


def ultradeep(p) -> None:
    """Parts 1-3 in one run."""
    _calibrate(p)
    # both streams read the checkpoint: part 2 (two sky passes, detection, a stack) reads main, and
    # recomputing the calibration from the raw files in each of those reads cost ~1 min at 156 frames
    p.flushPixels()
    p.copyInputs(outstream="flat_corrected")
    part2_mask_transfer(p, dilate=True)
    stack_with_masks(p)


def ultradeep_part1(p) -> None:
    """Calibrate to ``_flatCorrected`` frames."""
    _calibrate(p)


def ultradeep_part2(p) -> None:
    """From ``_flatCorrected`` frames to ``_objmaskDilated`` frames carrying the deep stack's mask."""
    p.copyInputs(outstream="flat_corrected")
    part2_mask_transfer(p, dilate=True)


def ultradeep_part3(p) -> None:
    """From ``_objmaskDilated`` frames: sky subtraction with those masks and the final stack."""
    stack_with_masks(p)


def alignAndStack(p) -> None:  # noqa: N802 - DRAGONS recipe name
    """Stack already sky-subtracted frames or sub-stacks."""
    align_and_stack(p)


def _calibrate(p) -> None:
    p.prepare()
    p.addDQ()
    p.removeFirstFrame()
    p.ADUToElectrons()
    p.addVAR(read_noise=True, poisson_noise=True)
    p.nonlinearityCorrect()
    p.darkCorrect()
    p.flatCorrect()


_default = reduce
RECIPES = {"reduce": reduce, "ultradeep": ultradeep, "ultradeep_part1": ultradeep_part1,
           "ultradeep_part2": ultradeep_part2, "ultradeep_part3": ultradeep_part3, "alignAndStack": alignAndStack}
