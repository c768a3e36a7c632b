"""Test helpers: laziness guards, lazy comparisons, synthetic frames, primitives run for real.

This module imports only Dask and NumPy at the top: the synthetic frames'
block function runs in Dask workers, which must not pay for the frame model's
imports (tests check what workers import).  The pytest fixtures are defined
only when pytest is already imported (a test session), for the same reason.

:class:`PrimitiveRunner` (and the pytest fixture :func:`run_primitive` built
on it) runs a primitive the way a recipe step does, through
:class:`~draconis.reduce.context.RunContext`: parameters resolved (defaults <
instrument < user < arguments), files named by parameters opened, suffixes,
``write_outputs``, checkpoints.  Tests use it rather than a stand-in context,
so they test the contract primitives really meet::

    def test_dark(run_primitive, darks):
        (stack,) = run_primitive("stackDarks", darks, reject_method="minmax")
        ctx = run_primitive.context(streams={"sky": skies}, ucals={"processed_dark": dark})
        out = run_primitive("darkCorrect", frames, ctx)
"""
from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import dask
import numpy as np

from .io._tasks import pixel_read_count

if TYPE_CHECKING:
    from .frame import Frame
    from .reduce.context import RunContext

#: DQ of grid pixels no input pixel covers (resampleToCommonFrame's no_data).
NO_DATA = 16


class PixelsComputedError(AssertionError):
    """Pixel data were computed or read where the code promised to stay lazy."""


def stack_params(**overrides: Any) -> dict[str, Any]:
    """The resolved parameters a test hands to the stack core: stackFrames' declared defaults with ``overrides``."""
    from .primitives.stack import STACK

    values = {p.name: p.default for p in STACK()}
    unknown = set(overrides) - set(values)
    if unknown:
        raise ValueError(f"stackFrames has no parameter(s) {sorted(unknown)}")
    return {**values, **overrides}


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


# ---------------------------------------------------------------- synthetic resampled frames
def _window(index: int, shape: tuple[int, int], shift: int, seed: int) -> tuple[int, int, int, int]:
    """The part of the common grid frame ``index`` covers: the grid less ``shift`` pixels, dithered."""
    rng = np.random.default_rng((seed, index, 7))
    dy, dx = (int(v) for v in rng.integers(0, shift + 1, 2))
    return dy, shape[0] - shift + dy, dx, shape[1] - shift + dx


