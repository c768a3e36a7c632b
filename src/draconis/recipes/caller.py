"""The primitive caller a recipe receives: ``p.addDQ(add_illum_mask=False)``.

:class:`PrimitiveCaller` runs each call through the run context;
:class:`RecordingCaller` only records the calls (used to validate a recipe
before any graph is built, and by ``reduce --list``).
"""
from __future__ import annotations

import dataclasses
from typing import Any


class PrimitiveCaller:
    """Runs primitives by name on a :class:`~draconis.reduce.RunContext`."""

    def __init__(self, ctx):
        self._ctx = ctx

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)

        def call(**arguments: Any):
            return self._ctx.run(name, **arguments)

        call.__name__ = name
        return call

    def stream(self, name: str) -> list:
        """Frames of stream ``name`` (recipes may inspect, never modify)."""
        return self._ctx.stream(name)


@dataclasses.dataclass
class Call:
    """One recorded primitive call."""

    name: str
    arguments: dict[str, Any]

    def __str__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.arguments.items())
        return f"{self.name}({args})"


class RecordingCaller:
    """Records primitive calls instead of running them."""

    def __init__(self):
        self.calls: list[Call] = []

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)

        def record(**arguments: Any) -> list:
            self.calls.append(Call(name, dict(arguments)))
            return []

        return record

    def stream(self, name: str) -> list:
        """No frames: a recorded recipe sees empty streams."""
        return []


def record(recipe) -> list[Call]:
    """The primitive calls ``recipe`` makes (recipes that inspect streams see them empty)."""
    caller = RecordingCaller()
    try:
        recipe(caller)
    except Exception:  # noqa: BLE001 - data-dependent checks need real frames; keep what was recorded
        pass
    return caller.calls
