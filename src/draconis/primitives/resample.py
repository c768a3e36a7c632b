"""resampleToCommonFrame and scaleCountsToReference.

The output grid is the reference frame's pixel grid (its first array's
linear WCS) extended, by whole pixels, to the bounding box of every input
array (``trim_data=False``), so the reference is not interpolated and the
stack covers the union of the dithers.  Frames with a static distortion
(GSAOI) have no undistorted pixel grid of their own: theirs is a TAN grid of
``pixel_scale`` about the reference's tangent point, oriented as its focal
plane.  Every array of a frame (the four of GSAOI) is mapped through its own
WCS, distortion included, onto that one grid; pixels no array covers (the
gaps between GSAOI's arrays) are flagged no_data and filled by the dithers
in the stack.

Laziness: for each frame and array the WCS mapping is evaluated on a coarse
grid over the box the array covers (small), and each output row band is one
task (:func:`draconis.kernels.resample.resample_band_from_blocks`) that takes
only the input blocks its pixels fall on (by key) and returns SCI, VAR and DQ
of the band; a frame's maps are one graph value its band tasks share.  Output
chunks are row bands of the full width, the shape the stack reads; no task
holds more than one frame.
"""
from __future__ import annotations

import dataclasses
import operator
from collections.abc import Sequence
from functools import cached_property
from typing import Any

import dask
import dask.array as da
import numpy as np
from astropy.io import fits
from astropy.wcs import WCS
from dask.highlevelgraph import HighLevelGraph

from ..distortion import project, strip_wcs
from ..frame import Extension, Frame, make_extension
from ..io.zarr import stored_source
from ..kernels import resample as kres
from ..parameters import P, Params, suffix_param
from ..provenance import utc_timestamp
from .align import REFERENCE_KEYWORD, _cd, match
from .focal_plane import distortion_attached, focal_transform, has_distortion, tangent_point
from .registry import Context, primitive

ORDERS = {"nearest": 0, "linear": 1, "poly3": 3, "poly5": 5, "spline3": 3, "spline5": 5}
#: Output pixels between coarse WCS evaluations.
COARSE_STEP = 32
#: Rows per output band (the stacking tile height).
BAND_ROWS = 256
_WCS_DROP = ("PC1_1", "PC1_2", "PC2_1", "PC2_2", "CDELT1", "CDELT2", "A_ORDER", "B_ORDER", "AP_ORDER", "BP_ORDER",
             "DATASEC", "TRIMSEC", "DETSEC", "CCDSEC")


@dataclasses.dataclass(frozen=True)
class Grid:
    """The common output grid: a linear TAN WCS header and a shape (ny, nx)."""

    header: fits.Header
    shape: tuple[int, int]

    @cached_property
    def wcs(self) -> WCS:
        """The celestial WCS of the output grid (built once)."""
        return WCS(self.header, naxis=2, relax=True)


def _linear_header(header: fits.Header) -> fits.Header:
    """WCS keywords of ``header`` without distortion: CRVAL, CRPIX, CD, TAN."""
    out = fits.Header()
    out["CTYPE1"], out["CTYPE2"] = "RA---TAN", "DEC--TAN"
    out["CRVAL1"], out["CRVAL2"] = float(header["CRVAL1"]), float(header["CRVAL2"])
    out["CRPIX1"], out["CRPIX2"] = float(header["CRPIX1"]), float(header["CRPIX2"])
    cd = _cd(header)
    out["CD1_1"], out["CD1_2"], out["CD2_1"], out["CD2_2"] = (float(v) for v in cd.ravel())
    return out


def _focal_plane_header(reference: Frame, pixel_scale: float) -> fits.Header:
    """An undistorted TAN grid of ``pixel_scale`` about the reference's tangent point, oriented as its focal plane.

    Output x and y run along the focal plane's u and v (so the mosaic keeps
    the instrument's orientation, mirror included); the scale is exact.
    """
    centre = tangent_point(reference)
    linear = focal_transform(reference, order=1, centre=centre).linear_matrix()
    u, _, vt = np.linalg.svd(linear)
    cd = (u @ vt) * pixel_scale / 3600.0  # the rotation (and mirror) of the focal plane, no shear or scale
    out = fits.Header()
    out["CTYPE1"], out["CTYPE2"] = "RA---TAN", "DEC--TAN"
    out["CRVAL1"], out["CRVAL2"] = centre
    out["CRPIX1"], out["CRPIX2"] = 0.0, 0.0
    out["CD1_1"], out["CD1_2"], out["CD2_1"], out["CD2_2"] = (float(v) for v in cd.ravel())
    return out