def _stars(shape: tuple[int, int], seed: int) -> np.ndarray:
    rng = np.random.default_rng((seed, 1))
    n = max(1, shape[0] * shape[1] // 20000)
    return np.column_stack([rng.uniform(0, shape[0], n), rng.uniform(0, shape[1], n), 10 ** rng.uniform(2.5, 4, n)])


def synthetic_band(index: int, shape: tuple[int, int], shift: int, seed: int, sigma: float, rows: int,
                   block_id: tuple = (0, 0, 0)) -> np.ndarray:
    """Rows of frame ``index`` of :func:`resampled_sequence`: packed (3, rows, nx) SCI, VAR, DQ (float32).

    Inside the frame's window: Gaussian noise of ``sigma``, a fixed field of
    stars (the same grid position in every frame, as after resampling), a
    few cosmic rays (high values, unflagged) and bad pixels (DQ 1); outside
    it: 0, 0, no_data.  Every row has its own random stream, so any rows of
    a frame can be generated alone, in any chunking, and come out the same.
    """
    y0 = block_id[1] * rows
    y1 = min(y0 + rows, shape[0])
    out = np.zeros((3, y1 - y0, shape[1]), np.float32)
    out[2] = NO_DATA
    wy0, wy1, wx0, wx1 = _window(index, shape, shift, seed)
    a, b = max(y0, wy0), min(y1, wy1)
    if a >= b:
        return out
    width = wx1 - wx0
    sci = np.empty((b - a, width), np.float32)
    dq = np.zeros((b - a, width), np.float32)
    for y in range(a, b):
        rng = np.random.default_rng((seed, index, y))
        sci[y - a] = rng.standard_normal(width, dtype=np.float32)
        sci[y - a] *= np.float32(sigma)
        sci[y - a, rng.random(width) < 1 / 20000] += np.float32(50 * sigma)  # cosmic rays
        dq[y - a, rng.random(width) < 1 / 50000] = 1  # bad pixels
    for sy, sx, flux in _stars(shape, seed):
        x0 = int(sx) - 6
        dx2 = (np.arange(x0, x0 + 13) - sx) ** 2  # the same 13-pixel profile whatever the chunking
        for y in range(max(a, int(sy) - 6), min(b, int(sy) + 7)):
            row = (flux / (4 * np.pi)) * np.exp(-(dx2 + (y - sy) ** 2) / 4.0)
            lo, hi = max(x0, wx0), min(x0 + 13, wx1)
            if lo < hi:
                sci[y - a, lo - wx0:hi - wx0] += row[lo - x0:hi - x0].astype(np.float32)
    rows_in = slice(a - y0, b - y0)
    out[0, rows_in, wx0:wx1] = sci
    out[1, rows_in, wx0:wx1] = sigma * sigma
    out[2, rows_in, wx0:wx1] = dq
    return out


def resampled_sequence(n: int, shape: tuple[int, int], *, chunk_rows: int = 256, shift: int = 32, seed: int = 0,
                       sigma: float = 15.0):
    """``n`` lazy synthetic frames as resampleToCommonFrame leaves them: one grid, each covering a dithered part.

    Each frame has one extension (SCI, VAR, DQ in row bands of ``chunk_rows``,
    computed by :func:`synthetic_band` when needed), NIRI-like headers and the
    ALIGN stamp of resampled frames.  Nothing is computed here.

    Returns
    -------
    list of Frame
    """
    import dask.array as da
    from astropy.io import fits

    from .frame import Frame, make_extension

    ny, nx = shape
    chunks = ((3,), tuple(min(chunk_rows, ny - y) for y in range(0, ny, chunk_rows)), (nx,))
    frames = []
    for i in range(n):
        packed = da.map_blocks(synthetic_band, dtype=np.float32, chunks=chunks, meta=np.empty((0, 0, 0), np.float32),
                               index=i, shape=(ny, nx), shift=shift, seed=seed, sigma=sigma, rows=chunk_rows,
                               name=f"synthetic-{dask.base.tokenize(i, shape, chunk_rows, shift, seed, sigma)}")
        phu = fits.Header()
        phu.update(INSTRUME="NIRI", TELESCOP="Gemini-North", OBSTYPE="OBJECT", EXPTIME=10.0, FILTER1="J",
                   ORIGNAME=f"N20160102S{i + 1:04d}.fits", ALIGN="2026-01-01T00:00:00")
        phu["DATE-OBS"], phu["UT"] = "2016-01-02", f"{10 + i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}.0"
        hdr = fits.Header()
        hdr.update(CTYPE1="RA---TAN", CTYPE2="DEC--TAN", CRVAL1=150.0, CRVAL2=2.0, CRPIX1=nx / 2, CRPIX2=ny / 2,
                   CD1_1=-0.117 / 3600, CD1_2=0.0, CD2_1=0.0, CD2_2=0.117 / 3600)
        ext = make_extension(hdr, packed[0], packed[1], packed[2].astype(np.uint16))
        frames.append(Frame(phu=phu, extensions=(ext,), filename=f"N20160102S{i + 1:04d}_align.fits"))
    return frames


class PrimitiveRunner:
    """Runs primitives through real run contexts; every context it makes lives under ``workdir``.

    Parameters
    ----------
    workdir
        Directory for the contexts' checkpoints and outputs.
    instrument, kind
        Parameter overlay of contexts made without them (default: from the
        first frames run, as a reduction takes it from its first input).
    """

    def __init__(self, workdir: str | os.PathLike, *, instrument: str | None = None, kind: str | None = None):
        self.workdir = os.fspath(workdir)
        self.instrument, self.kind = instrument, kind
        self._contexts: list[RunContext] = []

    def context(self, **kwargs: Any) -> RunContext:
        """A new :class:`RunContext` (keyword arguments as its constructor's; outputs go to ``workdir``)."""
        from .reduce.context import RunContext

        os.makedirs(self.workdir, exist_ok=True)
        kwargs.setdefault("workdir", self.workdir)
        kwargs.setdefault("outdir", self.workdir)
        kwargs.setdefault("instrument", self.instrument)
        kwargs.setdefault("kind", self.kind)
        ctx = RunContext(**kwargs)
        self._contexts.append(ctx)
        return ctx

    def __call__(self, name: str, frames: Sequence[Frame], ctx: RunContext | None = None, /,
                 **arguments: Any) -> list[Frame]:
        """Run primitive ``name`` on ``frames`` (made the ``main`` stream of ``ctx``) as a recipe step.

        ``arguments`` are the step's arguments (they win over the context's
        user parameters).  Returns the primitive's output stream.
        """
        from .reduce.context import frame_kind, instrument_name

        ctx = ctx if ctx is not None else self.context()
        if frames and ctx.instrument is None:
            ctx.instrument, ctx.kind = instrument_name(frames[0]), ctx.kind or frame_kind(frames[0])
        ctx.set_stream("main", frames)
        return ctx.run(name, **arguments)

    def close(self) -> None:
        """Close every context made (outputs committed, checkpoints removed)."""
        for ctx in self._contexts:
            ctx.close(success=True)
        self._contexts.clear()


if "pytest" in sys.modules:  # a test session: workers never import pytest for these
    import pytest

    @pytest.fixture
    def run_primitive(tmp_path: Any) -> Iterator[PrimitiveRunner]:
        """A :class:`PrimitiveRunner` writing under this test's ``tmp_path`` (closed after the test)."""
        runner = PrimitiveRunner(tmp_path / "run")
        yield runner
        runner.close()

    @pytest.fixture(scope="module")
    def module_run_primitive(tmp_path_factory: Any) -> Iterator[PrimitiveRunner]:
        """:func:`run_primitive` shared by a module's tests (for module-scoped data fixtures)."""
        runner = PrimitiveRunner(tmp_path_factory.mktemp("run"))
        yield runner
        runner.close()
