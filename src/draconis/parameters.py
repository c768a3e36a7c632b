"""Declared primitive parameters: one declaration feeds showpars, ``-p`` and the docs.

A :class:`Param` carries a name, type, default, allowed range or choices and a
one-line description.  Instrument modules overlay defaults with
:func:`register_overrides`; user values (``-p prim:name=value``) are coerced
and validated here before any graph is built.

Parameters shared by several primitives are declared once as a
:class:`ParamGroup` (the combine group comes from the fields of
:class:`~draconis.kernels.combine.CombineSpec`) and referenced by each.

A parameter that names files (``opens=``) is opened by the runner, not by the
primitive: the primitive receives frames or a table (see
:meth:`draconis.reduce.context.RunContext.open_files`).  A parameter kept for
DRAGONS parity of the name but not implemented is declared ``unsupported``:
setting it to anything but its default is an error naming it.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import Any

from .errors import ParameterError

_NONE_STRINGS = {"none", "null"}
_TRUE = {"true", "t", "yes", "y", "1", "on"}
_FALSE = {"false", "f", "no", "n", "0", "off"}

#: Why a DRAGONS debugging parameter is declared unsupported.
DEBUG_AID = "a DRAGONS debugging aid draconis does not implement"

#: What the runner opens for a parameter declared ``opens=...``:
#: ``frame``: one Frame (one of the primitive's inputs named by file name or stem, else a file);
#: ``frames``: a list of Frames (files); ``table``: an astropy Table (with the primitive's ``format``
#: parameter when it has one); ``stream``: the frames of the stream of that name, else of the file(s).
OPENS = ("frame", "frames", "table", "stream")


@dataclasses.dataclass(frozen=True)
class Param:
    """One parameter of a primitive.

    Parameters
    ----------
    name
        Parameter name as users type it (DRAGONS' name).
    type
        ``bool``, ``int``, ``float``, ``str`` or ``list`` (a list of strings or
        frames); ``object`` accepts anything (e.g. a frame or a file name).
    default
        Core default (instrument overlays may change it).
    doc
        One-line description, shown by showpars.
    optional
        None is an allowed value.
    choices
        Allowed values, if the parameter is a choice.
    low, high
        Range bounds (None = unbounded); ``closed`` says which ends are inclusive.
    check
        Extra validation of a converted value: a function that raises
        ValueError for a bad one (e.g. :func:`~draconis.instruments.sections.parse_section`).
    opens
        The value names files that the runner opens before calling the
        primitive (one of :data:`OPENS`); None for ordinary values.
    passthrough
        Values of an ``opens`` parameter that are not file names and reach the
        primitive as they are (e.g. ``static_bpm='default'``).
    unsupported
        Why draconis does not implement this parameter (kept for DRAGONS
        parity of the name); any value but the default is then refused.
    """

    name: str
    type: type
    default: Any
    doc: str
    optional: bool = False
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    closed: tuple[bool, bool] = (True, True)
    check: Callable[[Any], Any] | None = None
    opens: str | None = None
    passthrough: tuple[Any, ...] = ()
    unsupported: str | None = None

    def __post_init__(self) -> None:
        if self.opens is not None and self.opens not in OPENS:
            raise ValueError(f"parameter {self.name}: opens={self.opens!r} is not one of {', '.join(OPENS)}")

    def range_text(self) -> str | None:
        """DRAGONS-style range, e.g. ``[0,inf)``; None when unbounded."""
        if self.low is None and self.high is None:
            return None
        lo = "-inf" if self.low is None else _num(self.low)
        hi = "inf" if self.high is None else _num(self.high)
        left = "[" if self.closed[0] and self.low is not None else "("
        right = "]" if self.closed[1] and self.high is not None else ")"
        return f"{left}{lo},{hi}{right}"

    def check_supported(self, value: Any, default: Any, *, where: str = "") -> None:
        """ParameterError when this parameter is unsupported and ``value`` is not its (effective) ``default``."""
        if self.unsupported and value != default:
            label = f"{where}:{self.name}" if where else self.name
            raise ParameterError(f"{label}={value!r} is not supported by draconis ({self.unsupported}); "
                                 f"only the default {default!r} is")

    def coerce(self, value: Any, *, where: str = "") -> Any:
        """``value`` converted to this parameter's type and checked, or ParameterError."""
        label = f"{where}:{self.name}" if where else self.name
        none_text = isinstance(value, str) and value.strip().lower() in _NONE_STRINGS
        if value is None or (none_text and self.type is not str):
            if self.optional or self.default is None:
                return None
            raise ParameterError(f"{label}: None is not allowed (expected {self.type.__name__})")
        if isinstance(value, str) and self.type is str and value.strip().lower() in _NONE_STRINGS and self.optional:
            return None
        try:
            out = self._convert(value)
        except (TypeError, ValueError) as err:
            raise ParameterError(f"{label}: cannot use {value!r} (expected {self._expected()})") from err
        if self.choices is not None and out not in self.choices:
            raise ParameterError(f"{label}: {value!r} is not one of {', '.join(map(repr, self.choices))}")
        if isinstance(out, (int, float)) and not isinstance(out, bool):
            self._check_range(out, label)
        if self.check is not None:
            try:
                self.check(out)
            except ValueError as err:
                raise ParameterError(f"{label}: {err}") from err
        return out

    def _convert(self, value: Any) -> Any:
        if self.type is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
                return value.strip().lower() in _TRUE
            if isinstance(value, (int, float)) and value in (0, 1):
                return bool(value)
            raise ValueError(value)
        if self.type is int:
            if isinstance(value, bool):
                raise ValueError(value)
            number = float(value)
            if not number.is_integer():
                raise ValueError(value)
            return int(number)
        if self.type is float:
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        if self.type is str:
            if not isinstance(value, str):
                raise ValueError(value)
            return value
        if self.type is list:
            if isinstance(value, str):
                return [v.strip() for v in value.split(",") if v.strip()]
            if isinstance(value, Iterable):
                return list(value)
            return [value]
        return value  # object: files, frames...

    def _check_range(self, value: float, label: str) -> None:
        lo_ok = self.low is None or (value >= self.low if self.closed[0] else value > self.low)
        hi_ok = self.high is None or (value <= self.high if self.closed[1] else value < self.high)
        if not (lo_ok and hi_ok):
            raise ParameterError(f"{label}: {value!r} is outside the valid range {self.range_text()}")

    def _expected(self) -> str:
        text = {bool: "True or False", int: "an integer", float: "a number", str: "a string",
                list: "a comma-separated list"}.get(self.type, "a value")
        return text + (" or None" if self.optional else "")


def unsupported(reason: str, *params: Param) -> tuple[Param, ...]:
    """``params`` declared unsupported for ``reason`` (kept for DRAGONS parity of the names)."""
    return tuple(dataclasses.replace(p, unsupported=reason) for p in params)


def _type_of(annotation: Any) -> tuple[type, bool]:
    """(type, optional) of a dataclass field annotation such as ``int | None``."""
    args = typing.get_args(annotation)
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        kinds = [a for a in args if a is not type(None)]
        return (kinds[0] if len(kinds) == 1 else object), type(None) in args
    return annotation, False


def _num(x: float) -> str:
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def P(name: str, type_: type, default: Any, doc: str, **kw: Any) -> Param:
    """Shorthand constructor used in primitive declarations."""
    return Param(name, type_, default, doc, **kw)


def suffix_param(default: str | None) -> Param:
    """The ``suffix`` parameter with this primitive's default."""
    return Param("suffix", str, default, "text appended to output filenames", optional=True)


@dataclasses.dataclass(frozen=True)
class ParamGroup:
    """Parameters declared once and shared by several primitives.

    A primitive takes the group with its own defaults, e.g.
    ``*COMBINE(reject_method="varclip")``; an unknown name is an error, so a
    group and its users cannot drift apart.
    """

    name: str
    params: tuple[Param, ...]

    @classmethod
    def from_dataclass(cls, name: str, spec: type) -> ParamGroup:
        """The group declared by the fields of a dataclass.

        Each field gives a parameter: its annotation, default and metadata
        (``doc``, and optionally ``choices``, ``low``, ``high``).
        """
        hints = typing.get_type_hints(spec)
        params = []
        for f in dataclasses.fields(spec):
            kind, optional = _type_of(hints[f.name])
            meta = dict(f.metadata)
            params.append(Param(f.name, kind, f.default, meta.pop("doc"), optional=optional,
                                choices=tuple(meta["choices"]) if "choices" in meta else None,
                                low=meta.get("low"), high=meta.get("high")))
        return cls(name, tuple(params))

    def names(self) -> tuple[str, ...]:
        """The names of the group's parameters, in order."""
        return tuple(p.name for p in self.params)

    def __iter__(self) -> Iterator[Param]:
        return iter(self.params)

    def __call__(self, *, exclude: Iterable[str] = (), unsupported: Mapping[str, str] | None = None,
                 **defaults: Any) -> tuple[Param, ...]:
        """The group's parameters with other ``defaults``, without ``exclude``, with some declared unsupported."""
        unsupported = dict(unsupported or {})
        unknown = (set(defaults) | set(exclude) | set(unsupported)) - set(self.names())
        if unknown:
            raise ValueError(f"parameter group {self.name} has no parameter(s) {sorted(unknown)}")
        out = []
        for p in self.params:
            if p.name in exclude:
                continue
            if p.name in defaults:
                p = dataclasses.replace(p, default=defaults[p.name])
            if p.name in unsupported:
                p = dataclasses.replace(p, unsupported=unsupported[p.name])
            out.append(p)
        return tuple(out)


#: Parameters every primitive accepts (handled by the runner).
UNIVERSAL = (
    Param("skip_primitive", bool, False, "do not run this primitive"),
    Param("write_outputs", bool, False, "write this primitive's outputs to disk"),
)


class Params(Mapping):
    """Resolved, validated parameter values of one primitive call (read-only)."""

    def __init__(self, values: Mapping[str, Any]):
        self._values = MappingProxyType(dict(values))

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Params({dict(self._values)!r})"

    def replace(self, **changes: Any) -> Params:
        """A copy with some values changed or added."""
        return Params({**self._values, **changes})


# ----------------------------------------------------------------------
# Instrument default overlays
# ----------------------------------------------------------------------
#: (instrument, kind) -> primitive -> parameter -> value; kind is "DARK" (the
#: instrument class used for darks) or "IMAGE" (science and imaging flats).
_OVERRIDES: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}


