"""``python -m draconis.simulate DATASET OUTDIR [--size N] [--nframes N] [--seed S]``."""
from __future__ import annotations

import sys

from ..cli import main

if __name__ == "__main__":
    sys.exit(main(["simulate", *sys.argv[1:]]))
