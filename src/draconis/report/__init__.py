"""What the astronomer sees: quick-look pictures (:mod:`.quicklook`) and the HTML report of a run.

Plots use matplotlib's Agg backend; nothing here is imported by a reduction
until a picture or a report is asked for.
"""
from __future__ import annotations

__all__ = ["render_frame", "write_report"]


def write_report(*args, **kwargs):
    """Write the HTML report of a run (see :func:`draconis.report.html.write_report`)."""
    from .html import write_report as _write

    return _write(*args, **kwargs)


def render_frame(*args, **kwargs):
    """Write a quick-look PNG of a frame (see :func:`draconis.report.quicklook.render_frame`)."""
    from .quicklook import render_frame as _render

    return _render(*args, **kwargs)
