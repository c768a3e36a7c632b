"""Select files by tags and a descriptor expression (DRAGONS' ``dataselect``).

::

    from draconis import dataselect
    darks = dataselect.select_data(all_files, ["DARK"], [], dataselect.expr_parser("exposure_time==5"))
    flats = dataselect.select_data(all_files, ["FLAT"])

Each file is opened once, headers only.  A file that cannot be used (not
FITS, truncated, unknown instrument) is skipped with a warning naming it; the
others are still selected.
"""
from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .errors import DraconisError, InputError
from .select import Expression, parse

log = logging.getLogger(__name__)

#: called as ``report(filename, message)`` for each file with a problem; the
#: message is one line that names the file, e.g. ``"skipping x.fits: no such file"``
Reporter = Callable[[str, str], None]

__all__ = ["expr_parser", "select_data", "open_frames", "describe_error", "descriptor_problem"]


def expr_parser(expr: str, strict: bool = False) -> Expression:
    """Parse a user expression into the form :func:`select_data` takes.

    Parameters
    ----------
    expr
        Python-like boolean of ``descriptor OP value`` terms, e.g.
        ``'exposure_time==5'`` or ``'(observation_class=="science" and filter_name=="K-red")'``.
    strict
        Compare raw descriptor values with plain equality.  Otherwise (the
        default) ``exposure_time`` matches within 1 %, ``central_wavelength``
        within 1e-5 (relative), ``filter_name``/``detector_name``/``disperser``
        are compared in their pretty form (``'K-red'``), and ``ut_date``,
        ``ut_time``, ``local_time``, ``ut_datetime`` literals are read as
        dates and times.

    Returns
    -------
    Expression
        The parsed expression; ``str()`` of it gives the text back.

    Raises
    ------
    ExpressionError
        A syntax error (with its position) or an unknown descriptor name.
    """
    if isinstance(expr, Expression):
        return expr if expr.strict == strict else parse(expr.text, strict=strict)
    return parse(expr, strict=strict)


def describe_error(err: Exception) -> str:
    """The problem of ``err`` in one line, without the file name."""
    if isinstance(err, InputError) and err.problem:
        text = err.problem
    else:
        text = str(err) or type(err).__name__
    return text.strip().splitlines()[0] if text.strip() else type(err).__name__


def _log_report(name: str, message: str) -> None:
    log.warning("%s", message)


def open_frames(inputs: Iterable[str | os.PathLike], *, report: Reporter | None = None) -> Iterable[tuple[str, Any]]:
    """Yield ``(name, frame)`` for every input that opens, with its tags computed.

    Files that cannot be opened, or whose instrument is unknown, are passed to
    ``report(name, "skipping <name>: <problem>")`` and skipped.
    """
    from .io import open_frame

    report = report or _log_report
    for path in inputs:
        name = os.fspath(path)
        try:
            frame = open_frame(name)
            frame.tags  # noqa: B018 - computing tags finds the instrument now
        except (DraconisError, OSError, ValueError, KeyError, TypeError) as err:
            # Besides draconis' own errors: headers astropy accepts but the
            # instrument code cannot read must not stop the other files.
            report(name, f"skipping {name}: {describe_error(err)}")
            continue
        yield name, frame


def _tag_list(tags: Iterable[str] | str | None) -> frozenset[str]:
    if not tags:
        return frozenset()
    if isinstance(tags, str):
        tags = tags.split(",")
    return frozenset(t.strip().upper() for t in tags if t and t.strip())


def select_data(
    inputs: Iterable[str | os.PathLike] | str,
    tags: Sequence[str] = (),
    xtags: Sequence[str] = (),
    expression: Expression | str = "True",
    *,
    report: Reporter | None = None,
) -> list[str]:
    """The inputs having all ``tags``, none of ``xtags``, and satisfying ``expression``.

    Parameters
    ----------
    inputs
        File names (kept exactly as given in the result, in input order).
    tags, xtags
        Tags that every selected file must have / must not have.
    expression
        The result of :func:`expr_parser`, or a text (parsed non-strict).
    report
        Called as ``report(name, problem)`` for a file that cannot be opened
        or whose descriptor fails; default: a logged warning.

    Returns
    -------
    list of str
        The selected file names.

    Raises
    ------
    ExpressionError
        ``expression`` is a text that does not parse.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    expr = expression if isinstance(expression, Expression) else parse(expression)
    required, excluded = _tag_list(tags), _tag_list(xtags)
    report = report or _log_report
    selected = []
    for name, frame in open_frames(inputs, report=report):
        if not required <= frame.tags or excluded & frame.tags:
            continue
        failures: list[str] = []
        matched = expr.evaluate(frame, on_error=functools.partial(_note_failure, failures))
        if failures:
            them = "it" if len(failures) == 1 else "them"
            report(name, f"{name}: " + "; ".join(failures) + f", so comparisons using {them} are false")
        if matched:
            selected.append(name)
    return selected


def descriptor_problem(descriptor: str, err: Exception) -> str:
    """Why ``descriptor`` failed, in one line without the file name or the descriptor name."""
    problem = describe_error(err)
    prefix = f"descriptor {descriptor}:"
    return problem[len(prefix):].strip() if problem.startswith(prefix) else problem


def _note_failure(failures: list[str], descriptor: str, err: Exception) -> None:
    failures.append(_descriptor_problem(descriptor, err))


def _descriptor_problem(descriptor: str, err: Exception) -> str:
    return f"descriptor {descriptor} failed ({descriptor_problem(descriptor, err)})"
