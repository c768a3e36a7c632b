"""User parameter overrides (``-p prim:param=value``, ``Reduce.uparms``).

``prim:param`` sets one primitive's parameter; a bare ``param`` sets it on
every primitive that declares it.  Names are checked against the registry
before any graph is built; values are coerced by each primitive's
declaration when it is resolved (and once up front, by :func:`validate`).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import ParameterError
from ..parameters import UNIVERSAL, suggest
from ..primitives.registry import PRIMITIVES, PrimitiveSpec, get_primitive, load_all


@dataclasses.dataclass
class UserParams:
    """Parsed user overrides: ``generic[param]`` and ``specific[prim][param]``."""

    generic: dict[str, Any] = dataclasses.field(default_factory=dict)
    specific: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    def for_primitive(self, spec: PrimitiveSpec) -> dict[str, Any]:
        """The user values that apply to ``spec`` (specific ones win over generic)."""
        values = {k: v for k, v in self.generic.items() if spec.has_param(k)}
        values.update(self.specific.get(spec.name, {}))
        return values

    def __bool__(self) -> bool:
        return bool(self.generic or self.specific)


def parse_uparms(uparms: Iterable[Any] | Mapping[str, Any] | None) -> UserParams:
    """Parse ``uparms`` into :class:`UserParams`.

    Parameters
    ----------
    uparms
        A dict ``{key: value}``, a list of ``(key, value)`` tuples or of
        ``"key=value"`` strings; ``key`` is ``prim:param`` or ``param``.
    """
    out = UserParams()
    if not uparms:
        return out
    items = uparms.items() if isinstance(uparms, Mapping) else uparms
    for item in items:
        key, value = _split(item)
        if ":" in key:
            prim, _, name = key.partition(":")
            prim, name = prim.strip(), name.strip()
            if not prim or not name:
                raise ParameterError(f"bad parameter {key!r}: expected primitive:parameter=value")
            out.specific.setdefault(prim, {})[name] = value
        else:
            out.generic[key.strip()] = value
    return out


def _split(item: Any) -> tuple[str, Any]:
    if isinstance(item, str):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ParameterError(f"bad parameter {item!r}: expected [primitive:]parameter=value")
        return key.strip(), value.strip()
    try:
        key, value = item
    except (TypeError, ValueError):
        raise ParameterError(f"bad parameter {item!r}: expected a (key, value) pair") from None
    if not isinstance(key, str) or not key.strip():
        raise ParameterError(f"bad parameter name {key!r}: expected [primitive:]parameter")
    return key.strip(), value


def validate(user: UserParams, instrument: str | None = None, kind: str | None = None) -> None:
    """Check every user override names a known primitive / parameter and has a valid value."""
    load_all()
    for prim, values in user.specific.items():
        get_primitive(prim).resolve(instrument, kind, values)
    for name, value in user.generic.items():
        specs = [s for s in PRIMITIVES.values() if s.has_param(name)]
        if not specs:
            known = {p.name for s in PRIMITIVES.values() for p in s.all_params()} | {p.name for p in UNIVERSAL}
            raise ParameterError(f"no primitive has a parameter {name!r}{suggest(name, known)}")
        for spec in specs:
            spec.resolve(instrument, kind, {name: value})
