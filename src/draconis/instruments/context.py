"""The headers of one frame as seen by descriptors, with keyword helpers.

:class:`HeaderView` bundles the primary header, the pixel-extension headers,
the tags and the file name, and turns a missing keyword into a
:class:`~draconis.errors.DescriptorError` naming the file, the descriptor and
the keyword.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from astropy.io.fits import Header

from ..errors import DescriptorError
from .keywords import as_float

if TYPE_CHECKING:  # pragma: no cover
    from .base import Instrument

__all__ = ["HeaderView", "REQUIRED"]


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


#: Sentinel default: the keyword must be present.
REQUIRED: Any = _Required()

# Values Gemini writes when a keyword could not be filled.
_UNDEFINED_STRINGS = {"", "No Value", "none", "None", "UNKNOWN_VALUE"}


@dataclass(frozen=True)
class HeaderView:
    """Headers of one frame plus what descriptors need to compute values."""

    phu: Header
    exts: Sequence[Header]
    tags: frozenset[str]
    path: str | None
    instrument: Instrument
    name: str = "?"

    # -- errors -------------------------------------------------------------
    def error(self, problem: str) -> DescriptorError:
        """A DescriptorError for the current descriptor."""
        return DescriptorError(self.path, f"descriptor {self.name}: {problem}")

    def missing(self, keyword: str, where: str = "") -> DescriptorError:
        """The error raised when ``keyword`` is absent."""
        suffix = f" {where}" if where else ""
        return self.error(f"keyword {keyword} missing{suffix}")

    # -- keyword access -------------------------------------------------------
    def phu_value(self, keyword: str, default: Any = REQUIRED) -> Any:
        """PHU keyword value (strings stripped); ``default`` if absent."""
        if keyword in self.phu:
            value = self.phu[keyword]
            return value.strip() if isinstance(value, str) else value
        if default is REQUIRED:
            raise self.missing(keyword)
        return default

    def phu_float(self, keyword: str, default: Any = REQUIRED) -> Any:
        """PHU keyword as float; DescriptorError if absent (no default) or not numeric."""
        value = self.phu_value(keyword, default)
        if value is default and default is not REQUIRED:
            return default
        try:
            return as_float(value)
        except (TypeError, ValueError):
            raise self.error(f"keyword {keyword} is not a number ({value!r})") from None

    def ext_value(self, index: int, keyword: str, default: Any = REQUIRED) -> Any:
        """Keyword of extension ``index`` (0-based among pixel extensions)."""
        header = self.exts[index]
        if keyword in header:
            value = header[keyword]
            return value.strip() if isinstance(value, str) else value
        if default is REQUIRED:
            raise self.missing(keyword, f"in extension {index + 1}")
        return default

    def ext_values(self, keyword: str, default: Any = REQUIRED) -> list[Any]:
        """One value per pixel extension."""
        return [self.ext_value(i, keyword, default) for i in range(len(self.exts))]

    def value(self, keyword: str, default: Any = REQUIRED) -> Any:
        """Keyword from the PHU, else from the first extension."""
        if keyword in self.phu:
            return self.phu_value(keyword)
        if self.exts and keyword in self.exts[0]:
            return self.ext_value(0, keyword)
        if default is REQUIRED:
            raise self.missing(keyword)
        return default

    def defined(self, keyword: str) -> bool:
        """True when the PHU keyword exists and holds a real value."""
        value = self.phu.get(keyword)
        if value is None:
            return False
        return not (isinstance(value, str) and value.strip() in _UNDEFINED_STRINGS)

    # -- state --------------------------------------------------------------
    @property
    def prepared(self) -> bool:
        """True for data that went through prepare."""
        return "PREPARED" in self.tags

    @property
    def n_ext(self) -> int:
        """Number of pixel extensions."""
        return len(self.exts)

    def d(self, name: str, **kwargs: Any) -> Any:
        """Value of another descriptor for the same frame."""
        return self.instrument.compute(name, replace(self, name=name), **kwargs)
