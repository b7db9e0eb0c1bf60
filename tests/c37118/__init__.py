"""Tests of the C37.118 codec (vpp.c37118)."""
