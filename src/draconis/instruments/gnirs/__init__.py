"""GNIRS support: lookup tables (lookup.py) and the GNIRS instrument class (instrument.py)."""
