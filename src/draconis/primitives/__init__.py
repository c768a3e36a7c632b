"""Primitives, grouped by stage; importing a module registers its primitives.

``MODULES`` is the explicit list of primitive modules: adding a module means
adding it here (no module scanning).
"""
from __future__ import annotations

import importlib

_MODULE_NAMES: tuple[str, ...] = (
    # filled in as stages land: "prepare", "calibrate", "stack", "calmaking",
    "prepare",
    "calibrate",
    "stack",
    "calmaking",
    # "bookkeeping", "sky", "detect", "register", "resample"
    "sky",
    "detect",
    "register",
    "resample",
    "bookkeeping",
    "instrument_defaults",
)

MODULES = tuple(importlib.import_module(f"{__name__}.{m}") for m in _MODULE_NAMES)
