"""Reading and writing frames: FITS (inputs and outputs) and zarr (checkpoints)."""
from __future__ import annotations

import os

from ..frame import Frame
from .fits import open_fits, write_fits, write_fits_delayed, write_many
from .zarr import open_zarr, write_zarr, write_zarr_delayed, write_zarr_many


def open_frame(path: str | os.PathLike, *, chunks: tuple[int, int] | None = None) -> Frame:
    """Open a FITS file or a zarr checkpoint as a lazy frame."""
    path = str(path)
    if path.rstrip("/").endswith(".zarr") or os.path.isdir(path):
        return open_zarr(path)
    return open_fits(path, chunks=chunks)


__all__ = ["open_frame", "open_fits", "open_zarr", "write_fits", "write_fits_delayed", "write_many",
           "write_zarr", "write_zarr_delayed", "write_zarr_many"]
