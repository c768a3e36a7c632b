"""NIRI instrument support."""
