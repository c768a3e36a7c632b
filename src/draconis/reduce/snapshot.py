"""Snapshots of a run's streams on disk (or any fsspec URL), and copies of its outputs.

A snapshot records every frame of every stream: its headers, tables and
catalogues (pickled: exact values), and for each plane where it is read
from — a plane of a zarr checkpoint, a plane of one of the run's inputs, or
(for a plane computed but not stored, e.g. an object mask) a copy written
to the snapshot's own zarr group.  Restoring opens those stores again, so a
resumed run reads exactly what the uninterrupted run reads after the
snapshot (the uninterrupted run continues from the restored streams too).
Outputs are frozen as hard links (outputs are replaced, never rewritten in
place, so a link keeps its content).
"""
from __future__ import annotations

import dataclasses
import os
import pickle
from typing import Any

from .. import progress
from ..frame import PLANES, Frame, make_extension
from ..io import is_url
from .rundir import filesystem, join

STREAMS = "streams.pkl"
PLANE_STORE = "planes.zarr"


@dataclasses.dataclass(frozen=True)
class PlaneRef:
    """Where a plane is read from.

    ``kind`` is ``zarr`` (a frame store: extension ``ext``'s plane ``name``),
    ``fits`` (an input file: the plane whose Dask name is ``name``) or
    ``copy`` (component ``name`` of a snapshot's zarr group).
    """

    kind: str
    location: str
    ext: int
    name: str


@dataclasses.dataclass
class FrameRecord:
    """A frame without its pixels: headers, tables, catalogues, and where each plane is read from."""

    phu: Any
    filename: str
    path: str | None
    tables: dict
    extensions: list[tuple[Any, Any, dict[str, PlaneRef]]]


def plane_ref(arr: Any, inputs: set[str]) -> PlaneRef | None:
    """Where ``arr`` is read from unchanged, when a snapshot may point there; None if it must be copied.

    Zarr checkpoints are referenced; FITS files only when they are inputs
    (outputs of the run may be rolled back or replaced).
    """
    from ..io.zarr import stored_source

    plane = stored_source(arr)
    if plane is not None:  # a draconis checkpoint plane: <store>/extN/PLANE
        ext_dir, name = os.path.split(plane.path)
        store, ext = os.path.split(ext_dir)
        return PlaneRef("zarr", store, int(ext[3:]) - 1, name)
    name = str(getattr(arr, "name", ""))
    graph = arr.__dask_graph__()
    if name.startswith("fits-") and len(graph.layers) == 1:
        path = name[len("fits-"):].rsplit("-", 2)[0]
        return PlaneRef("fits", path, -1, name) if os.path.realpath(path) in inputs else None
    return _zarr_ref(graph)


def _zarr_ref(graph: Any) -> PlaneRef | None:
    """A plane read through zarr itself (a store on an fsspec URL): its store and ``extN/PLANE`` path."""
    import zarr

    if len(graph.layers) > 2:
        return None
    found = [v for v in graph.values() if isinstance(v, zarr.Array)]
    if len(found) != 1 or not found[0].path.startswith("ext"):
        return None
    ext, _, name = found[0].path.partition("/")
    url = _store_url(found[0].store)
    return None if url is None else PlaneRef("zarr", url, int(ext[3:]) - 1, name)


def _zarr_chunks(arr: Any) -> tuple[int, int]:
    return tuple(max(c) for c in arr.chunks)


def write_planes(location: str, planes: list[Any], label: str) -> list[PlaneRef]:
    """Write ``planes`` (Dask arrays) to a zarr group at ``location`` in one computation."""
    import dask.array as da
    import zarr

    root = zarr.open_group(location, mode="w")
    sources: list[Any] = []
    targets: list[Any] = []
    refs: list[PlaneRef] = []
    for i, arr in enumerate(planes):
        chunks = _zarr_chunks(arr)
        regular = arr.rechunk(chunks) if any(len(set(c[:-1])) > 1 or c[-1] > c[0] for c in arr.chunks) else arr
        name = f"p{i:06d}"
        targets.append(root.create_array(name, shape=arr.shape, chunks=chunks, dtype=arr.dtype, fill_value=0))
        sources.append(regular)
        refs.append(PlaneRef("copy", location, 0, name))
    if sources:
        progress.compute([da.store(sources, targets, lock=False, compute=False)], label)
    return refs


