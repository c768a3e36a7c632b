"""DARK and FLAT_IMAGE recipe libraries of F2, NIRI, GNIRS and GSAOI (science quality).

recipes.md §1-2.  Each library is a :class:`~draconis.recipes.Library`;
``LIBRARIES`` lists them all.
"""
from __future__ import annotations

from . import Library

# -- DARK --------------------------------------------------------------------


def makeProcessedDark_f2(p) -> None:  # noqa: N802 - DRAGONS recipe name
    """F2 master dark: calibrate each dark, stack them (varclip), store as processed_dark."""
    p.prepare()
    p.addDQ(add_illum_mask=False)
    p.ADUToElectrons()
    p.addVAR(read_noise=True, poisson_noise=True)
    p.nonlinearityCorrect()
    p.stackDarks()
    p.storeProcessedDark()


def makeProcessedDark_niri_gsaoi(p) -> None:  # noqa: N802
    """NIRI/GSAOI master dark: linearity correction before the conversion to electrons."""
    p.prepare()
    p.addDQ(add_illum_mask=False)
    p.nonlinearityCorrect()
    p.ADUToElectrons()
    p.addVAR(read_noise=True, poisson_noise=True)
    p.stackDarks()
    p.storeProcessedDark()


def makeProcessedDark_gnirs(p) -> None:  # noqa: N802
    """GNIRS master dark: no linearity correction of darks."""
    p.prepare()
    p.addDQ(add_illum_mask=False)
    p.ADUToElectrons()
    p.addVAR(read_noise=True, poisson_noise=True)
    p.stackDarks()
    p.storeProcessedDark()


# -- FLAT_IMAGE: makeProcessedFlat ---------------------------------------------


def makeProcessedFlat_f2(p) -> None:  # noqa: N802
    """F2 imaging flat: lamp (or dark-subtracted K) stack, normalised and thresholded."""
    p.prepare()
    p.addDQ()
    p.ADUToElectrons()
    p.addVAR(poisson_noise=True, read_noise=True)
    p.nonlinearityCorrect()
    p.makeLampFlat()
    p.normalizeFlat()
    p.thresholdFlatfield()
    p.storeProcessedFlat()


def makeProcessedFlat_niri(p) -> None:  # noqa: N802
    """NIRI imaging flat: lamp-on minus lamp-off stack, normalised and thresholded."""
    p.prepare()
    p.addDQ()
    p.nonlinearityCorrect()
    p.ADUToElectrons()
    p.addVAR(poisson_noise=True, read_noise=True)
    p.makeLampFlat()
    p.normalizeFlat()
    p.thresholdFlatfield()
    p.storeProcessedFlat()


def makeProcessedFlat_gnirs(p) -> None:  # noqa: N802
    """GNIRS keyhole flat: the keyhole mask is aligned on the flat itself."""
    p.prepare()
    p.addDQ(add_illum_mask=False)
    p.ADUToElectrons()
    p.addVAR(poisson_noise=True, read_noise=True)
    p.nonlinearityCorrect()
    p.makeLampFlat()
    p.addIllumMaskToDQ()
    p.normalizeFlat()
    p.thresholdFlatfield()
    p.storeProcessedFlat()


def makeProcessedFlat_gsaoi(p) -> None:  # noqa: N802
    """GSAOI imaging flat: the four arrays normalised together."""
    p.prepare()
    p.addDQ()
    p.nonlinearityCorrect()
    p.ADUToElectrons()
    p.addVAR(read_noise=True, poisson_noise=True)
    p.makeLampFlat()
    p.normalizeFlat()
    p.thresholdFlatfield()
    p.storeProcessedFlat()


# -- FLAT_IMAGE: makeProcessedBPM (flats first, then short darks) ---------------


def makeProcessedBPM_f2_gsaoi(p) -> None:  # noqa: N802
    """BPM from flats and short darks (F2, GSAOI): output ``<first flat>_bpm.fits``."""
    p.prepare()
    p.addDQ()
    p.addVAR(read_noise=True, poisson_noise=True)
    p.ADUToElectrons()
    p.selectFromInputs(tags="DARK", outstream="darks")
    p.selectFromInputs(tags="FLAT")
    p.stackFrames(stream="darks")
    p.makeLampFlat()
    p.normalizeFlat()
    p.makeBPM()


def makeProcessedBPM_niri(p) -> None:  # noqa: N802
    """BPM from flats and short darks (NIRI)."""
    p.prepare()
    p.ADUToElectrons()
    p.selectFromInputs(tags="DARK", outstream="darks")
    p.selectFromInputs(tags="FLAT")
    p.stackFrames(stream="darks")
    p.makeLampFlat()
    p.normalizeFlat()
    p.makeBPM()


def makeProcessedBPM_gnirs(p) -> None:  # noqa: N802
    """BPM from flats and short darks (GNIRS keyhole)."""
    p.prepare()
    p.ADUToElectrons()
    p.selectFromInputs(tags="DARK", outstream="darks")
    p.selectFromInputs(tags="FLAT")
    p.stackFrames(stream="darks")
    p.makeLampFlat()
    p.addIllumMaskToDQ()
    p.normalizeFlat()
    p.makeBPM()


_DARKS = {"F2": makeProcessedDark_f2, "NIRI": makeProcessedDark_niri_gsaoi,
          "GNIRS": makeProcessedDark_gnirs, "GSAOI": makeProcessedDark_niri_gsaoi}
_FLATS = {"F2": makeProcessedFlat_f2, "NIRI": makeProcessedFlat_niri,
          "GNIRS": makeProcessedFlat_gnirs, "GSAOI": makeProcessedFlat_gsaoi}
_BPMS = {"F2": makeProcessedBPM_f2_gsaoi, "NIRI": makeProcessedBPM_niri,
         "GNIRS": makeProcessedBPM_gnirs, "GSAOI": makeProcessedBPM_f2_gsaoi}

LIBRARIES = [
    *(Library(f"{inst.lower()}_DARK", frozenset({inst, "CAL", "DARK"}),
              {"makeProcessedDark": func}, "makeProcessedDark") for inst, func in _DARKS.items()),
    *(Library(f"{inst.lower()}_FLAT_IMAGE", frozenset({inst, "IMAGE", "CAL", "FLAT"}),
              {"makeProcessedFlat": _FLATS[inst], "makeProcessedBPM": _BPMS[inst]}, "makeProcessedFlat")
      for inst in _FLATS),
]
