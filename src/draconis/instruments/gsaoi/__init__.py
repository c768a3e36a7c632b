"""GSAOI support: lookup tables (lookup.py) and the GSAOI instrument class (instrument.py)."""
