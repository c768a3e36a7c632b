"""Load the per-instrument parameter default overlays.

Each ``draconis/instruments/<inst>/parameters.py`` calls
:func:`draconis.parameters.register_overrides`; importing them here, from the
explicit primitive module list, guarantees the overlays exist whenever
primitives are loaded.
"""
from __future__ import annotations

import importlib

OVERLAY_MODULES = tuple(
    importlib.import_module(f"draconis.instruments.{inst}.parameters") for inst in ("f2", "niri", "gnirs", "gsaoi")
)
