"""Numbers the report measures on files after the run.

The stack's residuals and depth, raw sky levels, calibration statistics.
Each reads one file (or a strided sample of one) at a time.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..frame import Frame
from ..kernels.calib import NON_LINEAR

#: the maps in the report are binned to at most this many pixels a side
MAP_PIXELS = 256
#: sources are masked where SCI/sqrt(VAR) exceeds this, grown by SOURCE_GROW pixels
SOURCE_SIGMA = 3.0
SOURCE_GROW = 4


def planes(frame: Frame, index: int = 0) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """SCI (float64), VAR and DQ of array ``index`` as NumPy arrays (one computation)."""
    import dask

    ext = frame[index]
    sci, var, dq = dask.compute(ext.plane("SCI"), ext.plane("VAR"), ext.plane("DQ"))
    return np.asarray(sci, float), None if var is None else np.asarray(var, float), dq


def good_pixels(sci: np.ndarray, var: np.ndarray | None, dq: np.ndarray | None) -> np.ndarray:
    """Pixels with a finite value (and positive finite VAR, and DQ 0, where given)."""
    good = np.isfinite(sci)
    if var is not None:
        good &= np.isfinite(var) & (var > 0)
    if dq is not None:
        good &= (dq & ~np.uint16(NON_LINEAR)) == 0
    return good


def source_mask(sci: np.ndarray, var: np.ndarray, good: np.ndarray) -> np.ndarray:
    """Pixels of sources: smoothed S/N above :data:`SOURCE_SIGMA`, grown by :data:`SOURCE_GROW` pixels."""
    from scipy import ndimage

    snr = np.where(good, sci / np.sqrt(np.where(good, var, 1.0)), 0.0)
    # a 3x3 mean lowers the noise by 3: a faint source's wings are caught, single noise peaks are not
    smooth = ndimage.uniform_filter(snr, size=3) * 3.0
    return ndimage.binary_dilation(smooth > SOURCE_SIGMA, iterations=SOURCE_GROW)


def binned(image: np.ndarray, factor: int) -> np.ndarray:
    """Mean of ``factor`` x ``factor`` blocks, ignoring NaN (NaN where a block has no finite pixel)."""
    ny, nx = (image.shape[0] // factor) * factor, (image.shape[1] // factor) * factor
    blocks = image[:ny, :nx].reshape(ny // factor, factor, nx // factor, factor)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN blocks are NaN, as meant
        return np.nanmean(blocks, axis=(1, 3))


def bin_factor(shape: Sequence[int], target: int = MAP_PIXELS) -> int:
    """Binning that brings the longer side of ``shape`` to about ``target`` pixels."""
    return max(1, math.ceil(max(shape) / target))


def stack_residuals(frame: Frame) -> dict[str, Any]:
    """Background residuals of a stack: binned map, normalised residuals and their statistics."""
    sci, var, dq = planes(frame)
    good = good_pixels(sci, var, dq)
    if var is None:
        var = np.full_like(sci, np.nan)
    sources = source_mask(sci, var, good)
    background = good & ~sources
    z = sci[background] / np.sqrt(var[background])
    factor = bin_factor(sci.shape)
    residual = binned(np.where(background, sci, np.nan), factor)
    noise = float(np.nanstd(residual)) if np.isfinite(residual).any() else 1.0
    mad = float(np.median(np.abs(z - np.median(z))) * 1.4826) if z.size else float("nan")
    stats = {"pixels": int(z.size), "source_pixels": int((good & sources).sum()),
             "flagged_pixels": int((~good).sum()),
             "mean": float(np.mean(z)) if z.size else float("nan"),
             "std": float(np.std(z)) if z.size else float("nan"), "robust_std": mad,
             "median_background": float(np.median(sci[background])) if z.size else float("nan"),
             "bin": factor}
    return {"z": z, "map": residual, "map_limits": (-3 * noise, 3 * noise), "stats": stats}


def depth_map(footprints: Sequence[list], stack: Frame, stacked: Sequence[str] | None,
              names: Sequence[str]) -> tuple[np.ndarray, int] | None:
    """Frames covering each (binned) pixel of the stack, from each frame's aligned WCS and array shapes.

    ``footprints[i]`` belongs to ``names[i]``; only frames named in ``stacked``
    (the stack's IMCMB list) count.
    """
    try:
        out_wcs = stack[0].wcs.celestial
    except Exception:  # noqa: BLE001 - a stack without WCS has no depth map
        return None
    ny, nx = stack[0].shape
    factor = bin_factor((ny, nx))
    yy, xx = np.mgrid[0:ny // factor, 0:nx // factor]
    xs, ys = (xx + 0.5) * factor - 0.5, (yy + 0.5) * factor - 0.5
    ra, dec = out_wcs.all_pix2world(xs.ravel(), ys.ravel(), 0)
    depth = np.zeros(xs.size, dtype=np.int32)
    keep = set(stacked) if stacked is not None else set(names)
    for name, arrays in zip(names, footprints):
        if name not in keep:
            continue
        covered = np.zeros(xs.size, bool)
        for wcs, (h, w) in arrays:
            x, y = wcs.all_world2pix(ra, dec, 0)
            covered |= (x >= -0.5) & (x < w - 0.5) & (y >= -0.5) & (y < h - 0.5)
        depth += covered
    depth = depth.reshape(xs.shape).astype(float)
    dq = stack[0].plane("DQ")
    if dq is not None:
        sample = np.asarray(dq[factor // 2::factor, factor // 2::factor].compute())[:depth.shape[0], :depth.shape[1]]
        depth[(sample & ~np.uint16(NON_LINEAR)) != 0] = np.nan
    return depth, factor


def sky_level(path: str, *, step: int = 4) -> float | None:
    """Median of a raw frame in electrons (every ``step``-th row and column of every array, DQ ignored)."""
    import dask

    from ..io import open_frame

    try:
        frame = open_frame(path)
    except Exception:  # noqa: BLE001 - an input that cannot be read now has no level
        return None
    samples = dask.compute([e.plane("SCI")[::step, ::step] for e in frame.extensions])[0]
    gains = frame.safe_descriptor("gain") or [1.0] * len(frame)
    in_adu = bool(frame.safe_descriptor("is_in_adu", True))
    values = []
    for sample, gain in zip(samples, gains):
        values.append(np.asarray(sample, float).ravel() * (float(gain) if in_adu and gain else 1.0))
    data = np.concatenate(values)
    data = data[np.isfinite(data)]
    return round(float(np.median(data)), 2) if data.size else None


def image_stats(frame: Frame) -> list[dict[str, Any]]:
    """Per array: mean, median, standard deviation of the good pixels and the flagged fraction."""
    out = []
    for index in range(len(frame)):
        sci, var, dq = planes(frame, index)
        good = good_pixels(sci, var, dq)
        values = sci[good]
        out.append({"array": index + 1, "shape": f"{sci.shape[1]}x{sci.shape[0]}",
                    "mean": float(np.mean(values)) if values.size else float("nan"),
                    "median": float(np.median(values)) if values.size else float("nan"),
                    "std": float(np.std(values)) if values.size else float("nan"),
                    "flagged_percent": round(100.0 * (1 - good.mean()), 3)})
    return out
