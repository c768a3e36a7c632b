"""From a FITS file to a database row: tags, calibration type, descriptors.

The same canonical descriptor values are computed for a stored calibration
and for the science frame asking for one, so the association rules compare
like with like (e.g. data sections as FITS strings joined with ``;``).
"""
from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Iterable
from typing import Any

from ..errors import CalDBError, DescriptorError, DraconisError
from ..provenance import md5sum

log = logging.getLogger("draconis.caldb")

__all__ = ["CALTYPES", "caltype_from_tags", "check_caltype", "frame_descriptors", "describe_file", "md5sum",
           "open_any"]

#: calibration types the database stores, with the tag that identifies each
CALTYPES: dict[str, str] = {
    "processed_dark": "DARK",
    "processed_flat": "FLAT",
    "processed_bpm": "BPM",
    "processed_standard": "STANDARD",
}

# Descriptors without which a calibration of a type can never be matched.
_REQUIRED = {
    "processed_dark": ("exposure_time",),
    "processed_flat": ("filter_name",),
    "processed_bpm": (),
    "processed_standard": ("filter_name",),
}

# name -> descriptor options; ``stripID`` drops hardware component IDs so a
# swapped-but-identical component still matches.
_DESCRIPTORS: dict[str, dict[str, Any]] = {
    "observation_type": {}, "observation_class": {}, "observation_id": {}, "data_label": {}, "qa_state": {},
    "exposure_time": {}, "coadds": {}, "read_mode": {}, "well_depth_setting": {},
    "filter_name": {"pretty": True}, "camera": {"stripID": True}, "lyot_stop": {"stripID": True},
    "disperser": {"stripID": True}, "focal_plane_mask": {"stripID": True}, "central_wavelength": {},
    "array_name": {}, "data_section": {}, "detector_section": {}, "detector_roi_setting": {},
    "binning": {}, "gcal_lamp": {},
}


def caltype_from_tags(tags: Iterable[str]) -> str | None:
    """The processed-calibration type a tag set denotes, or None.

    BPM files are tagged ``BPM CAL PROCESSED``; darks ``DARK PROCESSED``;
    flats ``FLAT PROCESSED``; standards ``STANDARD PROCESSED``.
    """
    tags = set(tags)
    if "PROCESSED" not in tags:
        return None
    for caltype in ("processed_bpm", "processed_dark", "processed_flat", "processed_standard"):
        if CALTYPES[caltype] in tags:
            return caltype
    return None


def check_caltype(caltype: str) -> str:
    """Validate a calibration type name ('processed_dark', ...).

    Raises
    ------
    CalDBError
        Not a type the database handles.
    """
    if caltype not in CALTYPES:
        raise CalDBError(f"unknown calibration type {caltype!r} (expected one of {', '.join(CALTYPES)})")
    return caltype


def open_any(frame_or_path: Any):
    """A frame from a frame or a path (errors become :class:`CalDBError`)."""
    from ..frame import Frame
    from ..io import open_frame

    if isinstance(frame_or_path, Frame):
        return frame_or_path
    path = os.fspath(frame_or_path)
    try:
        return open_frame(path)
    except DraconisError as err:
        raise CalDBError(str(err)) from err


def _canonical(value: Any) -> Any:
    """Per-array values as one comparable text; sections in FITS form."""
    if hasattr(value, "_fields") and len(value) == 4:  # a Section: 0-based, upper bound exclusive
        x1, x2, y1, y2 = value
        return f"[{x1 + 1}:{x2},{y1 + 1}:{y2}]"
    if isinstance(value, (list, tuple)):
        parts = ["" if v is None else str(_canonical(v)) for v in value]
        return ";".join(parts) if parts else None
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    return str(value)


def _descriptor(frame: Any, name: str, options: dict[str, Any]) -> Any:
    """A descriptor value, or None when the instrument lacks it or it cannot be computed."""
    try:
        return frame.descriptor(name, **options)
    except DescriptorError as err:
        if options and "option" in str(err):
            return _descriptor(frame, name, {})
        return None
    except (DraconisError, ValueError, TypeError, KeyError) as err:
        # optional for matching: a rule that needs it then simply finds no match
        log.debug("%s: descriptor %s unavailable (%s)", frame.filename, name, err)
        return None