def record_streams(streams: dict[str, list[Frame]], location: str, inputs: set[str],
                   label: str) -> dict[str, list[FrameRecord]]:
    """Records of ``streams``, the planes that are not stored written under ``location`` first."""
    refs: dict[tuple, PlaneRef] = {}
    todo = []
    for name, frames in streams.items():
        for i, frame in enumerate(frames):
            for j, ext in enumerate(frame.extensions):
                for plane in PLANES:
                    arr = ext.plane(plane)
                    if arr is not None:
                        ref = plane_ref(arr, inputs)
                        if ref is None:
                            todo.append(((name, i, j, plane), arr))
                        else:
                            refs[(name, i, j, plane)] = ref
    written = write_planes(join(location, PLANE_STORE), [arr for _, arr in todo], label) if todo else []
    refs.update({key: ref for (key, _), ref in zip(todo, written)})
    return {name: [FrameRecord(f.phu, f.filename, f.path, dict(f.tables),
                               [(e.header, e.objcat, {p: refs[(name, i, j, p)] for p in PLANES
                                                      if (name, i, j, p) in refs})
                                for j, e in enumerate(f.extensions)])
                   for i, f in enumerate(frames)]
            for name, frames in streams.items()}


def restore_streams(records: dict[str, list[FrameRecord]]) -> dict[str, list[Frame]]:
    """Frames from their records: every referenced store opened again (once)."""
    opened: dict[tuple[str, str], Any] = {}
    return {name: [_restore(r, opened) for r in recs] for name, recs in records.items()}


def _restore(record: FrameRecord, opened: dict) -> Frame:
    exts = []
    for header, objcat, refs in record.extensions:
        planes = {p: _open(ref, opened) for p, ref in refs.items()}
        exts.append(make_extension(header, planes["SCI"], planes.get("VAR"), planes.get("DQ"), planes.get("OBJMASK"),
                                   objcat))
    return Frame(phu=record.phu, extensions=tuple(exts), filename=record.filename, path=record.path,
                 tables=dict(record.tables))


def _open(ref: PlaneRef, opened: dict) -> Any:
    key = (ref.kind, ref.location)
    if ref.kind == "copy":
        import dask.array as da

        return da.from_zarr(ref.location, component=ref.name)
    if key not in opened:
        from ..io import open_fits, open_zarr
        from ..io.zarr import is_frame_store, open_stored_plane

        if ref.kind == "zarr" and not is_frame_store(ref.location):  # planes kept apart (object masks)
            return open_stored_plane(ref.location, ref.ext, ref.name)
        opened[key] = open_zarr(ref.location) if ref.kind == "zarr" else open_fits(ref.location)
    frame = opened[key]
    if ref.kind == "zarr":
        return frame.extensions[ref.ext].plane(ref.name)
    return next(a for e in frame.extensions for p in PLANES if (a := e.plane(p)) is not None and a.name == ref.name)


def stores_of(records: dict[str, list[FrameRecord]]) -> set[str]:
    """The zarr stores (directories or URLs) the records read."""
    return {ref.location for recs in records.values() for r in recs for _, _, refs in r.extensions
            for ref in refs.values() if ref.kind in ("zarr", "copy")}


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


def snapshot_bytes(location: str) -> int:
    """Bytes a snapshot added under ``location``: its files, less outputs frozen as hard links (no new bytes)."""
    if is_url(location):
        fs, path = filesystem(location)
        return int(fs.du(path, total=True)) if fs.exists(path) else 0
    total = 0
    for folder, _dirs, files in os.walk(location):
        for name in files:
            st = os.stat(os.path.join(folder, name))
            if not (st.st_nlink > 1 and os.path.basename(folder) == "outputs"):
                total += st.st_size
    return total


def _freeze(path: str, dest: str) -> None:
    """A copy of the output ``path`` as it is now.

    A hard link when possible: outputs are replaced, never rewritten in
    place, so the link keeps this content.
    """
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

