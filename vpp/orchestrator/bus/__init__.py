"""The orchestrator bus: message schema, ZeroMQ sockets, CurveZMQ, liveness, broker, topology."""
