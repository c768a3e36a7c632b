"""Association rules: the best processed calibration for a frame, as SQL.

Each rule (calibration.md §5) names the descriptors that must match exactly,
those matched within a tolerance, and a time window; the candidates are
ordered by ``|Δt|`` (smallest first), then newest ingestion.  BPMs must not
be later than the frame and the most recent earlier one wins.  Files with
QA state "Fail" are never returned.  Everything is one SELECT per request,
so the database does the filtering and ordering.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from sqlalchemy import ColumnElement, Select, case, func, or_, select

from .models import Calibration as C

__all__ = ["Rule", "RULES", "rule_for", "build_query", "DAY"]

DAY = 86400.0
#: "exact" float matches allow for representation noise only
_FLOAT_EXACT = 1e-6
#: tolerances are inclusive; this absorbs float rounding (1.01 - 1.0 > 0.01 in binary)
_FLOAT_SLACK = 1e-9
_FLOAT_COLUMNS = {"exposure_time", "central_wavelength"}


@dataclasses.dataclass(frozen=True)
class Rule:
    """How one instrument associates one calibration type.

    Attributes
    ----------
    match : tuple of str
        Descriptors whose stored value must equal the frame's.
    tolerance : dict
        Descriptor -> maximum absolute difference.
    days : float or None
        ``|Δt|`` must be below this many days (None: no window).
    not_after : bool
        The calibration must not be later than the frame (BPMs); the most
        recent earlier one wins.
    spect_tolerance : dict
        Extra tolerances applied only when the frame is spectroscopy (tag SPECT).
    extra : callable, optional
        ``extra(descriptors) -> list`` of further WHERE conditions.
    prefer : callable, optional
        ``prefer(descriptors) -> list`` of ORDER BY terms placed before ``|Δt|``.
    """

    match: tuple[str, ...] = ()
    tolerance: dict[str, float] = dataclasses.field(default_factory=dict)
    days: float | None = None
    not_after: bool = False
    spect_tolerance: dict[str, float] = dataclasses.field(default_factory=dict)
    extra: Callable[[dict[str, Any]], list[ColumnElement[bool]]] | None = None
    prefer: Callable[[dict[str, Any]], list[Any]] | None = None


def _niri_flat_lamp(_: dict[str, Any]) -> list[ColumnElement[bool]]:
    # GCAL IR lamps or quartz-halogen; processed flats that lost the keyword still count.
    return [or_(C.gcal_lamp.is_(None), C.gcal_lamp.in_(("IRhigh", "IRlow")), C.gcal_lamp.like("QH%"))]


def _same_observation_first(sci: dict[str, Any]) -> list[Any]:
    if not sci.get("observation_id"):
        return []
    return [case((C.observation_id == sci["observation_id"], 0), else_=1)]


def _bpm(*match: str) -> Rule:
    return Rule(match=("binning", *match), not_after=True)


_STANDARD = Rule(match=("filter_name",), days=1.0)

#: (instrument, calibration type) -> rule; a missing key means "no rule" (e.g. GSAOI darks)
RULES: dict[tuple[str, str], Rule] = {
    ("F2", "processed_dark"): Rule(match=("exposure_time", "read_mode"), days=90),
    ("F2", "processed_flat"): Rule(match=("filter_name", "lyot_stop", "disperser", "focal_plane_mask"), days=90,
                                   spect_tolerance={"central_wavelength": 0.001}),
    ("F2", "processed_bpm"): _bpm(),
    ("F2", "processed_standard"): _STANDARD,
    ("NIRI", "processed_dark"): Rule(match=("data_section", "read_mode", "well_depth_setting", "coadds"),
                                     tolerance={"exposure_time": 0.01}, days=180),
    ("NIRI", "processed_flat"): Rule(match=("data_section", "well_depth_setting", "filter_name", "camera",
                                            "focal_plane_mask", "disperser"), days=180, extra=_niri_flat_lamp),
    ("NIRI", "processed_bpm"): _bpm(),
    ("NIRI", "processed_standard"): _STANDARD,
    # GNIRS keyhole images get darks too: draconis fixes DRAGONS' missing association.
    ("GNIRS", "processed_dark"): Rule(match=("exposure_time", "read_mode", "well_depth_setting", "array_name",
                                             "coadds"), days=90),
    ("GNIRS", "processed_flat"): Rule(match=("disperser", "camera", "filter_name", "array_name",
                                             "well_depth_setting", "focal_plane_mask"),
                                      spect_tolerance={"central_wavelength": 0.001}, prefer=_same_observation_first),
    ("GNIRS", "processed_bpm"): _bpm("array_name"),
    ("GNIRS", "processed_standard"): _STANDARD,
    # GSAOI flats ignore the ROI: flatCorrect clips the full-frame flat to each array.
    ("GSAOI", "processed_flat"): Rule(match=("filter_name",), days=30),
    ("GSAOI", "processed_bpm"): _bpm(),
    ("GSAOI", "processed_standard"): _STANDARD,
}


def rule_for(instrument: str, caltype: str) -> Rule | None:
    """The rule for an instrument and calibration type, or None when none exists."""
    return RULES.get((instrument, caltype))


def _equal(name: str, value: Any) -> ColumnElement[bool]:
    column = getattr(C, name)
    if value is None:
        return column.is_(None)
    if name in _FLOAT_COLUMNS:
        return func.abs(column - float(value)) <= _FLOAT_EXACT
    return column == value


def _within(name: str, value: Any, limit: float) -> ColumnElement[bool]:
    column = getattr(C, name)
    if value is None:
        return column.is_(None)
    return func.abs(column - float(value)) <= limit + _FLOAT_SLACK * max(1.0, abs(float(value)))


def build_query(caltype: str, sci: dict[str, Any], tags: frozenset[str] | set[str] = frozenset(),
                limit: int = 5) -> Select | None:
    """The SELECT returning the best calibrations of ``caltype`` for a frame, best first.

    Parameters
    ----------
    caltype : str
        e.g. ``'processed_dark'``.
    sci : dict
        The frame's canonical descriptors (:func:`~draconis.caldb.ingest.frame_descriptors`).
    tags : set of str
        The frame's tags (spectroscopy adds wavelength tolerances).
    limit : int
        How many candidates to return.

    Returns
    -------
    sqlalchemy.Select or None
        None when the instrument has no rule for this type.
    """
    rule = rule_for(sci["instrument"], caltype)
    if rule is None:
        return None
    when = float(sci["ut_epoch"])
    where: list[ColumnElement[bool]] = [
        C.caltype == caltype,
        C.instrument == sci["instrument"],
        or_(C.qa_state.is_(None), func.lower(C.qa_state) != "fail"),
    ]
    where += [_equal(name, sci.get(name)) for name in rule.match]
    tolerance = dict(rule.tolerance)
    if "SPECT" in tags:
        tolerance.update(rule.spect_tolerance)
    where += [_within(name, sci.get(name), limit_) for name, limit_ in tolerance.items()]
    if rule.extra:
        where += rule.extra(sci)
    distance = func.abs(C.ut_epoch - when)
    if rule.days is not None:
        where.append(distance < rule.days * DAY)
    order: list[Any] = list(rule.prefer(sci)) if rule.prefer else []
    if rule.not_after:
        where.append(C.ut_epoch <= when)
        order.append(C.ut_epoch.desc())
    else:
        order.append(distance)
    order += [C.ingested.desc(), C.id.desc()]
    return select(C).where(*where).order_by(*order).limit(limit)
