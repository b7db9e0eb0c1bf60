"""The HTTP API, live dashboard and Prometheus metrics of a running site (docs/api.md).

The role process ``api`` (:mod:`vpp.orchestrator.api.service`) reads the bus, keeps the
site's live state and serves it over HTTP; its commands go over the bus as the user's
identity. Importing this package imports nothing heavy: the configuration model
(:mod:`vpp.orchestrator.api.config`) is read by every process.
"""
