"""What the API knows of the site, kept from the bus: the live state and recent series.

:class:`LiveState` is fed every message the API process receives (:meth:`update`) and
answers the API's reads without touching the bus, so that a read costs microseconds
whatever the plant does: the frequency and its band, each unit's telemetry and last
decision, the fleet's power against its dispatch target, the market's bids and awards,
the event timeline (frequency events with their compliance verdicts, commands, process
restarts, alarms). Series are kept for ``window_s`` seconds, decimated to ``series_hz``
points a second, so memory is bounded whatever the message rate.
"""

from __future__ import annotations

import collections
import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vpp.config.models import Location, SiteConfig
from vpp.orchestrator.bus import schema as s
from vpp.orchestrator.site_status import fleet_soc, worst_safety

__all__ = ["LiveState", "UnitState"]

#: Timeline entries kept (events, commands, process changes).
TIMELINE = 500
#: Event kinds the timeline keeps; telemetry-like events (dispatch rounds) are not news.
_TIMELINE_KINDS = frozenset({
    "frequency_event", "compliance", "command", "process", "band", "device", "market",
    "market_error", "safety", "result",
})  # fmt: skip
_ALARM_SEVERITIES = frozenset({"warning", "alarm", "error", "critical"})


@dataclass
class UnitState:
    """One unit as the API shows it."""

    unit: str
    field: str
    rated_kw: float
    capacity_kwh: float
    location: str
    p_kw: float | None = None
    q_kvar: float | None = None
    soc_pct: float | None = None
    soh_pct: float | None = None
    temp_c: float | None = None
    p_min_kw: float | None = None
    p_max_kw: float | None = None
    safety: str = "none"
    enabled: bool = True
    seen: float = 0.0
    response_kw: float | None = None
    base_kw: float | None = None
    setpoint_kw: float | None = None
    action: str = ""
    decided: float = 0.0

    def as_dict(self, online: bool) -> dict[str, Any]:
        """Plain values for JSON."""
        d = {k: v for k, v in self.__dict__.items() if k not in ("seen", "decided")}
        d["online"] = online
        d["age_s"] = None if not self.seen else round(time.time() - self.seen, 3)
        return d


@dataclass
class _Series:
    """(t, values...) points, at most one per ``1/hz`` seconds, for ``window_s``."""

    hz: float
    window_s: float
    points: collections.deque[tuple[float, ...]] = field(default_factory=collections.deque)

    def due(self, t: float) -> bool:
        """Whether a point at ``t`` would be kept (at most ``hz`` a second)."""
        return not self.points or t - self.points[-1][0] >= 1.0 / self.hz

    def add(self, t: float, *values: float) -> None:
        if not self.due(t):
            return
        self.points.append((t, *values))
        while self.points and self.points[0][0] < t - self.window_s:
            self.points.popleft()

    def since(self, t0: float) -> list[tuple[float, ...]]:
        return [p for p in self.points if p[0] >= t0]


