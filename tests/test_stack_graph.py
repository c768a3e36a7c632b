"""Graphs that stay small: a 1000-frame sequence gives a checkpoint graph of a few tasks per frame and band, and a
stack graph whose task count does not grow with N and whose pickled size stays far below Dask's "large graph"
warning (10 MB)."""
from __future__ import annotations

import logging
import pickle
import time

from dask.highlevelgraph import HighLevelGraph

from draconis import testing
from draconis.io.zarr import open_zarr, prepare_zarr
from draconis.primitives.stack import stack_frames_core

N = 1000
SHAPE = (32, 48)
ROWS = 8  # 4 bands
LARGE_GRAPH = 10e6  # bytes: where distributed warns "Sending large graph"


def _graph(arrays) -> dict:
    return dict(HighLevelGraph.merge(*[a.__dask_graph__() for a in arrays]))


def test_thousand_frame_checkpoint_and_stack_graphs_stay_small(tmp_path):
    frames = testing.resampled_sequence(N, SHAPE, chunk_rows=ROWS, shift=4)
    bands = SHAPE[0] // ROWS
    # the checkpoint of the lazy frames: its metadata is written now, its pixels would be by computing `records`
    pending = [prepare_zarr(f, tmp_path / f"{i:04d}.zarr", chunks=(ROWS, SHAPE[1])) for i, f in enumerate(frames)]
    whole = _graph([r for p in pending for r in p.records])
    frames_only = _graph([f[0].plane(n) for f in frames for n in ("SCI", "VAR", "DQ")])
    writes = {k: v for k, v in whole.items() if k not in frames_only}
    # one task per frame and band (writing every plane, returning the band's summary), each small: no header,
    # WCS or table inside, the band's first row from a tuple shared by the frame's tasks
    assert len(writes) == N * bands
    assert len(pickle.dumps(writes)) < 400 * N * bands
    assert len(whole) <= 7 * N * bands and len(pickle.dumps(whole)) < LARGE_GRAPH / 2

    # the stack of the checkpointed frames (opened lazily; the graph is built, never computed)
    stored = [open_zarr(p.store) for p in pending]
    start = time.perf_counter()
    with testing.raise_if_dask_computes():
        stack = stack_frames_core(stored, testing.stack_params(memory=0.01),
                                  logging.getLogger("test"))
    built = time.perf_counter() - start
    planes = [stack[0].plane(n) for n in ("SCI", "VAR", "DQ")]
    stack_graph = _graph(planes)
    # one combine task per band (reading every frame's chunks itself), the three planes split off, DQ cast,
    # and one key per plane listing the N inputs: the task count does not grow with N
    n_bands = len(planes[0].chunks[0])
    assert n_bands == bands  # bands are whole checkpoint chunks
    assert len(stack_graph) <= 5 * n_bands + 3
    size = len(pickle.dumps(stack_graph))
    # what grows with N is the three source lists, a few hundred bytes per frame
    assert size < min(LARGE_GRAPH / 10, 3 * N * 400 + 50_000)
    logging.getLogger("test").info("stack graph of %d frames: %d tasks, %.2f MB, built in %.2f s",
                                   N, len(stack_graph), size / 1e6, built)
