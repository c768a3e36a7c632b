"""Frames to and from zarr: the checkpoint format.

A frame is one zarr group: attributes hold the PHU, file name and file-level
tables (as ECSV text); sub-groups ``ext1`` ... hold the planes chunked in row
bands aligned with the stacking tiles, with the extension header and the
OBJCAT (ECSV) as attributes.  Headers survive exactly (FITS card text).
"""
from __future__ import annotations

import io
import os
from collections.abc import Sequence

import dask
import dask.array as da
import zarr
from astropy.io import fits
from astropy.table import Table

from ..errors import InputError
from ..frame import PLANES, Extension, Frame, make_extension
from .fits import default_chunks


def _table_to_text(table: Table) -> str:
    buf = io.StringIO()
    table.write(buf, format="ascii.ecsv")
    return buf.getvalue()


def _table_from_text(text: str) -> Table:
    return Table.read(text, format="ascii.ecsv")


def _header_from_text(text: str) -> fits.Header:
    return fits.Header.fromstring(text)


def write_zarr_delayed(frame: Frame, store: str | os.PathLike, *, chunks: tuple[int, int] | None = None):
    """Create the zarr group for ``frame`` and return a delayed that fills it.

    The metadata is written at once; the pixel planes are stored when the
    returned object is computed (together with other frames, ideally).
    """
    store = str(store)
    root = zarr.open_group(store, mode="w")
    root.attrs.update({
        "draconis_frame": 1,
        "phu": frame.phu.tostring(),
        "filename": frame.filename,
        "path": frame.path or "",
        "tables": {name: _table_to_text(t) for name, t in frame.tables.items()},
    })
    sources, targets = [], []
    for i, ext in enumerate(frame.extensions, start=1):
        group = root.create_group(f"ext{i}")
        group.attrs["header"] = ext.header.tostring()
        group.attrs["objcat"] = _table_to_text(ext.objcat) if ext.objcat is not None else None
        for name in PLANES:
            if name not in ext.data:
                continue
            arr = ext.data[name].data
            c = chunks or default_chunks(arr.shape)
            target = group.create_array(name, shape=arr.shape, chunks=c, dtype=arr.dtype, fill_value=0)
            sources.append(arr.rechunk(c))
            targets.append(target)
    return da.store(sources, targets, lock=False, compute=False) if sources else dask.delayed(None)


def write_zarr(frame: Frame, store: str | os.PathLike, *, chunks: tuple[int, int] | None = None) -> str:
    """Write ``frame`` to a zarr store and return the store path."""
    dask.compute(write_zarr_delayed(frame, store, chunks=chunks))
    return str(store)


def write_zarr_many(frames: Sequence[Frame], stores: Sequence[str | os.PathLike], *, chunks=None) -> list[str]:
    """Checkpoint several frames in one computation."""
    tasks = [write_zarr_delayed(f, s, chunks=chunks) for f, s in zip(frames, stores)]
    dask.compute(*tasks)
    return [str(s) for s in stores]


def open_zarr(store: str | os.PathLike) -> Frame:
    """Open a frame checkpointed with :func:`write_zarr` (lazily)."""
    store = str(store)
    try:
        root = zarr.open_group(store, mode="r")
        attrs = dict(root.attrs)
    except Exception as err:  # zarr raises several types for a missing/bad store
        raise InputError(store, f"not a draconis zarr checkpoint ({err})") from err
    if attrs.get("draconis_frame") != 1:
        raise InputError(store, "not a draconis zarr checkpoint (no draconis_frame attribute)")
    extensions: list[Extension] = []
    i = 1
    while f"ext{i}" in root:
        group = root[f"ext{i}"]
        planes = {name: da.from_zarr(store, component=f"ext{i}/{name}") for name in PLANES if name in group}
        objcat = group.attrs.get("objcat")
        extensions.append(make_extension(
            _header_from_text(group.attrs["header"]), planes["SCI"], planes.get("VAR"), planes.get("DQ"),
            planes.get("OBJMASK"), _table_from_text(objcat) if objcat else None))
        i += 1
    tables = {name: _table_from_text(text) for name, text in attrs.get("tables", {}).items()}
    return Frame(phu=_header_from_text(attrs["phu"]), extensions=tuple(extensions),
                 filename=attrs["filename"], path=attrs.get("path") or None, tables=tables)
