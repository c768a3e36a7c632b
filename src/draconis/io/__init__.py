"""Reading and writing frames: FITS (inputs and outputs) and zarr (checkpoints).

The names below load their module on first use, so that a Dask worker that
only runs the pixel tasks of :mod:`draconis.io._tasks` never imports the
frame model (xarray, astropy.table).
"""
from __future__ import annotations

import importlib
import os
from typing import Any

_EXPORTS = {
    "open_fits": "fits", "write_fits": "fits", "write_fits_delayed": "fits", "write_many": "fits",
    "open_zarr": "zarr", "write_zarr": "zarr", "write_zarr_delayed": "zarr", "write_zarr_many": "zarr",
}


def open_frame(path: str | os.PathLike, *, chunks: tuple[int, int] | None = None):
    """Open a FITS file or a zarr checkpoint (a directory) as a lazy frame.

    Raises
    ------
    InputError
        No such file, a directory that is not a zarr group, or an unreadable file.
    """
    from ..errors import InputError

    path = str(path)
    if os.path.isdir(path):
        if not any(os.path.isfile(os.path.join(path, meta)) for meta in ("zarr.json", ".zgroup")):
            raise InputError(path, "is a directory, not a FITS file (nor a zarr checkpoint)")
    elif path.rstrip("/").endswith(".zarr") and not os.path.exists(path):
        raise InputError(path, "no such file or directory")
    if path.rstrip("/").endswith(".zarr") or os.path.isdir(path):
        from .zarr import open_zarr

        return open_zarr(path)
    from .fits import open_fits

    return open_fits(path, chunks=chunks)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["open_frame", *_EXPORTS]
