"""NIRI support: lookup tables (lookup.py) and the NIRI instrument class (instrument.py)."""
