"""The draconis exception hierarchy.

Every error a user can cause derives from :class:`DraconisError`; the command
line turns those into one line on stderr and a non-zero exit, without a
traceback.  Messages say what was received and what was expected, and name
the file concerned.
"""
from __future__ import annotations


class DraconisError(Exception):
    """Base class of every error draconis raises on purpose."""


class InputError(DraconisError):
    """A file cannot be used: not FITS, truncated, missing keywords..."""

    def __init__(self, path: object, problem: str):
        self.path = str(path) if path is not None else None
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class NotFITSError(InputError):
    """The file is not a FITS file (or is truncated)."""


class UnknownInstrumentError(InputError):
    """The file's INSTRUME keyword names an instrument draconis does not know."""


class DescriptorError(InputError):
    """A descriptor cannot be computed (usually a missing header keyword)."""


class ExpressionError(DraconisError):
    """A dataselect expression cannot be parsed (``position``: 0-based index of the problem, if known)."""

    def __init__(self, message: str, position: int | None = None):
        super().__init__(message)
        self.position = position


class ParameterError(DraconisError):
    """Unknown primitive, unknown parameter or a bad parameter value."""


class RecipeError(DraconisError):
    """No recipe applies, or a named recipe does not exist."""


class CalibrationNotFoundError(DraconisError):
    """No calibration of the requested type matches a frame."""


class CalDBError(DraconisError):
    """The calibration database cannot be used (location, URL, contents)."""


class ConfigError(DraconisError):
    """The configuration file is malformed."""


class ClusterError(DraconisError):
    """The Dask cluster cannot be used, was lost, or cannot complete the work (workers dying, memory exhausted)."""


class NoWorkFound(DraconisError):
    """Nothing to do: distinct from a failure (e.g. every input filtered out)."""
