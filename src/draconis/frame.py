"""Frames and streams: the data model every primitive works on.

A :class:`Frame` is one exposure: its primary header (PHU), one
:class:`Extension` per detector array, and file-level tables.  Each extension
holds an ``xarray.Dataset`` whose variables ``SCI`` (float32), ``VAR``
(float32), ``DQ`` (uint16) and ``OBJMASK`` (uint8) have dims ``(y, x)`` and are
Dask-backed, so building a reduction builds a graph; nothing is read until it
is computed.

Frames are immutable in spirit: primitives return new frames built with
:meth:`Frame.replace` / :meth:`Frame.with_extensions`, never modifying the
headers or arrays of their inputs.
"""
from __future__ import annotations

import dataclasses
import os
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal, overload

import dask.array as da
import numpy as np
import xarray as xr
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from .errors import DescriptorError

if TYPE_CHECKING:
    from .instruments import Instrument

PLANES = ("SCI", "VAR", "DQ", "OBJMASK")
PLANE_DTYPES = {"SCI": np.float32, "VAR": np.float32, "DQ": np.uint16, "OBJMASK": np.uint8}
DIMS = ("y", "x")


@dataclasses.dataclass(frozen=True, eq=False)
class Extension:
    """One detector array of a frame.

    Parameters
    ----------
    header
        The SCI extension header (WCS, sections, per-array keywords).
    data
        Dataset with some of ``SCI``, ``VAR``, ``DQ``, ``OBJMASK`` over ``(y, x)``.
    objcat
        Source catalogue of this array (``OBJCAT``), if sources were detected.
    """

    header: fits.Header
    data: xr.Dataset
    objcat: Table | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """(ny, nx) of this array."""
        ny, nx = self.data["SCI"].shape
        return int(ny), int(nx)

    @overload
    def plane(self, name: Literal["SCI"]) -> da.Array: ...

    @overload
    def plane(self, name: str) -> da.Array | None: ...

    def plane(self, name: str) -> da.Array | None:
        """The Dask array of plane ``name``, or None when the plane is absent (SCI is always present)."""
        if name not in self.data:
            return None
        return self.data[name].data

    def with_planes(self, **planes: da.Array | np.ndarray | None) -> Extension:
        """A copy with the given planes replaced (None removes a plane)."""
        data = self.data.copy()
        for name, arr in planes.items():
            if arr is None:
                if name in data:
                    data = data.drop_vars(name)
                continue
            arr = arr if isinstance(arr, da.Array) else da.asarray(arr)
            data[name] = (DIMS, arr.astype(PLANE_DTYPES.get(name, arr.dtype), copy=False))
        return dataclasses.replace(self, data=data)

    def with_header(self, **cards: Any) -> Extension:
        """A copy whose header has ``cards`` set (value or (value, comment))."""
        header = self.header.copy()
        update_header(header, cards)
        return dataclasses.replace(self, header=header)

    def replace(self, **changes: Any) -> Extension:
        """A copy with dataclass fields replaced."""
        return dataclasses.replace(self, **changes)

    @property
    def wcs(self) -> WCS:
        """The celestial WCS of this array, from its header."""
        return WCS(self.header, naxis=2, relax=True)


def _with_shape(header: fits.Header, shape: tuple[int, ...]) -> fits.Header:
    """``header`` with NAXIS/NAXIS1/NAXIS2 of a (ny, nx) array (a copy if they are added)."""
    if len(shape) != 2 or (header.get("NAXIS1") == shape[1] and header.get("NAXIS2") == shape[0]):
        return header
    out = header.copy()
    out["NAXIS"], out["NAXIS1"], out["NAXIS2"] = 2, int(shape[1]), int(shape[0])
    return out


def header_text(text: str) -> str:
    """``text`` as a FITS header string: printable ASCII as it is, anything else %-escaped.

    FITS headers hold ASCII only; a file named ``unicodé_中文.fits`` is
    recorded as ``unicod%C3%A9_%E4%B8%AD%E6%96%87.fits`` (UTF-8 bytes; a
    ``%`` in such a text is escaped too) and :func:`header_name` gives the
    name back.  Printable ASCII text is never changed.
    """
    if all(" " <= c <= "~" for c in text):
        return text
    return "".join(c if " " <= c <= "~" and c != "%" else urllib.parse.quote(c, safe="") for c in text)


def header_name(value: Any) -> str:
    """The text :func:`header_text` escaped (file names read back from ORIGNAME and the like)."""
    return urllib.parse.unquote(str(value)) if "%" in str(value) else str(value)


def update_header(header: fits.Header, cards: dict[str, Any]) -> None:
    """Set keyword values on ``header`` in place; (value, comment) tuples keep a comment.

    String values are made FITS-safe with :func:`header_text` (file names may be non-ASCII).
    """
    for key, value in cards.items():
        if value is None:
            header.remove(key, ignore_missing=True)
            continue
        if isinstance(value, str):
            value = header_text(value)
        elif isinstance(value, tuple) and value and isinstance(value[0], str):
            value = (header_text(value[0]), *value[1:])
        header[key] = value


