"""Frames to and from zarr: the checkpoint format.

A frame is one zarr v3 group: attributes hold the PHU, file name and
file-level tables (as ECSV text); sub-groups ``ext1`` ... hold the planes,
chunked in whole-width row bands, with the extension header and the OBJCAT
(ECSV) as attributes.  Headers survive exactly (FITS card text).

What a checkpoint costs is what it writes (measured in docs/benchmarks.md):
SCI and VAR are float32 and stored raw (fast compressors save ~25 % of their
bytes for 2-4x the CPU time of the write); DQ and OBJMASK, mostly zeros,
are zstd-compressed (~1 % of their raw size); all-zero compressed chunks are
not written at all.  One task per row band of an extension writes every
plane's chunk files directly (:func:`draconis.io._tasks.write_band`) and
returns a small summary of the band (bytes written, "has a finite / usable
pixel", and, when asked, normalisation samples), so whoever reads the
checkpoint next (the stack) needs no pass of its own to learn them.

Opened checkpoints read their chunk files directly too
(:class:`draconis.io._tasks.StoredPlane`), one chunk per task.  Stores that
other tools wrote (other codecs) are read through zarr.
"""
from __future__ import annotations

import collections
import dataclasses
import hashlib
import io
import json
import os
import weakref
from collections.abc import Sequence
from typing import Any

import dask
import dask.array as da
import numpy as np
from astropy.io import fits

from ..errors import InputError
from ..frame import PLANES, Extension, Frame, make_extension
from . import is_url, local_path
from ._tasks import RAW, ZSTD, ZSTD_LEVEL, StoredPlane, write_band_block, write_chunk
from .fits import default_chunks

#: How each plane is stored (see the module notes for why).
CODECS = {"SCI": RAW, "VAR": RAW, "DQ": ZSTD, "OBJMASK": ZSTD}
_SUMMARY_KEY = "draconis_summary"
#: Rows of the blocks a plane stored in smaller chunks is read in (see :func:`_band_rows`).
_BLOCK_KEY = "draconis_block_rows"


# ---------------------------------------------------------------- summaries
@dataclasses.dataclass(frozen=True)
class ExtSummary:
    """What a checkpoint write learnt about one extension's pixels.

    Attributes
    ----------
    finite : bool
        Some SCI pixel is finite.
    usable : bool
        Some finite SCI pixel has no DQ bit but non_linear (or there is no DQ).
    samples : tuple of (ndarray, ndarray) or None
        Strided SCI samples and their "good" mask (finite, DQ 0), when asked.
    """

    finite: bool
    usable: bool
    samples: tuple[np.ndarray, np.ndarray] | None = None


@dataclasses.dataclass(frozen=True)
class WriteReport:
    """One frame's checkpoint write: where, its size on disk (bytes), and per-extension summaries."""

    store: str
    bytes: int
    summaries: tuple[ExtSummary, ...]


# Checkpoint planes by the name of the array that reads them. Weak: a plane no graph holds any more is
# gone from here, which is how a run knows which checkpoints nothing can read (see live_stores).
_STORED: weakref.WeakValueDictionary[str, StoredPlane] = weakref.WeakValueDictionary()
_SUMMARIES: dict[str, tuple[str | None, ExtSummary]] = {}


def stored_source(arr: Any) -> StoredPlane | None:
    """The checkpoint plane ``arr`` reads unchanged (one chunk per block), or None."""
    name = getattr(arr, "name", None)
    return _STORED.get(name) if isinstance(name, str) else None


def live_stores() -> set[str]:
    """The checkpoint stores (group directories) that some array alive in this process still reads.

    Every array opened from a checkpoint holds its :class:`StoredPlane` in its tasks, and so does every
    graph built on it (including stacks that read the planes directly); when the last of them is garbage,
    the plane leaves this registry.
    """
    return {os.path.dirname(os.path.dirname(plane.path)) for plane in list(_STORED.values())}


def stored_summary(ext: Extension) -> ExtSummary | None:
    """The summary recorded when ``ext``'s SCI (and DQ) planes, unchanged, were checkpointed."""
    sci, dq = ext.plane("SCI"), ext.plane("DQ")
    name = getattr(sci, "name", None)
    entry = _SUMMARIES.get(name) if isinstance(name, str) else None
    if entry is None or entry[0] != (dq.name if dq is not None else None):
        return None
    return entry[1]


