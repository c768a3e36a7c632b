"""The report's plots: matplotlib figures (Agg, no pyplot state) written as PNG.

Every function takes the numbers it draws and a path, writes the PNG and
returns the path; the report puts the same numbers in a table beside it.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DPI = 100


def _figure(width: float = 6.4, height: float = 3.6):
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _save(fig, path: str) -> str:
    fig.savefig(path, dpi=DPI, format="png")
    return path


def _finite(values: Sequence) -> np.ndarray:
    return np.array([np.nan if v is None else float(v) for v in values], dtype=float)


def time_bars(names: Sequence[str], seconds: Sequence[float], path: str) -> str:
    """Horizontal bars: wall time per primitive, in recipe order from the top."""
    fig = _figure(6.4, max(2.0, 0.28 * len(names) + 0.8))
    ax = fig.add_subplot()
    y = np.arange(len(names))[::-1]
    ax.barh(y, seconds, color="#4a78b5")
    ax.set_yticks(y, names, fontsize=8)
    ax.set_xlabel("wall time (s)")
    ax.set_title("time per primitive")
    return _save(fig, path)


def series(x: Sequence, ys: dict[str, Sequence], path: str, *, xlabel: str, ylabel: str, title: str,
           names: Sequence[str] | None = None) -> str:
    """One or more quantities against ``x`` (e.g. elapsed time), points joined in order."""
    fig = _figure()
    ax = fig.add_subplot()
    xv = _finite(x)
    for label, values in ys.items():
        yv = _finite(values)
        ok = np.isfinite(xv) & np.isfinite(yv)
        ax.plot(xv[ok], yv[ok], "o-", ms=4, lw=1, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if len(ys) > 1:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def scaling(measured: Sequence, applied: Sequence, names: Sequence[str], path: str) -> str:
    """Count scaling per frame: measured on common sources against the factor applied."""
    fig = _figure()
    ax = fig.add_subplot()
    k = np.arange(len(names))
    ax.plot(k, _finite(applied), "s", ms=7, mfc="none", label="applied")
    ax.plot(k, _finite(measured), "o", ms=4, label="measured")
    ax.set_xticks(k, [n.removesuffix(".fits") for n in names], rotation=60, fontsize=7, ha="right")
    ax.set_ylabel("factor to the reference")
    ax.set_title("count scaling (scaleCountsToReference)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def dither(p: Sequence, q: Sequence, dra: Sequence, ddec: Sequence, methods: Sequence, path: str) -> str:
    """Telescope offsets (p, q) and the frame centres after alignment (ΔRA cosδ, ΔDec to the reference)."""
    fig = _figure(8.0, 3.8)
    left, right = fig.subplots(1, 2)
    pv, qv = _finite(p), _finite(q)
    left.plot(pv, qv, "-", color="0.7", lw=0.8)
    left.plot(pv, qv, "o", ms=5)
    left.set_xlabel("p (arcsec)")
    left.set_ylabel("q (arcsec)")
    left.set_title("telescope offsets")
    colours = {"sources": "#2a9d4b", "reference": "#1f4e9c", "offsets": "#d9822b", "none": "#c0392b"}
    xv, yv = _finite(dra), _finite(ddec)
    for method in dict.fromkeys(m or "none" for m in methods):
        sel = np.array([(m or "none") == method for m in methods])
        right.plot(xv[sel], yv[sel], "o", ms=5, color=colours.get(method, "k"), label=method)
    right.set_xlabel("ΔRA cos δ (arcsec)")
    right.set_ylabel("ΔDec (arcsec)")
    right.set_title("aligned WCS: frame centres")
    right.invert_xaxis()  # east to the left, as on the sky
    right.legend(fontsize=8)
    for ax in (left, right):
        ax.set_aspect("equal", adjustable="datalim")
        ax.grid(alpha=0.3)
    return _save(fig, path)


def image_map(image: np.ndarray, path: str, *, title: str, label: str, cmap: str = "viridis",
              limits: tuple[float, float] | None = None, bad_colour: str = "white") -> str:
    """A 2-D map (depth, residuals) with a colour bar; NaN pixels in ``bad_colour``."""
    from matplotlib import colormaps

    fig = _figure(5.6, 4.6)
    ax = fig.add_subplot()
    colours = colormaps[cmap].with_extremes(bad=bad_colour)
    lo, hi = limits if limits is not None else (np.nanmin(image), np.nanmax(image))
    shown = ax.imshow(image, origin="lower", cmap=colours, vmin=lo, vmax=hi, interpolation="nearest")
    fig.colorbar(shown, ax=ax, label=label)
    ax.set_title(title)
    ax.set_xlabel("x (binned pixels)")
    ax.set_ylabel("y (binned pixels)")
    return _save(fig, path)


def residual_histogram(z: np.ndarray, path: str) -> str:
    """Histogram of normalised residuals SCI/sqrt(VAR) with the unit Gaussian expected of pure noise."""
    fig = _figure()
    ax = fig.add_subplot()
    bins = np.linspace(-6, 6, 121)
    ax.hist(np.clip(z, -6, 6), bins=bins, density=True, color="#7aa6d6", label=f"{z.size} pixels")
    grid = np.linspace(-6, 6, 400)
    ax.plot(grid, np.exp(-0.5 * grid**2) / np.sqrt(2 * np.pi), "k-", lw=1.2, label="unit Gaussian")
    ax.set_yscale("log")
    ax.set_ylim(1e-5, 1)
    ax.set_xlabel("SCI / sqrt(VAR) (sources masked)")
    ax.set_ylabel("density")
    ax.set_title("normalised background residuals")
    ax.legend(fontsize=8)
    return _save(fig, path)
