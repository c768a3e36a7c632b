"""GNIRS parameter defaults that differ from the core declarations (parameters.md tables)."""
from __future__ import annotations

from ...parameters import register_overrides

register_overrides("GNIRS", "DARK", {
    "makeBPM": {"dark_lo_thresh": None, "flat_hi_thresh": None},
})

register_overrides("GNIRS", "IMAGE", {
    "addDQ": {"add_illum_mask": True},
    "detectSources": {"detect_minarea": 40, "detect_thresh": 3.0, "deblend_mincont": 0.001, "back_filtersize": 3},
    "adjustWCSToReference": {"first_pass": 2.0, "min_sources": 1, "rotate": True},
    "determineAstrometricSolution": {"initial": 15.0},
    "makeBPM": {"dark_hi_thresh": 100.0, "flat_lo_thresh": 0.1},
})
