"""The process's pool of reusable buffers: a buffer is handed out again only when nothing uses it."""
from __future__ import annotations

import numpy as np

from draconis.buffers import pooled_bytes, reusable_buffer


def _owner(a: np.ndarray) -> int:
    while a.base is not None and isinstance(a.base, np.ndarray):
        a = a.base
    return a.__array_interface__["data"][0]


def test_a_buffer_comes_back_only_when_no_view_of_it_is_alive():
    a = reusable_buffer(1000, "test-views")
    cube = a.view(np.float32).reshape(10, 25)
    plane = cube[3]  # a view of a view, as a task's result is picked plane by plane
    del a, cube
    b = reusable_buffer(1000, "test-views")
    assert _owner(b) != _owner(plane)  # the first is still in use through `plane`
    memory = b.data  # a memoryview keeps it in use as well
    del b
    c = reusable_buffer(800, "test-views")
    assert _owner(c) not in {_owner(plane), _owner(np.frombuffer(memory, np.uint8))}
    first = _owner(plane)
    del plane
    d = reusable_buffer(1000, "test-views")
    assert _owner(d) == first  # free again: reused, not newly made
    del memory, c, d


def test_a_free_buffer_too_small_is_replaced_and_purposes_do_not_share():
    held = reusable_buffer(100, "test-grow")  # in use: stays in the pool, before the free one
    a = reusable_buffer(100, "test-grow")
    small = _owner(a)
    del a
    b = reusable_buffer(5000, "test-grow")
    assert b.nbytes == 5000 and _owner(b) not in {small, _owner(held)}
    c = reusable_buffer(100, "test-other")
    assert _owner(c) != _owner(b)
    del b
    d = reusable_buffer(4000, "test-grow")  # the 5000-byte buffer, free again, fits
    assert d.nbytes == 4000
    del c, d, held


def test_buffers_in_use_at_once_are_distinct_and_stay_pooled():
    held = [reusable_buffer(1000, "test-many") for _ in range(3)]
    assert len({_owner(b) for b in held}) == 3
    assert pooled_bytes("test-many") == 3000
    del held
    again = [reusable_buffer(1000, "test-many") for _ in range(3)]
    assert pooled_bytes("test-many") == 3000  # reused, none made
    del again
