"""GSAOI instrument support."""
