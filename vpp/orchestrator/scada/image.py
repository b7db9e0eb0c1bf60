"""The plant's points, built from what the bus shows: :class:`PlantImage`.

The SCADA process feeds every bus message to :meth:`PlantImage.update` (the API's
:class:`~vpp.orchestrator.api.state.LiveState` keeps the units, the frequency and the
dispatch; the campus's ``agc`` event is kept here) and asks :meth:`PlantImage.points`
for the image it hands the outstations.

Validity is what a master must be able to trust: a unit's points are invalid when its
telemetry is stale; the plant's sums are invalid when no unit is online; the frequency
when the last measurement is older than ``stale_s``; the AGC points before the campus
reported a round. An invalid point keeps its last value (IEC 104 quality IV, DNP3 not
ONLINE), so the master sees that it is old rather than a made-up zero.
"""

from __future__ import annotations

from typing import Any

from vpp.config.models import SiteConfig
from vpp.orchestrator.api.state import LiveState, UnitState
from vpp.orchestrator.bus import schema as s
from vpp.orchestrator.scada.points import PointValue

__all__ = ["PlantImage"]

#: Safety actions that are not an alarm.
_QUIET = ("none", "log")


class PlantImage:
    """The site seen from the bus, as the logical points of :mod:`.points`."""

    def __init__(self, site: SiteConfig, state: LiveState | None = None) -> None:
        self.site = site
        self.state = state if state is not None else LiveState(site, window_s=60.0,
                                                               series_hz=1.0)  # fmt: skip
        self.agc: dict[str, Any] | None = None
        self.agc_t = 0.0
        self._last: dict[str, PointValue] = {}
        agc = site.campus.agc
        self.reserved = (agc.reserved_up_mw, agc.reserved_down_mw)

    def update(self, msg: s.Message) -> None:
        """Take in one bus message."""
        b = msg.body
        if isinstance(b, s.Event) and b.kind == "agc":
            self.agc, self.agc_t = dict(b.data), msg.ts
            return
        self.state.update(msg)

    def points(self, now: float) -> dict[str, PointValue]:
        """Every monitored point now."""
        st = self.state
        out: dict[str, PointValue] = {}
        on: list[UnitState] = []
        for u in st.units.values():
            online = st.online(u, now)
            if online:
                on.append(u)
            t = u.seen
            pre = f"unit.{u.unit}."
            self._put(out, pre + "p_mw", _mw(u.p_kw), t, online)
            self._put(out, pre + "q_mvar", _mw(u.q_kvar), t, online)
            self._put(out, pre + "soc_pct", u.soc_pct, t, online)
            out[pre + "online"] = PointValue(online, t or now)
            self._put(out, pre + "alarm", u.safety not in _QUIET, t, online)
        any_on = bool(on)
        t = max((u.seen for u in on), default=now)
        fleet = st.fleet(now)
        self._put(out, "plant.p_mw", fleet["p_kw"] / 1000.0, t, any_on)
        self._put(out, "plant.q_mvar", sum(u.q_kvar or 0.0 for u in on) / 1000.0, t, any_on)
        self._put(out, "plant.soc_pct", fleet["soc_pct"], t, any_on)
        # Headroom from the envelope each unit reported (its limits now, SOC and safety
        # included): what the plant could still add or shed at once.
        up = sum(max(0.0, (u.p_max_kw or 0.0) - (u.p_kw or 0.0)) for u in on)
        down = sum(max(0.0, (u.p_kw or 0.0) - (u.p_min_kw or 0.0)) for u in on)
        self._put(out, "plant.up_mw", up / 1000.0, t, any_on)
        self._put(out, "plant.down_mw", down / 1000.0, t, any_on)
        target = fleet["target_kw"]
        self._put(out, "plant.target_mw", _mw(target), t, target is not None)
        out["plant.units_online"] = PointValue(float(len(on)), now)
        self._put(out, "plant.enabled", any_on and all(u.enabled for u in on), t, any_on)
        out["plant.breaker_closed"] = PointValue(any_on, now)
        lost = len(on) < len(st.units)
        out["plant.alarm"] = PointValue(lost or any(u.safety not in _QUIET for u in on), now)
        fresh = st.hz is not None and now - st.freq_t <= st.stale_s
        self._put(out, "grid.frequency_hz", st.hz, st.freq_t or now, fresh)
        agc = self.agc or {}
        # The campus reports a round every dispatch interval: three missed is stale.
        stale_s = 3 * self.site.campus.dispatch_interval_s + 1
        valid = self.agc is not None and now - self.agc_t <= stale_s
        self._put(out, "agc.setpoint_mw", agc.get("setpoint_mw"), self.agc_t, valid)
        self._put(out, "agc.offset_mw", agc.get("offset_mw"), self.agc_t, valid)
        self._put(out, "agc.following", agc.get("status") == "following", self.agc_t, valid)
        out["agc.reserved_up_mw"] = PointValue(self.reserved[0], now)
        out["agc.reserved_down_mw"] = PointValue(self.reserved[1], now)
        return out

    def _put(self, out: dict[str, PointValue], name: str, value: float | bool | None,
             t: float, valid: bool) -> None:  # fmt: skip
        """A point: its value when known and valid; else its last value, marked invalid
        (0 when there never was one)."""
        if value is None or not valid:
            last = self._last.get(name)
            keep: float | bool = last.value if last is not None else _zero(value)
            out[name] = PointValue(keep, last.time if last is not None else t, False)
            return
        v = PointValue(value if isinstance(value, bool) else float(value), t, True)
        self._last[name] = v
        out[name] = v


def _mw(kw: float | None) -> float | None:
    return None if kw is None else kw / 1000.0


def _zero(value: float | bool | None) -> float | bool:
    return False if isinstance(value, bool) else 0.0
