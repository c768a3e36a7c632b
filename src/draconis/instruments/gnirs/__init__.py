"""GNIRS instrument support."""