# ---------------------------------------------------------------- metadata
# Catalogues are stored as ECSV text.  A run writes the same catalogues into several checkpoints and
# reads each back after writing it: ECSV costs ~25 ms a catalogue each way (~7 s a pass at 156 frames),
# so both directions are remembered by content, within a bound on the text held.
_TEXT_OF: collections.OrderedDict[bytes, str] = collections.OrderedDict()  # fingerprint -> text
_TABLE_OF: collections.OrderedDict[str, Any] = collections.OrderedDict()  # text -> table (never handed out)
_MEMO_BYTES = 64 * 2 ** 20


def _fingerprint(table) -> bytes | None:
    """A digest of everything ECSV writes of ``table`` (None for columns other than plain/masked Columns)."""
    from astropy.table import Column, MaskedColumn

    digest = hashlib.blake2b(digest_size=20)
    digest.update(repr((type(table).__name__, list(table.meta.items()))).encode())
    for name in table.colnames:
        col = table[name]
        if type(col) not in (Column, MaskedColumn):
            return None
        data = np.asarray(col)
        digest.update(repr((name, type(col).__name__, data.dtype.str, data.shape, str(col.unit), col.format,
                            col.description, list(col.meta.items()))).encode())
        if data.dtype.hasobject:
            digest.update(repr(data.tolist()).encode())
        else:
            digest.update(np.ascontiguousarray(data).tobytes())
        if isinstance(col, MaskedColumn):
            digest.update(np.ascontiguousarray(np.ma.getmaskarray(col)).tobytes())
    return digest.digest()


def _remember(fingerprint: bytes | None, text: str, table) -> None:
    if fingerprint is not None:
        _TEXT_OF[fingerprint] = text
        _TEXT_OF.move_to_end(fingerprint)
    _TABLE_OF[text] = table
    _TABLE_OF.move_to_end(text)
    held = sum(len(t) for t in _TABLE_OF)
    while held > _MEMO_BYTES and len(_TABLE_OF) > 1:
        old, _ = _TABLE_OF.popitem(last=False)
        held -= len(old)
    while len(_TEXT_OF) > len(_TABLE_OF):
        _TEXT_OF.popitem(last=False)


def _table_to_text(table) -> str:
    fingerprint = _fingerprint(table)
    if fingerprint is not None and fingerprint in _TEXT_OF:
        return _TEXT_OF[fingerprint]
    buf = io.StringIO()
    table.write(buf, format="ascii.ecsv")
    text = buf.getvalue()
    _remember(fingerprint, text, table.copy())
    return text


def _table_from_text(text: str):
    from astropy.table import Table

    table = _TABLE_OF.get(text)
    if table is None:
        table = Table.read(text, format="ascii.ecsv")
        _remember(_fingerprint(table), text, table)
    return table.copy()  # tables are mutable: the remembered one is never handed out


def _header_from_text(text: str) -> fits.Header:
    return fits.Header.fromstring(text)


def _write_json(directory: str, node: dict) -> int:
    os.makedirs(directory, exist_ok=True)
    text = json.dumps(node)
    with open(os.path.join(directory, "zarr.json"), "w") as f:
        f.write(text)
    return len(text)


def _read_json(directory: str) -> dict:
    with open(os.path.join(directory, "zarr.json")) as f:
        return json.load(f)


def _group(attributes: dict) -> dict:
    return {"zarr_format": 3, "node_type": "group", "attributes": attributes}


def _array(shape: tuple[int, int], rows: int, dtype: np.dtype, codec: str, block_rows: int | None = None) -> dict:
    codecs: list[dict] = [{"name": "bytes", "configuration": {"endian": "little"}}]
    if codec == ZSTD:
        codecs.append({"name": "zstd", "configuration": {"level": ZSTD_LEVEL, "checksum": False}})
    return {"zarr_format": 3, "node_type": "array", "shape": list(shape), "data_type": np.dtype(dtype).name,
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [rows, shape[1]]}},
            "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
            "fill_value": 0 if np.dtype(dtype).kind in "iu" else 0.0, "codecs": codecs,
            "attributes": {_BLOCK_KEY: block_rows} if block_rows else {},
            "storage_transformers": []}


def _codec_of(meta: dict) -> str | None:
    """RAW / ZSTD for the layouts :class:`StoredPlane` reads, None for anything else (read through zarr)."""
    grid = meta.get("chunk_grid", {}).get("configuration", {}).get("chunk_shape", [])
    keys = meta.get("chunk_key_encoding", {})
    names = [c.get("name") for c in meta.get("codecs", [])]
    if (len(grid) != 2 or grid[1] != meta["shape"][1] or keys.get("name") != "default"
            or keys.get("configuration", {}).get("separator", "/") != "/" or meta.get("storage_transformers")
            or meta.get("codecs", [{}])[0].get("configuration", {}).get("endian", "little") != "little"):
        return None
    return {("bytes",): RAW, ("bytes", "zstd"): ZSTD}.get(tuple(names))


