"""The HTML report of a run: ``<stem>_report.html`` beside the outputs, its pictures in ``<stem>_report/``.

Built from the run record (:class:`draconis.runrecord.RunRecord`) and the
files the run wrote: the stack's residuals and depth, the raw frames' sky
levels and the calibrations' pictures are measured here, after the run, one
file at a time.  The same numbers go to the log file (the per-frame table)
and to ``<stem>_report/record.json``.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
from typing import Any

import numpy as np

from .. import framefacts
from ..runrecord import RunRecord, human_bytes
from . import measure, plots
from .quicklook import render_frame

log = logging.getLogger("draconis")

#: per-frame columns plotted against time: key -> (file, title, y label)
_SERIES = {"sky": ("sky_level", "sky level (median of the raw frame)", "e-"),
           "fwhm": ("fwhm", "stellar FWHM (median of the OBJCAT stars)", "arcsec"),
           "sources": ("n_sources", "sources detected (detectSources on the sky-subtracted frame)", "sources")}


def write_report(record: RunRecord, outdir: str, *, stem: str) -> str:
    """Measure what the report needs, draw it and write ``outdir/<stem>_report.html``; return its path."""
    folder_name = f"{stem}_report"
    folder = os.path.join(outdir, folder_name)
    os.makedirs(folder, exist_ok=True)
    _measure_sky(record)
    figures: dict[str, str | None] = {}
    context: dict[str, Any] = {"record": record, "title": f"{record.recipe} on {record.n_frames} frame(s)",
                               "written": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
                               "figures": figures, "json_name": f"{folder_name}/record.json"}
    rel = lambda name: f"{folder_name}/{name}"  # noqa: E731 - the page links its pictures relatively
    path = lambda name: os.path.join(folder, name)  # noqa: E731
    context.update(_run_section(record))
    context["times"] = _time_rows(record)
    prim = record.primitive_times()
    figures["times"] = rel(os.path.basename(plots.time_bars([r["name"] for r in prim],
                                                            [r["seconds"] for r in prim], path("times.png"))))
    context.update(_frame_section(record, figures, rel, path))
    context["stack"] = _stack_section(record, outdir, figures, rel, path)
    context["cal_pictures"] = _calibration_section(record, outdir, rel, path)
    html = _render(context)
    target = os.path.join(outdir, f"{folder_name}.html")
    _atomic_write(target, html)
    _atomic_write(path("record.json"), json.dumps(_jsonable(record, context), indent=1, default=str))
    return target


# -- sections ----------------------------------------------------------------------
def _run_section(record: RunRecord) -> dict[str, Any]:
    fmt = framefacts.format_value
    rows = [("command line", record.command or "-"), ("draconis version", record.version),
            ("recipe", record.recipe), ("instrument", record.instrument or "-"),
            ("inputs", f"{record.n_frames} file(s): {', '.join(os.path.basename(p) for p in record.inputs)}"),
            ("started (UTC)", record.start.strftime("%Y-%m-%d %H:%M:%S")),
            ("wall time (s)", f"{record.seconds:.1f}"), ("frames per second", f"{record.frames_per_second:.2f}"),
            ("scheduler", record.scheduler),
            ("checkpoints written", human_bytes(record.checkpoint_bytes))]
    workers = [{"name": name, "threads": info.get("threads", "-"), "limit": human_bytes(info.get("memory_limit")),
                "peak": human_bytes(record.memory_peak.get(name)),
                "spilled": human_bytes(record.spilled.get(name)) if record.spilled else "-"}
               for name, info in record.workers.items()]
    if not workers:
        workers = [{"name": name, "threads": "-", "limit": "-", "peak": human_bytes(peak), "spilled": "-"}
                   for name, peak in record.memory_peak.items()]
    user = {key: value for key, value in record.user_parameters}
    params, seen = [], set()
    for step in record.steps:
        for name, value in step.params.items():
            key = (step.name, name, repr(value))
            if key in seen:
                continue
            seen.add(key)
            source = "user (-p)" if f"{step.name}:{name}" in user or name in user else "recipe"
            params.append({"primitive": step.name, "name": name, "value": fmt(value), "source": source})
    return {"run_rows": rows, "workers": workers, "params": params, "calibrations": record.calibrations}


def _time_rows(record: RunRecord) -> list[dict[str, Any]]:
    """The summary table's rows (same numbers, same rounding)."""
    total = record.seconds or 1.0
    stages = record.stage_times()
    rows = []
    for row in record.primitive_times():
        rows.append({"name": row["name"], "calls": row["calls"], "frames_in": row["frames_in"],
                     "frames_out": row["frames_out"], "seconds": f"{row['seconds']:.2f}",
                     "percent": f"{100 * row['seconds'] / total:.1f}", "stage": False})
        for st in (s for s in stages if s["step"] == row["name"]):
            rows.append({"name": st["label"], "calls": st["runs"], "frames_in": "", "frames_out": "",
                         "seconds": f"{st['seconds']:.2f}", "percent": f"{100 * st['seconds'] / total:.1f}",
                         "stage": True})
    return rows


