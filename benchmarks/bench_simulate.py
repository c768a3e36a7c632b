"""Wall time of the simulator on full-size data.

Run: ``python benchmarks/bench_simulate.py [--dataset f2-deep] [--nframes 156] [--size N] [--out DIR]``.
Prints the number of files, total seconds, seconds per file and MB/s of
FITS written.  The default reproduces the brief's target: 156 full-size
F2 science frames plus the dataset's darks and flats (2 worker processes).
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from draconis.simulate import make_dataset


def main() -> None:
    """The command line: see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="f2-deep")
    parser.add_argument("--nframes", type=int, default=156)
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument("--out", default=None, help="output directory (default: a temporary one, removed)")
    args = parser.parse_args()
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench_simulate_"))
    try:
        start = time.perf_counter()
        make_dataset(args.dataset, out, size=args.size, nframes=args.nframes, seed=0)
        elapsed = time.perf_counter() - start
        files = sorted(out.glob("*.fits"))
        mbytes = sum(f.stat().st_size for f in files) / 1e6
        print(f"{args.dataset} size={args.size or 'full'}: {len(files)} files, {elapsed:.1f} s, "
              f"{elapsed / len(files):.2f} s/file, {mbytes / elapsed:.0f} MB/s")
    finally:
        if not args.out:
            shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
