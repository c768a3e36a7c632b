"""Quick-look pictures of a frame: zscale, arrays in their physical layout, DQ overlay, OBJCAT circles.

The picture is the image alone (no axes), drawn by matplotlib's Agg backend
with nearest-neighbour sampling at an integer number of screen pixels per
data pixel, so a data pixel maps to a known block of PNG pixels: flagged
pixels are painted :data:`DQ_COLOUR`, the gaps between arrays
:data:`GAP_COLOUR`, and each catalogue source gets a :data:`CIRCLE_COLOUR`
circle.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from ..frame import Frame
from ..kernels.calib import NON_LINEAR

#: RGB (0-1) of pixels whose DQ has any bit but non_linear
DQ_COLOUR = (1.0, 0.0, 1.0)
#: RGB of the space between arrays of a mosaic
GAP_COLOUR = (0.1, 0.1, 0.35)
#: RGB of the circles drawn around OBJCAT sources
CIRCLE_COLOUR = (0.0, 1.0, 0.0)
#: the picture's long side aims at about this many PNG pixels
TARGET_PIXELS = 1024


@dataclasses.dataclass
class Tile:
    """One array placed on the picture: lower-left corner (x0, y0) in mosaic pixels."""

    sci: np.ndarray
    dq: np.ndarray | None
    x0: int
    y0: int
    sources: np.ndarray  # (n, 3): x, y (0-based array pixels), radius (pixels)


@dataclasses.dataclass
class Mosaic:
    """The arrays of a frame in their physical layout, with the picture scale."""

    tiles: list[Tile]
    width: int
    height: int

    def canvas(self, fill: float = np.nan) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(sci, flagged, inside) images of the whole mosaic."""
        sci = np.full((self.height, self.width), fill, dtype=np.float32)
        flagged = np.zeros((self.height, self.width), bool)
        inside = np.zeros((self.height, self.width), bool)
        for t in self.tiles:
            ny, nx = t.sci.shape
            window = (slice(t.y0, t.y0 + ny), slice(t.x0, t.x0 + nx))
            sci[window] = t.sci
            inside[window] = True
            if t.dq is not None:
                flagged[window] = (t.dq & ~np.uint16(NON_LINEAR)) != 0
        return sci, flagged, inside

    def sources(self) -> np.ndarray:
        """(n, 3) source x, y (0-based mosaic pixels) and circle radius."""
        rows = [t.sources + np.array([t.x0, t.y0, 0.0]) for t in self.tiles if len(t.sources)]
        return np.concatenate(rows) if rows else np.zeros((0, 3))


def _sources(ext) -> np.ndarray:
    table = ext.objcat
    if table is None or len(table) == 0 or "X_IMAGE" not in table.colnames:
        return np.zeros((0, 3))
    x = np.asarray(table["X_IMAGE"], float) - 1.0
    y = np.asarray(table["Y_IMAGE"], float) - 1.0
    fwhm = np.asarray(table["FWHM_IMAGE"], float) if "FWHM_IMAGE" in table.colnames else np.full(len(x), 3.0)
    radius = np.clip(np.nan_to_num(fwhm, nan=3.0) * 1.5, 4.0, 30.0)
    good = np.isfinite(x) & np.isfinite(y)
    return np.column_stack([x, y, radius])[good]


