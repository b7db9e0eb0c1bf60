"""Simulators that speak the real protocols (more arrive with the drivers)."""
