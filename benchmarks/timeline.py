"""Timeline of the workers during a benchmark: what each worker holds and runs, step by step.

Runs ``bench_sky.py`` or ``bench_f2_reduce.py`` (their own arguments) with a
sampler in the client: every ``--every`` seconds, one ``client.run`` reads
each worker's RSS, the memory distributed counts as managed, the bytes it has
spilled, the task prefixes it holds most results of, what it executes and
its ready queue, plus the recipe step running (bench_f2_reduce). No task is
added to the graphs. The samples go to a JSON file; a summary per recipe
step (or per 10 s for bench_sky) is printed at the end.

This is how the sky pass's spill was found (band tasks run ahead of their
writes, each worker holding 4-6 band results) and where the ultradeep
recipe's third pass spills (the lazy mask pipeline of every frame computed
before the first band task).

Usage::

    python benchmarks/timeline.py sky --frames 156 --passes 1 --window-only
    python benchmarks/timeline.py f2 --frames 156 --recipe ultradeep --out /tmp/ultradeep.json
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def sample(dask_worker=None) -> dict:
    """Runs on a worker: its memory, spill and tasks now."""
    import psutil
    from dask.utils import key_split

    from draconis.runrecord import _worker_spilled_bytes

    data = dask_worker.data
    fast = getattr(data, "fast", data)
    held: dict[str, int] = {}
    for key in list(fast.keys()):
        prefix = str(key_split(key))
        held[prefix] = held.get(prefix, 0) + 1
    return {"t": time.time(), "rss": psutil.Process().memory_info().rss >> 20,
            "managed": int(getattr(fast, "total_weight", 0)) >> 20,
            "spilled": _worker_spilled_bytes(dask_worker) >> 20,
            "held": sorted(held.items(), key=lambda kv: -kv[1])[:4],
            "executing": sorted(str(key_split(ts.key)) for ts in dask_worker.state.executing),
            "ready": len(dask_worker.state.ready)}


class Sampler:
    """Samples every worker of ``client`` every ``every`` seconds in a thread; ``step()`` names the phase."""

    def __init__(self, client, every: float, step=lambda: None):
        self.client, self.every, self.step = client, every, step
        self.rows: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="timeline", daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            with contextlib.suppress(Exception):  # a worker lost between samples must not end the run
                self.rows.append({"step": self.step(), "workers": self.client.run(sample)})


def summary(rows: list[dict]) -> str:
    """Per phase (consecutive samples of one step, or 10 s without steps): peaks, spill, what was held at the peak."""
    if not rows:
        return "no samples"
    t0 = min(w["t"] for r in rows for w in r["workers"].values())
    phases: list[tuple[str, list[dict]]] = []
    for r in rows:
        t = min(w["t"] for w in r["workers"].values()) - t0
        name = r["step"] if r["step"] is not None else f"{int(t // 10) * 10} s"
        if not phases or phases[-1][0] != name:
            phases.append((name, []))
        phases[-1][1].append(r)
    lines = []
    for name, rs in phases:
        start = min(w["t"] for w in rs[0]["workers"].values()) - t0
        lines.append(f"{start:8.1f} s  {name}")
        for worker in sorted(rs[0]["workers"]):
            xs = [r["workers"][worker] for r in rs if worker in r["workers"]]
            peak = max(xs, key=lambda x: x["rss"])
            lines.append(f"    {worker.rsplit('/', 1)[-1]}: RSS <= {peak['rss']} MiB, managed <= "
                         f"{max(x['managed'] for x in xs)} MiB, spilled +{xs[-1]['spilled'] - xs[0]['spilled']} MiB;"
                         f" at the peak held {peak['held']}, running {peak['executing']}")
    return "\n".join(lines)


def main(argv=None) -> None:
    """``timeline.py sky|f2 [--out FILE] [--every SECONDS] [benchmark arguments]``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("sky", "f2"):
        sys.exit("usage: timeline.py sky|f2 [--out FILE] [--every SECONDS] [benchmark arguments]")
    which, rest = argv[0], argv[1:]
    out, every = "timeline.json", 0.5
    for flag in ("--out", "--every"):
        if flag in rest:
            i = rest.index(flag)
            value = rest[i + 1]
            del rest[i:i + 2]
            out, every = (value, every) if flag == "--out" else (out, float(value))
    sys.path.insert(0, HERE)
    import distributed

    from draconis import runrecord

    current: dict = {}
    recording = runrecord.recording

    @contextlib.contextmanager
    def noted(record):  # the record whose current step names the phase (its context variable is not the thread's)
        current["record"] = record
        with recording(record) as r:
            yield r

    runrecord.recording = noted
    module = __import__("bench_sky" if which == "sky" else "bench_f2_reduce")
    name = "sky_passes" if which == "sky" else "science"
    inner = getattr(module, name)
    rows: list[dict] = []

    def step():
        return getattr(current.get("record"), "current_step", None)

    def sampled(*args, **kwargs):
        sampler = Sampler(distributed.default_client(), every, step)
        try:
            with sampler:
                return inner(*args, **kwargs)
        finally:
            rows.extend(sampler.rows)

    setattr(module, name, sampled)
    try:
        module.main(rest)
    finally:
        with open(out, "w") as f:
            json.dump(rows, f)
        print(f"\n== timeline ({len(rows)} samples every {every} s, in {out})\n" + summary(rows))


if __name__ == "__main__":
    main()
