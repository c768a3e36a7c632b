"""Test helpers: laziness guards and comparison of lazy results."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import dask
import numpy as np

from .io.fits import pixel_read_count


class PixelsComputedError(AssertionError):
    """Pixel data were computed or read where the code promised to stay lazy."""


@contextlib.contextmanager
def raise_if_dask_computes(max_computes: int = 0) -> Iterator[None]:
    """Fail if Dask computes more than ``max_computes`` times, or FITS pixels are read.

    Wrap calls to primitives in tests with it: a primitive only extends the
    graph.
    """
    count = 0

    def scheduler(dsk, keys, **kwargs):
        nonlocal count
        count += 1
        if count > max_computes:
            raise PixelsComputedError(f"Dask compute #{count} where at most {max_computes} allowed")
        return dask.get(dsk, keys, **kwargs)

    reads = pixel_read_count()
    with dask.config.set(scheduler=scheduler):
        yield
    if pixel_read_count() != reads:
        raise PixelsComputedError(f"{pixel_read_count() - reads} FITS pixel section(s) read inside a lazy block")


def assert_lazy_equal(actual, expected, *, rtol: float = 1e-6, atol: float = 0.0) -> None:
    """Compare a Dask array with a reference, also checking dtype and shape."""
    assert actual.dtype == np.asarray(expected).dtype or np.asarray(expected).dtype.kind == actual.dtype.kind, (
        f"dtype {actual.dtype} != {np.asarray(expected).dtype}")
    assert actual.shape == np.shape(expected), f"shape {actual.shape} != {np.shape(expected)}"
    np.testing.assert_allclose(np.asarray(actual), expected, rtol=rtol, atol=atol)
