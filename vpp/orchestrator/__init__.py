"""The processes of the VPP and the logic they run (bus, campus, grid service, market)."""
