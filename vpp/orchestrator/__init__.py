"""The processes of the VPP and the logic they run: bus, field, campus, grid and market."""
