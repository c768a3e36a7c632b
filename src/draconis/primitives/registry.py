"""The registry of primitives, keyed by their DRAGONS names.

A primitive is a plain function ``func(frames, p, ctx) -> list[Frame]``:

- ``frames``: the frames of its input stream (a list; never modified),
- ``p``: the resolved :class:`~draconis.parameters.Params`,
- ``ctx``: the :class:`Context` the runner provides (other streams,
  calibrations, logging, calling other primitives),

declared with :func:`primitive`::

    @primitive("addVAR",
               suffix_param("_varAdded"),
               P("read_noise", bool, False, "add read-noise variance"),
               P("poisson_noise", bool, False, "add Poisson variance"))
    def add_var(frames: list[Frame], p: Params, ctx: Context) -> list[Frame]:
        ...

Primitives extend lazy graphs: they never compute pixel data (small
summaries excepted, computed for many frames at once), do no file I/O and
return new frames.
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from ..errors import DraconisError, ParameterError
from ..frame import Frame
from ..parameters import UNIVERSAL, Param, Params, overrides_for, suggest

PrimitiveFunc = Callable[[list[Frame], Params, "Context"], list[Frame]]


class Context(Protocol):
    """Everything a primitive may ask of the runner (:class:`draconis.reduce.context.RunContext`).

    Primitives use nothing else: no file I/O of their own (files named by
    parameters arrive opened), no probing of the context with ``getattr``.
    """

    log: logging.Logger
    #: reduction mode (``sq``: a missing calibration is an error; ``ql``: a warning)
    mode: str

    def stream(self, name: str) -> list[Frame]:
        """Frames of stream ``name`` (empty list if it does not exist)."""

    def set_stream(self, name: str, frames: Sequence[Frame]) -> None:
        """Replace stream ``name``."""

    def calibration(self, caltype: str, frame: Frame) -> Frame | None:
        """The processed calibration of ``caltype`` for ``frame`` (user_cal, then DB), opened lazily."""

    def call(self, name: str, frames: Sequence[Frame], **arguments: Any) -> list[Frame]:
        """Run another primitive internally: its defaults, the user's values for it, then ``arguments``."""

    def checkpoint(self, frames: Sequence[Frame], label: str = "flushPixels") -> list[Frame]:
        """``frames`` persisted to a zarr checkpoint and reopened lazily (flushPixels)."""

    def keep_computed(self, frames: Sequence[Frame], plane: str, values: Iterable[Sequence[Any]],
                      label: str) -> list[list[Any]] | None:
        """Planes kept by the runner out of the graphs; lazy arrays reading them back, or None.

        ``values[frame][array]`` is plane ``plane`` of each frame's arrays,
        computed or lazy (lazy ones are computed and written band by band,
        in one computation).  On disk under the work directory; None: the
        runner cannot, the caller keeps them in its graphs.
        """

    def write_outputs(self, frames: Sequence[Frame], outdir: str | None = None, *,
                      overwrite: bool = True) -> list[Frame]:
        """``frames`` written as FITS files (atomically) and reopened from them (writeOutputs)."""

    def path_of(self, frame: Frame) -> str | None:
        """The file this run wrote ``frame`` to, or None."""

    def store_calibration(self, path: str, caltype: str) -> None:
        """Queue a written file for the calibration database (done when the run succeeds)."""

    def workers(self) -> tuple[int, int]:
        """The workers the run plans for: ``(number of workers, memory budget of each in bytes)``.

        What a primitive sizes its tasks by (the planned cluster's, not the
        memory of the process it runs in); primitives never ask
        :mod:`draconis.cluster_plan` themselves.
        """


