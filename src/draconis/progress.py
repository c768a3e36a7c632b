"""Compute many Dask objects at once, with a terminal progress bar per stage.

Every pixel computation of a run goes through :func:`compute`: one call per
stage (a checkpoint, a set of outputs), never one per frame.  On a
distributed client the bar advances as futures complete; on the local
schedulers it advances per finished task.  The bar is shown only when stderr
is a terminal and the log mode is not ``quiet``.
"""
from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import dask
from dask.callbacks import Callback

from . import logutils, runrecord


def bars_enabled() -> bool:
    """Whether progress bars are shown (a tty, not quiet)."""
    isatty = getattr(sys.stderr, "isatty", lambda: False)
    return bool(isatty()) and logutils.current_mode() != "quiet"


class _TaskBar(Callback):
    """Advance a tqdm bar as the local scheduler finishes tasks."""

    def __init__(self, label: str):
        super().__init__()
        self.label = label
        self.bar = None

    def _start_state(self, dsk, state):
        from tqdm import tqdm

        total = sum(len(state[k]) for k in ("ready", "waiting", "finished"))
        self.bar = tqdm(total=total, desc=self.label, unit="task", leave=False, file=sys.stderr)

    def _posttask(self, key, result, dsk, state, worker_id):
        if self.bar is not None:
            self.bar.update(1)

    def _finish(self, dsk, state, errored):
        if self.bar is not None:
            self.bar.close()


def compute(tasks: Sequence[Any], label: str = "computing", *, show: bool | None = None) -> list[Any]:
    """``dask.compute(*tasks)`` on the active scheduler, with a progress bar.

    Parameters
    ----------
    tasks
        Dask collections / delayed objects (e.g. one write per frame).
    label
        Stage name shown on the bar.
    show
        Force the bar on or off (default: :func:`bars_enabled`).

    Returns
    -------
    list
        The computed results, in order.
    """
    tasks = list(tasks)
    if not tasks:
        return []
    show = bars_enabled() if show is None else show
    from .cluster import active_client

    client = active_client()
    with runrecord.stage(label, len(tasks)):
        if client is not None:
            return _compute_distributed(client, tasks, label, show)
        if not show:
            return list(dask.compute(*tasks))
        with _TaskBar(label):
            return list(dask.compute(*tasks))


def _compute_distributed(client, tasks, label, show):
    futures = client.compute(tasks)
    if show:
        from distributed import as_completed
        from tqdm import tqdm

        with tqdm(total=len(futures), desc=label, unit="item", leave=False, file=sys.stderr) as bar:
            for _ in as_completed(futures):
                bar.update(1)
    return list(client.gather(futures))
