"""The graph resampleToCommonFrame adds per frame stays small at full size (issue 10 item 4).

Full-size (2048²) F2-like frames with lazy zero planes in 512-row bands
(no pixel data: the graph is built, never computed).  What the resample adds
to the graph, beyond its inputs' own tasks, is measured for a few and for
more frames; its growth per frame must stay well under 10 kB.  Before the
affine maps were carried as six numbers per array, each frame's coarse pixel
maps (~70 x 70 float64 rows and columns) made ~92 kB of it.
"""
from __future__ import annotations

import pickle

import dask.array as da
import numpy as np
from astropy.io import fits

from draconis.frame import Frame, make_extension
from draconis.testing import raise_if_dask_computes

SHAPE = (2048, 2048)
ROWS = 512
SCALE = 0.18 / 3600


def _frame(k: int) -> Frame:
    """Frame ``k`` of a dither pattern: a TAN WCS offset by a few arcsec and turned by a few arcsec of PA."""
    rng = np.random.default_rng(k)
    dx, dy = rng.uniform(-60, 60, 2)
    theta = np.deg2rad(rng.uniform(-0.01, 0.01))
    hdr = fits.Header()
    hdr.update(CTYPE1="RA---TAN", CTYPE2="DEC--TAN", CRPIX1=1024.5 + dx, CRPIX2=1024.5 + dy, CRVAL1=150.0,
               CRVAL2=2.0, CD1_1=-SCALE * np.cos(theta), CD1_2=SCALE * np.sin(theta),
               CD2_1=SCALE * np.sin(theta), CD2_2=SCALE * np.cos(theta))
    phu = fits.Header()
    phu.update(INSTRUME="F2", TELESCOP="Gemini-South", OBSTYPE="OBJECT", ORIGNAME=f"S20200104S{k:04d}.fits",
               EXPTIME=10.0)
    phu["DATE-OBS"], phu["UT"] = "2020-01-04", "10:00:00.0"

    def plane(dtype):
        return da.zeros(SHAPE, chunks=(ROWS, SHAPE[1]), dtype=dtype)

    ext = make_extension(hdr, plane(np.float32), plane(np.float32), plane(np.uint16))
    return Frame(phu=phu, extensions=(ext,), filename=f"S20200104S{k:04d}.fits")


def _added_bytes(run_primitive, n: int, **arguments) -> int:
    """Pickled bytes of the graph of ``n`` resampled frames beyond their inputs' graph."""
    frames = [_frame(k) for k in range(n)]
    inputs = {}
    for f in frames:
        for p in ("SCI", "VAR", "DQ"):
            inputs.update(dict(f[0].plane(p).__dask_graph__()))
    with raise_if_dask_computes():
        out = run_primitive("resampleToCommonFrame", frames, **arguments)
    graph = {}
    for f in out:
        for p in ("SCI", "VAR", "DQ"):
            graph.update(dict(f[0].plane(p).__dask_graph__()))
    assert set(inputs) <= set(graph)  # the inputs' blocks are read by key, not copied
    added = {k: v for k, v in graph.items() if k not in inputs}
    return len(pickle.dumps(added))


def test_resample_graph_grows_by_a_few_kilobytes_per_full_size_frame(run_primitive):
    """F2's default (force_affine): each frame adds its tasks' keys and six numbers per array, no pixel map."""
    few, many = 2, 10
    small, large = _added_bytes(run_primitive, few), _added_bytes(run_primitive, many)
    per_frame = (large - small) / (many - few)
    print(f"resampleToCommonFrame graph: {per_frame:.0f} bytes per full-size frame")
    assert 0 < per_frame < 5_000


def test_band_tasks_name_their_input_blocks(run_primitive):
    """One task per output band and plane beyond the band's own: no slicing or concatenating task per band."""
    frames = [_frame(k) for k in range(2)]
    with raise_if_dask_computes():
        out = run_primitive("resampleToCommonFrame", frames)
    sci = out[0][0].plane("SCI")
    inputs = set()
    for p in ("SCI", "VAR", "DQ"):
        inputs |= set(dict(frames[0][0].plane(p).__dask_graph__()))
    graph = {}
    for p in ("SCI", "VAR", "DQ"):
        graph.update(dict(out[0][0].plane(p).__dask_graph__()))
    bands = len(sci.chunks[0])
    # per band: the resample task and one pick per plane; per frame: its maps
    assert len(set(graph) - inputs) == 4 * bands + 1
