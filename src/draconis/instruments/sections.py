"""Array sections: FITS '[x1:x2,y1:y2]' strings <-> 0-based Python-slice tuples.

FITS sections are 1-based and inclusive; :class:`Section` is 0-based with
exclusive upper bounds, so ``data[s.y1:s.y2, s.x1:s.x2]`` selects it.
"""
from __future__ import annotations

import re
from typing import NamedTuple

__all__ = ["Section", "parse_section", "format_section", "full_section"]

_SECTION_RE = re.compile(r"^\s*\[\s*(\d+)\s*:\s*(\d+)\s*,\s*(\d+)\s*:\s*(\d+)\s*\]\s*$")


class Section(NamedTuple):
    """A rectangular region, 0-based, upper bounds exclusive."""

    x1: int
    x2: int
    y1: int
    y2: int

    @property
    def shape(self) -> tuple[int, int]:
        """(ny, nx) of the region, numpy order."""
        return (self.y2 - self.y1, self.x2 - self.x1)

    def as_slices(self) -> tuple[slice, slice]:
        """(y slice, x slice) to index a numpy array."""
        return (slice(self.y1, self.y2), slice(self.x1, self.x2))

    def to_fits(self) -> str:
        """The FITS form, e.g. ``'[1:2048,1:2048]'``."""
        return format_section(self)


def parse_section(text: str) -> Section:
    """Parse a FITS section string ``'[x1:x2,y1:y2]'`` (1-based, inclusive).

    Parameters
    ----------
    text : str
        e.g. ``'[2049:4096,1:2048]'``.

    Returns
    -------
    Section
        0-based, exclusive upper bounds, e.g. ``Section(2048, 4096, 0, 2048)``.

    Raises
    ------
    ValueError
        If the text is not a 2-D FITS section with ascending bounds.
    """
    match = _SECTION_RE.match(str(text))
    if not match:
        raise ValueError(f"not a FITS section: {text!r} (expected '[x1:x2,y1:y2]')")
    x1, x2, y1, y2 = (int(v) for v in match.groups())
    if x1 < 1 or y1 < 1 or x2 < x1 or y2 < y1:
        raise ValueError(f"not a valid FITS section: {text!r}")
    return Section(x1 - 1, x2, y1 - 1, y2)


def format_section(section: Section | tuple[int, int, int, int]) -> str:
    """Format a 0-based :class:`Section` as a 1-based inclusive FITS string."""
    x1, x2, y1, y2 = section
    return f"[{x1 + 1}:{x2},{y1 + 1}:{y2}]"


def full_section(nx: int, ny: int) -> Section:
    """The section covering a whole ``ny`` x ``nx`` array."""
    return Section(0, int(nx), 0, int(ny))
