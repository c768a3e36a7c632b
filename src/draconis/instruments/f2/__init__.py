"""F2 support: lookup tables (lookup.py) and the F2 instrument class (instrument.py)."""
