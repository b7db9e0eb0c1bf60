"""The orchestrator: the processes of the VPP and the ZeroMQ bus that connects them.

- :mod:`vpp.orchestrator.bus`: message schema, PUB/SUB, commands, CurveZMQ, liveness,
  the events broker and the site topology.
- :mod:`vpp.orchestrator.field`: the field controller (one per site or RTU).
- :mod:`vpp.orchestrator.campus`: fleet state, dispatch strategies, the campus aggregator.
- :mod:`vpp.orchestrator.grid`: frequency events, response allocation, compliance.
- :mod:`vpp.orchestrator.market`: IEX products, bids, the schedule LP, the gateway.
- :mod:`vpp.orchestrator.scada`: IEC 60870-5-104 and DNP3 outstations for the grid
  operator.
- :mod:`vpp.orchestrator.launcher` (with ``processes``, ``recorder``, ``site_status``,
  ``history``): ``vpp run``.
"""