# ---------------------------------------------------------------- writing
def aligned_rows(arr: da.Array, rows: int) -> tuple[int, ...]:
    """Row chunks for writing ``arr`` in chunks of ``rows``.

    Its own chunks when they are whole chunks of ``rows``, else bands of about
    its block height (a multiple of ``rows``), so the write adds few tasks.
    """
    own = arr.chunks[0]
    if all(r % rows == 0 for r in own[:-1]):
        return own
    height = max(rows, round(max(own) / rows) * rows)
    ny = arr.shape[0]
    return tuple(min(height, ny - y) for y in range(0, ny, height))


@dataclasses.dataclass
class PendingWrite:
    """A checkpoint whose metadata is on disk and whose pixels are written when ``records`` are computed."""

    store: str
    records: list[da.Array]
    metadata_bytes: int

    def finish(self, computed: Sequence[np.ndarray]) -> WriteReport:
        """Sum the computed band records, store the summaries in the extensions' metadata; the report."""
        written, summaries = self.metadata_bytes, []
        for i, band_records in enumerate(computed, start=1):
            recs = list(np.asarray(band_records).ravel())
            written += sum(r["bytes"] for r in recs)
            samples = None
            if recs and recs[0]["samples"] is not None:
                samples = (np.concatenate([r["samples"][0] for r in recs]),
                           np.concatenate([r["samples"][1] for r in recs]))
            summary = ExtSummary(any(r["finite"] for r in recs), any(r["usable"] for r in recs), samples)
            directory = os.path.join(self.store, f"ext{i}")
            node = _read_json(directory)
            node["attributes"][_SUMMARY_KEY] = {"finite": summary.finite, "usable": summary.usable}
            written -= os.path.getsize(os.path.join(directory, "zarr.json"))
            written += _write_json(directory, node)
            summaries.append(summary)
        return WriteReport(self.store, written, tuple(summaries))


