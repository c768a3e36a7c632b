"""User calibrations: ``--user_cal TYPE:FILE`` and ``Reduce.ucals``."""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import InputError, ParameterError
from ..frame import Frame


def normalize_ucals(*args: Any) -> dict[str, str]:
    """Turn ``["processed_dark:x_dark.fits", ...]`` into ``{"processed_dark": "x_dark.fits"}``.

    Accepts ``normalize_ucals(cals)`` and the older ``normalize_ucals(files, cals)``
    (the files are not needed: a user calibration applies to every input).

    Raises
    ------
    ParameterError
        An entry is not ``processed_<type>:<file>``.
    """
    if len(args) == 1:
        cals = args[0]
    elif len(args) == 2:
        cals = args[1]
    else:
        raise TypeError("normalize_ucals(cals) or normalize_ucals(files, cals)")
    out: dict[str, str] = {}
    for entry in cals or ():
        caltype, sep, path = str(entry).partition(":")
        caltype, path = caltype.strip(), path.strip()
        if not sep or not caltype or not path:
            raise ParameterError(f"bad user calibration {entry!r}: expected TYPE:FILE, e.g. processed_dark:x_dark.fits")
        _check_type(caltype)
        out[caltype] = path
    return out


def _check_type(caltype: str) -> None:
    if not caltype.startswith("processed_") or caltype == "processed_":
        raise ParameterError(f"bad calibration type {caltype!r}: expected processed_<type> (e.g. processed_dark)")


def required_tags(caltype: str) -> set[str]:
    """Tags a file must carry to serve as ``caltype`` (processed_dark -> DARK, PROCESSED)."""
    kind = caltype.removeprefix("processed_").upper()
    return {kind} if kind == "BPM" else {kind, "PROCESSED"}


def open_ucals(ucals: Mapping[str, Any] | Iterable[str] | None) -> dict[str, Frame]:
    """Open and check the user calibrations (files exist and carry the right tags).

    Values may be file names or frames already opened.
    """
    from ..io import open_frame

    if not ucals:
        return {}
    if not isinstance(ucals, Mapping):
        ucals = normalize_ucals(list(ucals))
    opened: dict[str, Frame] = {}
    for caltype, source in ucals.items():
        _check_type(caltype)
        if isinstance(source, Frame):
            opened[caltype] = source
            continue
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise InputError(path, f"user calibration {caltype}: no such file")
        frame = open_frame(path)
        missing = required_tags(caltype) - set(frame.tags)
        if missing:
            raise InputError(path, f"cannot be used as {caltype}: it lacks the tag(s) {', '.join(sorted(missing))}")
        opened[caltype] = frame
    return opened
