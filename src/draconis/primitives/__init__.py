"""Primitives, grouped by stage; importing a module registers its primitives.

``MODULES`` is the explicit list of primitive modules: adding a module means
adding it here (no module scanning).
"""
from __future__ import annotations

import importlib

_MODULE_NAMES: tuple[str, ...] = (
    "prepare",
    "calibrate",
    "stack",
    "calmaking",
    "sky",
    "detect",
    "align",
    "resample",
    "bookkeeping",
    "instrument_defaults",
)

MODULES = tuple(importlib.import_module(f"{__name__}.{m}") for m in _MODULE_NAMES)
