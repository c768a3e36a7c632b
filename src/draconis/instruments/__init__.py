"""Instrument layer: tags, descriptors and lookup tables for F2, NIRI, GNIRS and GSAOI."""
