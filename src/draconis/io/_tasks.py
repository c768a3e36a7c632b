"""Pixel I/O done inside Dask tasks: FITS sections, checkpoint chunk files, bands of FITS outputs.

Workers unpickle the objects and call the functions of this module, so it
imports only NumPy (numcodecs and astropy when a task needs them): a worker
that reads checkpoints, combines and writes outputs does not import xarray,
astropy.table or the rest of draconis.

Checkpoint planes are zarr v3 arrays chunked in whole-width row bands
(``(rows, width)``), with the ``bytes`` codec (little-endian) alone
(:data:`RAW`) or followed by ``zstd`` (:data:`ZSTD`).  A chunk is the file
``<plane>/c/<k>/0``; tasks write and read those files directly (one
``write``/``readinto`` per chunk, into the caller's buffer), which is
what zarr itself would store, without its encode/decode copies.
"""
from __future__ import annotations

import os
import sys
import threading
from typing import Any

import numpy as np

from ..buffers import reusable_buffer

RAW, ZSTD = "raw", "zstd"
#: zstd level of compressed planes (DQ, OBJMASK: mostly zeros, compressed ~100x at level 1).
ZSTD_LEVEL = 1
#: DQ bits that leave a pixel usable in the "has this frame a usable pixel" summary: non_linear only
#: (linearity-corrected pixels are good data).
USABLE_DQ = 2
#: Rows tested at a time by the summaries: most frames answer "yes" from their first rows.
_PROBE_ROWS = 16

if sys.byteorder != "little":  # pragma: no cover - the chunk files are little-endian, read without swapping
    raise ImportError("draconis checkpoints need a little-endian machine")

_zstd_local = threading.local()


def _zstd():
    codec = getattr(_zstd_local, "codec", None)
    if codec is None:
        from numcodecs import Zstd

        codec = _zstd_local.codec = Zstd(level=ZSTD_LEVEL)
    return codec


# ---------------------------------------------------------------- FITS sections
_read_lock = threading.Lock()
_pixel_reads = 0


def pixel_read_count() -> int:
    """How many pixel sections have been read from FITS files in this process."""
    return _pixel_reads


