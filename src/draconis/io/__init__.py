"""Reading and writing frames: FITS (inputs and outputs) and zarr (checkpoints).

The names below load their module on first use, so that a Dask worker that
only runs the pixel tasks of :mod:`draconis.io._tasks` never imports the
frame model (xarray, astropy.table).

Locations (work directories, checkpoint stores, database files) are local
paths or fsspec URLs; :func:`is_url` is the one test of which, used by every
layer above (reduce, caldb), and :func:`local_path` turns a ``file://`` URL
into the path it names.
"""
from __future__ import annotations

import importlib
import os
from typing import Any

_EXPORTS = {
    "open_fits": "fits", "write_fits": "fits", "write_fits_delayed": "fits", "write_many": "fits",
    "open_zarr": "zarr", "write_zarr": "zarr", "write_zarr_delayed": "zarr", "write_zarr_many": "zarr",
}


def is_url(location: str | os.PathLike[str]) -> bool:
    """Whether ``location`` is a URL (``memory://x``, ``s3://bucket/key``, ``sqlite:///db``) rather than a local path.

    A ``file://`` URL is a local path, not a URL: it names a file of this
    machine, which is read and written with the os functions (after
    :func:`local_path`), like a path given bare.

    Parameters
    ----------
    location
        A path (absolute or relative) or a URL.

    Returns
    -------
    bool
        True for ``scheme://...`` with any scheme but ``file``.
    """
    text = os.fspath(location)
    return "://" in text and not text.lower().startswith("file://")


def local_path(location: str) -> str:
    """The local path a ``file://`` URL names (``file:///data/x`` -> ``/data/x``); anything else unchanged."""
    return location[len("file://"):] if location.lower().startswith("file://") else location


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


__all__ = ["is_url", "local_path", "open_frame", *_EXPORTS]