def _border(shape: tuple[int, int], n: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Points (x, y; 0-based) along the outer edges of an array's pixels."""
    ny, nx = shape
    xs, ys = np.linspace(-0.5, nx - 0.5, n), np.linspace(-0.5, ny - 0.5, n)
    x = np.concatenate([xs, xs, np.full(n, -0.5), np.full(n, nx - 0.5)])
    y = np.concatenate([np.full(n, -0.5), np.full(n, ny - 0.5), ys, ys])
    return x, y


def _footprint(ext: Extension, out_wcs: WCS, ext_wcs: WCS | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Output pixel positions (0-based) of the outer edges of one input array."""
    bx, by = _border(ext.shape)
    ra, dec = (ext.wcs if ext_wcs is None else ext_wcs).all_pix2world(bx, by, 0)
    return out_wcs.wcs_world2pix(ra, dec, 0)


def common_grid(frames: Sequence[Frame], reference: Frame, *, trim: bool = False,
                pixel_scale: float | None = None) -> Grid:
    """The reference's grid extended by whole pixels to cover every array of ``frames``.

    For frames without a static distortion the grid is the reference's
    first array's pixel grid; for frames with one (GSAOI) an undistorted grid
    of ``pixel_scale`` (:func:`_focal_plane_header`).
    """
    if has_distortion(reference) and distortion_attached(reference):
        header = _focal_plane_header(reference, pixel_scale or float(reference.descriptor("pixel_scale")))
    else:
        header = _linear_header(reference[0].header)
    out_wcs = WCS(header, naxis=2, relax=True)
    xs, ys = [], []
    for frame in ([reference] if trim else frames):
        for ext in frame.extensions:
            ox, oy = _footprint(ext, out_wcs)
            xs.append(ox)
            ys.append(oy)
    x, y = np.concatenate(xs), np.concatenate(ys)
    # Pixel centres at integers cover [c-0.5, c+0.5]: keep a pixel if the footprint covers most of it.
    x0, x1 = int(np.floor(x.min() + 0.5 + 1e-6)), int(np.ceil(x.max() - 0.5 - 1e-6))
    y0, y1 = int(np.floor(y.min() + 0.5 + 1e-6)), int(np.ceil(y.max() - 0.5 - 1e-6))
    header["CRPIX1"] -= x0
    header["CRPIX2"] -= y0
    return Grid(header, (y1 - y0 + 1, x1 - x0 + 1))


def pixel_map(grid: Grid, ext: Extension, *, step: int = COARSE_STEP, conserve: bool = True,
              force_affine: bool = False) -> tuple[kres.PixelMap, kres.PixelMap | kres.AffineMap] | None:
    """Where the grid's pixels fall on ``ext``, on a coarse grid over the box the array covers (None: off-grid).

    The box is the array's footprint on the grid plus two coarse steps, so
    the (interpolated) map is evaluated where it is exact and nowhere near
    the far extrapolation of a distortion polynomial.

    Returns the coarse map (the client reads the input regions of each band
    from it) and the map the band tasks take: the same coarse map, or with
    ``force_affine`` the fitted :class:`~draconis.kernels.resample.AffineMap`
    (six numbers in the graph instead of the grid).
    """
    ny, nx = grid.shape
    ext_wcs = ext.wcs  # built once: a SIP WCS takes tens of milliseconds to set up
    ox, oy = _footprint(ext, grid.wcs, ext_wcs)
    pad = 2
    y0, y1 = max(int(np.floor(oy.min())) - pad, 0), min(int(np.ceil(oy.max())) + pad + 1, ny)
    x0, x1 = max(int(np.floor(ox.min())) - pad, 0), min(int(np.ceil(ox.max())) + pad + 1, nx)
    if y0 >= y1 or x0 >= x1:
        return None
    box = (y0, y1, x0, x1)
    gy, gx = kres.coarse_axis(y0, y1, step), kres.coarse_axis(x0, x1, step)
    yy, xx = np.meshgrid(gy, gx, indexing="ij")
    ra, dec = grid.wcs.wcs_pix2world(xx.ravel(), yy.ravel(), 0)
    ix, iy = ext_wcs.all_world2pix(ra, dec, 0, tolerance=1e-6, maxiter=50, quiet=True)
    iy, ix = iy.reshape(yy.shape), ix.reshape(yy.shape)
    if not force_affine:
        coarse = kres.PixelMap(iy, ix, gy, gx, _jacobian(iy, ix, gy, gx) if conserve else None, box)
        return coarse, coarse
    design = np.column_stack([np.ones(yy.size), yy.ravel(), xx.ravel()])
    ay, ax = _affine_fit(iy, design), _affine_fit(ix, design)
    iy, ix = (design @ ay).reshape(yy.shape), (design @ ax).reshape(yy.shape)
    det = abs(ay[1] * ax[2] - ay[2] * ax[1])  # the affine map's constant Jacobian, exactly
    affine = kres.AffineMap((float(ay[0]), float(ay[1]), float(ay[2])), (float(ax[0]), float(ax[1]), float(ax[2])),
                            float(det) if conserve else None, box)
    # the coarse map only tells the client which input region each band reads: no Jacobian needed
    return kres.PixelMap(iy, ix, gy, gx, None, box), affine


def _affine_fit(values: np.ndarray, design: np.ndarray) -> np.ndarray:
    """Coefficients (constant, per row, per column) of the best affine function through ``values``."""
    coef, *_ = np.linalg.lstsq(design, values.ravel(), rcond=None)
    return coef


def _jacobian(cy: np.ndarray, cx: np.ndarray, gy: np.ndarray, gx: np.ndarray) -> np.ndarray | None:
    """|d(input)/d(output)| on the coarse grid, or None where it is 1 to 1e-6 (pure shifts)."""
    if len(gy) < 2 or len(gx) < 2:
        return None
    dyy, dyx = np.gradient(cy, gy, gx)
    dxy, dxx = np.gradient(cx, gy, gx)
    jac = np.abs(dyy * dxx - dyx * dxy)
    return None if np.allclose(jac, 1.0, rtol=0, atol=1e-6) else jac


def _band_region(m: kres.PixelMap, y0: int, y1: int, shape: tuple[int, int], margin: int):
    """Input box (iy0, iy1, ix0, ix1) that output rows [y0, y1) need, or None if none."""
    if y1 <= m.box[0] or y0 >= m.box[1]:
        return None
    rows = np.nonzero((m.gy >= y0 - COARSE_STEP) & (m.gy <= y1 + COARSE_STEP))[0]
    sy, sx = m.iy[rows], m.ix[rows]
    iy0, iy1 = int(np.floor(sy.min())) - margin, int(np.ceil(sy.max())) + margin + 1
    ix0, ix1 = int(np.floor(sx.min())) - margin, int(np.ceil(sx.max())) + margin + 1
    iy0, ix0 = max(iy0, 0), max(ix0, 0)
    iy1, ix1 = min(iy1, shape[0]), min(ix1, shape[1])
    return None if iy0 >= iy1 or ix0 >= ix1 else (iy0, iy1, ix0, ix1)


def _block_layout(arr: da.Array, box: tuple[int, int, int, int]) -> tuple[list, kres.BlockLayout]:
    """Keys of the blocks of ``arr`` that hold ``box`` (nested: block rows, then columns) and their layout."""
    starts = [np.concatenate([[0], np.cumsum(c)]) for c in arr.chunks]
    j0 = int(np.searchsorted(starts[0], box[0], side="right")) - 1
    j1 = int(np.searchsorted(starts[0], box[1], side="left"))
    k0 = int(np.searchsorted(starts[1], box[2], side="right")) - 1
    k1 = int(np.searchsorted(starts[1], box[3], side="left"))
    keys = [[(arr.name, j, k) for k in range(k0, k1)] for j in range(j0, j1)]
    layout = kres.BlockLayout(tuple(int(r) for r in starts[0][j0:j1]), tuple(int(c) for c in starts[1][k0:k1]), box)
    return keys, layout


def resample_frame(frame: Frame, grid: Grid, *, order: int, dq_threshold: float, conserve: bool = True,
                   force_affine: bool = False, band_rows: int = BAND_ROWS) -> Frame:
    """``frame`` resampled onto ``grid``: one lazy extension with SCI, VAR, DQ in row bands.

    Each band is one task (:func:`draconis.kernels.resample.resample_band_from_blocks`)
    that takes, of each array, the input blocks its pixels fall on (by key:
    no slicing or concatenating task per band and plane) and returns SCI,
    VAR and DQ; one small task per band and plane picks its plane.  A plane
    read unchanged from a checkpoint is not a dependency: the band task
    reads the region it needs itself (nothing moved between workers).  The
    frame's maps are one graph key that every band task names, so the graph
    holds them once per frame (with ``force_affine``, six numbers per array).
    """
    ny, nx = grid.shape
    pairs = [pixel_map(grid, ext, conserve=conserve, force_affine=force_affine) for ext in frame.extensions]
    margin = order + 2
    inputs = [tuple(ext.plane(n) for n in ("SCI", "VAR", "DQ")) for ext in frame.extensions]
    # an array whose planes are all read unchanged from a checkpoint is read by the band tasks themselves
    stored = [tuple(None if a is None else stored_source(a) for a in planes) for planes in inputs]
    stored = [srcs if all(src is not None for a, src in zip(planes, srcs) if a is not None) else (None,) * 3
              for planes, srcs in zip(inputs, stored)]
    deps = [a for planes, srcs in zip(inputs, stored) if srcs[0] is None for a in planes if a is not None]
    kernel_maps = tuple(None if pair is None else pair[1] for pair in pairs)
    token = dask.base.tokenize([a.name for planes in inputs for a in planes if a is not None], kernel_maps,
                               grid.shape, order, dq_threshold, band_rows)
    name, maps_name = f"resample-{token}", f"resample-maps-{token}"
    starts = list(range(0, ny, band_rows))
    layer: dict = {}
    for r, y0 in enumerate(starts):
        y1 = min(y0 + band_rows, ny)
        blocks, layouts, used = [], [], []
        for k, (ext, planes, srcs, pair) in enumerate(zip(frame.extensions, inputs, stored, pairs)):
            box = None if pair is None else _band_region(pair[0], y0, y1, ext.shape, margin)
            if box is None:
                continue
            keys = [None if a is None else _block_layout(a, box) for a in planes]
            # a stored plane's region is one block, read in the band task itself
            blocks.append([None if key is None else ([[(src.region, box)]] if src is not None else key[0])
                           for key, src in zip(keys, srcs)])
            layouts.append(kres.BlockLayout((box[0],), (box[2],), box) if srcs[0] is not None
                           else keys[0][1])  # type: ignore[index]  # SCI is always there
            used.append(k)
        layer[(name, r)] = (kres.resample_band_from_blocks, blocks, layouts,
                            (_pick_maps, (maps_name,), used),
                            y0, y1, nx, order, dq_threshold)
    core = HighLevelGraph.from_collections(name, layer, dependencies=deps)  # type: ignore[arg-type]
    layers: dict[str, Any] = {**core.layers, maps_name: {(maps_name,): _FrameMaps(kernel_maps)}}
    dependencies = {**core.dependencies, maps_name: set(), name: core.dependencies[name] | {maps_name}}
    heights = tuple(min(y0 + band_rows, ny) - y0 for y0 in starts)
    stacked = {}
    for i, (plane, dtype) in enumerate(zip(("SCI", "VAR", "DQ"), (np.float32, np.float32, np.uint16))):
        # a prefix of its own: distributed estimates durations by key prefix, and these picks take
        # microseconds where a band task takes seconds (see primitives.sky_window._plane)
        pname = f"resample-{plane.lower()}-{token}"
        picks: dict[Any, Any] = {(pname, r, 0): (operator.getitem, (name, r), i) for r in range(len(starts))}
        graph = HighLevelGraph({**layers, pname: picks}, {**dependencies, pname: {name}})
        stacked[plane] = da.Array(graph, pname, chunks=(heights, (nx,)), dtype=dtype)
    header = strip_wcs(frame[0].header)
    for key in _WCS_DROP:
        header.remove(key, ignore_missing=True)
    header.update(grid.header)
    header["DATASEC"] = f"[1:{nx},1:{ny}]"
    objcat = _moved_catalogue(frame, grid)
    ext = make_extension(header, stacked["SCI"], stacked["VAR"], stacked["DQ"], objcat=objcat)
    return frame.with_extensions([ext])


@dataclasses.dataclass(frozen=True, eq=False)
class _FrameMaps:
    """The band tasks' maps of one frame's arrays (None: off the grid), held as one graph value.

    A container, so the graph takes it as data rather than parsing its
    contents for keys and tasks.
    """

    maps: tuple


def _pick_maps(frame_maps: _FrameMaps, which: list[int]) -> list:
    """The maps of the arrays a band reads, in the order of its blocks."""
    return [frame_maps.maps[k] for k in which]


def _moved_catalogue(frame: Frame, grid: Grid):
    """The frames' OBJCATs merged, X/Y_IMAGE moved to the output grid (1-based) from the world positions."""
    from astropy.table import vstack

    cats = [e.objcat for e in frame.extensions if e.objcat is not None and len(e.objcat)]
    if not cats:
        return None
    cat = vstack(cats, metadata_conflicts="silent") if len(cats) > 1 else cats[0].copy()
    if "X_WORLD" in cat.colnames:
        x, y = grid.wcs.wcs_world2pix(np.asarray(cat["X_WORLD"], float), np.asarray(cat["Y_WORLD"], float), 1)
        cat["X_IMAGE"], cat["Y_IMAGE"] = x, y
    return cat


def _reference_frame(frames: Sequence[Frame], reference: Frame | None, ctx) -> Frame:
    """The user's reference (an input named, or a file: the runner resolved it), else the alignment reference."""
    if reference is not None:
        return reference
    stem = frames[0].phu.get(REFERENCE_KEYWORD)
    for f in frames:
        if stem and f.stem == stem:
            return f
    return frames[0]


@primitive("resampleToCommonFrame",
           suffix_param("_align"),
           P("interpolant", str, "poly3", "nearest | linear | poly3 | poly5 | spline3 | spline5",
             choices=tuple(ORDERS)),
           P("trim_data", bool, False, "output only the reference frame footprint (False = union of all inputs)"),
           P("clean_data", bool, False, "replace bad pixels before interpolating (always done for splines)",
             unsupported="not implemented yet"),
           P("conserve", bool, True, "conserve flux when pixel area changes"),
           P("force_affine", bool, True, "approximate each input->output transform as affine (fast; leaves out a "
             "static distortion)"),
           P("reference", object, None, "reference image (default: the alignment reference, else the first)",
             optional=True, opens="frame"),
           P("dq_threshold", float, 0.001, "fractional contribution from a flagged pixel that flags the output pixel",
             low=0.0),
           P("pixel_scale", float, 0.02, "output pixel scale (arcsec) of the undistorted grid made for frames "
             "with a static distortion (GSAOI); others keep the reference's pixels", low=0.01, high=1.0),
           P("pa", float, 0.0, "output PA (deg E of N) when no reference", low=-180, high=360,
             unsupported="not implemented yet: the grid is oriented as the reference frame"))
def resample_to_common_frame(frames: list[Frame], p: Params, ctx: Context) -> list[Frame]:
    """Resample every frame onto one grid covering all of them (lazy; one task per frame and row band)."""
    if not frames:
        return []
    ref = _reference_frame(frames, p.reference, ctx)
    grid = common_grid(frames, ref, trim=p.trim_data, pixel_scale=p.pixel_scale)
    ctx.log.info("resampleToCommonFrame: %d frame(s) onto a %dx%d grid (reference %s, %s)", len(frames),
                 grid.shape[1], grid.shape[0], ref.filename, "trimmed to it" if p.trim_data else "union of inputs")
    order = ORDERS[p.interpolant]
    stamp = {"ALIGN": (utc_timestamp(), "UT time stamp for resampleToCommonFrame")}
    distorted = [f.filename for f in frames if has_distortion(f)]
    if p.force_affine and distorted:
        ctx.log.warning("resampleToCommonFrame: force_affine=True approximates each array's mapping by an affine "
                        "one, which leaves out the static distortion of %d frame(s) (errors of several pixels "
                        "on full-size GSAOI arrays)", len(distorted))
    return [resample_frame(f, grid, order=order, dq_threshold=p.dq_threshold, conserve=p.conserve,
                           force_affine=p.force_affine).with_phu(**stamp).with_suffix(p.suffix) for f in frames]


# ---------------------------------------------------------------------------
# scaleCountsToReference
# ---------------------------------------------------------------------------
def _catalogue(frame: Frame):
    """World positions, fluxes and flux errors of the good sources of every array.

    The circular aperture flux (FLUX_APER, 2.5 x the frame's median stellar
    FWHM, so it holds all of a star's flux whatever the seeing) is used: Kron
    radii (FLUX_AUTO) vary with each frame's noise and gave ratios biased by a
    few per cent on simulated fields.
    """
    from .align import good_sources

    pos, flux, err = [], [], []
    for ext in frame.extensions:
        ok = good_sources(ext.objcat)
        if ext.objcat is None or not ok.any() or "X_WORLD" not in ext.objcat.colnames:
            continue
        cat = ext.objcat[ok]
        col = "FLUX_APER" if "FLUX_APER" in cat.colnames else "FLUX_AUTO"
        ecol = "FLUXERR" + col[4:]
        pos.append(np.column_stack([np.asarray(cat["X_WORLD"], float), np.asarray(cat["Y_WORLD"], float)]))
        flux.append(np.asarray(cat[col], float))
        err.append(np.asarray(cat[ecol], float) if ecol in cat.colnames else np.sqrt(np.abs(flux[-1])))
    if not pos:
        return np.zeros((0, 2)), np.zeros(0), np.zeros(0)
    return np.concatenate(pos), np.concatenate(flux), np.concatenate(err)


def robust_ratio(ratios: np.ndarray, rel_errors: np.ndarray, *, clip: float = 3.0,
                 iters: int = 5) -> tuple[float, float] | None:
    """Weighted mean of flux ratios and its relative standard error, or None.

    Weights are 1/relative error² (not depending on the ratio itself, which
    would favour low ratios), with iterative ``clip``-sigma rejection.
    """
    ok = np.isfinite(ratios) & np.isfinite(rel_errors) & (rel_errors > 0) & (ratios > 0)
    if not ok.any():
        return None
    value = float(np.median(ratios[ok]))
    for _ in range(iters):
        w = 1.0 / rel_errors[ok] ** 2
        value = float((w * ratios[ok]).sum() / w.sum())
        keep = ok & (np.abs(ratios - value) <= clip * value * np.maximum(rel_errors, 1e-3))
        if keep.sum() == 0 or (keep == ok).all():
            break
        ok = keep
    return value, float(1.0 / np.sqrt((1.0 / rel_errors[ok] ** 2).sum()))


def measured_ratios(frames: Sequence[Frame], ref_index: int, *, radius: float,
                    use_common: bool) -> list[tuple[float, float] | None]:
    """Reference/frame flux ratio and its relative error from matched sources, per frame.

    None where no source matches.
    """
    ref_pos, ref_flux, ref_err = _catalogue(frames[ref_index])
    if len(ref_flux) == 0:
        return [None] * len(frames)
    ra0, dec0 = np.median(ref_pos, axis=0)
    ref_xy = np.column_stack(project(ref_pos[:, 0], ref_pos[:, 1], ra0, dec0))
    pairs = []
    for frame in frames:
        pos, flux, err = _catalogue(frame)
        xy = np.column_stack(project(pos[:, 0], pos[:, 1], ra0, dec0)) if len(flux) else np.zeros((0, 2))
        i, j = match(xy, ref_xy, radius)
        with np.errstate(divide="ignore", invalid="ignore"):
            r = ref_flux[j] / flux[i]
            sig = np.hypot(ref_err[j] / ref_flux[j], err[i] / flux[i])  # relative error of the ratio
        pairs.append({int(jj): (rr, ss) for jj, rr, ss in zip(j, r, sig)})
    common = set.intersection(*(set(d) for d in pairs)) if use_common else set()
    ratios = []
    for d in pairs:
        keys = [k for k in d if k in common] if use_common and common else list(d)
        values = np.array([d[k] for k in keys]).reshape(-1, 2)
        ratios.append(robust_ratio(values[:, 0], values[:, 1]) if len(values) else None)
    return ratios


#: Largest relative standard error of a measured flux ratio that is used; above it the exposure-time ratio
#: is better (one faint common star can be 10 % off).
MAX_RATIO_ERROR = 0.02


def scaling_reference(frames: Sequence[Frame]) -> int:
    """Index of the frame counts are scaled to: the alignment reference (most good sources), else the first."""
    stem = frames[0].phu.get(REFERENCE_KEYWORD)
    for k, frame in enumerate(frames):
        if stem and frame.stem == stem:
            return k
    return 0


@primitive("scaleCountsToReference",
           suffix_param("_countsScaled"),
           P("tolerance", float, 0.0, "allowed fractional deviation from the exposure-time ratio (0 = always "
             "use measured, 1 = always exposure time)", low=0.0, high=1.0),
           P("use_common", bool, True, "use only sources found in every frame"),
           P("radius", float, 0.5, "matching radius (arcsec)", low=0.1))
def scale_counts_to_reference(frames: list[Frame], p: Params, ctx: Context) -> list[Frame]:
    """Scale each frame so the sources it shares with the reference have the reference's fluxes.

    The reference is the alignment reference (the frame with the most good
    sources; adjustWCSToReference names it), or the first frame.
    """
    if len(frames) < 2:
        return list(frames)
    iref = scaling_reference(frames)
    ratios = measured_ratios(frames, iref, radius=p.radius, use_common=p.use_common)
    t_ref = _exptime(frames[iref])
    outputs = []
    for frame, measured in zip(frames, ratios):
        t = _exptime(frame)
        expected = t_ref / t if t_ref and t else 1.0
        factor, why = _choose(measured, expected, p.tolerance)
        if why != "measured":
            ctx.log.warning("scaleCountsToReference: %s: %s; scaled by the exposure-time ratio %.4f instead",
                            frame.filename, why, expected)
        ctx.log.info("scaleCountsToReference: %s: factor %.4f (%s)", frame.filename, factor,
                     "measured" if why == "measured" else "exposure time")
        cards = {"CNTSCALE": (factor, "factor applied by scaleCountsToReference")}
        if measured is not None and np.isfinite(measured[0]):
            cards["CNTSCMEA"] = (float(measured[0]), "count ratio measured on common sources")
        outputs.append(_scaled(frame, factor).with_phu(**cards).with_suffix(p.suffix))
    return outputs


def _choose(measured: tuple[float, float] | None, expected: float, tolerance: float) -> tuple[float, str]:
    if measured is None or not np.isfinite(measured[0]) or measured[0] <= 0:
        return expected, "no source in common with the reference"
    ratio, error = measured
    if error > MAX_RATIO_ERROR:
        return expected, (f"measured ratio {ratio:.4f} too uncertain "
                          f"({100 * error:.1f} % > {100 * MAX_RATIO_ERROR:g} %)")
    if tolerance >= 1.0:
        return expected, "tolerance=1"
    if tolerance > 0 and abs(ratio / expected - 1.0) > tolerance:
        return expected, f"measured ratio {ratio:.4f} differs from it by more than tolerance={tolerance}"
    return ratio, "measured"


def _exptime(frame: Frame) -> float | None:
    try:
        return float(frame.descriptor("exposure_time"))
    except Exception:  # noqa: BLE001 - no exposure time: ratio 1
        return None


def _scaled(frame: Frame, factor: float) -> Frame:
    if factor == 1.0:
        return frame
    f32 = np.float32(factor)

    def scale(ext: Extension) -> Extension:
        var = ext.plane("VAR")
        cat = ext.objcat
        if cat is not None and len(cat) and "FLUX_AUTO" in cat.colnames:
            cat = cat.copy()
            for col in ("FLUX_AUTO", "FLUXERR_AUTO", "FLUX_APER", "FLUXERR_APER"):
                if col in cat.colnames:
                    cat[col] = cat[col] * factor
        return ext.with_planes(SCI=ext.plane("SCI") * f32,
                               VAR=None if var is None else var * f32 * f32).replace(objcat=cat)

    return frame.map_extensions(scale)

