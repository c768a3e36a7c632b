"""What an output records about how it was made.

Every primitive a run applies to a frame leaves, in the frame's primary
header (the runner writes them, :meth:`Provenance.stamp`):

- its DRAGONS-style time-stamp keyword (``PREPARE``, ``DARKCORR``, ...) with the
  UTC time, and ``GEM-TLM`` (last modification);
- ``DRACONIS``: the draconis version;
- one ``HISTORY`` card per parameter set to something other than its default
  (``draconis stackFrames: reject_method='minmax'``);
- two ``HISTORY`` cards per calibration or file used: its name, then its md5
  checksum (``draconis darkCorrect: processed_dark N20160102S0001_dark.fits``,
  ``draconis darkCorrect: md5=...``).

Stacks also record their inputs (``NCOMBINE`` and ``IMCMBnnn``,
:func:`combined_cards`).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from astropy.io import fits

from .frame import header_text

__all__ = ["utc_timestamp", "timestamp_keyword", "md5sum", "combined_cards", "history_value", "Provenance"]

#: Time-stamp keywords of the primitives whose DRAGONS keyword is not their name cut to 8 characters.
TIMESTAMP_KEYWORDS = {
    "ADUToElectrons": "ADUTOELE", "nonlinearityCorrect": "LINCORR", "addIllumMaskToDQ": "ADILLMSK",
    "skyCorrect": "SUBSKY", "adjustWCSToReference": "CORRWCS", "resampleToCommonFrame": "ALIGN",
    "stackFrames": "STACKFRM", "stackDarks": "STACKFRM", "stackFlats": "STACKFRM", "makeBPM": "BPMASK",
    "makeLampFlat": "MAKELAMP", "normalizeFlat": "NORMLIZE", "thresholdFlatfield": "THRESFLT",
    "applyDQPlane": "APPLYDQ", "detectSources": "DETECSRC", "storeProcessedDark": "PROCDARK",
    "storeProcessedFlat": "PROCFLAT", "storeProcessedBPM": "PROCBPM", "storeProcessedScience": "PROCSCI",
}
#: Prefix of draconis' HISTORY cards.
HISTORY_PREFIX = "draconis"


def utc_timestamp() -> str:
    """The current UTC time as ``YYYY-MM-DDThh:mm:ss`` (the form of DRAGONS' time-stamp keywords)."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")


def timestamp_keyword(primitive: str) -> str:
    """The PHU keyword that says ``primitive`` ran (DRAGONS' where known, else its name upper-cased, 8 chars)."""
    return TIMESTAMP_KEYWORDS.get(primitive, primitive.upper()[:8])


_MD5: dict[tuple[str, int, int, int], str] = {}


def md5sum(path: str | os.PathLike) -> str:
    """The md5 checksum of a file (cached per path, inode, modification time and size).

    The one checksum of draconis: provenance cards, the run record and the
    calibration database all ask it, so a file is read once per version.
    """
    path = os.path.abspath(path)
    st = os.stat(path)
    key = (path, st.st_ino, st.st_mtime_ns, st.st_size)
    if key not in _MD5:
        digest = hashlib.md5(usedforsecurity=False)
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                digest.update(block)
        _MD5[key] = digest.hexdigest()
    return _MD5[key]


def combined_cards(inputs: Sequence[Any]) -> dict[str, Any]:
    """``NCOMBINE`` and one ``IMCMBnnn`` per input (its raw file name): the input list of a stack."""
    cards: dict[str, Any] = {"NCOMBINE": (len(inputs), "number of frames combined")}
    for i, frame in enumerate(inputs, start=1):
        cards[f"IMCMB{i:03d}"] = frame.orig_filename
    return cards


def history_value(value: Any) -> str:
    """A parameter value as a HISTORY card shows it: frames by file name, tables by size, else repr."""
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(history_value(v) for v in value) + "]"
    if hasattr(value, "extensions") and hasattr(value, "filename"):  # a Frame
        return str(value.filename)
    if hasattr(value, "colnames"):  # an astropy Table
        return f"<table of {len(value)} rows>"
    return repr(value)


class Provenance:
    """Collects, for one primitive call, the files it used; then stamps its outputs.

    Parameters
    ----------
    name
        The primitive.
    changed
        Its parameter values that differ from the defaults, by name.
    version
        The draconis version.
    """

    def __init__(self, name: str, changed: Mapping[str, Any], version: str):
        self.name = name
        self.changed = dict(changed)
        self.version = version
        #: (frame stem or None for every output, what, path)
        self.files: list[tuple[str | None, str, str]] = []

    def used(self, what: str, path: str | None, stem: str | None = None) -> None:
        """Record that a file (a calibration, a file named by a parameter) was used (for ``stem``, or all)."""
        if path:
            self.files.append((stem, what, path))

    def opened(self, name: str, paths: Sequence[str | None]) -> None:
        """Record the files the runner opened for parameter ``name`` (their cards replace its value card)."""
        if paths and all(paths):
            self.changed.pop(name, None)
            for path in paths:
                self.used(name, path)

    def cards(self, stem: str) -> list[str]:
        """The HISTORY texts of an output descended from ``stem``."""
        texts = [f"{HISTORY_PREFIX} {self.name}: {key}={history_value(value)}" for key, value in self.changed.items()]
        for who, what, path in self.files:
            if who is None or who == stem:
                # two cards: a FITS HISTORY card holds 72 characters, too few for the name and the checksum
                texts.append(f"{HISTORY_PREFIX} {self.name}: {what} {os.path.basename(path)}")
                texts.append(f"{HISTORY_PREFIX} {self.name}: md5={md5sum(path)}")
        return texts

    def stamp(self, phu: fits.Header, stem: str, when: str) -> fits.Header:
        """A copy of ``phu`` with the time stamp, version and HISTORY cards of this call."""
        out = phu.copy()
        out[timestamp_keyword(self.name)] = (when, f"UT time stamp for {self.name}")
        out["GEM-TLM"] = (when, "UT last modification with draconis")
        out["DRACONIS"] = (self.version, "draconis version")
        for text in self.cards(stem):
            out.add_history(header_text(text))  # FITS headers are ASCII: file names may not be
        return out


def changed_values(params: Mapping[str, Any], defaults: Mapping[str, Any],
                   ignore: Iterable[str] = ("skip_primitive",)) -> dict[str, Any]:
    """The parameters whose value differs from its default."""
    skip = set(ignore)
    return {k: v for k, v in params.items() if k not in skip and k in defaults and not _same(v, defaults[k])}


def _same(value: Any, default: Any) -> bool:
    try:
        return bool(value == default)
    except (TypeError, ValueError):  # arrays, frames...
        return value is default
