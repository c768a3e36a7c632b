"""GNIRS keyhole IMAGE recipes (science quality): tags {GNIRS, IMAGE} (recipes.md §3.3, §3.6)."""
from __future__ import annotations

from .image_common import align_and_stack

recipe_tags = frozenset({"GNIRS", "IMAGE"})


def reduce(p) -> None:
    """Default: calibrate, single-pass sky subtraction (no object masks: the keyhole leaves few pixels), stack."""
    p.prepare()
    p.addDQ()
    p.ADUToElectrons()
    p.addVAR(read_noise=True, poisson_noise=True)
    p.nonlinearityCorrect()
    p.darkCorrect()
    p.flatCorrect()
    p.applyDQPlane()
    p.separateSky()
    p.associateSky()
    p.skyCorrect(mask_objects=False)
    p.detectSources()
    p.adjustWCSToReference()
    p.resampleToCommonFrame()
    p.scaleCountsToReference()
    p.stackFrames()
    p.writeOutputs()
    p.storeProcessedScience(suffix="_image")


def alignAndStack(p) -> None:  # noqa: N802 - DRAGONS recipe name
    """Stack already sky-subtracted frames or sub-stacks (the seed's way around memory limits)."""
    align_and_stack(p)


_default = reduce
RECIPES = {"reduce": reduce, "alignAndStack": alignAndStack}