def descriptor_failure(frame: Any, name: str) -> str | None:
    """Why descriptor ``name`` of ``frame`` cannot be computed (e.g. a missing keyword), or None.

    None also when the instrument has no such descriptor: a rule then matches on NULL.
    """
    try:
        if name not in frame.instrument_model.descriptor_names():
            return None
        frame.descriptor(name, **_DESCRIPTORS.get(name, {}))
    except DraconisError as err:
        return getattr(err, "problem", None) or str(err)
    return None


def frame_descriptors(frame: Any) -> dict[str, Any]:
    """The canonical descriptor values the association rules use, for any frame.

    Descriptors an instrument does not have, or that cannot be computed,
    are None.  ``ut_datetime`` and ``instrument`` are always present.

    Raises
    ------
    CalDBError
        ``instrument`` or ``ut_datetime`` cannot be determined.
    """
    name = frame.path or frame.filename
    try:
        instrument = str(frame.descriptor("instrument"))
        when = frame.descriptor("ut_datetime")
    except DraconisError as err:
        raise CalDBError(f"{name}: cannot tell instrument and observation time ({err})") from err
    if not isinstance(when, dt.datetime):
        raise CalDBError(f"{name}: ut_datetime is {when!r}, not a date and time")
    values = {key: _canonical(_descriptor(frame, key, opts)) for key, opts in _DESCRIPTORS.items()}
    values["coadds"] = int(values["coadds"]) if isinstance(values["coadds"], (int, float)) else None
    for key in ("exposure_time", "central_wavelength"):
        if values[key] is not None:
            try:
                values[key] = float(values[key])
            except (TypeError, ValueError):
                values[key] = None
    values["binning"] = values["binning"] or "1x1"
    if values["qa_state"] is not None:
        values["qa_state"] = str(values["qa_state"])
    when = _naive_utc(when)
    values.update(instrument=instrument, ut_datetime=when, ut_epoch=_epoch(when))
    return values


def _naive_utc(when: dt.datetime) -> dt.datetime:
    if when.tzinfo is not None:
        when = when.astimezone(dt.UTC).replace(tzinfo=None)
    return when


def _epoch(when: dt.datetime) -> float:
    return (when - dt.datetime(1970, 1, 1)).total_seconds()


def describe_file(path: str | os.PathLike, caltype: str | None = None) -> dict[str, Any]:
    """Everything the database stores about a processed calibration file.

    Parameters
    ----------
    path : str or path
        The file.
    caltype : str, optional
        Expected type; checked against the file's tags.  Default: from the tags.

    Returns
    -------
    dict
        Column values of :class:`~draconis.caldb.models.Calibration` (without ``id``/``ingested``).

    Raises
    ------
    CalDBError
        Missing or unreadable file, not a processed calibration, tags not
        matching ``caltype``, or a descriptor the rules need is missing.
    """
    path = os.path.abspath(os.fspath(path))
    if not os.path.isfile(path):
        raise CalDBError(f"{path}: no such file")
    frame = open_any(path)
    try:
        tags = frame.tags
    except DraconisError as err:
        raise CalDBError(f"{path}: cannot determine tags ({err})") from err
    found = caltype_from_tags(tags)
    if found is None:
        raise CalDBError(f"{path}: not a processed calibration (tags: {' '.join(sorted(tags))}; expected "
                         f"PROCESSED with one of DARK, FLAT, BPM, STANDARD)")
    if caltype is not None and check_caltype(caltype) != found:
        raise CalDBError(f"{path}: cannot store as {caltype}: its tags ({' '.join(sorted(tags))}) make it a {found}")
    values = frame_descriptors(frame)
    missing = [name for name in _REQUIRED[found] if values.get(name) in (None, "")]
    if missing:
        raise CalDBError(f"{path}: {found} without the descriptor(s) {', '.join(missing)} needed to associate it")
    values.update(
        caltype=found, filename=os.path.basename(path), directory=os.path.dirname(path), path=path,
        md5=md5sum(path), size=os.path.getsize(path), tags=" ".join(sorted(tags)),
    )
    return values
