"""Per-frame facts of a run, read from what the primitives leave in headers and catalogues.

:func:`observe` runs after every recipe step (through
:func:`draconis.runrecord.step_done`) and reads no pixel: descriptors of the
raw frames (time, exposure, telescope offsets), the OBJCAT tables that
detectSources attaches (number of sources, stellar FWHM), the PHU cards of
adjustWCSToReference (``ALIGNMTH``, ``ALIGNNUM``, ``ALIGNRMS``) with the WCS
shift it applied, of scaleCountsToReference (``CNTSCALE`` applied,
``CNTSCMEA`` measured) and of stackFrames (``IMCMB*``: which frames were
combined).  A frame that was an object frame but is not in the final stack is
"left out", with the last warning that named it as the reason.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

#: keys of one frame's facts, in the order tables show them, with their headings
COLUMNS = {
    "filename": "frame",
    "ut": "UT",
    "elapsed": "t (s)",
    "exptime": "exp (s)",
    "sky_level": "sky (e-)",
    "n_sources": "sources",
    "fwhm": "FWHM (\")",
    "align_method": "alignment",
    "align_matched": "matched",
    "align_rms": "rms (\")",
    "p_offset": "p (\")",
    "q_offset": "q (\")",
    "wcs_dx": "WCS shift x (\")",
    "wcs_dy": "WCS shift y (\")",
    "ra_offset": "ΔRA (\")",
    "dec_offset": "ΔDec (\")",
    "scale_measured": "scale measured",
    "scale_applied": "scale applied",
    "left_out": "left out",
}


def _facts(record, frame) -> dict[str, Any]:
    stem = frame.stem
    facts = record.frames.get(stem)
    if facts is None:
        facts = record.frames[stem] = {"filename": frame.orig_filename, **_raw_facts(frame)}
        times = [f["time"] for f in record.frames.values() if f.get("time") is not None]
        if times:
            first = min(times)
            for f in record.frames.values():
                if f.get("time") is not None:
                    f["elapsed"] = round((f["time"] - first).total_seconds(), 1)
    return facts


def _raw_facts(frame) -> dict[str, Any]:
    out: dict[str, Any] = {}
    when = frame.safe_descriptor("ut_datetime")
    if when is not None:
        out["time"] = when
        out["ut"] = when.strftime("%H:%M:%S")
    out["exptime"] = _num(frame.safe_descriptor("exposure_time"))
    # p and q as the observer set them (POFFSET/QOFFSET); some instruments' x/y offset descriptors swap them
    out["p_offset"] = _num(frame.phu.get("POFFSET", frame.safe_descriptor("telescope_x_offset")))
    out["q_offset"] = _num(frame.phu.get("QOFFSET", frame.safe_descriptor("telescope_y_offset")))
    return out


def _num(value: Any, digits: int = 4) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return round(value, digits) if math.isfinite(value) else None


def is_stack(frame) -> bool:
    """Whether ``frame`` is a stack (it has NCOMBINE)."""
    return "NCOMBINE" in frame.phu


def observe(record, entry, frames_in: Sequence[Any], frames_out: Sequence[Any]) -> None:
    """Update ``record.frames`` with what step ``entry`` left in its output frames."""
    for frame in frames_in:
        if not is_stack(frame):
            _facts(record, frame)
    if entry.name == "separateSky":
        for frame in frames_out:
            _facts(record, frame)["object"] = True
    singles = [f for f in frames_out if not is_stack(f)]
    if entry.name == "detectSources":
        for frame in singles:
            _facts(record, frame).update(_catalogue_facts(frame))
    if entry.name == "adjustWCSToReference":
        _alignment(record, frames_in, singles)
    if entry.name == "scaleCountsToReference":
        for frame in singles:
            facts = _facts(record, frame)
            facts["scale_applied"] = _num(frame.phu.get("CNTSCALE"))
            facts["scale_measured"] = _num(frame.phu.get("CNTSCMEA"))
    stacks = [f for f in frames_out if is_stack(f)]
    if entry.name in ("stackFrames", "stackSkyFrames") and stacks and len(frames_in) > 1:
        record.stack_inputs = [f.stem for f in frames_in]
        record.stacked = _combined(stacks[0])


def _catalogue_facts(frame) -> dict[str, Any]:
    tables = [e.objcat for e in frame.extensions if e.objcat is not None]
    if not tables:
        return {}
    n = sum(len(t) for t in tables)
    fwhm = []
    for t in tables:
        if len(t) and "FWHM_IMAGE" in t.colnames:
            good = np.ones(len(t), bool)
            if "FLAGS" in t.colnames:
                good &= np.asarray(t["FLAGS"]) == 0
            if "CLASS_STAR" in t.colnames and np.sum(good & (np.asarray(t["CLASS_STAR"]) > 0.7)) >= 3:
                good &= np.asarray(t["CLASS_STAR"]) > 0.7
            values = np.asarray(t["FWHM_IMAGE"], float)[good]
            fwhm.extend(values[np.isfinite(values)])
    scale = _num(frame.safe_descriptor("pixel_scale"))
    out: dict[str, Any] = {"n_sources": int(n)}
    if fwhm and scale:
        out["fwhm"] = round(float(np.median(fwhm)) * scale, 3)
    return out


def _centre_world(frame) -> tuple[float, float] | None:
    """RA, Dec (deg) of the centre of the first array, from its WCS (no pixel read)."""
    try:
        ext = frame[0]
        ny, nx = ext.shape
        ra, dec = ext.wcs.celestial.all_pix2world([[(nx - 1) / 2, (ny - 1) / 2]], 0)[0]
        return float(ra), float(dec)
    except Exception:  # noqa: BLE001 - no celestial WCS
        return None


def _arcsec(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    """(b - a) on the sky in arcsec: (ΔRA cos δ, ΔDec)."""
    dra = ((b[0] - a[0] + 180.0) % 360.0) - 180.0
    return (round(dra * math.cos(math.radians(a[1])) * 3600.0, 3), round((b[1] - a[1]) * 3600.0, 3))


def _alignment(record, frames_in: Sequence[Any], frames_out: Sequence[Any]) -> None:
    before = {f.stem: _centre_world(f) for f in frames_in}
    ref_stem = frames_out[0].phu.get("ALIGNREF") if frames_out else None
    ref = next((f for f in frames_out if f.stem == ref_stem), frames_out[0] if frames_out else None)
    ref_centre = _centre_world(ref) if ref is not None else None
    for frame in frames_out:
        facts = _facts(record, frame)
        record.footprints[frame.stem] = _footprint(frame)
        facts["align_method"] = frame.phu.get("ALIGNMTH")
        facts["align_matched"] = frame.phu.get("ALIGNNUM")
        facts["align_rms"] = _num(frame.phu.get("ALIGNRMS"), 3)
        after = _centre_world(frame)
        start = before.get(frame.stem)
        if after is not None and start is not None:
            facts["wcs_dx"], facts["wcs_dy"] = _arcsec(start, after)
        if after is not None and ref_centre is not None:
            facts["ra_offset"], facts["dec_offset"] = _arcsec(ref_centre, after)
    record.reference = ref_stem


def _footprint(frame) -> list[tuple[Any, tuple[int, int]]]:
    """(celestial WCS, shape) of every array of an aligned frame: where it lands on the stack."""
    out = []
    for ext in frame.extensions:
        try:
            out.append((ext.wcs.celestial, tuple(ext.shape)))
        except Exception:  # noqa: BLE001 - an array without WCS covers nothing we can place
            continue
    return out


def _combined(stack) -> list[str]:
    import os

    names = [str(v) for k, v in stack.phu.items() if k.startswith("IMCMB")]
    return [os.path.splitext(os.path.basename(n))[0] for n in names]


def left_out(record) -> dict[str, str]:
    """Object frames not combined in the final stack, each with the reason the log gave."""
    stacked = getattr(record, "stacked", None)
    if stacked is None:
        return {}
    objects = [s for s, f in record.frames.items() if f.get("object")] or list(getattr(record, "stack_inputs", []))
    missing = [s for s in objects if s not in set(stacked)]
    reasons = {}
    for stem in missing:
        why = "not combined"
        for entry in record.steps:
            for message in entry.warnings:
                if stem in message:
                    why = f"{entry.name}: {message}"
        reasons[stem] = why
    return reasons


def frame_rows(record) -> list[dict[str, Any]]:
    """One row per raw frame (time order), with the :data:`COLUMNS` keys that are known."""
    for stem, why in left_out(record).items():
        record.frames[stem]["left_out"] = why
    rows = sorted(record.frames.values(), key=lambda f: (f.get("elapsed") is None, f.get("elapsed") or 0))
    return [{k: f.get(k) for k in COLUMNS} for f in rows]


def format_value(value: Any) -> str:
    """How a fact is shown in the report and the log: '-' when unknown, floats to 4 significant digits."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "-"
        return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.0f}"
    return str(value)


def frame_table(record) -> list[str]:
    """The per-frame facts as text lines (the log file's copy of the report's frame table)."""
    rows = frame_rows(record)
    keys = [k for k in COLUMNS if k not in ("left_out",) and any(r.get(k) is not None for r in rows)]
    cells = [[COLUMNS[k] for k in keys]] + [[format_value(r.get(k)) for k in keys] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(keys))]
    lines = ["Per-frame facts:"]
    lines += ["  " + "  ".join(c[i].rjust(widths[i]) for i in range(len(keys))) for c in cells]
    lines += [f"  left out: {r['filename']}: {r['left_out']}" for r in rows if r.get("left_out")]
    return lines
