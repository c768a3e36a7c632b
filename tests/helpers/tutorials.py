"""Run a tutorial's fenced code blocks in order, as a reader would (tests/test_tutorials.py).

``bash`` blocks run in ``bash -euo pipefail`` in the tutorial's working directory; ``python`` blocks run
in one namespace per tutorial (later blocks see earlier names), in the same directory. Other fences
(``text``, ``ini``...) are shown output or files, not run. A block whose info string has ``skip-test``
is not run (none should need it).

The docs show the real commands; the runner makes them small: every ``draconis simulate`` gets
``--size $DRACONIS_TUTORIAL_SIZE`` (and ``--nframes $DRACONIS_TUTORIAL_NFRAMES`` when set) appended
by a shell function, and ``DASK_SCHEDULER_ADDRESS=synchronous`` keeps each reduction in its process.
"""
from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from pathlib import Path

FENCE = re.compile(r"^```([\w+-]*)([^\n]*)\n(.*?)^```\s*$", re.M | re.S)

#: defines ``draconis`` for bash blocks: simulate is shrunk, everything else runs as written
SHELL_PRELUDE = """
draconis() {
  if [ "${1:-}" = simulate ]; then
    command draconis "$@" --size "${DRACONIS_TUTORIAL_SIZE}" ${DRACONIS_TUTORIAL_NFRAMES:+--nframes "$DRACONIS_TUTORIAL_NFRAMES"}
  else
    command draconis "$@"
  fi
}
"""


def blocks(markdown: str) -> list[tuple[str, str]]:
    """(language, code) of every fenced block to run, in document order."""
    out = []
    for match in FENCE.finditer(markdown):
        lang, info, code = match.group(1).lower(), match.group(2), match.group(3)
        if lang in ("bash", "sh", "python") and "skip-test" not in info:
            out.append(("python" if lang == "python" else "bash", code))
    return out


def run_tutorial(path: Path, root: Path, *, size: int, nframes: int | None = None) -> list[str]:
    """Run every block of ``path`` with ``root/playground`` as working directory; return what each printed."""
    playground = root / "playground"
    playground.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, HOME=str(root / "home"), DASK_SCHEDULER_ADDRESS="synchronous",
               DRACONIS_TUTORIAL_SIZE=str(size), PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    env.pop("DRACONISRC", None)
    if nframes:
        env["DRACONIS_TUTORIAL_NFRAMES"] = str(nframes)
    (root / "home").mkdir(exist_ok=True)
    namespace: dict = {"__name__": "__tutorial__"}
    printed = []
    for k, (lang, code) in enumerate(blocks(path.read_text()), start=1):
        where = f"{path.name} block {k} ({lang})"
        if lang == "bash":
            done = subprocess.run(["bash", "-euo", "pipefail", "-c", SHELL_PRELUDE + code], cwd=playground, env=env,
                                  capture_output=True, text=True, timeout=600)
            if done.returncode:
                raise AssertionError(f"{where} failed ({done.returncode}):\n{code}\n--- stdout\n{done.stdout[-3000:]}"
                                     f"\n--- stderr\n{done.stderr[-3000:]}")
            printed.append(done.stdout)
        else:
            with _environment(env), contextlib.chdir(playground):
                try:
                    exec(compile(code, where, "exec"), namespace)  # noqa: S102 - the tutorial's own code
                except Exception as err:
                    raise AssertionError(f"{where} failed: {type(err).__name__}: {err}\n{code}") from err
            printed.append("")
    return printed


@contextlib.contextmanager
def _environment(env: dict):
    old = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(old)
        import draconis.caldb
        from draconis import logutils

        draconis.caldb._current = None
        logutils.config("standard")