class LiveState:
    """The site as the bus shows it (see the module docstring)."""

    def __init__(
        self, site: SiteConfig, *, window_s: float = 600.0, series_hz: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:  # fmt: skip
        self.site = site
        self.clock = clock
        self.units: dict[str, UnitState] = {
            u.id: UnitState(u.id, f.id, u.rated_power_kw, u.capacity_kwh, _path(u.location))
            for f in site.field for u in f.units
        }  # fmt: skip
        interval = max(f.telemetry_interval_s for f in site.field)
        self.stale_s = 3.0 * interval + 1.0
        self.hz: float | None = None
        self.rocof: float | None = None
        self.band = ""
        self.freq_t = 0.0
        self.dispatch: dict[str, Any] = {}
        self.frequency = _Series(series_hz, window_s)
        self.fleet_series = _Series(2.0, window_s)
        self.timeline: collections.deque[dict[str, Any]] = collections.deque(maxlen=TIMELINE)
        self.bids: collections.deque[dict[str, Any]] = collections.deque(maxlen=200)
        self.results: collections.deque[dict[str, Any]] = collections.deque(maxlen=200)
        self.compliance: collections.deque[dict[str, Any]] = collections.deque(maxlen=50)
        self.event_open: dict[str, Any] | None = None
        self.processes: dict[str, dict[str, Any]] = {}
        self.counts: collections.Counter[str] = collections.Counter()
        self._seq = itertools.count(1)
        self.started = clock()

    # ---- input ----

    def update(self, msg: s.Message) -> None:
        """Take in one bus message."""
        self.counts[msg.type] += 1
        b = msg.body
        if isinstance(b, s.Frequency):
            self.hz, self.rocof, self.band, self.freq_t = b.hz, b.rocof, b.band, b.t
            self.frequency.add(b.t, b.hz, b.rocof)
        elif isinstance(b, s.Telemetry):
            self._telemetry(b, msg.ts)
        elif isinstance(b, s.Decision):
            u = self.units.get(b.unit)
            if u is not None:
                u.response_kw, u.base_kw, u.setpoint_kw = b.response_kw, b.base_kw, b.setpoint_kw
                u.action, u.decided = b.action, b.t
        elif isinstance(b, s.Event):
            self._event(b, msg)

    def _telemetry(self, b: s.Telemetry, ts: float) -> None:
        u = self.units.get(b.unit)
        if u is None:
            return
        u.p_kw, u.q_kvar, u.soc_pct, u.soh_pct, u.temp_c = (
            b.p_kw, b.q_kvar, b.soc_pct, b.soh_pct, b.temp_c)  # fmt: skip
        u.p_min_kw, u.p_max_kw = b.limits.p_min_kw, b.limits.p_max_kw
        u.safety, u.enabled, u.seen = b.safety, b.enabled, ts
        now = self.clock()
        # The fleet's sum only when the series takes a point (2 a second), not per message.
        if self.fleet_series.due(now):
            self.fleet_series.add(now, self.fleet_kw(now), _num(self.dispatch.get("target_kw")))

    def _event(self, b: s.Event, msg: s.Message) -> None:
        data = dict(b.data)
        if b.kind == "dispatch":
            self.dispatch = data
            return
        if b.kind == "bid":
            self.bids.append(data)
            return
        if b.kind == "result":
            self.results.append(data)
        elif b.kind == "frequency_event":
            self.event_open = data if data.get("phase") == "start" else None
        elif b.kind == "compliance":
            self.compliance.append(data)
        elif b.kind == "process":
            name = str(data.get("process", ""))
            if name:
                self.processes[name] = {**data, "t": msg.ts, "text": b.text}
        if b.kind in _TIMELINE_KINDS or b.severity in _ALARM_SEVERITIES:
            self.timeline.append({
                "seq": next(self._seq), "t": msg.ts, "kind": b.kind, "severity": b.severity,
                "text": b.text, "unit": b.unit, "sender": msg.sender, "data": data,
            })  # fmt: skip

    # ---- reads ----

    def fields(self) -> list[str]:
        """The site's field controllers."""
        return [f.id for f in self.site.field]

    def online(self, u: UnitState, now: float) -> bool:
        """Whether the unit's telemetry is recent."""
        return u.seen > 0 and now - u.seen <= self.stale_s

    def fleet_kw(self, now: float) -> float:
        """Sum of the online units' power."""
        return sum(u.p_kw or 0.0 for u in self.units.values() if self.online(u, now))

    def fleet(self, now: float | None = None) -> dict[str, Any]:
        """The fleet's totals now."""
        now = self.clock() if now is None else now
        on = [u for u in self.units.values() if self.online(u, now)]
        soc, worst = fleet_soc(on), worst_safety(on)
        return {
            "p_kw": round(self.fleet_kw(now), 3),
            "target_kw": _opt(self.dispatch.get("target_kw")),
            "source": self.dispatch.get("source"),
            "soc_pct": None if soc is None else round(soc, 2),
            "units_online": len(on),
            "units": len(self.units),
            "rated_kw": sum(u.rated_kw for u in self.units.values()),
            "safety": worst,
        }

    def snapshot(self) -> dict[str, Any]:
        """Everything the status endpoint and the dashboard's first paint need."""
        now = self.clock()
        return {
            "site": self.site.site.name,
            "t": now,
            "uptime_s": round(now - self.started, 1),
            "grid": {"hz": self.hz, "rocof": self.rocof, "band": self.band, "t": self.freq_t,
                     "event": self.event_open},
            "fleet": self.fleet(now),
            "units": [u.as_dict(self.online(u, now)) for u in self.units.values()],
            "dispatch": self.dispatch,
            "processes": self.processes,
            "alarms": self.alarms(now),
            "last_seq": self.last_seq(),
        }

    def alarms(self, now: float) -> list[dict[str, Any]]:
        """Units not safe or offline, and recent warnings (newest first)."""
        out: list[dict[str, Any]] = [
            {"unit": u.unit, "text": f"safety {u.safety}", "severity": "alarm"}
            for u in self.units.values() if u.safety not in ("none", "log")
        ]  # fmt: skip
        out += [
            {"unit": u.unit, "text": "offline", "severity": "warning"}
            for u in self.units.values() if not self.online(u, now)
        ]  # fmt: skip
        recent = [e for e in self.timeline if e["severity"] in _ALARM_SEVERITIES]
        out += [{"unit": e["unit"], "text": e["text"], "severity": e["severity"], "t": e["t"]}
                for e in reversed(recent[-20:])]  # fmt: skip
        return out

    def last_seq(self) -> int:
        """The sequence number of the newest timeline entry (0: none)."""
        return self.timeline[-1]["seq"] if self.timeline else 0

    def events_since(self, seq: int) -> list[dict[str, Any]]:
        """Timeline entries newer than ``seq``."""
        return [e for e in self.timeline if e["seq"] > seq]

    def series(self, window_s: float) -> dict[str, list[list[float | None]]]:
        """The frequency (t, hz, rocof) and fleet (t, kW, target kW) series of the last
        ``window_s`` seconds."""
        now = self.clock()
        return {
            "frequency": [list(p) for p in self.frequency.since(now - window_s)],
            "fleet": [[p[0], p[1], None if math.isnan(p[2]) else p[2]]
                      for p in self.fleet_series.since(now - window_s)],
        }


def _num(v: object) -> float:
    # A target that is absent (or odd) is NaN in a series, None in JSON.
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else math.nan


def _opt(v: object) -> float | None:
    x = _num(v)
    return None if math.isnan(x) else x


def _path(loc: Location) -> str:
    return "/".join(p for p in loc.path() if p)
