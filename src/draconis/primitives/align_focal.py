"""adjustWCSToReference for frames whose arrays share a distorted focal plane (GSAOI).

Each frame's WCS is ``F o D_k`` (:mod:`.focal_plane`); aligning a frame means
finding its map ``F`` from the focal plane to the reference's tangent plane:

1. the sources of all four arrays are matched with the reference's in the
   tangent plane (header WCS, distortion included: a shift, rotation and
   scale by vote and least squares), then ``F`` is fitted to the focal-plane
   positions of the matched sources, each weighted by its centroid's
   uncertainty: a shift, rotation and scale, then an affine map and
   polynomials up to ``order`` where an F-test says the matches support
   them (:func:`~.focal_plane.fit_focal_transform`);
2. every frame aligned on sources is fitted again on the mean positions of
   its objects in all the *other* frames (:data:`REFINE_PASSES` times): a
   frame at the far end of a large dither shares few stars with the
   reference but many with the frames between them, and averaged positions
   are less noisy than one frame's;
3. each frame's arrays get the exact SIP WCS of its ``F`` over the static
   distortion, about the reference's tangent point, once.

Too few matches: the frame is moved (shift, rotation, scale), or, with fewer
than ``min_sources``, placed by the telescope offsets (``fallback='offsets'``;
frames of the same position angle only).  Everything here works on
catalogues; no pixel is read.
"""
from __future__ import annotations

import logging

import numpy as np

from ..distortion import PolyMap, project
from ..frame import Frame
from . import align as al
from .focal_plane import (
    fit_focal_transform,
    focal_transform,
    leave_one_out_targets,
    master_catalogue,
    model_text,
    with_focal_transform,
)

__all__ = ["align_distorted", "MIN_FOCAL_FIT", "REFINE_PASSES"]

#: Fewest matched sources for fitting a frame's focal-plane map rather than moving it.
MIN_FOCAL_FIT = 10
#: Passes of fitting on the mean positions of all frames, after the fit on the reference alone.
REFINE_PASSES = 4


def align_distorted(frames: list[Frame], iref: int, centre: tuple[float, float], p, log: logging.Logger
                    ) -> tuple[list[Frame], list[str]]:
    """Frames aligned on ``frames[iref]`` and how each was ('reference', 'sources', 'offsets' or 'none')."""
    ref = frames[iref]
    uvs = [np.column_stack(al.focal_sources(f)) for f in frames]
    sigmas = [al.source_sigmas(f) for f in frames]
    order = max(3, p.order)
    ref_map = focal_transform(ref, order=order, centre=centre)
    maps: list[PolyMap | None] = [None] * len(frames)
    maps[iref] = ref_map
    methods = ["reference" if k == iref else "" for k in range(len(frames))]
    ref_xy = np.column_stack(ref_map(uvs[iref][:, 0], uvs[iref][:, 1])) if len(uvs[iref]) else np.zeros((0, 2))
    notes = {}
    for k, frame in enumerate(frames):
        if k == iref:
            continue
        found = _on_reference(frame, uvs[k], sigmas[k], ref_xy, sigmas[iref], centre, p) \
            if p.method == "sources" else None
        if found is not None:
            maps[k], methods[k], notes[k] = found[0], "sources", found[1:]
            continue
        if p.method == "sources":
            log.debug("adjustWCSToReference: %s: fewer than min_sources=%d matched sources", frame.filename,
                      p.min_sources)
        maps[k], methods[k] = _from_offsets(frame, ref, order, p)
    if p.method == "sources":
        notes.update(_refine(maps, methods, uvs, sigmas, iref, p))
    for k, (n, used, rms) in sorted(notes.items()):
        log.info("adjustWCSToReference: %s: %d matched sources, %s, rms %.4f\"", frames[k].filename, n,
                 model_text(used), rms)
    out = []
    for k, (frame, mapping) in enumerate(zip(frames, maps)):
        out.append(frame if k == iref or mapping is None else with_focal_transform(frame, mapping, centre))
    return out, methods


