"""Prometheus metrics of the site, served by the API at ``/metrics``.

Everything comes from what the API process reads on the bus (no process is asked
anything for a scrape): bus messages by type, frames and decisions per unit (each
decision message stands for ``decisions_every`` frames), commands by outcome (from
the audit events the command servers publish), process restarts, frequency events
and compliance verdicts; gauges of the frequency, ROCOF, fleet power, target and SOC,
each unit's power, SOC and safety state; histograms of the decision age at the API
(PMU time of the frame to its decision's arrival here) and of the API's own request
times. Each :class:`SiteMetrics` has a registry of its own (tests run several).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from vpp.config.models import SiteConfig
from vpp.orchestrator.bus import schema as s
from vpp.orchestrator.grid.verdict import fleet_verdict
from vpp.orchestrator.site_status import SAFETY_ORDER

__all__ = ["SiteMetrics"]

# The *_created series double the scrape for no use here.
disable_created_metrics()  # type: ignore[no-untyped-call]

_LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


class _Errors(Collector):
    """Errors by kind of the API's bus reader and of its HTTP side, read at scrape time."""

    def __init__(self, sources: dict[str, Callable[[], dict[str, int]]]) -> None:
        self.sources = sources

    def collect(self) -> Iterator[Metric]:
        fam = CounterMetricFamily("vpp_api_errors", "Errors seen by the API process, by kind",
                                  labels=("where", "kind"))  # fmt: skip
        for where, read in self.sources.items():
            for kind, n in sorted(read().items()):
                fam.add_metric((where, kind), n)
        yield fam


class SiteMetrics:
    """The metrics (see the module docstring); :meth:`observe` takes each bus message."""

    def __init__(self, site: SiteConfig, clock: Callable[[], float] = time.time) -> None:
        self.registry = CollectorRegistry()
        self.clock = clock
        r = self.registry
        self.every = {u.id: f.decisions_every for f in site.field for u in f.units}
        self.messages = Counter("vpp_bus_messages", "Bus messages read, by type", ("type",),
                                registry=r)  # fmt: skip
        self.frames = Counter("vpp_frames", "PMU frames processed per unit (from its decisions)",
                              ("unit",), registry=r)  # fmt: skip
        self.decisions = Counter("vpp_decisions", "Decisions published per unit", ("unit",),
                                 registry=r)  # fmt: skip
        self.commands = Counter("vpp_commands", "Commands handled, by server, command and "
                                "outcome (ok or the refusal)", ("server", "command", "outcome"),
                                registry=r)  # fmt: skip
        self.restarts = Counter("vpp_process_restarts", "Process exits seen by the launcher",
                                ("process",), registry=r)  # fmt: skip
        self.freq_events = Counter("vpp_frequency_events", "Frequency events started",
                                   ("direction",), registry=r)  # fmt: skip
        self.verdicts = Counter("vpp_compliance_verdicts", "Fleet compliance verdicts",
                                ("verdict",), registry=r)  # fmt: skip
        self.hz = Gauge("vpp_grid_frequency_hz", "Grid frequency", registry=r)
        self.rocof = Gauge("vpp_grid_rocof_hz_per_s", "Rate of change of frequency", registry=r)
        self.fleet_kw = Gauge("vpp_fleet_power_kw", "Fleet power (discharge positive)",
                              registry=r)  # fmt: skip
        self.fleet_soc = Gauge("vpp_fleet_soc_pct", "Fleet state of charge (energy weighted)",
                               registry=r)  # fmt: skip
        self.units_online = Gauge("vpp_units_online", "Units with recent telemetry", registry=r)
        self.target_kw = Gauge("vpp_fleet_target_kw", "Campus dispatch target", registry=r)
        self.unit_kw = Gauge("vpp_unit_power_kw", "Unit power", ("unit",), registry=r)
        self.unit_soc = Gauge("vpp_unit_soc_pct", "Unit state of charge", ("unit",), registry=r)
        self.unit_safety = Gauge("vpp_unit_safety_level", "Unit safety state: 0 none, 1 log, "
                                 "2 reduce, 3 stop, 4 emergency_shutdown", ("unit",),
                                 registry=r)  # fmt: skip
        self.decision_age = Histogram("vpp_decision_age_seconds", "PMU time of a frame to its "
                                      "decision's arrival at the API", buckets=_LATENCY_BUCKETS,
                                      registry=r)  # fmt: skip
        self.request_s = Histogram("vpp_api_request_seconds", "API request handling time",
                                   ("route",), buckets=_LATENCY_BUCKETS, registry=r)  # fmt: skip
        self._errors = _Errors({})
        r.register(self._errors)

    def fleet_from(self, read: Callable[[], dict[str, Any]]) -> None:
        """Read the fleet's measured power, SOC and units online from ``read()`` (the live
        state's ``fleet()``) at each scrape."""
        def reader(key: str) -> Callable[[], float]:
            return lambda: _float(read().get(key))

        self.fleet_kw.set_function(reader("p_kw"))
        self.fleet_soc.set_function(reader("soc_pct"))
        self.units_online.set_function(reader("units_online"))

    def error_source(self, where: str, read: Callable[[], dict[str, int]]) -> None:
        """Export ``read()`` (kind -> count) as ``vpp_api_errors{where=...}``."""
        self._errors.sources[where] = read

    def observe(self, msg: s.Message) -> None:
        """Take in one bus message."""
        self.messages.labels(msg.type).inc()
        b = msg.body
        if isinstance(b, s.Frequency):
            self.hz.set(b.hz)
            self.rocof.set(b.rocof)
        elif isinstance(b, s.Telemetry):
            self.unit_kw.labels(b.unit).set(b.p_kw)
            self.unit_soc.labels(b.unit).set(b.soc_pct)
            level = SAFETY_ORDER.index(b.safety) if b.safety in SAFETY_ORDER else 0
            self.unit_safety.labels(b.unit).set(level)
        elif isinstance(b, s.Decision):
            self.decisions.labels(b.unit).inc()
            self.frames.labels(b.unit).inc(self.every.get(b.unit, 1))
            age = self.clock() - b.t
            if 0 <= age < 3600:  # a replayed or skewed clock is not a latency
                self.decision_age.observe(age)
        elif isinstance(b, s.Event):
            self._event(b, msg.sender)

    def _event(self, b: s.Event, sender: str) -> None:
        d = b.data
        if b.kind == "command":
            outcome = "ok" if d.get("ok") else str(d.get("refused") or "failed")
            self.commands.labels(sender, str(d.get("command", "")), outcome).inc()
        elif b.kind == "process" and "exit" in d:
            self.restarts.labels(str(d.get("process", ""))).inc()
        elif b.kind == "frequency_event" and d.get("phase") == "start":
            self.freq_events.labels(str(d.get("direction", ""))).inc()
        elif b.kind == "compliance":
            self.verdicts.labels(fleet_verdict(d).replace(" ", "_")).inc()
        elif b.kind == "dispatch":
            v = d.get("target_kw")
            if isinstance(v, int | float) and not isinstance(v, bool):
                self.target_kw.set(v)


def _float(v: object) -> float:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else float("nan")
