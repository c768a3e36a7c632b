"""Snapshots of a run's streams on disk (or any fsspec URL), and copies of its outputs.

A snapshot references every plane read straight from storage (a zarr
checkpoint, or one of the run's inputs) and writes the others to one zarr
group; the streams themselves (headers, catalogues, and the Dask arrays that
read the planes) are pickled.  Outputs are frozen as hard links (outputs are
replaced, never rewritten in place, so a link keeps its content).
"""
from __future__ import annotations

import os
import pickle
from typing import Any

from .. import progress
from ..frame import PLANES, Frame
from ..io import storage_source as _plane_source
from .rundir import filesystem, is_url, join

STREAMS = "streams.pkl"
PLANE_STORE = "planes.zarr"


def _stored(arr: Any, inputs: set[str]) -> bool:
    """Whether a snapshot may reference ``arr`` instead of copying it: a zarr store, or an input file."""
    source = _plane_source(arr)
    if source is None:
        return False
    path = getattr(source, "path", None)
    from ..io.fits import FitsPixelSource

    if isinstance(source, FitsPixelSource):
        # outputs of the run may be rolled back or replaced: only the (checksummed) inputs are referenced
        return os.path.realpath(path) in inputs
    return True


def _zarr_chunks(arr: Any) -> tuple[int, int]:
    return tuple(max(c) for c in arr.chunks)


def write_planes(location: str, planes: list[Any], label: str) -> list[Any]:
    """Write ``planes`` (Dask arrays) to a zarr group at ``location`` in one computation; reopen them."""
    import dask.array as da
    import zarr

    root = zarr.open_group(location, mode="w")
    sources, targets, names = [], [], []
    for i, arr in enumerate(planes):
        chunks = _zarr_chunks(arr)
        regular = arr.rechunk(chunks) if any(len(set(c[:-1])) > 1 or c[-1] > c[0] for c in arr.chunks) else arr
        name = f"p{i:06d}"
        targets.append(root.create_array(name, shape=arr.shape, chunks=chunks, dtype=arr.dtype, fill_value=0))
        sources.append(regular)
        names.append(name)
    if sources:
        progress.compute([da.store(sources, targets, lock=False, compute=False)], label)
    return [da.from_zarr(location, component=name) for name in names]


def snapshot_streams(streams: dict[str, list[Frame]], location: str, inputs: set[str],
                     label: str) -> dict[str, list[Frame]]:
    """``streams`` with every plane not read straight from storage written under ``location`` and reopened."""
    todo = []
    for name, frames in streams.items():
        for i, frame in enumerate(frames):
            for j, ext in enumerate(frame.extensions):
                for plane in PLANES:
                    arr = ext.plane(plane)
                    if arr is not None and not _stored(arr, inputs):
                        todo.append((name, i, j, plane, arr))
    reopened = write_planes(join(location, PLANE_STORE), [t[-1] for t in todo], label) if todo else []
    replaced = {(n, i, j, plane): arr for (n, i, j, plane, _), arr in zip(todo, reopened)}
    out = {}
    for name, frames in streams.items():
        new = []
        for i, frame in enumerate(frames):
            exts = []
            for j, ext in enumerate(frame.extensions):
                changes = {p: replaced[(name, i, j, p)] for p in PLANES if (name, i, j, p) in replaced}
                exts.append(ext.with_planes(**changes) if changes else ext)
            new.append(frame.with_extensions(exts) if any(e is not o for e, o in zip(exts, frame.extensions))
                       else frame)
        out[name] = new
    return out


def _dump(location: str, obj: Any) -> None:
    fs, path = filesystem(location)
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    if is_url(location):
        with fs.open(path, "wb") as fh:
            fh.write(data)
        return
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _load(location: str) -> Any:
    fs, path = filesystem(location)
    with fs.open(path, "rb") as fh:
        # our own files, written by this run or the run it continues (never user data)
        return pickle.loads(fh.read())


def _stores_of(streams: dict[str, list[Frame]]) -> set[str]:
    """The zarr stores (paths, or URLs off the local disk) the planes of ``streams`` read."""
    roots = set()
    for frames in streams.values():
        for frame in frames:
            for ext in frame.extensions:
                for plane in PLANES:
                    arr = ext.plane(plane)
                    store = getattr(_plane_source(arr) if arr is not None else None, "store", None)
                    if store is not None:
                        roots.add(_store_url(store))
    roots.discard(None)
    return roots


def _store_url(store: Any) -> str | None:
    root = getattr(store, "path", None) or getattr(store, "root", None)
    if root is None:
        return None
    fs = getattr(store, "fs", None)
    fs = getattr(fs, "sync_fs", fs)
    protocol = getattr(fs, "protocol", "file")
    protocol = protocol[0] if isinstance(protocol, (tuple, list)) else protocol
    root = str(root).rstrip("/")
    return root if protocol in ("file", "local") else f"{protocol}://{root.lstrip('/')}"


def _freeze(path: str, dest: str) -> None:
    """A copy of the output ``path`` as it is now (a hard link when possible: outputs are replaced, never
    rewritten in place, so the link keeps this content)."""
    fs, target = filesystem(dest)
    fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
    if is_url(dest):
        fs.put_file(path, target)
        return
    try:
        os.link(path, target)
    except OSError:
        import shutil

        shutil.copy2(path, target)


def _fetch_file(source: str, path: str) -> None:
    fs, where = filesystem(source)
    if is_url(source):
        fs.get_file(where, path)
    else:
        import shutil

        shutil.copy2(where, path)

