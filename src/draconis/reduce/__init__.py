"""The runner: :class:`Reduce`, its run context and helpers.

``from draconis.reduce import Reduce, RunContext, normalize_ucals``
"""
from __future__ import annotations

from .context import RunContext
from .ucals import normalize_ucals

__all__ = ["Reduce", "RunContext", "normalize_ucals"]


def __getattr__(name: str):
    # the runner pulls in recipes and the cluster code: load it on first use
    if name == "Reduce":
        from .runner import Reduce

        return Reduce
    raise AttributeError(name)
