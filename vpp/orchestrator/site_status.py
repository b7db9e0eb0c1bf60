"""The live status of a running site, as the launcher shows it once a second.

:class:`SiteStatus` keeps the latest of what the bus carries: the grid frequency and
band, each unit's telemetry (power, SOC, safety state) and its field controller, the
last campus dispatch and the count of events. :meth:`SiteStatus.snapshot` adds the
processes' state and gives one JSON-ready dict; :func:`render_text` turns it into plain
lines (a headline, then one line per unit).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from vpp.config.models import SiteConfig
from vpp.orchestrator.bus import schema as s
from vpp.orchestrator.grid.verdict import fleet_verdict

__all__ = ["SiteStatus", "render_text"]

#: Safety states from harmless to worst.
SAFETY_ORDER = ("none", "log", "reduce", "stop", "emergency_shutdown")


class UnitLike(Protocol):
    """What the fleet's totals need of a unit (the status's and the API's units)."""

    capacity_kwh: float
    soc_pct: float | None
    safety: str


def fleet_soc(units: Iterable[UnitLike]) -> float | None:
    """The SOC of ``units`` weighted by their energy (those reporting one); None if none."""
    units = list(units)
    energy = sum(u.capacity_kwh for u in units if u.soc_pct is not None)
    if not energy:
        return None
    return sum(u.capacity_kwh * (u.soc_pct or 0.0) for u in units) / energy


def worst_safety(units: Iterable[UnitLike]) -> str:
    """The worst safety state of ``units`` (``none`` for no unit)."""
    return max((u.safety for u in units), default="none",
               key=lambda st: SAFETY_ORDER.index(st) if st in SAFETY_ORDER else 0)  # fmt: skip


@dataclass
class _Unit:
    field: str
    capacity_kwh: float
    p_kw: float = 0.0
    soc_pct: float | None = None
    safety: str = "none"
    seen: float = 0.0
    response_kw: float = 0.0


class SiteStatus:
    """What is happening at the site now (see the module docstring).

    A unit is online while its telemetry is younger than ``stale_s``.
    """

    def __init__(self, site: SiteConfig, stale_s: float | None = None) -> None:
        self.units: dict[str, _Unit] = {
            u.id: _Unit(f.id, u.capacity_kwh) for f in site.field for u in f.units
        }
        interval = max(f.telemetry_interval_s for f in site.field)
        self.stale_s = stale_s if stale_s is not None else 3.0 * interval + 1.0
        self.hz: float | None = None
        self.rocof: float | None = None
        self.band = ""
        self.dispatch: dict[str, Any] = {}
        self.events: Counter[str] = Counter()
        self.event: dict[str, Any] | None = None
        """The frequency event under way (the grid service's start record), if any."""
        self.response_kw = 0.0
        """The sum of the units' last decided responses."""
        self.peak_response_kw = 0.0
        self.last_event: dict[str, Any] | None = None
        """The last finished event: its record and the fleet's compliance verdict."""
        self.messages = 0
        self.started = time.time()
        self.decided_at: dict[str, float] = {}
        """Each unit's last decision, monotonic time of receipt."""

    @property
    def decided(self) -> set[str]:
        """The units that have published a decision."""
        return set(self.decided_at)

    def update(self, msg: s.Message) -> None:
        """Take in one bus message."""
        self.messages += 1
        b = msg.body
        if isinstance(b, s.Frequency):
            self.hz, self.rocof, self.band = b.hz, b.rocof, b.band
        elif isinstance(b, s.Telemetry):
            u = self.units.get(b.unit)
            if u is not None:
                u.p_kw, u.soc_pct, u.safety, u.seen = b.p_kw, b.soc_pct, b.safety, msg.ts
        elif isinstance(b, s.Decision):
            u = self.units.get(b.unit)
            if u is not None:
                self.decided_at[b.unit] = time.monotonic()
                # The fleet's response kept as a running sum: one decision costs O(1)
                # however many units the site has.
                self.response_kw += b.response_kw - u.response_kw
                u.response_kw = b.response_kw
                if self.event is not None and abs(self.response_kw) > abs(self.peak_response_kw):
                    self.peak_response_kw = self.response_kw
        elif isinstance(b, s.Event):
            self.events[b.kind] += 1
            if b.kind == "dispatch":
                self.dispatch = dict(b.data)
            elif b.kind == "frequency_event":
                self._frequency_event(dict(b.data))
            elif b.kind == "compliance" and self.last_event is not None:
                fleet = b.data.get("fleet")
                verdict = fleet_verdict(b.data)
                self.last_event["verdict"] = verdict.upper() if verdict != "not judged" \
                    else verdict  # fmt: skip
                if isinstance(fleet, dict):
                    self.last_event["metrics"] = dict(fleet.get("metrics", {}))

    def _frequency_event(self, data: dict[str, Any]) -> None:
        if data.get("phase") == "start":
            self.event, self.peak_response_kw = data, 0.0
        elif data.get("phase") == "end":
            self.last_event = {**data, "peak_response_kw": self.peak_response_kw,
                               "verdict": "judging"}  # fmt: skip
            self.event = None

    def _online(self, u: _Unit, now: float) -> bool:
        return u.seen > 0 and now - u.seen <= self.stale_s

    def snapshot(
        self, processes: Mapping[str, Mapping[str, Any]], now: float | None = None
    ) -> dict[str, Any]:
        """The status now, with ``processes`` (name -> alive, pid, restarts)."""
        now = time.time() if now is None else now
        online = {k: u for k, u in self.units.items() if self._online(u, now)}
        soc = fleet_soc(online.values())
        worst = worst_safety(online.values())
        return {
            "t": now,
            "uptime_s": round(now - self.started, 1),
            "freq_hz": self.hz,
            "rocof_hz_s": self.rocof,
            "band": self.band,
            "fleet_kw": round(sum(u.p_kw for u in online.values()), 3),
            "fleet_soc_pct": None if soc is None else round(soc, 2),
            "safety": worst,
            "units_online": len(online),
            "units": [
                {
                    "unit": k, "field": u.field, "p_kw": round(u.p_kw, 3),
                    "soc_pct": u.soc_pct, "safety": u.safety, "online": k in online,
                }
                for k, u in self.units.items()
            ],
            "dispatch_target_kw": self.dispatch.get("target_kw"),
            "dispatch_source": self.dispatch.get("source"),
            "event": None if self.event is None else {
                **self.event, "fleet_response_kw": round(
                    sum(u.response_kw for u in online.values()), 1),
                "peak_response_kw": round(self.peak_response_kw, 1)},
            "last_event": self.last_event,
            "events": dict(self.events),
            "processes": {n: dict(p) for n, p in processes.items()},
        }


