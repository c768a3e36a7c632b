"""Reading frames from and writing frames to multi-extension FITS files.

Opening reads headers only.  Pixel data are wrapped in Dask arrays whose
chunks read the file through :class:`FitsPixelSource`, which opens the file
(memory-mapped) and reads only the requested section, so a chunk costs one
small read and the graph pickles to any worker that sees the same path.
"""
from __future__ import annotations

import io
import os
import re
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
from astropy.io import fits
from astropy.table import Table
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph

from ..errors import InputError, NotFITSError
from ..frame import PLANE_DTYPES, PLANES, Extension, Frame, make_extension
from ._tasks import FitsPixelSource, fits_finish, fits_prepare, fits_write_band, pixel_read_count

__all__ = ["FitsPixelSource", "pixel_read_count", "open_fits", "write_fits", "write_fits_delayed", "write_many",
           "build_hdulist", "write_hdulist_atomic", "frame_from_hdulist", "default_chunks", "discard_partial"]

# Keywords that describe the data layout of an HDU: astropy rewrites them, so
# they are dropped from headers kept on frames.
_STRUCTURAL = (
    "SIMPLE", "XTENSION", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "NAXIS3", "EXTEND",
    "PCOUNT", "GCOUNT", "BZERO", "BSCALE", "EXTNAME", "EXTVER", "CHECKSUM", "DATASUM",
    "TFIELDS",
)

def default_chunks(shape: tuple[int, int]) -> tuple[int, int]:
    """Row-band chunks: whole rows, a band height from the configuration."""
    rows = int(dask.config.get("draconis.chunk_rows", 512))
    return (min(rows, shape[0]), shape[1])


def _data_dtype(header: fits.Header) -> np.dtype:
    bitpix = header.get("BITPIX", 8)
    scaled = ("BZERO" in header and header["BZERO"] not in (0, 32768, 2**31)) or header.get("BSCALE", 1) != 1
    if bitpix < 0 or scaled:
        return np.dtype(np.float32 if bitpix in (-32, 8, 16) else np.float64)
    if bitpix == 16 and header.get("BZERO") == 32768:
        return np.dtype(np.uint16)
    if bitpix == 32 and header.get("BZERO") == 2**31:
        return np.dtype(np.uint32)
    return np.dtype({8: np.uint8, 16: np.int16, 32: np.int32, 64: np.int64}[bitpix])


#: WCS keywords of an axis beyond the second (F2's raw (1, N, N) cube carries CD3_3 = 1): the frame's
#: arrays are 2-D, and such a card makes astropy build a 3-axis WCS for them
_EXTRA_AXIS_WCS = re.compile(r"^(?:(?:CTYPE|CRPIX|CRVAL|CDELT|CUNIT|CROTA|CNAME|CRDER|CSYER)[3-9]"
                             r"|(?:CD|PC|PV|PS)(?:[3-9]_\d+|\d_[3-9]))[A-Z]?$")


def _clean_header(header: fits.Header, *, image: bool = False) -> fits.Header:
    """``header`` without layout keywords (and, for a 2-D ``image``, without WCS cards of other axes)."""
    out = header.copy(strip=False)
    for key in _STRUCTURAL:
        out.remove(key, ignore_missing=True, remove_all=True)
    if image:
        for key in [k for k in out if _EXTRA_AXIS_WCS.match(k)]:
            out.remove(key, remove_all=True)
        if int(out.get("WCSAXES", 2)) > 2:
            out["WCSAXES"] = 2
    return out


def _check_complete(hdul: fits.HDUList, path: str) -> None:
    size = os.path.getsize(path)
    for index in range(len(hdul)):
        info = hdul.fileinfo(index)
        if info is None:
            continue
        if info["datLoc"] + info["datSpan"] > size:
            needed = info["datLoc"] + info["datSpan"]
            raise NotFITSError(path, f"truncated FITS file: HDU {index} needs {needed} bytes, file has {size}")


