"""Buffers a worker process reuses instead of mapping new memory for every task.

Memory a process writes for the first time costs a page fault per page (on the
VMs the benchmarks run on, ~35 % of a sky pass's CPU time once went there).
Scratch space that tasks fill and drop many times a pass (a decompressed chunk,
the rows a level task samples) comes from here instead: a buffer is handed out
again once nothing refers to it any more, so concurrent tasks never share one.

Only NumPy and the standard library: task modules import it on workers.
"""
from __future__ import annotations

import sys
import threading

import numpy as np

__all__ = ["reusable_buffer", "pooled_bytes"]

_lock = threading.Lock()
#: purpose -> buffers (a few: one per task using one at the same time)
_pool: dict[str, list[np.ndarray]] = {}
#: References to a pooled buffer that nothing outside holds: its pool slot and getrefcount's argument.
_FREE = 2


def reusable_buffer(nbytes: int, purpose: str) -> np.ndarray:
    """A writable uint8 array of ``nbytes`` that nothing else uses, from this process's pool.

    Parameters
    ----------
    nbytes
        Size wanted.
    purpose
        Pool the buffer comes from (buffers of one purpose are alike in size).

    Returns
    -------
    numpy.ndarray
        A view of a pooled buffer, kept for the life of the process. The
        buffer is handed out again only when no view of it is alive (views
        of views included: NumPy points them at the array owning the
        memory; a memoryview of one counts too).
    """
    with _lock:
        buffers = _pool.setdefault(purpose, [])
        free = [i for i in range(len(buffers)) if sys.getrefcount(buffers[i]) == _FREE]
        fit = [i for i in free if buffers[i].nbytes >= nbytes]
        if fit:
            return buffers[min(fit, key=lambda i: buffers[i].nbytes)][:nbytes]
        if free:  # a free buffer too small for this size goes before the new one is made
            del buffers[free[0]]
        buffers.append(np.empty(nbytes, np.uint8))
        return buffers[-1][:nbytes]


def pooled_bytes(purpose: str | None = None) -> int:
    """Bytes the pool holds now, for one purpose or all (for tests and diagnostics)."""
    with _lock:
        return sum(b.nbytes for name, buffers in _pool.items() if purpose in (None, name) for b in buffers)
