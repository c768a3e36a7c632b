"""F2 instrument support."""
