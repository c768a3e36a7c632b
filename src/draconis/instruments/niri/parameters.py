"""NIRI parameter defaults that differ from the core declarations (parameters.md tables)."""
from __future__ import annotations

from ...parameters import register_overrides

register_overrides("NIRI", "DARK", {
    "associateSky": {"time": 900.0},
    "detectSources": {"set_saturation": True},
    "makeBPM": {"dark_hi_thresh": 1300.0, "flat_lo_thresh": 0.8},
})

register_overrides("NIRI", "IMAGE", {
    "associateSky": {"time": 900.0},
    "detectSources": {"detect_minarea": 40, "detect_thresh": 1.5, "analysis_thresh": 1.5, "back_filtersize": 3},
    "makeBPM": {"dark_hi_thresh": 1300.0, "flat_lo_thresh": 0.8},
})