class FitsPixelSource:
    """Array-like view of one FITS image HDU that reads sections on demand.

    Parameters
    ----------
    path
        FITS file.
    index
        HDU index in the file.
    shape, dtype
        Shape after dropping leading length-1 axes (F2's (1, N, N) cube
        becomes (N, N)) and the dtype astropy returns for the data.
    """

    def __init__(self, path: str, index: int, shape: tuple[int, ...], dtype: np.dtype, ndim_raw: int,
                 memmap: bool = True):
        self.path = path
        self.memmap = memmap
        self.index = index
        self.shape = shape
        self.dtype = np.dtype(dtype)
        self.ndim = len(shape)
        self._lead = ndim_raw - len(shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        global _pixel_reads
        from astropy.io import fits

        if not isinstance(key, tuple):
            key = (key,)
        key = (0,) * self._lead + key
        with _read_lock:
            _pixel_reads += 1
        # astropy refuses to memory-map scaled (BZERO/BSCALE) data; sections
        # of those are read with plain file reads instead.
        with fits.open(self.path, memmap=self.memmap, lazy_load_hdus=True) as hdul:
            section = hdul[self.index].section[key]
        return np.asarray(section, dtype=self.dtype)

    def __reduce__(self):
        return (FitsPixelSource, (self.path, self.index, self.shape, self.dtype, self.ndim + self._lead, self.memmap))


# ---------------------------------------------------------------- checkpoint planes
class StoredPlane:
    """Array-like over one checkpoint plane: a zarr v3 array of whole-width row-band chunks.

    Parameters
    ----------
    path
        The array's directory (``<store>/ext1/SCI``).
    shape, dtype
        The plane's (ny, nx) and dtype.
    chunk_rows
        Rows per chunk.
    codec
        :data:`RAW` or :data:`ZSTD`.
    """

    __slots__ = ("path", "shape", "dtype", "chunk_rows", "codec", "__weakref__")

    def __init__(self, path: str, shape: tuple[int, int], dtype, chunk_rows: int, codec: str):
        self.path = path
        self.shape = (int(shape[0]), int(shape[1]))
        self.dtype = np.dtype(dtype)
        self.chunk_rows = int(chunk_rows)
        self.codec = codec

    ndim = 2

    def __reduce__(self):
        return (StoredPlane, (self.path, self.shape, self.dtype.str, self.chunk_rows, self.codec))

    def __repr__(self) -> str:
        return f"StoredPlane({self.path!r}, {self.shape}, {self.dtype}, rows={self.chunk_rows}, {self.codec})"

    def chunk_file(self, k: int) -> str:
        return os.path.join(self.path, "c", str(k), "0")

    def read_chunk_into(self, k: int, out: np.ndarray, skip: int = 0) -> None:
        """Fill ``out`` (C-contiguous) with rows ``skip:skip + len(out)`` of chunk ``k``, from its file.

        A raw chunk reads just those rows' bytes; a compressed one is decompressed whole.
        """
        path = self.chunk_file(k)
        try:
            f = open(path, "rb")
        except FileNotFoundError as err:
            # zarr leaves compressed chunks equal to the fill value (0) unwritten; anything else is missing
            if self.codec == ZSTD and os.path.isfile(os.path.join(self.path, "zarr.json")):
                out[...] = 0
                return
            raise FileNotFoundError(f"{path}: checkpoint chunk missing (checkpoint removed while still read?)") from err
        with f:
            if self.codec == RAW:
                if skip:
                    f.seek(skip * self.shape[1] * self.dtype.itemsize)
                got = f.readinto(memoryview(out).cast("B"))  # type: ignore[arg-type]  # ndarray exports the buffer protocol
                if got != out.nbytes:
                    raise OSError(f"{path}: checkpoint chunk truncated ({got} of {out.nbytes} bytes)")
                return
            data = f.read()
        nbytes = self.chunk_rows * self.shape[1] * self.dtype.itemsize  # stored padded to a whole chunk
        if skip == 0 and out.nbytes == nbytes:
            _zstd().decode(data, out=memoryview(out).cast("B"))  # type: ignore[arg-type]
            return
        # decompressed into a reused buffer no other task holds: a fresh one per read was written to memory
        # the system had to map first (page faults were ~35 % of a sky pass's CPU time on a VM)
        full = np.frombuffer(_zstd().decode(data, out=reusable_buffer(nbytes, "decode").data), dtype=self.dtype)
        first = skip * self.shape[1]
        out[...] = full[first:first + out.size].reshape(out.shape)

    def rows(self, y0: int, y1: int) -> np.ndarray:
        """Rows ``y0:y1``, read from their chunk files into a new array."""
        block = np.empty((y1 - y0, self.shape[1]), self.dtype)
        self.read_rows_into(y0, y1, block)
        return block

    def region(self, box: tuple[int, int, int, int]) -> np.ndarray:
        """Rows ``box[0]:box[1]``, columns ``box[2]:box[3]`` (the rows are read whole, then cut)."""
        y0, y1, x0, x1 = box
        block = self.rows(y0, y1)
        return block if (x0, x1) == (0, self.shape[1]) else np.ascontiguousarray(block[:, x0:x1])

    def read_rows_into(self, y0: int, y1: int, out: np.ndarray) -> None:
        """Fill ``out`` (C-contiguous, shape ``(y1 - y0, nx)``) with rows ``y0:y1``."""
        c, ny = self.chunk_rows, self.shape[0]
        for k in range(y0 // c, (y1 - 1) // c + 1):
            s0, s1 = max(k * c, y0), min((k + 1) * c, ny, y1)
            self.read_chunk_into(k, out[s0 - y0:s1 - y0], skip=s0 - k * c)

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        if any(k is Ellipsis for k in key) or len(key) > 2:
            raise IndexError(f"{self!r}: unsupported index {key!r}")
        key = key + (slice(None),) * (2 - len(key))
        rows = np.arange(self.shape[0])[key[0]]
        wanted = np.atleast_1d(rows)
        if wanted.size == 0:
            return np.empty((0, self.shape[1]), self.dtype)[:, key[1]]
        y0, y1 = int(wanted.min()), int(wanted.max()) + 1
        block = self.rows(y0, y1)
        if not (np.ndim(rows) == 1 and wanted.size == y1 - y0 and wanted[0] == y0):
            block = block[rows - y0]
        return block[..., key[1]]


def read_stack(planes: list[StoredPlane], y0: int, y1: int) -> np.ndarray:
    """Rows ``y0:y1`` of every plane, read straight into one ``(N, y1 - y0, nx)`` cube."""
    first = planes[0]
    cube = np.empty((len(planes), y1 - y0, first.shape[1]), first.dtype)
    for i, plane in enumerate(planes):
        plane.read_rows_into(y0, y1, cube[i])
    return cube


def write_chunk(path: str, codec: str, k: int, block: np.ndarray, chunk_rows: int) -> int:
    """Write rows of chunk ``k`` (``block``, at most ``chunk_rows`` rows) of the plane at ``path``; the file's size.

    A short (last) chunk is padded to the full chunk shape, as zarr stores it:
    with zeros (a sparse tail) for :data:`RAW`, before compression for
    :data:`ZSTD`.  A compressed chunk that is all zeros is not written (zarr's
    fill value).
    """
    block = np.ascontiguousarray(block)
    directory = os.path.join(path, "c", str(k))
    if codec == ZSTD:
        if not block.any():
            return 0
        if block.shape[0] < chunk_rows:
            full = np.zeros((chunk_rows,) + block.shape[1:], block.dtype)
            full[:block.shape[0]] = block
            block = full
        data = _zstd().encode(block)
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, "0"), "wb") as f:
            f.write(data)
        return len(data)
    os.makedirs(directory, exist_ok=True)
    size = chunk_rows * block.nbytes // block.shape[0]
    with open(os.path.join(directory, "0"), "wb") as f:
        f.write(memoryview(block).cast("B"))  # type: ignore[arg-type]  # ndarray exports the buffer protocol
        if block.nbytes < size:
            f.truncate(size)
    return size


