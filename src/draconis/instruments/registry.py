"""The ``@descriptor`` marker used by instrument classes."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["descriptor", "is_descriptor"]


def descriptor(func: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a method of an Instrument class as a descriptor."""
    func._draconis_descriptor = True  # type: ignore[attr-defined]
    return func


def is_descriptor(obj: object) -> bool:
    """True for a method marked with :func:`descriptor`."""
    return bool(getattr(obj, "_draconis_descriptor", False))
