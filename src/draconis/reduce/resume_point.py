"""Which unfinished run a resumed run takes over, from which snapshot, and what changed since."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import DraconisError
from .rundir import RunDir, filesystem, read_text, runs_in
from .snapshot import STREAMS, _load, join, stores_of

if TYPE_CHECKING:
    from .resume import Checksums, StepPlan

log = logging.getLogger("draconis")

MANIFEST = "manifest.json"


class ResumeError(DraconisError):
    """A run cannot be resumed: something changed since it stopped, or another run is using it."""


@dataclasses.dataclass
class ResumePoint:
    """Where a resumed run continues: the run it takes over and its snapshot (None: from the raw files)."""

    run: RunDir
    snapshot: str | None
    index: int
    manifest: dict[str, Any] | None


def find_resume_point(workdir: str, plan: StepPlan, *, mode: str, inputs: Sequence[str], recipe: str,
                      checksums: Checksums, current_calibration: Callable[[str, str], str | None]
                      ) -> ResumePoint | None:
    """The unfinished run of these inputs and recipe in ``workdir`` and the snapshot to continue from.

    Raises
    ------
    ResumeError
        A run of these inputs is still running, or (``mode="strict"``)
        something changed since the run stopped.
    """
    runs = [r for r in runs_in(workdir)
            if r.same_reduction(inputs, recipe) and r.record.get("state") not in ("adopted", "done", "storing")]
    for run in runs:
        alive = run.alive()
        if alive:
            raise ResumeError(f"a run of these inputs is in progress in {workdir}: {run.describe()}; "
                              f"wait for it to finish, or stop it first")
        if alive is None:
            raise ResumeError(f"{run.describe()} ran these inputs on another host: resume it there "
                              f"(whether it still runs cannot be told from here), or delete {run.location}")
    if not runs:
        return None
    run = runs[-1]
    snapshots = _complete_snapshots(run)
    if not snapshots:
        return ResumePoint(run, None, 0, None)
    checks = _Checks(plan, checksums, current_calibration)
    if mode == "strict":
        problem = checks.changed(snapshots[-1][1], strict=True)
        if problem:
            raise ResumeError(f"cannot resume {run.name}: {problem}. Run without --resume to start again, "
                              f"or with --resume=auto to recompute from the first step that changed")
    for location, manifest in reversed(snapshots):
        problem = checks.changed(manifest, strict=False) or _missing_store(location)
        if not problem:
            return ResumePoint(run, location, int(manifest["step"]), manifest)
        log.info("Not resuming from %s: %s", location, problem)
    return ResumePoint(run, None, 0, None)


def _missing_store(location: str) -> str | None:
    """A store the snapshot at ``location`` reads that is gone (deleted checkpoint), or None."""
    try:
        records = _load(join(location, STREAMS))["streams"]
    except Exception as err:  # noqa: BLE001 - damaged or incompatible snapshot
        return f"its streams cannot be read ({err})"
    for root in stores_of(records):
        fs, path = filesystem(root)
        if not fs.exists(path):
            return f"the checkpoint {root} it reads is gone"
    return None


def _complete_snapshots(run: RunDir) -> list[tuple[str, dict[str, Any]]]:
    fs, root = filesystem(run.location)
    found = []
    for location in [run.location, *run.record.get("adopted", [])]:
        fs, root = filesystem(location)
        with contextlib.suppress(FileNotFoundError, OSError):
            for entry in fs.ls(root, detail=False):
                name = entry.rstrip("/").rsplit("/", 1)[-1]
                if name.startswith("step-"):
                    text = read_text(join(location, name, MANIFEST))
                    if text:
                        with contextlib.suppress(ValueError):
                            found.append((join(location, name), json.loads(text)))
    return sorted(found, key=lambda lm: int(lm[1].get("step", 0)))


class _Checks:
    """What changed between a snapshot's manifest and the run asked for now."""

    def __init__(self, plan: StepPlan, checksums: Checksums, current_calibration: Callable[[str, str], str | None]):
        self.plan, self.checksums, self.current_calibration = plan, checksums, current_calibration

    def changed(self, manifest: dict[str, Any], *, strict: bool) -> str | None:
        then, now = manifest.get("identity", {}), self.plan.identity
        for check in (self._versions, self._inputs, self._identity) if strict else (self._versions, self._inputs):
            problem = check(then, now)
            if problem:
                return problem
        index = int(manifest.get("step", 0))
        problem = self._steps(manifest.get("steps", []), index)
        if problem:
            return problem
        return self._calibrations(manifest.get("calibrations", [])) or self._outputs(manifest.get("outputs", []))

    def _versions(self, then, now) -> str | None:
        for name, version in now.get("versions", {}).items():
            if then.get("versions", {}).get(name) != version:
                return f"{name} is version {version} now, it was {then.get('versions', {}).get(name)}"
        return None

    def _inputs(self, then, now) -> str | None:
        recorded = then.get("inputs", {})
        for path in now.get("inputs", []):
            if self.checksums.get(path) != recorded.get(path):
                return f"the input {path} changed (SHA-256 differs)"
        return None

    def _identity(self, then, now) -> str | None:
        labels = {"recipe": "the recipe", "uparms": "the parameters given (-p)", "ucals": "the user calibrations",
                  "mode": "the mode"}
        for key, label in labels.items():
            if then.get(key) != now.get(key):
                return f"{label} changed ({_short(then.get(key))} then, {_short(now.get(key))} now)"
        return None

    def _steps(self, steps: list[dict[str, Any]], index: int) -> str | None:
        for k, (was, now) in enumerate(zip(steps[:index], self.plan.steps[:index]), start=1):
            if was != now:
                diff = [p for p in set(was.get("params", {})) | set(now.get("params", {}))
                        if was.get("params", {}).get(p) != now.get("params", {}).get(p)]
                what = (f"parameter {now['name']}:{diff[0]} is {now['params'].get(diff[0])} now, "
                        f"it was {was['params'].get(diff[0])}") if diff else f"step {k} is {now['name']} now"
                return what
        return None

    def _calibrations(self, cals: list[dict[str, Any]]) -> str | None:
        for cal in cals:
            path = cal["path"]
            if not os.path.exists(path) or self.checksums.get(path) != cal.get("sha256"):
                return f"the {cal['caltype']} {path} changed"
            current = self.current_calibration(cal["caltype"], cal.get("frame", ""))
            if current is not None and os.path.realpath(current) != path:
                return f"the {cal['caltype']} would now be {current}, it was {path}"
        return None

    def _outputs(self, outputs: list[dict[str, Any]]) -> str | None:
        for out in outputs:
            fs, where = filesystem(out["copy"])
            if not fs.exists(where):
                return f"the copy of the output {out['path']} kept with the checkpoint is missing"
        return None


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    return text if len(text) <= 80 else text[:77] + "..."

