"""The processes of the VPP: bus wiring, field, campus, grid and market services."""