def prepare_zarr(frame: Frame, store: str | os.PathLike, *, chunks: tuple[int, int] | None = None,
                 samples: tuple[int, int, int, int, int] | None = None) -> PendingWrite:
    """Write ``frame``'s metadata to a new zarr group; the band tasks that will write its pixels.

    Parameters
    ----------
    frame : Frame
    store : path
        The group directory (created; must not exist or be a previous checkpoint to replace).
    chunks : (rows, width), optional
        Row-band height of the stored chunks (width is always the full row);
        default ``draconis.chunk_rows``, evened out over the image (zarr pads
        the last chunk to full size).  Bands already whole multiples of it are
        written as they come (no rechunk).
    samples : (r0, r1, c0, c1, step), optional
        Also return the strided SCI samples ``SCI[r0:r1:step, c0:c1:step]``
        (normalisation) in the summaries.
    """
    store = os.path.abspath(os.fspath(store))
    meta = _write_json(store, _group({
        "draconis_frame": 1, "phu": frame.phu.tostring(), "filename": frame.filename, "path": frame.path or "",
        "tables": {name: _table_to_text(t) for name, t in frame.tables.items()}}))
    records = []
    for i, ext in enumerate(frame.extensions, start=1):
        group = os.path.join(store, f"ext{i}")
        meta += _write_json(group, _group({
            "header": ext.header.tostring(),
            "objcat": _table_to_text(ext.objcat) if ext.objcat is not None else None}))
        names = [n for n in PLANES if n in ext.data]
        sci = ext.plane("SCI")
        ny = sci.shape[0]
        block_rows = None
        if chunks:
            rows = max(1, min(chunks[0], ny))
        else:  # draconis.chunk_rows, evened out: the last chunk is not mostly padding
            rows = default_chunks(sci.shape)[0]
            rows = -(-ny // -(-ny // rows))
            block_rows, rows = rows, _band_rows(sci.chunks[0], rows)
        bands = aligned_rows(sci, rows)
        if block_rows == rows:
            block_rows = None
        planes, targets = [], []
        for name in names:
            arr = ext.data[name].data
            dtype = np.dtype(arr.dtype)
            codec = CODECS.get(name, RAW)
            height, blocks = stored_rows(codec, rows, block_rows)
            meta += _write_json(os.path.join(group, name), _array(arr.shape, height, dtype, codec, blocks))
            planes.append(arr.rechunk((bands, -1)))
            targets.append((os.path.join(group, name), codec, dtype.str, height))
        summary = (names.index("SCI"), names.index("DQ") if "DQ" in names else -1, samples)
        records.append(da.map_blocks(write_band_block, *planes, dtype=object, chunks=((1,) * len(bands), (1,)),
                                     meta=np.empty((0, 0), object), targets=tuple(targets),
                                     summary=summary, starts=tuple(int(y) for y in np.cumsum((0,) + bands[:-1])),
                                     name=f"checkpoint-{dask.base.tokenize(store, *planes)}"))
    return PendingWrite(store, records, meta)


#: Smallest stored chunk, as a fraction of the default chunk height, that bands are stored as they come in.
MIN_BAND_FRACTION = 8

#: Tallest chunk of a compressed plane (DQ, OBJMASK), and the shortest it is cut into.
COMPRESSED_ROWS = (128, 32)


def stored_rows(codec: str, rows: int, block_rows: int | None) -> tuple[int, int | None]:
    """Chunk height and read-back block height (None: the chunk's) of a plane whose blocks are ``rows`` high.

    Compressed planes are stored in chunks of at most :data:`COMPRESSED_ROWS` rows,
    a divisor of ``rows``: a compressed chunk is decompressed whole, and the
    sliding-window sky reads 128-row bands of every sky's DQ and object mask,
    so 512-row chunks decompressed four times what it used (~1/4 of its reads).
    They are read back in the same blocks as the other planes. Raw planes
    are read row by row from their files and keep ``rows``.
    """
    tallest, shortest = COMPRESSED_ROWS
    if codec != ZSTD or rows <= tallest:
        return rows, block_rows
    cut = next((rows // k for k in range(2, rows // shortest + 1) if rows % k == 0 and rows // k <= tallest), None)
    return (rows, block_rows) if cut is None else (cut, block_rows or rows)


def _band_rows(own: tuple[int, ...], rows: int) -> int:
    """The stored chunk height for row chunks ``own`` when the default height is ``rows``.

    Bands that evenly divide ``rows`` (the sliding-window sky's output, 128 rows
    for 512) are stored as they are, one chunk each: merging them into
    ``rows``-high chunks first cost a rechunk task per chunk and moved the bands
    computed on other workers (156 full-size F2 frames: ~18 s of a 180 s pass).
    They are read back in blocks of ``rows`` (recorded with the array, :func:`_open_plane`).
    """
    height = own[0]
    if (height < rows and rows % height == 0 and height >= rows // MIN_BAND_FRACTION
            and all(c == height for c in own[:-1]) and own[-1] <= height):
        return height
    return rows


def write_zarr_delayed(frame: Frame, store: str | os.PathLike, *, chunks: tuple[int, int] | None = None):
    """The lazy write of ``frame`` to ``store`` (metadata written now, pixels when computed)."""
    return prepare_zarr(frame, store, chunks=chunks).records


def write_zarr(frame: Frame, store: str | os.PathLike, *, chunks: tuple[int, int] | None = None) -> str:
    """Write ``frame`` to a zarr store and return the store path."""
    return write_zarr_many([frame], [store], chunks=chunks)[0]


def write_zarr_many(frames: Sequence[Frame], stores: Sequence[str | os.PathLike], *, chunks=None) -> list[str]:
    """Checkpoint several frames in one computation."""
    pending = [prepare_zarr(f, s, chunks=chunks) for f, s in zip(frames, stores)]
    computed = dask.compute(*[r for p in pending for r in p.records])
    finish_all(pending, computed)
    return [p.store for p in pending]


def finish_all(pending: Sequence[PendingWrite], computed: Sequence[np.ndarray]) -> list[WriteReport]:
    """:meth:`PendingWrite.finish` of each write, ``computed`` being the flat list of all their records."""
    reports, k = [], 0
    for p in pending:
        reports.append(p.finish(computed[k:k + len(p.records)]))
        k += len(p.records)
    return reports


def prepare_planes(store: str | os.PathLike, planes: Sequence[dict[str, np.ndarray | da.Array]],
                   rows: Sequence[int]) -> tuple[int, list[da.Array]]:
    """Planes as a new group at ``store``: the bytes written now, and the lazy writes still to compute.

    For planes a primitive hands to the runner so that they leave the graphs
    that use them, which then read them back like any checkpoint plane
    (:func:`open_stored_plane`) instead of carrying or recomputing them:
    detectSources' object masks (computed: written now) and
    transferObjectMask's (lazy: the metadata now and a write task per row
    band, whose records ``{"bytes": ...}`` are computed in one computation
    with the other frames', the pixels never passing through this process).
    ``planes`` holds one ``{name: array}`` per extension, ``rows`` the stored
    chunk height of each extension.  Layout and codecs are those of a frame
    checkpoint (the group has no frame attributes: it is not a frame).
    """
    store = os.path.abspath(os.fspath(store))
    written = _write_json(store, _group({"draconis_planes": 1}))
    records = []
    for i, (named, height) in enumerate(zip(planes, rows), start=1):
        group = os.path.join(store, f"ext{i}")
        written += _write_json(group, _group({}))
        for name, value in named.items():
            directory = os.path.join(group, name)
            codec = CODECS.get(name, RAW)
            chunk, blocks = stored_rows(codec, max(1, min(int(height), value.shape[0])), None)
            dtype = np.dtype(value.dtype)
            written += _write_json(directory, _array(value.shape, chunk, dtype, codec, blocks))
            if isinstance(value, da.Array):
                bands = aligned_rows(value, chunk)
                records.append(da.map_blocks(
                    write_band_block, value.rechunk((bands, -1)), dtype=object, chunks=((1,) * len(bands), (1,)),
                    meta=np.empty((0, 0), object), targets=((directory, codec, dtype.str, chunk),),
                    summary=(0, -1, None), starts=tuple(int(y) for y in np.cumsum((0,) + bands[:-1])),
                    name=f"store-planes-{dask.base.tokenize(directory, value)}"))
                continue
            for k, y in enumerate(range(0, value.shape[0], chunk)):
                written += write_chunk(directory, codec, k, value[y:y + chunk], chunk)
    return written, records


def is_frame_store(store: str) -> bool:
    """Whether ``store`` is a frame checkpoint (False for a group of planes only, or a URL: those are frames)."""
    if is_url(store):
        return True
    try:
        return _read_json(local_path(store))["attributes"].get("draconis_frame") == 1
    except (OSError, ValueError, KeyError):
        return True  # let open_zarr say what is wrong with it


def open_stored_plane(store: str | os.PathLike, index: int, name: str) -> da.Array:
    """Plane ``name`` of extension ``index`` (0-based) of a local store, lazily.

    One stored chunk per block, or the blocks recorded with the plane (:func:`_band_rows`).
    """
    return _open_plane(os.path.abspath(os.fspath(store)), f"ext{index + 1}/{name}")


# ---------------------------------------------------------------- reading
def _open_plane(store: str, component: str) -> da.Array:
    directory = os.path.join(store, component)
    meta = _read_json(directory)
    codec = _codec_of(meta)
    if codec is None:
        return da.from_zarr(store, component=component)
    shape = tuple(meta["shape"])
    rows = meta["chunk_grid"]["configuration"]["chunk_shape"][0]
    source = StoredPlane(directory, shape, np.dtype(meta["data_type"]), rows, codec)
    # bands stored as they were computed (_band_rows) are read in blocks of the height they would have been
    # stored in, so they do not multiply the tasks of every later step; otherwise one stored chunk per block
    block = int(meta.get("attributes", {}).get(_BLOCK_KEY) or rows)
    name = "zarr-" + dask.base.tokenize(directory, os.stat(os.path.join(directory, "zarr.json")).st_mtime_ns, block)
    chunks = (tuple(min(block, shape[0] - y) for y in range(0, shape[0], block)), (shape[1],))
    arr = da.from_array(source, chunks=chunks, name=name, asarray=False, inline_array=True,
                        meta=np.empty((0, 0), source.dtype))
    # Two opens of one store give arrays of one name: the registry keeps the newest source, and either
    # array's tasks still hold their own.
    _STORED[arr.name] = source
    return arr


def open_zarr(store: str | os.PathLike) -> Frame:
    """Open a frame checkpointed with :func:`write_zarr` (lazily); a store on an fsspec URL through zarr."""
    given = os.fspath(store)
    if is_url(given):
        return _open_zarr_url(given)
    store = os.path.abspath(local_path(given))  # the graph reads it on workers that may run in another directory
    try:
        attrs = _read_json(store)["attributes"]
    except (OSError, ValueError, KeyError) as err:
        raise InputError(given, f"not a draconis zarr checkpoint ({err})") from err
    if attrs.get("draconis_frame") != 1:
        raise InputError(given, "not a draconis zarr checkpoint (no draconis_frame attribute)")
    extensions: list[Extension] = []
    i = 1
    while os.path.isdir(os.path.join(store, f"ext{i}")):
        group = os.path.join(store, f"ext{i}")
        gattrs = _read_json(group)["attributes"]
        planes = {name: _open_plane(store, f"ext{i}/{name}") for name in PLANES
                  if os.path.isfile(os.path.join(group, name, "zarr.json"))}
        objcat = gattrs.get("objcat")
        ext = make_extension(_header_from_text(gattrs["header"]), planes["SCI"], planes.get("VAR"),
                             planes.get("DQ"), planes.get("OBJMASK"), _table_from_text(objcat) if objcat else None)
        summary = gattrs.get(_SUMMARY_KEY)
        if summary is not None:
            dq = ext.plane("DQ")
            _SUMMARIES[ext.plane("SCI").name] = (dq.name if dq is not None else None,
                                                 ExtSummary(bool(summary["finite"]), bool(summary["usable"])))
        extensions.append(ext)
        i += 1
    tables = {name: _table_from_text(text) for name, text in attrs.get("tables", {}).items()}
    return Frame(phu=_header_from_text(attrs["phu"]), extensions=tuple(extensions),
                 filename=attrs["filename"], path=attrs.get("path") or None, tables=tables)


def attach_summaries(frame: Frame, report: WriteReport) -> None:
    """Record ``report``'s summaries (with their samples) for ``frame``, just opened from ``report.store``."""
    for ext, summary in zip(frame.extensions, report.summaries):
        dq = ext.plane("DQ")
        _SUMMARIES[ext.plane("SCI").name] = (dq.name if dq is not None else None, summary)


# ---------------------------------------------------------------- stores on fsspec URLs
# A work directory on object storage (s3://, gcs://) or fsspec's memory://: the same groups, attributes and
# planes, written and read through zarr and fsspec (no chunk-file shortcuts, no write summaries).
def write_zarr_url_delayed(frame: Frame, url: str, *, chunks: tuple[int, int] | None = None) -> Any:
    """Create the group for ``frame`` at ``url`` (metadata now) and return the lazy write of its planes."""
    import zarr

    root: Any = zarr.open_group(url, mode="w")
    root.attrs.update({"draconis_frame": 1, "phu": frame.phu.tostring(), "filename": frame.filename,
                       "path": frame.path or "",
                       "tables": {name: _table_to_text(t) for name, t in frame.tables.items()}})
    sources: list[Any] = []
    targets: list[Any] = []
    for i, ext in enumerate(frame.extensions, start=1):
        group = root.create_group(f"ext{i}")
        group.attrs["header"] = ext.header.tostring()
        group.attrs["objcat"] = _table_to_text(ext.objcat) if ext.objcat is not None else None
        for name in PLANES:
            arr = ext.plane(name)
            if arr is None:
                continue
            rows = (chunks or default_chunks(arr.shape))[0]
            targets.append(group.create_array(name, shape=arr.shape, chunks=(rows, arr.shape[1]), dtype=arr.dtype,
                                              fill_value=0))
            sources.append(arr.rechunk((rows, -1)))
    return da.store(sources, targets, lock=False, compute=False) if sources else dask.delayed(None)()


def _open_zarr_url(url: str) -> Frame:
    import zarr

    try:
        root: Any = zarr.open_group(url, mode="r")
        attrs: dict[str, Any] = dict(root.attrs)
    except Exception as err:  # zarr raises several types for a missing/bad store
        raise InputError(url, f"not a draconis zarr checkpoint ({err})") from err
    if attrs.get("draconis_frame") != 1:
        raise InputError(url, "not a draconis zarr checkpoint (no draconis_frame attribute)")
    extensions = []
    i = 1
    while f"ext{i}" in root:
        group = root[f"ext{i}"]
        planes = {name: da.from_zarr(url, component=f"ext{i}/{name}") for name in PLANES if name in group}
        objcat = group.attrs.get("objcat")
        extensions.append(make_extension(_header_from_text(group.attrs["header"]), planes["SCI"], planes.get("VAR"),
                                         planes.get("DQ"), planes.get("OBJMASK"),
                                         _table_from_text(objcat) if objcat else None))
        i += 1
    tables = {name: _table_from_text(text) for name, text in attrs.get("tables", {}).items()}
    return Frame(phu=_header_from_text(attrs["phu"]), extensions=tuple(extensions),
                 filename=attrs["filename"], path=attrs.get("path") or None, tables=tables)
