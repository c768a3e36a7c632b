"""draconis: Gemini near-infrared imaging reduction on Dask.

Public API::

    import draconis
    frame = draconis.open("S20200104S0075.fits")     # lazy frame
    frame.tags, frame.exposure_time()
    draconis.dataselect.select_data(files, ["DARK"], [], draconis.dataselect.expr_parser("exposure_time==5"))
    r = draconis.Reduce(); r.files = files; r.runr()
    draconis.caldb.set_local_database(); draconis.caldb.add_cal("x_dark.fits")
    draconis.disco(gsaoi_sky_corrected_files, output="my_Kshort_stack.fits")   # GSAOI mosaic
"""
from __future__ import annotations

import importlib
from typing import Any

from . import config as _config  # noqa: F401  (registers the defaults)
from .errors import DraconisError

__version__ = "0.1.0"

# Everything else loads on first use: `import draconis` stays fast, and a Dask worker that unpickles a
# task function from draconis.kernels or draconis.io._tasks imports only what that task needs (not
# xarray, astropy.table or the primitives).
_LAZY = {
    "open": ("draconis.io", "open_frame"),
    "Frame": ("draconis.frame", "Frame"),
    "Extension": ("draconis.frame", "Extension"),
    "Reduce": ("draconis.reduce", "Reduce"),
    "dataselect": ("draconis.dataselect", None),
    "caldb": ("draconis.caldb", None),
    "simulate": ("draconis.simulate", None),
    "disco": ("draconis.disco_stu.disco", "disco"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module_name, attr = _LAZY[name]
        module = importlib.import_module(module_name)
        return getattr(module, attr) if attr else module
    raise AttributeError(f"module 'draconis' has no attribute {name!r}")


__all__ = ["open", "Frame", "Extension", "DraconisError", "Reduce", "dataselect", "caldb", "simulate", "disco"]