def _frame_section(record: RunRecord, figures: dict, rel, path) -> dict[str, Any]:
    rows = framefacts.frame_rows(record)
    if not rows:
        return {"frame_rows": [], "left_out": []}
    keys = [k for k in framefacts.COLUMNS if any(r.get(k) is not None for r in rows)]
    elapsed = [r.get("elapsed") for r in rows]
    captions = {}
    for key, (column, title, unit) in _SERIES.items():
        if any(r.get(column) is not None for r in rows):
            figures[key] = rel(os.path.basename(plots.series(elapsed, {title: [r.get(column) for r in rows]},
                                                             path(f"{key}.png"), xlabel="time since the first "
                                                             "frame (s)", ylabel=unit, title=title)))
            captions[key] = f"{title} against time (table column '{framefacts.COLUMNS[column]}')."
    if any(r.get("scale_applied") is not None for r in rows):
        figures["scaling"] = rel(os.path.basename(plots.scaling([r.get("scale_measured") for r in rows],
                                                                [r.get("scale_applied") for r in rows],
                                                                [r["filename"] for r in rows], path("scaling.png"))))
        captions["scaling"] = "Count scaling measured on the sources common with the reference, and applied."
    if any(r.get("ra_offset") is not None for r in rows):
        figures["dither"] = rel(os.path.basename(plots.dither(
            [r.get("p_offset") for r in rows], [r.get("q_offset") for r in rows], [r.get("ra_offset") for r in rows],
            [r.get("dec_offset") for r in rows], [r.get("align_method") for r in rows], path("dither.png"))))
    table = [{"cells": [framefacts.format_value(r.get(k)) for k in keys], "bad": bool(r.get("left_out"))}
             for r in rows]
    return {"frame_rows": table, "frame_headings": [framefacts.COLUMNS[k] for k in keys],
            "left_out": [(r["filename"], r["left_out"]) for r in rows if r.get("left_out")], "captions": captions}


def _stack_path(record: RunRecord, outdir: str) -> str | None:
    """The last output that combines frames and is not a processed calibration."""
    from ..io import open_frame
    from ..reduce.runner import CALIBRATION_TAGS

    for name in reversed(record.outputs):
        candidate = name if os.path.isabs(name) else os.path.join(outdir, name)
        try:
            frame = open_frame(candidate)
        except Exception:  # noqa: BLE001 - not an image
            continue
        if "NCOMBINE" in frame.phu and not set(frame.tags) & CALIBRATION_TAGS:
            return candidate
    return None


