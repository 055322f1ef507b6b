"""Recorders: consumers that write non-privileged visits to disk (rule R1)."""
