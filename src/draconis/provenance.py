"""What an output records about how it was made.

One UTC time-stamp format for every PHU keyword a primitive leaves
(DRAGONS style: ``PREPARE = '2024-05-01T12:00:00'``).
"""
from __future__ import annotations

import datetime as dt

__all__ = ["utc_timestamp"]


def utc_timestamp() -> str:
    """The current UTC time as ``YYYY-MM-DDThh:mm:ss`` (the form of DRAGONS' time-stamp keywords)."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
