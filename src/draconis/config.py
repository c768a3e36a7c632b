"""draconis settings, kept in Dask's configuration system under ``draconis``.

Defaults live in ``draconis.yaml`` beside this module (commented); users
override them in ``~/.config/dask/draconis.yaml``, with environment variables
(``DASK_DRACONIS__MEMORY_LIMIT=4GiB``) or in code::

    with dask.config.set({"draconis.chunk_rows": 256}):
        ...
"""
from __future__ import annotations

import os
from typing import Any

import dask.config
import yaml

_DEFAULTS_FILE = os.path.join(os.path.dirname(__file__), "draconis.yaml")

with open(_DEFAULTS_FILE) as _f:
    _DEFAULTS = yaml.safe_load(_f)

dask.config.update_defaults(_DEFAULTS)
dask.config.refresh()


def get(key: str, default: Any = None) -> Any:
    """Setting ``draconis.<key>``."""
    return dask.config.get(f"draconis.{key}", default=default)