def register_overrides(instrument: str, kind: str, overrides: Mapping[str, Mapping[str, Any]]) -> None:
    """Declare instrument defaults that differ from the core declaration."""
    if kind not in ("DARK", "IMAGE"):
        raise ValueError(f"kind must be DARK or IMAGE, not {kind!r}")
    table = _OVERRIDES.setdefault((instrument, kind), {})
    for prim, values in overrides.items():
        table.setdefault(prim, {}).update(values)


def overrides_for(instrument: str | None, kind: str | None) -> dict[str, dict[str, Any]]:
    """The instrument overlay of defaults for ``(instrument, kind)``: primitive -> parameter -> value."""
    return _OVERRIDES.get((instrument or "", kind or ""), {})


def parameter_kind(tags: Iterable[str]) -> str:
    """Which primitive class DRAGONS would use for these tags: ``IMAGE`` or ``DARK``."""
    tags = set(tags)
    return "IMAGE" if "IMAGE" in tags or ("FLAT" in tags and "DARK" not in tags) else "DARK"


def suggest(name: str, candidates: Iterable[str]) -> str:
    """`` (did you mean ...?)`` with the close matches of ``name``, or an empty string."""
    close = difflib.get_close_matches(name, list(candidates), n=3)
    return f" (did you mean {', '.join(close)}?)" if close else ""