def open_fits(path: str | os.PathLike, *, chunks: tuple[int, int] | None = None) -> Frame:
    """Open a raw or processed Gemini FITS file as a lazy :class:`Frame`.

    Parameters
    ----------
    path
        The file.
    chunks
        Dask chunks for the pixel planes; default: row bands
        (``draconis.chunk_rows`` rows, whole width).

    Raises
    ------
    NotFITSError
        The file is missing, not FITS, or truncated.
    InputError
        The file has no image extension.
    """
    path = str(path)
    if not os.path.isfile(path):
        raise InputError(path, "no such file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(path, memmap=True, lazy_load_hdus=False) as hdul:
                _check_complete(hdul, path)
                headers = [(type(h), h.header.copy(), h.name, h.ver) for h in hdul]
                tables = {i: Table.read(h) for i, h in enumerate(hdul) if isinstance(h, fits.BinTableHDU)}
    except InputError:
        raise
    except (OSError, ValueError, TypeError, IndexError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise NotFITSError(path, f"not a readable FITS file ({reason})") from err
    return _build_frame(path, headers, tables, chunks)


def _build_frame(path, headers, tables, chunks) -> Frame:
    phu = headers[0][1]
    planes: dict[int, dict[str, Any]] = {}
    sci_headers: dict[int, fits.Header] = {}
    objcats: dict[int, Table] = {}
    file_tables: dict[str, Table] = {}
    auto_ver = 0
    for index, (kind, header, name, ver) in enumerate(headers):
        if index == 0:
            continue
        name = (header.get("EXTNAME") or "").strip().upper()
        if kind is fits.BinTableHDU:
            if name == "OBJCAT":
                objcats[header.get("EXTVER", 1)] = tables[index]
            else:
                file_tables[name or f"TABLE{index}"] = tables[index]
            continue
        if header.get("NAXIS", 0) == 0:
            continue
        if name in PLANES:
            ver = header.get("EXTVER", 1)
        elif name in ("", "SCI") or name not in PLANES:
            # NIRI raw files carry no EXTNAME: every image HDU is a science array.
            auto_ver += 1
            ver = header.get("EXTVER", auto_ver) if name == "SCI" else auto_ver
            name = "SCI"
        raw_shape = tuple(header[f"NAXIS{k}"] for k in range(header["NAXIS"], 0, -1))
        shape = raw_shape
        while len(shape) > 2 and shape[0] == 1:
            shape = shape[1:]
        if len(shape) != 2:
            raise InputError(path, f"HDU {index} has shape {raw_shape}: expected a 2-D image")
        scaled = any(k in header for k in ("BZERO", "BSCALE", "BLANK"))
        # Workers of an external cluster run in their own current directory:
        # the graph names the file by its absolute path.
        full = os.path.abspath(path)
        source = FitsPixelSource(full, index, shape, _data_dtype(header), len(raw_shape), memmap=not scaled)
        # the (small) source inlined in each chunk task: one graph layer per plane, no shared object key
        arr = da.from_array(source, chunks=chunks or default_chunks(shape), asarray=False, inline_array=True,
                            meta=np.empty((0, 0), dtype=source.dtype),
                            name=f"fits-{full}-{index}-{os.path.getmtime(path)}")
        planes.setdefault(ver, {})[name] = arr
        if name == "SCI":
            sci_headers[ver] = _clean_header(header, image=True)
    if not planes or not all("SCI" in p for p in planes.values()):
        raise InputError(path, "no image (SCI) extension found")
    extensions = []
    for ver in sorted(planes):
        p = planes[ver]
        sci = p["SCI"]
        if sci.dtype != np.float32 and "VAR" in p:
            sci = sci.astype(np.float32)
        extensions.append(make_extension(sci_headers[ver], sci, p.get("VAR"), p.get("DQ"),
                                         p.get("OBJMASK"), objcats.get(ver)))
    phu = _clean_header(phu)
    filename = os.path.basename(path)
    # The raw name every later product is named after (DRAGONS' ORIGNAME).
    phu.setdefault("ORIGNAME", filename)
    return Frame(phu=phu, extensions=tuple(extensions), filename=filename, path=os.path.abspath(path),
                 tables=file_tables)


# ----------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------
def _plane_hdu(name: str, data: np.ndarray, header: fits.Header | None, ver: int) -> fits.ImageHDU:
    hdu = fits.ImageHDU(data=data, header=header.copy() if header is not None else None)
    hdu.header["EXTNAME"] = name
    hdu.header["EXTVER"] = ver
    return hdu


def _table_hdu(table: Table, name: str, ver: int | None = None) -> fits.BinTableHDU:
    hdu = fits.table_to_hdu(Table(table, copy=False))
    hdu.header["EXTNAME"] = name
    if ver is not None:
        hdu.header["EXTVER"] = ver
    return hdu


def build_hdulist(frame: Frame, arrays: Sequence[dict[str, np.ndarray]]) -> fits.HDUList:
    """The HDUList of ``frame`` with computed ``arrays`` (one dict of planes per extension)."""
    phu = frame.phu.copy()
    phu.setdefault("ORIGNAME", frame.orig_filename)
    hdus: list[fits.hdu.base.ExtensionHDU] = [fits.PrimaryHDU(header=phu)]
    for ver, (ext, planes) in enumerate(zip(frame.extensions, arrays), start=1):
        for name in PLANES:
            if name in planes:
                data = np.asarray(planes[name])
                # Integer SCI planes (bad pixel masks: int16) are written as they are.
                if not (name == "SCI" and data.dtype.kind in "iu"):
                    data = data.astype(PLANE_DTYPES[name], copy=False)
                hdus.append(_plane_hdu(name, data, ext.header if name == "SCI" else None, ver))
        if ext.objcat is not None:
            hdus.append(_table_hdu(ext.objcat, "OBJCAT", ver))
    for name, table in frame.tables.items():
        hdus.append(_table_hdu(table, name))
    return fits.HDUList(hdus)


def write_hdulist_atomic(hdulist: fits.HDUList, path: str | os.PathLike, *, overwrite: bool = True) -> str:
    """Write ``hdulist`` to a temporary file beside ``path`` and rename it into place."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise InputError(path, "output file exists and overwrite is False")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent or ".")
    os.close(fd)
    os.chmod(tmp, 0o644)  # mkstemp creates 0600; outputs are ordinary files others may read
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", fits.verify.VerifyWarning)
            hdulist.writeto(tmp, overwrite=True, output_verify="silentfix")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return str(path)


def _zero_stride(shape: tuple[int, ...], dtype) -> np.ndarray:
    """An array of ``shape`` that holds one element: lets astropy build an image HDU's header for free."""
    return np.lib.stride_tricks.as_strided(np.zeros(1, dtype), shape=shape, strides=(0,) * len(shape))


def _padded(n: int) -> int:
    return -(-n // 2880) * 2880


def _table_bytes(hdu: fits.BinTableHDU) -> bytes:
    buf, dummy = io.BytesIO(), io.BytesIO()
    fits.PrimaryHDU().writeto(dummy)
    hdu.writeto(buf)  # astropy prepends a default primary HDU to a lone extension
    return buf.getvalue()[len(dummy.getvalue()):]


def _file_layout(frame: Frame, arrays: list[list[tuple[str, da.Array]]]):
    """Byte layout of ``frame``'s FITS file: (size, header/table blobs, image data offsets and dtypes)."""
    skeleton = [{name: _zero_stride(arr.shape, arr.dtype) for name, arr in ext} for ext in arrays]
    hdulist = build_hdulist(frame, skeleton)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fits.verify.VerifyWarning)
        hdulist.verify("silentfix")  # as writeto(output_verify="silentfix") does
    hdulist.update_extend()
    blobs, images, offset = [], [], 0
    for hdu in hdulist:
        if isinstance(hdu, fits.BinTableHDU):
            data = _table_bytes(hdu)
            blobs.append((offset, data))
            offset += len(data)
            continue
        header = hdu.header.tostring().encode("ascii")
        blobs.append((offset, header))
        offset += len(header)
        if hdu.data is not None and hdu.data.size:
            images.append((offset, hdu.data.dtype))
            offset += _padded(hdu.data.nbytes)
    return offset, tuple(blobs), images


def _fits_kind(dtype: np.dtype) -> str:
    """How a plane's values are laid out in the file (FITS has no unsigned 16-bit type: BZERO 32768)."""
    dtype = np.dtype(dtype)
    return "u2" if dtype == np.uint16 else dtype.newbyteorder(">").str


def _plane_arrays(frame: Frame) -> list[list[tuple[str, da.Array]]]:
    out = []
    for ext in frame.extensions:
        planes = []
        for name in PLANES:
            arr = ext.plane(name)
            if arr is None:
                continue
            # Integer SCI planes (bad pixel masks: int16) are written as they are.
            if not (name == "SCI" and np.dtype(arr.dtype).kind in "iu"):
                arr = arr.astype(PLANE_DTYPES[name], copy=False)
            planes.append((name, arr.rechunk({1: -1}) if len(arr.chunks[1]) > 1 else arr))
        out.append(planes)
    return out


def partial_name(path: str | os.PathLike, token: str) -> str:
    """The temporary name beside ``path`` its content is written under before the rename."""
    path = Path(path)
    return str(path.parent / f".{path.name}.{token}.part")


def discard_partial(path: str | os.PathLike) -> None:
    """Remove the temporary files a failed write of ``path`` left (see :func:`partial_name`)."""
    path = Path(path)
    for leftover in path.parent.glob(f".{path.name}.*.part"):
        leftover.unlink(missing_ok=True)


def write_fits_delayed(frame: Frame, path: str | os.PathLike, *, overwrite: bool = True):
    """A Dask delayed that writes ``frame`` as a multi-extension FITS file, streaming its row bands.

    The first task creates a temporary file beside ``path`` with every
    header (and table) at its place and room for the data; one task per row
    band of each plane then writes its bytes in place (big-endian), as soon
    as that band is computed, so no task ever holds a whole plane; the last
    task renames the file into place.  Computing many of these at once
    (``dask.compute(*tasks)``) writes many frames in parallel.  If any band
    fails, :func:`discard_partial` removes the temporary file.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise InputError(path, "output file exists and overwrite is False")
    arrays = _plane_arrays(frame)
    size, blobs, images = _file_layout(frame, arrays)
    token = dask.base.tokenize(str(path), size, blobs, *[a for ext in arrays for _, a in ext])
    tmp = partial_name(path, token[:12])
    prepare, finish = f"fits-prepare-{token}", f"fits-finish-{token}"
    dsk: dict = {prepare: (fits_prepare, tmp, size, blobs)}
    bands, planes = [], [a for ext in arrays for _, a in ext]
    for k, (arr, (offset, dtype)) in enumerate(zip(planes, images)):
        row_bytes = arr.shape[1] * np.dtype(dtype).itemsize
        y = 0
        for b, rows in enumerate(arr.chunks[0]):
            key = (f"fits-band-{token}", k, b)
            dsk[key] = (fits_write_band, prepare, offset + y * row_bytes, _fits_kind(dtype), (arr.name, b, 0))
            bands.append(key)
            y += rows
    dsk[finish] = (fits_finish, prepare, str(path), *bands)
    graph = HighLevelGraph.from_collections(finish, dsk, dependencies=planes)  # type: ignore[arg-type]
    return Delayed(finish, graph)


def write_fits(frame: Frame, path: str | os.PathLike, *, overwrite: bool = True) -> str:
    """Compute ``frame`` and write it as a multi-extension FITS file, atomically."""
    return write_many([frame], [path], overwrite=overwrite)[0]


def write_many(frames: Sequence[Frame], paths: Sequence[str | os.PathLike], *, overwrite: bool = True) -> list[str]:
    """Write several frames in one computation (shared inputs are read once)."""
    tasks = [write_fits_delayed(f, p, overwrite=overwrite) for f, p in zip(frames, paths)]
    try:
        return list(dask.compute(*tasks))
    except BaseException:
        for p in paths:
            discard_partial(p)
        raise


def frame_from_hdulist(hdulist: fits.HDUList, filename: str) -> Frame:
    """A frame from an in-memory HDUList (used by tests and the simulator)."""
    headers = [(type(h), h.header.copy(), h.name, h.ver) for h in hdulist]
    tables = {i: Table.read(h) for i, h in enumerate(hdulist) if isinstance(h, fits.BinTableHDU)}
    planes: dict[int, dict[str, np.ndarray]] = {}
    sci_headers = {}
    auto = 0
    for index, h in enumerate(hdulist):
        if index == 0 or isinstance(h, fits.BinTableHDU) or h.data is None:
            continue
        name = (h.header.get("EXTNAME") or "").strip().upper()
        if name not in PLANES:
            auto += 1
            name, ver = "SCI", auto
        else:
            ver = h.header.get("EXTVER", 1)
        data = np.asarray(h.data)
        while data.ndim > 2 and data.shape[0] == 1:
            data = data[0]
        planes.setdefault(ver, {})[name] = data
        if name == "SCI":
            sci_headers[ver] = _clean_header(h.header, image=True)
    exts: list[Extension] = []
    objcats = {headers[i][1].get("EXTVER", 1): t for i, t in tables.items() if headers[i][2] == "OBJCAT"}
    for ver in sorted(planes):
        p = planes[ver]
        exts.append(make_extension(sci_headers[ver], da.from_array(p["SCI"], chunks=default_chunks(p["SCI"].shape)),
                                   p.get("VAR"), p.get("DQ"), p.get("OBJMASK"), objcats.get(ver)))
    others = {headers[i][2]: t for i, t in tables.items() if headers[i][2] != "OBJCAT"}
    return Frame(phu=_clean_header(headers[0][1]), extensions=tuple(exts), filename=filename, tables=others)
