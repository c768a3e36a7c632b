"""F2 parameter defaults that differ from the core declarations (parameters.md tables)."""
from __future__ import annotations

from ...parameters import register_overrides

_BOTH = {
    "associateSky": {"distance": 3.0},
}

register_overrides("F2", "DARK", {
    **_BOTH,
    "makeBPM": {"dark_lo_thresh": None, "flat_hi_thresh": None},
})

register_overrides("F2", "IMAGE", {
    **_BOTH,
    "addDQ": {"add_illum_mask": True, "latency": False},
    "detectSources": {"mask": True},
    "makeBPM": {"dark_lo_thresh": -150.0, "dark_hi_thresh": 3050.0, "flat_lo_thresh": 0.68, "flat_hi_thresh": 1.28},
})