@dataclasses.dataclass(frozen=True, eq=False)
class Frame:
    """One exposure: PHU, detector arrays and file-level tables.

    Parameters
    ----------
    phu
        Primary header.
    extensions
        One :class:`Extension` per detector array, in EXTVER order.
    filename
        Current file name (base name with suffix); output names derive from it.
    path
        File the frame was read from, if any.
    tables
        File-level tables by name (e.g. ``REFCAT``).
    """

    phu: fits.Header
    extensions: tuple[Extension, ...]
    filename: str
    path: str | None = None
    tables: dict[str, Table] = dataclasses.field(default_factory=dict)

    # -- identity -------------------------------------------------------
    @property
    def orig_filename(self) -> str:
        """The raw file name this frame descends from (ORIGNAME)."""
        name = self.phu.get("ORIGNAME")
        return header_name(name) if name else self.filename

    @property
    def stem(self) -> str:
        """Raw file name without extension and without any processing suffix."""
        return os.path.splitext(os.path.basename(self.orig_filename))[0]

    def __repr__(self) -> str:
        shapes = ", ".join("x".join(map(str, e.shape)) for e in self.extensions)
        return f"<Frame {self.filename} [{shapes}]>"

    def __len__(self) -> int:
        return len(self.extensions)

    def __getitem__(self, index: int) -> Extension:
        return self.extensions[index]

    # -- instrument, tags and descriptors ---------------------------------
    @cached_property
    def instrument_model(self) -> Instrument:
        """The :class:`~draconis.instruments.Instrument` that reads this frame's headers.

        Not to be confused with the ``instrument`` descriptor:
        ``frame.instrument()`` returns the name (``'F2'``), as in DRAGONS.
        """
        from .instruments import instrument_for

        return instrument_for(self.phu, path=self.path or self.filename)

    @cached_property
    def tags(self) -> frozenset[str]:
        """The frame's tags (e.g. ``{'F2', 'IMAGE', 'RAW', ...}``)."""
        return frozenset(self.instrument_model.tags(self.phu, self.ext_headers))

    @cached_property
    def ext_headers(self) -> list[fits.Header]:
        """The array headers as the instrument layer reads them (NAXIS1/NAXIS2 restored)."""
        # The instrument layer sees headers only: give it each array's shape as
        # NAXIS1/NAXIS2 (the FITS reader strips them as structural keywords).
        return [_with_shape(ext.header, ext.shape) for ext in self.extensions]

    def descriptor(self, name: str, **kwargs: Any) -> Any:
        """Value of descriptor ``name`` (per-array descriptors give a list)."""
        return self.instrument_model.descriptor(
            name, self.phu, self.ext_headers, self.tags, path=self.path or self.filename, **kwargs
        )

    def __getattr__(self, name: str) -> Callable[..., Any]:
        # Descriptors are also callable as methods, as astrodata users write
        # ``ad.exposure_time()``; the instrument's registry decides the names.
        if name.startswith("_") or name in {"instrument_model", "tags", "ext_headers"}:
            raise AttributeError(name)
        try:
            names = self.instrument_model.descriptor_names()
        except Exception as err:  # noqa: BLE001 - surface as attribute error
            raise AttributeError(name) from err
        if name in names:
            return lambda **kw: self.descriptor(name, **kw)
        raise AttributeError(f"Frame has no attribute or descriptor {name!r}")

    def safe_descriptor(self, name: str, default: Any = None, **kwargs: Any) -> Any:
        """Descriptor value, or ``default`` when it cannot be computed."""
        try:
            return self.descriptor(name, **kwargs)
        except DescriptorError:
            return default

    # -- building new frames ----------------------------------------------
    def replace(self, **changes: Any) -> Frame:
        """A copy with dataclass fields replaced (tags/instrument recomputed)."""
        return dataclasses.replace(self, **changes)

    def with_extensions(self, extensions: Iterable[Extension]) -> Frame:
        """A copy with these extensions."""
        return self.replace(extensions=tuple(extensions))

    def map_extensions(self, func: Callable[[Extension], Extension]) -> Frame:
        """A copy with ``func`` applied to every extension."""
        return self.with_extensions(func(ext) for ext in self.extensions)

    def with_phu(self, **cards: Any) -> Frame:
        """A copy whose PHU has ``cards`` set; a None value deletes the keyword."""
        phu = self.phu.copy()
        update_header(phu, cards)
        return self.replace(phu=phu)

    def with_suffix(self, suffix: str | None, *, strip: bool = True) -> Frame:
        """A copy renamed ``<stem><suffix>.fits`` (DRAGONS naming: latest suffix only)."""
        if not suffix:
            return self
        base = self.stem if strip else os.path.splitext(self.filename)[0]
        return self.replace(filename=f"{base}{suffix}.fits")

    # -- pixel access helpers -------------------------------------------
    def planes(self, name: str) -> list[da.Array | None]:
        """Plane ``name`` of every extension (None where absent)."""
        return [ext.plane(name) for ext in self.extensions]

    def to_datatree(self) -> xr.DataTree:
        """The frame as an ``xarray.DataTree`` (root: PHU; ``ext1`` ...: arrays)."""
        nodes: dict[str, xr.Dataset] = {"/": xr.Dataset(attrs={"PHU": self.phu.tostring()})}
        for i, ext in enumerate(self.extensions, start=1):
            nodes[f"/ext{i}"] = ext.data.assign_attrs(header=ext.header.tostring())
        return xr.DataTree.from_dict(nodes)


def make_extension(
    header: fits.Header,
    sci: da.Array | np.ndarray,
    var: da.Array | np.ndarray | None = None,
    dq: da.Array | np.ndarray | None = None,
    objmask: da.Array | np.ndarray | None = None,
    objcat: Table | None = None,
) -> Extension:
    """Build an :class:`Extension` from arrays (NumPy arrays are wrapped in Dask)."""
    ext = Extension(header=header.copy(), data=xr.Dataset())
    return ext.with_planes(SCI=sci, VAR=var, DQ=dq, OBJMASK=objmask).replace(objcat=objcat)


class Stream(list):
    """An ordered list of frames; streams are named by the runner (``main``, ``sky`` ...)."""


def frames_by_stem(frames: Sequence[Frame]) -> dict[str, Frame]:
    """Index frames by their raw file stem (to match frames across streams)."""
    return {f.stem: f for f in frames}