def _any_rows(test, *blocks: np.ndarray) -> bool:
    """Whether ``test`` holds somewhere, probing a few rows at a time (most frames say yes at once)."""
    for y in range(0, blocks[0].shape[0], _PROBE_ROWS):
        if test(*(b[y:y + _PROBE_ROWS] for b in blocks)):
            return True
    return False


def _finite(sci):
    return bool(np.isfinite(sci).any())


def _usable(sci, dq):
    return bool((np.isfinite(sci) & ((dq & ~np.uint16(USABLE_DQ)) == 0)).any())


def _band_samples(sci, dq, y0: int, spec: tuple[int, int, int, int, int]):
    """The part of a strided sample grid (rows ``r0:r1:step``, columns ``c0:c1:step``) in this band."""
    r0, r1, c0, c1, step = spec
    y1 = y0 + sci.shape[0]
    first = r0 + -(-(max(r0, y0) - r0) // step) * step
    if first >= min(r1, y1):
        return np.empty(0, np.float32), np.empty(0, bool)
    rows = slice(first - y0, min(r1, y1) - y0, step)
    values = np.ascontiguousarray(sci[rows, c0:c1:step], dtype=np.float32).ravel()
    good = np.isfinite(values)
    if dq is not None:
        good &= dq[rows, c0:c1:step].ravel() == 0
    return values, good


def write_band(targets: tuple, y0: int, summary: tuple, *blocks: np.ndarray) -> np.ndarray:
    """Write one row band of every plane of an extension; return its summary record.

    Parameters
    ----------
    targets : tuple of (path, codec, dtype, chunk rows)
        One per block, in order; ``y0`` and the band's rows are multiples
        of each plane's chunk rows (but the last).
    y0 : int
        First row of the band.
    summary : (sci index, dq index or -1, sample grid or None)
        Where SCI and DQ are among ``blocks``, and the strided sample grid
        ``(r0, r1, c0, c1, step)`` for normalisation, if wanted.

    Returns
    -------
    ndarray of object, shape (1, 1)
        ``{"bytes", "finite", "usable", "samples"}``: bytes written, whether
        some SCI is finite, whether some finite SCI has no DQ bit but
        non_linear, and the band's samples ``(values, good)`` or None.
    """
    written = 0
    for (path, codec, dtype, chunk_rows), block in zip(targets, blocks):
        block = np.asarray(block, dtype=dtype)
        for k0 in range(0, block.shape[0], chunk_rows):
            written += write_chunk(path, codec, (y0 + k0) // chunk_rows, block[k0:k0 + chunk_rows], chunk_rows)
    isci, idq, grid = summary
    sci = blocks[isci]
    dq = blocks[idq] if idq >= 0 else None
    finite = _any_rows(_finite, sci)
    usable = finite and (dq is None or _any_rows(_usable, sci, dq))
    record = {"bytes": written, "finite": finite, "usable": usable,
              "samples": _band_samples(sci, dq, y0, grid) if grid is not None else None}
    out = np.empty((1, 1), object)
    out[0, 0] = record
    return out


def write_band_block(*blocks: np.ndarray, targets: tuple, summary: tuple, starts: tuple,
                     block_id: tuple = (0, 0)) -> np.ndarray:
    """:func:`write_band` as a ``map_blocks`` function: band ``block_id[0]`` starts at row ``starts[block_id[0]]``.

    (``block_id`` and one shared tuple of starts, not ``block_info``: a dict per task would double the
    pickled size of a checkpoint's graph.)
    """
    return write_band(targets, starts[block_id[0]], summary, *blocks)


# ---------------------------------------------------------------- FITS outputs, band by band
def fits_prepare(path: str, size: int, blobs: tuple) -> str:
    """Create ``path`` of ``size`` bytes (zeros) holding the header and table ``blobs`` at their offsets."""
    with open(path, "wb") as f:
        f.truncate(size)
        for offset, data in blobs:
            f.seek(offset)
            f.write(data)
    return path


def fits_write_band(path: str, offset: int, kind: str, block: np.ndarray) -> int:
    """Write a row band of an image at byte ``offset`` of ``path`` in FITS order (big-endian; uint16 as int16+32768)."""
    block = np.asarray(block)
    if kind == "u2":
        data = (block.astype(np.uint16, copy=False) ^ np.uint16(0x8000)).astype(">u2")
    else:
        data = block.astype(kind, copy=False)
        if data.dtype.byteorder not in (">", "|"):
            data = data.astype(data.dtype.newbyteorder(">"))
    data = np.ascontiguousarray(data)
    fd = os.open(path, os.O_WRONLY)
    try:
        view = memoryview(data).cast("B")  # type: ignore[arg-type]  # ndarray exports the buffer protocol
        done = 0
        while done < len(view):
            done += os.pwrite(fd, view[done:], offset + done)
    finally:
        os.close(fd)
    return data.nbytes


def fits_finish(tmp: str, path: str, *written) -> str:
    """Rename the completed temporary file into place (after every band is written)."""
    os.replace(tmp, path)
    return path
