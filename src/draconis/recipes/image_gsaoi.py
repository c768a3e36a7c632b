"""GSAOI IMAGE recipes (science quality): tags {GSAOI, IMAGE} (recipes.md §3.4, §3.5).

GSAOI recipes do not dark-correct, and reference catalogues are only read
from user files (addReferenceCatalog source=None by default: skipped).

The default is ``reduce_nostack``, as in the DRAGONS version the GSAOI
tutorial uses: ``reduce`` of the science frames writes the ``_flatCorrected``
frames and the sky-subtracted ``_skyCorrected`` frames with their source
catalogues, and does not stack them (``draconis disco`` does).  ``-r reduce``
goes on to the distortion-corrected ``_image`` stack (the current DRAGONS
default), and ``alignAndStack`` stacks ``_skyCorrected`` frames.
"""
from __future__ import annotations

from .image_common import part2_mask_transfer, stack_with_masks, two_pass_sky

recipe_tags = frozenset({"GSAOI", "IMAGE"})


def reduce(p) -> None:
    """Calibrate, two-pass sky subtraction, write ``_skyCorrected``, astrometry, align and stack to ``_image``."""
    _sky_corrected(p)
    alignAndStack(p)


def reduce_nostack(p) -> None:
    """Default: to the ``_flatCorrected`` and the sky-subtracted, source-detected ``_skyCorrected`` frames."""
    _sky_corrected(p)


def alignAndStack(p) -> None:  # noqa: N802 - DRAGONS recipe name
    """Reference catalogue, astrometry, alignment, resampling through the distortion model, stack."""
    align_and_stack(p)
    p.storeProcessedScience(suffix="_image")


def align_and_stack(p) -> None:
    """The steps alignAndStack and disco share: catalogue alignment through the distortion, resampling, stack."""
    p.addReferenceCatalog()
    p.determineAstrometricSolution()
    p.adjustWCSToReference()
    p.resampleToCommonFrame()
    p.scaleCountsToReference()
    p.stackFrames()


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


def _calibrate(p) -> None:
    p.prepare()
    p.addDQ()
    p.nonlinearityCorrect()
    p.ADUToElectrons()
    p.addVAR(read_noise=True, poisson_noise=True)
    p.flatCorrect()


def _sky_corrected(p) -> None:
    _calibrate(p)
    p.writeOutputs()
    p.flushPixels()
    two_pass_sky(p)
    p.detectSources()
    p.writeOutputs(suffix="_skyCorrected", strip=True)


_default = reduce_nostack
RECIPES = {"reduce": reduce, "reduce_nostack": reduce_nostack, "alignAndStack": alignAndStack,
           "ultradeep": ultradeep, "ultradeep_part1": ultradeep_part1, "ultradeep_part2": ultradeep_part2,
           "ultradeep_part3": ultradeep_part3}