@dataclasses.dataclass(frozen=True)
class PrimitiveSpec:
    """A registered primitive: its function, parameters and needs."""

    name: str
    func: PrimitiveFunc
    params: tuple[Param, ...]
    doc: str
    calibrations: tuple[str, ...] = ()
    inherits: tuple[str, ...] = ()
    #: primitives this one calls internally, with the parameters it sets on each (all others come from
    #: the callee's defaults and the user's ``-p callee:param``)
    calls: tuple[tuple[str, tuple[str, ...]], ...] = ()
    #: modules its graph's tasks import on a worker the first time one runs (see :func:`worker_imports`)
    worker_imports: tuple[str, ...] = ()

    def param(self, name: str) -> Param:
        """The declaration of parameter ``name``, or a ParameterError suggesting close names."""
        for prm in self.all_params():
            if prm.name == name:
                return prm
        raise ParameterError(f"primitive {self.name} has no parameter {name!r}"
                             f"{suggest(name, [q.name for q in self.all_params()])}")

    def all_params(self) -> tuple[Param, ...]:
        """The declared parameters and the universal ones (skip_primitive, write_outputs)."""
        return self.params + UNIVERSAL

    def sets_on(self, callee: str) -> tuple[str, ...] | None:
        """The parameters this primitive sets when it calls ``callee`` (None: it does not call it)."""
        return dict(self.calls).get(callee)

    def check_call(self, callee: str, arguments: Mapping[str, Any]) -> None:
        """Fail (a bug in the primitive) on an internal call its declaration does not allow."""
        sets = self.sets_on(callee)
        if sets is None:
            raise DraconisError(f"primitive {self.name} calls {callee}, which its declaration does not list "
                                "(a bug: declare it in calls=)")
        undeclared = sorted(set(arguments) - set(sets))
        if undeclared:
            raise DraconisError(f"primitive {self.name} sets {', '.join(undeclared)} on {callee}, which its "
                                "declaration does not list (a bug: declare them in calls=)")

    def has_param(self, name: str) -> bool:
        """Whether the primitive declares ``name`` (universal parameters included)."""
        return any(p.name == name for p in self.all_params())

    def defaults(self, instrument: str | None = None, kind: str | None = None) -> dict[str, Any]:
        """Declared defaults overlaid with the instrument's (the showpars view)."""
        values = {p.name: p.default for p in self.all_params()}
        for source in (*self.inherits, self.name):
            for key, value in overrides_for(instrument, kind).get(source, {}).items():
                if key in values:
                    values[key] = value
        return values

    def resolve(self, instrument: str | None, kind: str | None, user: Mapping[str, Any] | None = None,
                recipe: Mapping[str, Any] | None = None) -> Params:
        """Parameters in DRAGONS' order: default < instrument < user < recipe arguments.

        Raises
        ------
        ParameterError
            Unknown name, bad value, or a value other than the default for an
            unsupported parameter.
        """
        defaults = self.defaults(instrument, kind)
        values = dict(defaults)
        for source in (user, recipe):
            for key, value in dict(source or {}).items():
                prm = self.param(key)
                values[key] = prm.coerce(value, where=self.name)
                prm.check_supported(values[key], defaults[key], where=self.name)
        return Params(values)


PRIMITIVES: dict[str, PrimitiveSpec] = {}


def primitive(name: str, *params: Param, calibrations: Iterable[str] = (), inherits: Iterable[str] = (),
              calls: Mapping[str, Iterable[str]] | None = None, worker_imports: Iterable[str] = (),
              ) -> Callable[[PrimitiveFunc], PrimitiveFunc]:
    """Register a primitive under its DRAGONS name (a duplicate name is an error).

    Parameters
    ----------
    name
        The primitive name users type (``addDQ``, ``stackFrames``...).
    *params
        Its parameter declarations.
    calibrations
        Calibration types it asks for (``processed_dark``...).
    inherits
        Primitives whose instrument overrides also apply (``skyCorrect``
        takes those of ``stackSkyFrames`` and ``subtractSky``).
    calls
        Primitives it calls through ``ctx.call``, each with the names of the
        parameters it sets there (``{"stackDarks": ()}``: sets none).
    worker_imports
        Modules its tasks import on a worker when the first one runs: where
        its task functions live, and what they import lazily (photutils).
        A run has its workers import them ahead, while they are idle.
    """
    names = [p.name for p in params]
    if len(names) != len(set(names)):
        raise ValueError(f"primitive {name}: duplicate parameter names")

    def register(func: PrimitiveFunc) -> PrimitiveFunc:
        if name in PRIMITIVES:
            raise ValueError(f"primitive {name!r} registered twice ({PRIMITIVES[name].func.__module__} "
                             f"and {func.__module__})")
        doc = (func.__doc__ or "").strip()
        PRIMITIVES[name] = PrimitiveSpec(name, func, tuple(params), doc, tuple(calibrations), tuple(inherits),
                                         tuple((callee, tuple(sets)) for callee, sets in (calls or {}).items()),
                                         tuple(worker_imports))
        func.primitive_name = name  # type: ignore[attr-defined]
        return func

    return register


def callers_of(name: str) -> list[tuple[str, tuple[str, ...]]]:
    """The primitives that call ``name`` internally, each with the parameters it sets there."""
    load_all()
    return [(spec.name, sets) for spec in PRIMITIVES.values() for callee, sets in spec.calls if callee == name]


def worker_imports(names: Iterable[str]) -> tuple[str, ...]:
    """The modules the tasks of primitives ``names`` (and of those they call) import on a worker, sorted."""
    load_all()
    modules: set[str] = set()
    seen: set[str] = set()
    todo = [n for n in names if n in PRIMITIVES]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        spec = PRIMITIVES[name]
        modules.update(spec.worker_imports)
        todo.extend(callee for callee, _ in spec.calls if callee in PRIMITIVES)
    return tuple(sorted(modules))


def get_primitive(name: str) -> PrimitiveSpec:
    """The registered primitive ``name``, or ParameterError suggesting close names."""
    load_all()
    try:
        return PRIMITIVES[name]
    except KeyError:
        raise ParameterError(f"unknown primitive {name!r}{suggest(name, PRIMITIVES)}") from None


def load_all() -> None:
    """Import the primitive modules (explicitly listed; no scanning)."""
    from . import MODULES  # noqa: F401  (importing registers)
