"""The orchestrator: the processes of the VPP and the ZeroMQ bus that connects them.

- :mod:`vpp.orchestrator.schema`: the versioned message schema (encode/decode).
- :mod:`vpp.orchestrator.bus`: PUB/SUB, command server/client, heartbeats, liveness.
- :mod:`vpp.orchestrator.keys`: CurveZMQ key pairs (``vpp keys``).
"""