def _on_reference(frame, uv, sigma, ref_xy, ref_sigma, centre, p):
    """(map, matches, model order, rms) of ``frame`` on the reference's sources, or None if too few match."""
    src_xy = np.column_stack(project(*al.frame_sources(frame)[:2], *centre))
    t, n, rms = al.align_catalogues(src_xy, ref_xy, first_pass=p.first_pass, match_radius=p.match_radius,
                                    rotate=p.rotate, scale=p.scale, max_iters=p.max_iters,
                                    tolerance=al.vote_tolerance(frame, p.match_radius), min_votes=p.min_sources)
    if t is None or n < p.min_sources:
        return None
    if n >= MIN_FOCAL_FIT:
        mapping, n, rms, used = fit_focal_transform(uv, al.apply(t, src_xy), ref_xy, match_radius=p.match_radius,
                                                    order=p.order, max_iters=p.max_iters, sigma=sigma,
                                                    ref_sigma=ref_sigma)
        if mapping is not None and n >= MIN_FOCAL_FIT:
            return mapping, n, used, rms
    moved = PolyMap.affine(t[:2, :2], t[:2, 2])
    return moved.compose(focal_transform(frame, order=max(3, p.order), centre=centre)), n, -1, rms


def _from_offsets(frame: Frame, ref: Frame, order: int, p) -> tuple[PolyMap | None, str]:
    """The reference's map moved by the telescope offsets, or (None, 'none') when they cannot be used."""
    shift = al.telescope_shift(frame, ref)
    if p.fallback != "offsets" and p.method == "sources" or shift is None or not al.same_position_angle(frame, ref):
        # offsets are in each frame's instrument axes: across position angles they say nothing about pixels
        return None, "none"
    # detector offsets are where a star moves, in pixels of nominal scale: the same move in the focal plane
    scale = float(frame.descriptor("pixel_scale"))
    return focal_transform(ref, order=order).shifted(-shift[0] * scale, -shift[1] * scale), "offsets"


def _refine(maps, methods, uvs, sigmas, iref, p) -> dict[int, tuple[int, int, float]]:
    """Fit frames' maps on the other frames' mean positions; (matches, order, rms) per frame fitted.

    Frames placed by the telescope offsets are tried too (their offsets are
    good to a fraction of an arcsec): one that shares enough objects with the
    other frames, though not with the reference, is then aligned on sources.
    Only source-aligned frames give positions to the means.
    """
    notes = {}
    for _ in range(REFINE_PASSES):
        aligned = [k for k, m in enumerate(methods) if m in ("sources", "reference") and len(uvs[k])]
        positions = [np.column_stack(maps[k](uvs[k][:, 0], uvs[k][:, 1])) if maps[k] is not None and len(uvs[k])
                     else np.zeros((0, 2)) for k in range(len(maps))]
        objects = master_catalogue([positions[k] if k in aligned else np.zeros((0, 2)) for k in range(len(maps))],
                                   [iref] + [k for k in aligned if k != iref], p.match_radius / 2.0)
        for k, how in enumerate(methods):
            if how not in ("sources", "offsets") or maps[k] is None or not len(uvs[k]):
                continue
            if how == "offsets":
                idx, targets, target_sigma = _nearest_objects(objects, positions, sigmas, k, p.match_radius)
            else:
                idx, targets, target_sigma = leave_one_out_targets(objects, positions, sigmas, k)
            if len(idx) < MIN_FOCAL_FIT:
                continue
            radius = p.match_radius / (1.0 if how == "offsets" else 2.0)
            mapping, n, rms, used = fit_focal_transform(uvs[k][idx], positions[k][idx], targets, match_radius=radius,
                                                        order=p.order, max_iters=p.max_iters, sigma=sigmas[k][idx],
                                                        ref_sigma=target_sigma)
            if mapping is not None and n >= MIN_FOCAL_FIT:
                maps[k], notes[k], methods[k] = mapping, (n, used, rms), "sources"
    return notes


def _nearest_objects(objects, positions, sigmas, frame: int, radius: float):
    """For a frame not in the objects yet: its sources' nearest objects within ``radius`` (index, mean, error)."""
    from .align import match

    members = [[(positions[f][s], sigmas[f][s]) for f, s in obj] for obj in objects]
    means = np.array([np.mean([q for q, _ in m], axis=0) for m in members]).reshape(-1, 2)
    errors = np.array([1.0 / np.sqrt(sum(1.0 / e ** 2 for _, e in m)) for m in members])
    i, j = match(positions[frame], means, radius) if len(means) else (np.zeros(0, int), np.zeros(0, int))
    return i, means[j], errors[j]
