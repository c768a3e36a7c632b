"""The :class:`Instrument` base class: tag rules and the descriptor registry.

An instrument class lists its tag rules and defines descriptors as methods
decorated with :func:`descriptor`; each takes a
:class:`~draconis.instruments.context.HeaderView` (plus keyword options) and
returns a value.  Per-array descriptors return a list with one value per
pixel extension; frame-level ones return a scalar.  Subclasses override the
methods whose header source or formula differ (instruments.md §3).
"""
from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any, ClassVar

from astropy.io.fits import Header

from ..errors import DescriptorError
from . import gemini_tags
from .context import HeaderView
from .descriptors_common import CommonDescriptors
from .registry import descriptor, is_descriptor
from .tags import TagSet, resolve_tags

__all__ = ["Instrument", "descriptor"]


class Instrument(CommonDescriptors):
    """Base class of the four instruments.

    Attributes
    ----------
    name : str
        'F2', 'NIRI', 'GNIRS' or 'GSAOI'.
    n_arrays : int
        Expected number of pixel extensions.
    """

    name: ClassVar[str] = "GEMINI"
    n_arrays: ClassVar[int] = 1
    #: Gemini-level rules used by this instrument (subclasses may drop some).
    gemini_rules: ClassVar[tuple] = gemini_tags.GEMINI_RULES
    #: Instrument-specific rules, functions (phu, exts) -> TagSet | None.
    instrument_rules: ClassVar[tuple] = ()
    #: Mosaics: {array's detector origin (x, y): ((mosaic shift x, y), rotation deg)} and the array size.
    mosaic_geometry: ClassVar[dict | None] = None
    array_size: ClassVar[int | None] = None

    def __repr__(self) -> str:
        return f"<Instrument {self.name}>"

    # -- tags -----------------------------------------------------------------
    def tags(self, phu: Header, ext_headers: Sequence[Header]) -> frozenset[str]:
        """Tags of a frame from its primary and pixel-extension headers."""
        results: list[TagSet | None] = [TagSet.of([self.name])]
        for rule in (*self.gemini_rules, *self.instrument_rules):
            results.append(rule(phu, ext_headers))
        return resolve_tags(results)

    # -- descriptors ----------------------------------------------------------
    @classmethod
    def descriptor_names(cls) -> list[str]:
        """Sorted names of every descriptor this instrument provides."""
        return sorted(name for name in dir(cls)
                      if not name.startswith("_") and is_descriptor(getattr(cls, name)))

    def descriptor(self, name: str, phu: Header, ext_headers: Sequence[Header], tags: frozenset[str] | None,
                   path: object = None, **kwargs: Any) -> Any:
        """Compute descriptor ``name`` for one frame.

        Parameters
        ----------
        name : str
            Descriptor name, e.g. ``'exposure_time'``.
        phu, ext_headers : Header, list of Header
            Primary header and the pixel (SCI) extension headers, in order.
        tags : frozenset of str or None
            The frame's tags (from :meth:`tags`); None computes them.
        path : str, optional
            File name used in error messages.
        **kwargs
            Descriptor options (e.g. ``pretty=True`` for ``filter_name``).

        Raises
        ------
        DescriptorError
            Unknown descriptor, bad option, or a needed keyword is missing.
        """
        if tags is None:  # convenience for callers without a frame
            tags = self.tags(phu, ext_headers)
        view = HeaderView(phu, list(ext_headers), frozenset(tags), None if path is None else str(path), self, name)
        return self.compute(name, view, **kwargs)

    def compute(self, name: str, view: HeaderView, **kwargs: Any) -> Any:
        """Run descriptor ``name`` on an existing :class:`HeaderView`."""
        method = getattr(type(self), name, None)
        if method is None or not is_descriptor(method):
            raise DescriptorError(view.path, f"unknown descriptor {name!r} for {self.name}; "
                                             f"known: {', '.join(self.descriptor_names())}")
        if kwargs:
            try:
                inspect.signature(method).bind(self, view, **kwargs)
            except TypeError as err:
                raise DescriptorError(view.path, f"descriptor {name}: bad options {sorted(kwargs)} ({err})") from err
        return method(self, view, **kwargs)

    # -- geometry -------------------------------------------------------------
    def static_distortions(self, phu: Header, ext_headers: Sequence[Header],
                           tags: frozenset[str] | None = None) -> list[Any]:
        """Each array's static distortion (a :class:`draconis.distortion.StaticDistortion`), or None.

        None means the header WCS is all there is (a linear TAN for F2, NIRI
        and GNIRS); instruments with a distortion model override this.
        """
        return [None] * len(ext_headers)