def _num(v: object, fmt: str, missing: str = "-") -> str:
    # Anything not a number (None, or an odd value in a message) shows as missing.
    if isinstance(v, bool) or not isinstance(v, int | float):
        return missing
    return format(v, fmt)


def _clock(t: object) -> str:
    # An event's times are UNIX seconds; the status shows them as local clock time.
    if isinstance(t, bool) or not isinstance(t, int | float):
        return "?"
    return time.strftime("%H:%M:%S", time.localtime(t))


def render_text(snap: Mapping[str, Any]) -> list[str]:
    """Plain text lines of a :meth:`SiteStatus.snapshot`."""
    procs = snap["processes"]
    alive = sum(1 for p in procs.values() if p.get("alive"))
    restarts = sum(int(p.get("restarts", 0)) for p in procs.values())
    source = f" ({snap['dispatch_source']})" if snap.get("dispatch_source") else ""
    head = (
        f"[{snap['uptime_s']:7.1f} s] {_num(snap['freq_hz'], '.3f')} Hz {snap['band'] or '-'}"
        f" rocof {_num(snap['rocof_hz_s'], '+.3f')} | fleet {snap['fleet_kw']:+.1f} kW"
        f" soc {_num(snap['fleet_soc_pct'], '.1f')} % | target"
        f" {_num(snap['dispatch_target_kw'], '+.1f')} kW{source} | safety {snap['safety']}"
        f" | processes {alive}/{len(procs)} alive, {restarts} restarts"
    )
    lines = [head]
    ev = snap.get("event")
    if ev:
        lines.append(
            f"    frequency event: {ev.get('direction', '?')}-frequency since"
            f" {_clock(ev.get('start'))}, nadir {_num(ev.get('nadir_hz'), '.3f')} Hz,"
            f" fleet response {_num(ev.get('fleet_response_kw'), '+.1f')} kW"
            f" (peak {_num(ev.get('peak_response_kw'), '+.1f')} kW)"
        )
    last = snap.get("last_event")
    if last:
        m = last.get("metrics", {})
        extreme = last.get("nadir_hz") if last.get("direction") == "under" else last.get(
            "zenith_hz")  # fmt: skip
        lines.append(
            f"    last event: {last.get('direction', '?')}-frequency"
            f" {_clock(last.get('start'))}-{_clock(last.get('end'))},"
            f" extreme {_num(extreme, '.3f')} Hz, peak response"
            f" {_num(last.get('peak_response_kw'), '+.1f')} kW: fleet {last.get('verdict')}"
            + (f" (response after {_num(m.get('start_delay_s'), '.2f')} s, rms error"
               f" {_num(m.get('rms_error_pct'), '.1f')} % of rating)" if m else "")
        )  # fmt: skip
    for u in snap["units"]:
        lines.append(
            f"    {u['unit']:<10} {u['field']:<10} {u['p_kw']:+9.1f} kW"
            f" soc {_num(u['soc_pct'], '5.1f')} % safety {u['safety']:<8}"
            f" {'online' if u['online'] else 'offline'}"
        )
    down = [n for n, p in procs.items() if not p.get("alive")]
    if down:
        lines.append(f"    down: {', '.join(down)}")
    return lines
