"""Simulated raw datasets shaped like the seed tutorials' data, with known truth.

``make_dataset(name, outdir, size=..., seed=...)`` writes raw Gemini-like FITS
files (same names, counts, exposure times, tags and header keywords as the
tutorials' data packages) and ``outdir/truth`` (sources, per-frame conditions,
flat, dark current, bad pixels, effect switches).  See docs/simulator.md.
"""
from __future__ import annotations

from .build import NIRI_BPM_NAME, DatasetInfo, make_dataset
from .datasets import DATASETS
from .detector import EFFECTS

__all__ = ["make_dataset", "DATASETS", "DatasetInfo", "EFFECTS", "NIRI_BPM_NAME"]