def _placements(frame: Frame) -> list[tuple[int, int]]:
    """Lower-left corner of each array in mosaic pixels: its DETSEC, with the instrument's gaps."""
    if len(frame) == 1:
        return [(0, 0)]
    sections = frame.safe_descriptor("detector_section")
    if not sections or any(s is None for s in sections):
        return _side_by_side(frame)
    model = getattr(frame, "instrument_model", None)
    geometry = getattr(model, "mosaic_geometry", None) or {}
    size = getattr(model, "array_size", None)
    corners = []
    for sec in sections:
        x, y = int(sec.x1), int(sec.y1)
        if geometry and size:
            origin = (x // size * size, y // size * size)
            shift, _rotation = geometry.get(origin, (origin, 0.0))
            # the sub-degree rotations are left out: a quick look shows where each array sits, not its astrometry
            x, y = int(round(shift[0] + x - origin[0])), int(round(shift[1] + y - origin[1]))
        corners.append((x, y))
    x_min = min(c[0] for c in corners)
    y_min = min(c[1] for c in corners)
    return [(x - x_min, y - y_min) for x, y in corners]


def _side_by_side(frame: Frame) -> list[tuple[int, int]]:
    corners, x = [], 0
    for ext in frame.extensions:
        corners.append((x, 0))
        x += ext.shape[1] + 10
    return corners


def mosaic(frame: Frame) -> Mosaic:
    """Read the arrays of ``frame`` (SCI, DQ, OBJCAT) and place them as they sit on the detector."""
    import dask

    planes = dask.compute([(e.plane("SCI"), e.plane("DQ")) for e in frame.extensions])[0]
    tiles = []
    for ext, (sci, dq), (x0, y0) in zip(frame.extensions, planes, _placements(frame)):
        tiles.append(Tile(np.asarray(sci, np.float32), None if dq is None else np.asarray(dq), x0, y0,
                          _sources(ext)))
    width = max(t.x0 + t.sci.shape[1] for t in tiles)
    height = max(t.y0 + t.sci.shape[0] for t in tiles)
    return Mosaic(tiles, width, height)


def zscale_limits(values: np.ndarray) -> tuple[float, float]:
    """IRAF zscale limits of the finite ``values`` (astropy's ZScaleInterval)."""
    from astropy.visualization import ZScaleInterval

    good = values[np.isfinite(values)]
    if good.size == 0:
        return 0.0, 1.0
    lo, hi = ZScaleInterval().get_limits(good)
    return (float(lo), float(hi)) if hi > lo else (float(lo), float(lo) + 1.0)


def picture_scale(width: int, height: int, target: int = TARGET_PIXELS) -> int:
    """PNG pixels per data pixel (an integer, so pixels stay square blocks)."""
    return max(1, target // max(width, height))


def rgb_image(sci: np.ndarray, flagged: np.ndarray, inside: np.ndarray, limits: tuple[float, float],
              *, cmap: str = "gray") -> np.ndarray:
    """(ny, nx, 3) float picture: ``sci`` scaled to ``limits``, flagged and outside pixels in their colours."""
    from matplotlib import colormaps

    lo, hi = limits
    scaled = np.clip((np.nan_to_num(sci, nan=lo) - lo) / (hi - lo), 0.0, 1.0)
    rgb = colormaps[cmap](scaled)[..., :3]
    rgb[flagged] = DQ_COLOUR
    rgb[~inside] = GAP_COLOUR
    return rgb


def save_picture(rgb: np.ndarray, path: str, *, sources: np.ndarray | None = None, scale: int = 1) -> str:
    """Write ``rgb`` (origin lower left) as a PNG, ``scale`` PNG pixels per data pixel, circles at ``sources``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure
    from matplotlib.patches import Circle

    ny, nx = rgb.shape[:2]
    dpi = 100
    fig = Figure(figsize=(nx * scale / dpi, ny * scale / dpi), dpi=dpi)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    ax.imshow(rgb, origin="lower", interpolation="nearest", extent=(-0.5, nx - 0.5, -0.5, ny - 0.5))
    ax.set_xlim(-0.5, nx - 0.5)
    ax.set_ylim(-0.5, ny - 0.5)
    width = max(1.0, scale / 2) * 72 / dpi * 2  # about two PNG pixels wide
    for x, y, r in (sources if sources is not None else ()):
        ax.add_patch(Circle((x, y), r, fill=False, edgecolor=CIRCLE_COLOUR, linewidth=width, antialiased=False))
    fig.savefig(path, dpi=dpi, format="png")
    return path


def data_to_png(x: float, y: float, height: int, scale: int) -> tuple[int, int]:
    """(row, column) of the PNG pixel at the centre of data pixel (x, y) of a picture ``height`` pixels high."""
    return int(math.floor((height - 0.5 - y) * scale)), int(math.floor((x + 0.5) * scale))


def render_frame(frame: Frame, path: str, *, limits: Sequence[float] | None = None, show_dq: bool = True,
                 show_sources: bool = True, target: int = TARGET_PIXELS) -> dict:
    """Write the quick-look PNG of ``frame``; return what was drawn (limits, scale, sources, flagged count).

    Parameters
    ----------
    frame
        Any draconis frame (raw or processed; one or several arrays).
    path
        PNG to write.
    limits
        Display limits (low, high); zscale of the unflagged pixels when None.
    show_dq, show_sources
        Paint flagged pixels; circle the OBJCAT sources.
    """
    m = mosaic(frame)
    sci, flagged, inside = m.canvas()
    if not show_dq:
        flagged[:] = False
    if limits is None:
        limits = zscale_limits(sci[inside & ~flagged])
    scale = picture_scale(m.width, m.height, target)
    sources = m.sources() if show_sources else np.zeros((0, 3))
    low, high = limits
    save_picture(rgb_image(sci, flagged, inside, (float(low), float(high))), path, sources=sources, scale=scale)
    return {"path": path, "limits": tuple(float(v) for v in limits), "scale": scale, "width": m.width,
            "height": m.height, "sources": sources, "flagged": int(flagged.sum()), "mosaic": m}