def _stack_section(record: RunRecord, outdir: str, figures: dict, rel, path) -> dict[str, Any] | None:
    from ..io import open_frame

    stack_path = _stack_path(record, outdir)
    if stack_path is None:
        return None
    stack = open_frame(stack_path)
    drawn = render_frame(stack, path("stack.png"), show_sources=False, target=800)
    figures["stack"] = rel("stack.png")
    res = measure.stack_residuals(stack)
    figures["residual"] = rel(os.path.basename(plots.image_map(
        res["map"], path("residual.png"), title="background residual (sources masked)", label="e-",
        cmap="RdBu_r", limits=res["map_limits"], bad_colour="0.85")))
    figures["histogram"] = rel(os.path.basename(plots.residual_histogram(res["z"], path("histogram.png"))))
    fmt = framefacts.format_value
    st = res["stats"]
    rows = [("frames combined (NCOMBINE)", stack.phu.get("NCOMBINE")),
            ("size", f"{stack[0].shape[1]}x{stack[0].shape[0]}"),
            ("background pixels used", st["pixels"]), ("source pixels masked", st["source_pixels"]),
            ("flagged pixels", st["flagged_pixels"]), ("median background (e-)", fmt(st["median_background"])),
            ("mean of SCI/sqrt(VAR)", fmt(st["mean"])), ("std of SCI/sqrt(VAR)", fmt(st["std"])),
            ("robust std (1.4826 MAD)", fmt(st["robust_std"]))]
    section = {"name": os.path.basename(stack_path), "limits": f"{drawn['limits'][0]:.4g}..{drawn['limits'][1]:.4g}",
               "stats": st, "rows": rows, "source_sigma": measure.SOURCE_SIGMA, "source_grow": measure.SOURCE_GROW,
               "depth_rows": [], "depth_bin": None}
    names = list(record.footprints)
    depth = measure.depth_map([record.footprints[n] for n in names], stack, record.stacked, names) if names else None
    if depth is not None:
        image, factor = depth
        deepest = int(np.nanmax(image)) if np.isfinite(image).any() else 0
        figures["depth"] = rel(os.path.basename(plots.image_map(
            image, path("depth.png"), title="frames per pixel", label="frames", cmap="viridis",
            limits=(0, max(1, deepest)), bad_colour="0.6")))
        values, counts = np.unique(image[np.isfinite(image)], return_counts=True)
        section["depth_rows"] = [(int(v), int(c)) for v, c in zip(values, counts)]
        section["depth_bin"] = factor
        section["rows"].append(("most frames on one pixel", deepest))
    record.report_stack = {k: v for k, v in section.items() if k != "rows"} | {"rows": [(k, str(v)) for k, v in rows]}
    return section


def _calibration_section(record: RunRecord, outdir: str, rel, path) -> list[dict[str, Any]]:
    from ..io import open_frame
    from ..reduce.runner import CALIBRATION_TAGS

    items = [(c.caltype, c.path) for c in record.calibrations]
    for name in record.outputs:
        candidate = name if os.path.isabs(name) else os.path.join(outdir, name)
        try:
            frame = open_frame(candidate)
        except Exception:  # noqa: BLE001 - outputs that are not images have no picture
            continue
        tags = set(frame.tags)
        if "PROCESSED" in tags and tags & CALIBRATION_TAGS:
            items.append((f"processed_{sorted(tags & CALIBRATION_TAGS)[0].lower()} (this run)", candidate))
    out = []
    for k, (caltype, cal_path) in enumerate(items):
        frame = open_frame(cal_path)
        drawn = render_frame(frame, path(f"calibration_{k}.png"), show_sources=False, target=600)
        stats = [{key: framefacts.format_value(v) for key, v in s.items()} for s in measure.image_stats(frame)]
        out.append({"caltype": caltype, "name": os.path.basename(cal_path), "src": rel(f"calibration_{k}.png"),
                    "limits": f"{drawn['limits'][0]:.4g}..{drawn['limits'][1]:.4g}", "stats": stats})
    return out


def _measure_sky(record: RunRecord) -> None:
    for stem, facts in record.frames.items():
        source = next((p for p in record.inputs if os.path.splitext(os.path.basename(p))[0] == stem), None)
        if source is not None and facts.get("sky_level") is None:
            facts["sky_level"] = measure.sky_level(source)


# -- output ------------------------------------------------------------------------
def _render(context: dict[str, Any]) -> str:
    import jinja2

    from .template import PAGE

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    context.setdefault("captions", {})
    context.setdefault("frame_headings", [])
    for key in ("sky", "fwhm", "sources", "scaling", "dither", "depth", "stack", "residual", "histogram"):
        context["figures"].setdefault(key, None)
    return env.from_string(PAGE).render(**context)


def _atomic_write(target: str, text: str) -> None:
    tmp = f"{target}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, target)


def _jsonable(record: RunRecord, context: dict[str, Any]) -> dict[str, Any]:
    out = record.to_dict()
    out["frame_table"] = framefacts.frame_rows(record)
    out["stack"] = getattr(record, "report_stack", None)
    out["calibration_pictures"] = context.get("cal_pictures")
    return out
