"""The draconis logger: one logger, one console handler, an optional log file.

Everything draconis says goes through the logger ``draconis``.  :func:`config`
(called as the seeds call gempy's ``logutils.config``) installs exactly one
console handler (stdout, as DRAGONS) and at most one file handler, replacing
the ones an earlier call installed, and stops propagation to the root logger:
messages never appear twice, however often it is called or whatever handlers
the user adds to the root logger.
"""
from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator

LOGGER_NAME = "draconis"
_OWNED = "_draconis_owned"
_CONSOLE_LEVELS = {"standard": logging.INFO, "quiet": logging.WARNING, "debug": logging.DEBUG}


class _StdoutHandler(logging.StreamHandler):
    """A console handler that writes to the *current* ``sys.stdout``.

    Looking the stream up at each message keeps the handler working when
    ``sys.stdout`` is replaced (notebooks, pytest's capture).
    """

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns it
        pass

    def emit(self, record: logging.LogRecord) -> None:
        # a progress bar on the same terminal is cleared first and redrawn after, so the line stays whole
        from tqdm import tqdm

        if getattr(tqdm, "_instances", None):
            with tqdm.external_write_mode(file=sys.stdout):
                super().emit(record)
        else:
            super().emit(record)


def get_logger() -> logging.Logger:
    """The ``draconis`` logger."""
    return logging.getLogger(LOGGER_NAME)


def config(mode: str = "standard", file_name: str | None = None, *, file_mode: str = "a") -> logging.Logger:
    """Set up draconis logging (idempotent).

    Parameters
    ----------
    mode
        ``standard`` (INFO on screen), ``quiet`` (warnings and errors only on
        screen) or ``debug`` (everything on screen too).  The file gets
        everything, per-frame detail included, in every mode.
    file_name
        Log file; None for screen only.
    file_mode
        ``a`` appends to an existing log file, ``w`` starts it afresh.

    Returns
    -------
    logging.Logger
        The ``draconis`` logger.
    """
    if mode not in _CONSOLE_LEVELS:
        raise ValueError(f"logmode must be one of {', '.join(_CONSOLE_LEVELS)}, not {mode!r}")
    logger = get_logger()
    for handler in list(logger.handlers):
        if getattr(handler, _OWNED, False):
            logger.removeHandler(handler)
            handler.close()
    logger.setLevel(logging.DEBUG)
    logger.propagate = False  # the root logger would print everything a second time
    console = _StdoutHandler()
    console.setLevel(_CONSOLE_LEVELS[mode])
    console.setFormatter(logging.Formatter("%(message)s"))
    if mode != "debug":
        console.addFilter(Condenser(console))
    _add(logger, console)
    if file_name:
        handler = logging.FileHandler(file_name, mode=file_mode, encoding="utf-8")
        # the file keeps the per-frame detail (DEBUG) that the terminal shows only with --logmode debug
        handler.setLevel(logging.DEBUG)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-8s - %(message)s"))
        _add(logger, handler)
    logger._draconis_mode = mode  # type: ignore[attr-defined]
    return logger


class Condenser(logging.Filter):
    """Keeps the terminal to a few lines per primitive: per-frame INFO lines are cut short.

    Inside a recipe step (:func:`step_started` .. :func:`step_ended`), the
    first :attr:`KEEP` INFO messages made from one format string are shown and
    the rest only counted; the step ends with one line saying how many went
    to the log file.  Warnings and errors always show.  The log file (and the
    terminal with ``--logmode debug``) gets every line.
    """

    KEEP = 2

    def __init__(self, handler: logging.Handler):
        super().__init__()
        self.handler = handler
        self.seen: dict[str, int] | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        """Whether to show ``record``: warnings always, a repeated line only its first few times."""
        if self.seen is None or record.levelno >= logging.WARNING:
            return True
        key = str(record.msg)
        self.seen[key] = self.seen.get(key, 0) + 1
        return self.seen[key] <= self.KEEP

    def start(self) -> None:
        """Start counting repeated lines (a primitive begins)."""
        self.seen = {}

    def end(self) -> None:
        """Stop counting and say how many repeated lines were cut (a primitive ends)."""
        if self.seen is None:
            return
        hidden = sum(n - self.KEEP for n in self.seen.values() if n > self.KEEP)
        self.seen = None
        if hidden:
            note = logging.LogRecord(LOGGER_NAME, logging.INFO, __file__, 0,
                                     "  ... %d more line(s) like these in the log file", (hidden,), None)
            if note.levelno >= self.handler.level:
                self.handler.handle(note)


def _condensers() -> list[Condenser]:
    return [f for h in get_logger().handlers for f in h.filters if isinstance(f, Condenser)]


def step_started() -> None:
    """A recipe step begins: from now on repeated per-frame lines are counted, not shown."""
    for condenser in _condensers():
        condenser.start()


def step_ended() -> None:
    """The step is over: say how many lines only the log file has."""
    for condenser in _condensers():
        condenser.end()


@contextlib.contextmanager
def condensed() -> Iterator[None]:
    """A section of the run (a recipe step, the final write) whose repeated lines are counted, not shown."""
    step_started()
    try:
        yield
    finally:
        step_ended()


def _add(logger: logging.Logger, handler: logging.Handler) -> None:
    setattr(handler, _OWNED, True)
    logger.addHandler(handler)


def is_configured() -> bool:
    """Whether :func:`config` has installed handlers."""
    return any(getattr(h, _OWNED, False) for h in get_logger().handlers)


def ensure_configured() -> logging.Logger:
    """Configure with defaults unless the user already did."""
    if not is_configured():
        config()
    return get_logger()


def current_mode() -> str:
    """The mode of the last :func:`config` call (``standard`` if none)."""
    return getattr(get_logger(), "_draconis_mode", "standard")
