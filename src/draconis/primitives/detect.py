"""Source detection and object masks: detectSources, dilateObjectMask, addObjectMaskToDQ, transferObjectMask.

detectSources needs pixels: it is one of the "small summaries" DESIGN allows.
Every array of every frame is detected in ONE ``dask.compute`` (a
``dask.delayed`` task per array); the results, a catalogue (OBJCAT) and the
segmentation map bit-packed (1/8 byte per pixel), are attached to the frames,
and OBJMASK is a lazy plane that unpacks its row band when computed. The
mask primitives are lazy (overlapping blocks for dilation), but for the
WCS transfer, whose masks the runner computes and stores (one task per row
band) so that the sky pass using them reads them in its own tasks.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import dask
import dask.array as da
import numpy as np
from dask.highlevelgraph import HighLevelGraph
from dask.typing import Key

from .. import progress
from ..errors import ParameterError
from ..frame import Extension, Frame
from ..io._tasks import StoredPlane
from ..io.zarr import stored_source
from ..kernels import detect as kdetect
from ..kernels import sky as ksky
from ..kernels.detect import detect_array
from ..parameters import P, Params, suffix_param
from .bookkeeping import checkpoint_computed
from .registry import Context, primitive
from .sky import OBJECT_DQ_BIT, dilate_lazy

#: PHU keyword recording an object-mask dilation (prevents dilating twice).
DILATION_KEYWORD = "OBJMDILA"
_INTERPOLANT_ORDER = {"nearest": 0, "linear": 1, "poly3": 3, "poly5": 5, "spline3": 3, "spline5": 5}


def _finite_from(low: float) -> dict:
    """Range keywords of ``[low, inf)``: inf itself (and NaN) refused."""
    return {"low": low, "high": math.inf, "closed": (True, False)}


# ---------------------------------------------------------------------------
# detectSources
# ---------------------------------------------------------------------------
@primitive("detectSources",
           suffix_param("_sourcesDetected"),
           P("mask", bool, False, "replace DQ-flagged pixels before detection"),
           P("replace_flags", int, 249, "DQ bit mask selecting pixels to replace / to treat as bad", low=0),
           P("set_saturation", bool, False, "pass saturation level to the detector"),
           P("detect_minarea", int, 8, "minimum connected pixels for a detection", low=1),
           # [low, inf): an infinite threshold or radius only makes an empty catalogue
           P("detect_thresh", float, 2.0, "detection threshold (sigma above background)", **_finite_from(0.1)),
           P("analysis_thresh", float, 2.0, "isophotal analysis threshold (sigma)", **_finite_from(0.1)),
           P("deblend_mincont", float, 0.005, "deblending minimum contrast", low=0.0, high=1.0),
           P("phot_min_radius", float, 3.5, "minimum photometry aperture radius (pix)", **_finite_from(1.0)),
           P("back_size", int, 32, "background mesh size (pix)", low=1),
           P("back_filtersize", int, 8, "background median filter size (meshes)", low=1),
           # not DRAGONS': its recipes measure catalogues that only the object masks outlive (the first
           # pass of the two-pass sky); measuring them is ~40 % of a detection
           P("catalog", bool, True, "measure the source catalogue (OBJCAT); False: the object mask only"),
           # photutils (and the scipy.signal it pulls in) is imported by the first detection: ~1.3 s a worker
           worker_imports=(__name__, "photutils.background", "photutils.segmentation"))
def detect_sources(frames: list[Frame], p: Params, ctx: Context) -> list[Frame]:
    """Detect sources on every array; attach OBJCAT (unless catalog=False) and OBJMASK (one compute for all)."""
    # Detection takes whole arrays: pulling a lazy sky subtraction into those tasks ran ~3x slower
    # than checkpointing it first (10 x 1024^2 F2 frames: 18 s against 6 s), and later steps then
    # read the checkpoint instead of computing it again.
    # The frames' own OBJMASK is replaced below: not computed nor written (a transferred mask would be
    # computed again for the checkpoint alone).
    frames = checkpoint_computed([f.map_extensions(lambda e: e.with_planes(OBJMASK=None)) for f in frames], ctx,
                                 "detectSources")
    # a checkpointed plane is read whole by the detection task itself: no task per chunk and none
    # concatenating them on another worker, whose frame would then be moved
    tasks = [dask.delayed(_detect_packed)(*(_whole(ext.plane(n)) for n in ("SCI", "VAR", "DQ")),
                                          **_detect_kwargs(frame, i, p))
             for frame in frames for i, ext in enumerate(frame.extensions)]
    results = progress.compute(tasks, "detect sources")
    by_frame, k = [], 0
    for frame in frames:
        by_frame.append(results[k:k + len(frame)])
        k += len(frame)
    # The masks go to disk (the runner keeps them), not into the graphs: every later sky graph would
    # otherwise carry all of them (81 MB for the seed's 156 frames).
    unpacked = ([np.unpackbits(packed, axis=1, count=ext.plane("SCI").shape[1])
                 for ext, (_, packed) in zip(frame.extensions, found)] for frame, found in zip(frames, by_frame))
    kept = ctx.keep_computed(frames, "OBJMASK", unpacked, "detectSources_masks")
    outputs = []
    for f, (frame, found) in enumerate(zip(frames, by_frame)):
        exts = []
        for j, (ext, (table, packed)) in enumerate(zip(frame.extensions, found)):
            objmask = kept[f][j] if kept is not None else _unpack_lazily(ext, packed)
            if objmask.chunks != ext.plane("SCI").chunks:
                objmask = objmask.rechunk(ext.plane("SCI").chunks)
            exts.append(ext.with_planes(OBJMASK=objmask).replace(
                objcat=None if table is None else _with_world(table, ext)))
            if len(frame) > 1 and table is not None:  # the frame's line below says it for a single array
                ctx.log.debug("detectSources: %s array %d: %d source(s)", frame.filename, len(exts), len(table))
        if p.catalog:
            ctx.log.info("detectSources: %s: %s source(s)", frame.filename,
                         "+".join(str(len(e.objcat) if e.objcat is not None else 0) for e in exts))
        else:
            ctx.log.info("detectSources: %s: object mask only (catalog=False)", frame.filename)
        outputs.append(frame.with_extensions(exts).with_suffix(p.suffix))
    return outputs


def _detect_kwargs(frame: Frame, index: int, p) -> dict:
    saturation = None
    if p.set_saturation:
        value = _safe(frame, "saturation_level")
        saturation = value[index] if isinstance(value, (list, tuple)) else value
    return dict(detect_thresh=p.detect_thresh, analysis_thresh=p.analysis_thresh,
                detect_minarea=p.detect_minarea, deblend_mincont=p.deblend_mincont, back_size=p.back_size,
                back_filtersize=p.back_filtersize, phot_min_radius=p.phot_min_radius, mask=p.mask,
                replace_flags=p.replace_flags, saturation=saturation, pixel_scale=_safe(frame, "pixel_scale"),
                catalog=p.catalog)


def _with_world(table, ext: Extension):
    """``table`` with X_WORLD/Y_WORLD from the array's WCS, computed here on the client.

    An astropy WCS pickled to a Dask worker comes back rounded in its last
    digits (its pickle is a FITS header), so world coordinates computed in
    the detection task would depend on where the task ran.
    """
    try:
        wcs = ext.wcs if ext.wcs.has_celestial else None
    except Exception:  # noqa: BLE001 - no WCS: no world coordinates
        wcs = None
    if wcs is not None and len(table):
        ra, dec = wcs.all_pix2world(np.asarray(table["X_IMAGE"], float), np.asarray(table["Y_IMAGE"], float), 1)
        table["X_WORLD"], table["Y_WORLD"] = np.asarray(ra, float), np.asarray(dec, float)
    return table


def _safe(frame: Frame, name: str):
    try:
        return frame.descriptor(name)
    except Exception:  # noqa: BLE001 - optional information
        return None


def _whole(plane: da.Array | None) -> da.Array | StoredPlane | None:
    """What a detection task takes for a plane: the checkpoint it reads itself, else the lazy plane."""
    source = None if plane is None else stored_source(plane)
    return plane if source is None else source


def _detect_packed(sci, var, dq, **kwargs):
    sci, var, dq = (x.rows(0, x.shape[0]) if isinstance(x, StoredPlane) else x for x in (sci, var, dq))
    table, segmentation = detect_array(sci, var, dq, **kwargs)
    return table, np.packbits(segmentation, axis=1)


def _unpack_lazily(ext: Extension, packed: np.ndarray) -> da.Array:
    """The bit-packed mask in the graph, unpacked per row band (when the runner cannot keep it on disk)."""
    sci = ext.plane("SCI")
    width = sci.shape[1]
    rows = sci.chunks[0]
    lazy = da.from_array(packed, chunks=(rows, packed.shape[1]), name=False)
    return lazy.map_blocks(np.unpackbits, axis=1, count=width, dtype=np.uint8, chunks=(rows, (width,)))


# ---------------------------------------------------------------------------
# dilateObjectMask / addObjectMaskToDQ
# ---------------------------------------------------------------------------
@primitive("dilateObjectMask",
           suffix_param("_objmaskDilated"),
           P("dilation", float, 1.0, "OBJMASK dilation radius (pix)", low=0.0),
           P("repeat", bool, False, "allow dilating an already-dilated mask"))
def dilate_object_mask(frames: list[Frame], p: Params, ctx: Context) -> list[Frame]:
    """Dilate each OBJMASK with a disc of radius ``dilation`` px (once, unless repeat=True)."""
    outputs = []
    for frame in frames:
        if DILATION_KEYWORD in frame.phu and not p.repeat:
            ctx.log.warning("dilateObjectMask: %s already dilated (%s=%s); set repeat=True to dilate again",
                            frame.filename, DILATION_KEYWORD, frame.phu[DILATION_KEYWORD])
            outputs.append(frame)
            continue
        if all(ext.plane("OBJMASK") is None for ext in frame.extensions):
            ctx.log.warning("dilateObjectMask: %s has no OBJMASK; unchanged", frame.filename)
            outputs.append(frame)
            continue
        exts = [ext if (mask := ext.plane("OBJMASK")) is None else
                ext.with_planes(OBJMASK=dilate_lazy(mask, p.dilation)) for ext in frame.extensions]
        outputs.append(frame.with_extensions(exts).with_phu(
            **{DILATION_KEYWORD: (p.dilation, "OBJMASK dilation radius (pix)")}).with_suffix(p.suffix))
    return outputs


@primitive("addObjectMaskToDQ", suffix_param("_objectMaskAdded"))
def add_object_mask_to_dq(frames: list[Frame], p: Params, ctx: Context) -> list[Frame]:
    """OR the OBJMASK into DQ (object pixels get DQ bit 1, bad_pixel)."""
    outputs = []
    for frame in frames:
        if all(ext.plane("OBJMASK") is None for ext in frame.extensions):
            ctx.log.warning("addObjectMaskToDQ: %s has no OBJMASK; unchanged", frame.filename)
            outputs.append(frame)
            continue
        outputs.append(frame.map_extensions(_mask_into_dq).with_suffix(p.suffix))
    return outputs


def _mask_into_dq(ext: Extension) -> Extension:
    objmask = ext.plane("OBJMASK")
    if objmask is None:
        return ext
    bits = (objmask != 0).astype(np.uint16) * np.uint16(OBJECT_DQ_BIT)
    dq = ext.plane("DQ")
    return ext.with_planes(DQ=bits if dq is None else dq | bits)


# ---------------------------------------------------------------------------
# transferObjectMask
# ---------------------------------------------------------------------------
@primitive("transferObjectMask",
           suffix_param("_objmaskTransferred"),
           P("source", str, None, "stream or file holding the source image", optional=True, opens="stream"),
           P("interpolant", str, "poly3", "nearest | linear | poly3 | poly5 | spline3 | spline5",
             choices=tuple(_INTERPOLANT_ORDER)),
           P("dq_threshold", float, 0.01, "fractional contribution that sets an output mask pixel",
             low=0.0, high=1.0),
           P("dilation", float, 1.5, "OBJMASK dilation radius (pix)", low=0.0))
def transfer_object_mask(frames: list[Frame], p: Params, ctx: Context) -> list[Frame]:
    """Resample the OBJMASK of a stacked image onto every frame through the WCSs, then dilate it.

    The masks are handed to the runner, which computes and stores them
    (``keep_computed``): the sky passes that use them then read their rows
    inside their own tasks, as they read detectSources' masks. As lazy
    planes, the mask pipeline of every frame (transfer, dilation, the OR into
    the skies' DQ) was computed ahead of the sky combine and held: at 156
    full-size F2 frames on 2 GiB workers the third ultradeep sky pass spilled
    ~9 GiB and took 208 s against 57 s for the second.
    """
    source = _source_frame(p.source, ctx)
    sources = [(ext.plane("OBJMASK"), ext.wcs) for ext in source.extensions if ext.plane("OBJMASK") is not None]
    if not sources:
        raise ParameterError(f"transferObjectMask: source {source.filename} has no OBJMASK (run detectSources)")
    order = _INTERPOLANT_ORDER[p.interpolant]
    coefficients = _coefficients(sources, order)
    masks = [[transfer_mask(ext, coefficients, order=order, threshold=p.dq_threshold, dilation=p.dilation)
              for ext in frame.extensions] for frame in frames]
    kept = ctx.keep_computed(frames, "OBJMASK", masks, "transferObjectMask_masks")
    outputs = []
    for f, frame in enumerate(frames):
        exts = []
        for j, ext in enumerate(frame.extensions):
            mask = masks[f][j] if kept is None else kept[f][j]
            if mask.chunks != ext.plane("SCI").chunks:
                mask = mask.rechunk(ext.plane("SCI").chunks)
            exts.append(ext.with_planes(OBJMASK=mask))
        outputs.append(frame.with_extensions(exts).with_suffix(p.suffix))
    return outputs


def _source_frame(frames: list[Frame] | None, ctx) -> Frame:
    """The first frame of ``source`` (the runner opened the stream or file it names)."""
    if not frames:
        raise ParameterError("transferObjectMask: parameter 'source' (a stream name or file) is required")
    if len(frames) > 1:
        ctx.log.warning("transferObjectMask: source holds %d frames; using the first (%s)", len(frames),
                        frames[0].filename)
    return frames[0]


def _coefficients(sources: Sequence, order: int) -> list:
    """Per source mask: its spline coefficients (one lazy value, computed once for every frame) and its WCS."""
    return [(dask.delayed(kdetect.spline_coefficients, pure=True)(m.rechunk(-1).to_delayed().ravel()[0], order), w)
            for m, w in sources]


def transfer_mask(ext: Extension, coefficients: Sequence, *, order: int, threshold: float,
                  dilation: float = 0.0) -> da.Array:
    """Lazy uint8 mask of ``ext`` from the source masks, dilated by ``dilation`` px: one task per row band.

    ``coefficients`` are :func:`_coefficients`' (lazy coefficients, wcs)
    pairs. Each task computes its band of ``ext``'s SCI row chunks (whole
    rows) and the rows the dilation reaches beyond it, dilates (zeros beyond
    the array's edges) and keeps the band: what dilating the whole
    transferred mask gives, without the dilation's overlap tasks.
    """
    template = ext.plane("SCI")
    ny, nx = template.shape
    reach = ksky.dilation_reach(dilation)
    headers = [w.to_header_string(relax=True) for _, w in coefficients] + [ext.wcs.to_header_string(relax=True)]
    token = dask.base.tokenize([c.key for c, _ in coefficients], headers, template.shape, template.chunks[0], order,
                               threshold, dilation)
    name = f"transfer-mask-{token}"
    pairs = [[c.key, w] for c, w in coefficients]
    layer: dict[Key, Any] = {}
    y0 = 0
    for b, height in enumerate(template.chunks[0]):
        y1 = y0 + height
        layer[(name, b, 0)] = (_transferred_band, pairs, ext.wcs, (ny, nx), y0, y1, order, threshold, dilation, reach)
        y0 = y1
    graph = HighLevelGraph.from_collections(name, layer, dependencies=[c for c, _ in coefficients])
    return da.Array(graph, name, chunks=(template.chunks[0], (nx,)), dtype=np.uint8,
                    meta=np.empty((0, 0), np.uint8))


def _transferred_band(sources, target_wcs, shape: tuple[int, int], y0: int, y1: int, order: int, threshold: float,
                      dilation: float, reach: int) -> np.ndarray:
    """Rows ``y0:y1`` of the transferred mask dilated by ``dilation`` (computed with ``reach`` rows either side)."""
    ny, nx = shape
    m0, m1 = max(0, y0 - reach), min(ny, y1 + reach)
    mask = kdetect.transfer_mask_tile([tuple(s) for s in sources], target_wcs, (m0, m1, 0, nx), order=order,
                                      threshold=threshold, shape=shape)
    return ksky.dilate_mask(mask, dilation)[y0 - m0:y1 - m0]



