"""Allocation-free sorting and selection on small slices, for the per-pixel kernels.

Every function works in place on ``v[lo:hi]`` (and, for the ``*_pairs``
variants, permutes an index array ``ix`` alongside) so that a kernel can keep
one work buffer per thread and never allocate per pixel.  Values must be
finite: the kernels filter NaNs out before they get here.
"""
from __future__ import annotations

import numba

# Below this many values insertion sort beats partitioning (few branches, no swaps
# of whole halves); 24 is where the two cross on small float64 arrays.
_CUTOFF = 24


@numba.njit(nogil=True, cache=True)
def insertion_sort_pairs(v, ix, lo, hi):
    """Sort ``v[lo:hi]`` ascending in place, permuting ``ix[lo:hi]`` alongside."""
    for i in range(lo + 1, hi):
        x = v[i]
        j = ix[i]
        k = i - 1
        while k >= lo and v[k] > x:
            v[k + 1] = v[k]
            ix[k + 1] = ix[k]
            k -= 1
        v[k + 1] = x
        ix[k + 1] = j


@numba.njit(nogil=True, cache=True)
def insertion_sort(v, lo, hi):
    """Sort ``v[lo:hi]`` ascending in place."""
    for i in range(lo + 1, hi):
        x = v[i]
        k = i - 1
        while k >= lo and v[k] > x:
            v[k + 1] = v[k]
            k -= 1
        v[k + 1] = x


@numba.njit(nogil=True, cache=True, inline="always")
def _median_of_three(v, ix, a, m, c, with_ix):
    # Order v[a] <= v[m] <= v[c] so the pivot v[m] is a median of three: this
    # keeps already-sorted and reversed inputs O(n log n).
    if v[m] < v[a]:
        v[a], v[m] = v[m], v[a]
        if with_ix:
            ix[a], ix[m] = ix[m], ix[a]
    if v[c] < v[a]:
        v[a], v[c] = v[c], v[a]
        if with_ix:
            ix[a], ix[c] = ix[c], ix[a]
    if v[c] < v[m]:
        v[m], v[c] = v[c], v[m]
        if with_ix:
            ix[m], ix[c] = ix[c], ix[m]


@numba.njit(nogil=True, cache=True)
def _partition(v, ix, a, b, with_ix):
    """Hoare partition of ``v[a:b]`` (``b - a >= 3``).

    Returns ``j`` with ``v[a:j+1] <= pivot <= v[j+1:b]`` and both parts non-empty.
    """
    m = (a + b - 1) // 2
    _median_of_three(v, ix, a, m, b - 1, with_ix)
    pivot = v[m]
    i = a - 1
    j = b
    while True:
        i += 1
        while v[i] < pivot:
            i += 1
        j -= 1
        while v[j] > pivot:
            j -= 1
        if i >= j:
            return j
        v[i], v[j] = v[j], v[i]
        if with_ix:
            ix[i], ix[j] = ix[j], ix[i]


@numba.njit(nogil=True, cache=True)
def sort_pairs(v, ix, lo, hi, stack):
    """Sort ``v[lo:hi]`` ascending in place, permuting ``ix`` alongside.

    Quicksort with a median-of-three pivot and an insertion-sort finish.
    ``stack`` is an int64 work array of at least 128 elements: the larger
    part is pushed and the smaller one processed first, so the stack never
    holds more than log2(n) ranges.
    """
    top = 0
    stack[0] = lo
    stack[1] = hi
    top = 2
    while top > 0:
        top -= 2
        a = stack[top]
        b = stack[top + 1]
        while b - a > _CUTOFF:
            j = _partition(v, ix, a, b, True)
            if j + 1 - a < b - (j + 1):
                stack[top] = j + 1
                stack[top + 1] = b
                b = j + 1
            else:
                stack[top] = a
                stack[top + 1] = j + 1
                a = j + 1
            top += 2
        insertion_sort_pairs(v, ix, a, b)


@numba.njit(nogil=True, cache=True)
def select(v, lo, hi, k):
    """Return the value of rank ``k`` (an absolute index in ``[lo, hi)``) of ``v[lo:hi]``.

    Quickselect: afterwards ``v[lo:k] <= v[k] <= v[k+1:hi]``, which lets a
    caller get the next order statistic as the minimum of ``v[k+1:hi]``.
    ``ix`` is not needed, so this only reorders ``v``.
    """
    a = lo
    b = hi
    while b - a > _CUTOFF:
        j = _partition(v, v, a, b, False)
        if k <= j:
            b = j + 1
        else:
            a = j + 1
    insertion_sort(v, a, b)
    return v[k]


@numba.njit(nogil=True, cache=True)
def median_unsorted(v, lo, hi, lower):
    """Median of ``v[lo:hi]`` (``hi > lo``), reordering ``v``.

    For an even count the mean of the two middle values, or the lower one
    when ``lower`` is true.
    """
    n = hi - lo
    k = lo + (n - 1) // 2
    m = select(v, lo, hi, k)
    if n % 2 == 1 or lower:
        return m
    # After select, everything right of k is >= v[k]: the upper middle value
    # is their minimum.
    up = v[k + 1]
    for i in range(k + 2, hi):
        if v[i] < up:
            up = v[i]
    return 0.5 * (m + up)


@numba.njit(nogil=True, cache=True)
def median_sorted(v, lo, hi, lower):
    """Median of the sorted slice ``v[lo:hi]`` (``hi > lo``), as :func:`median_unsorted`."""
    n = hi - lo
    k = lo + (n - 1) // 2
    if n % 2 == 1 or lower:
        return v[k]
    return 0.5 * (v[k] + v[k + 1])
