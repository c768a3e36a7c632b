"""GSAOI parameter defaults that differ from the core declarations (parameters.md tables).

skyCorrect inherits the GSAOI versions of stackSkyFrames and subtractSky
(parameters.md rule 2), so the same values are declared for all three.
"""
from __future__ import annotations

from typing import Any

from ...parameters import register_overrides

_SKY_STACK: dict[str, Any] = {"scale": False, "zero": True, "dilation": 6.0}
_SKY_SUBTRACT: dict[str, Any] = {"scale_sky": False, "offset_sky": True}

_BOTH: dict[str, dict[str, Any]] = {
    "addDQ": {"non_linear": True, "time": 900.0},
    "associateSky": {"time": 900.0},
    "skyCorrect": {**_SKY_STACK, **_SKY_SUBTRACT},
    "stackSkyFrames": dict(_SKY_STACK),
    "subtractSky": dict(_SKY_SUBTRACT),
    "addReferenceCatalog": {"source": None},
    "makeBPM": {"override_thresh": False, "flat_lo_thresh": 0.5},
}

register_overrides("GSAOI", "DARK", _BOTH)

register_overrides("GSAOI", "IMAGE", {
    **_BOTH,
    "detectSources": {"detect_minarea": 20, "detect_thresh": 1.0, "analysis_thresh": 1.0, "phot_min_radius": 1.0,
                      "back_size": 256, "back_filtersize": 5},
    "adjustWCSToReference": {"first_pass": 3.0},
    "determineAstrometricSolution": {"final": 0.5},
    "resampleToCommonFrame": {"force_affine": False},
})
