"""The response of each unit and of the fleet during an event, against the expected droop.

From the history alone (with the site configuration as a fallback for old histories):

- frequency and ROCOF: the decisions' (each field controller logs the PMU frequency it
  acted on), one sample per distinct time;
- a unit's characteristic: the one the grid recorded with its compliance result
  (``units.<unit>.characteristic``: its share as ``rated_kw``, droop, deadband); for an
  event without one, the unit's last accepted ``set_participation`` share before the
  event with its configured droop (``--config``) or the default droop (5 %, deadband
  49.90-50.05 Hz); a unit without a share has no expected response;
- baseline: the mean measured power over ``baseline_s`` before the event start (the
  grid's :class:`~vpp.orchestrator.grid.compliance.ComplianceConfig`), else the last
  telemetry of the minute before the start, else 0;
- measured response: telemetry power minus the baseline, minus how far the unit's base
  (the decisions' ``base_kw``: schedule, target, AGC) moved since the grid's baseline
  window began, as the grid judges it; decided response: the
  decisions' ``response_kw``; expected response: ``clip(baseline + droop(f), -share,
  share) - baseline`` at each decision's frequency, the grid's formula
  (:meth:`DroopCharacteristic.expected_kw`);
- the fleet: the sums of the units' series, each interpolated linearly at every time
  any unit reported (as the grid sums them; held flat beyond a unit's first and last
  sample): measured at the telemetry times, decided and expected at the decision times.

The grid judges on every PMU sample it received and the power interpolated to them, the
history holds the decisions as logged (10 per second by default) and the telemetry (once
a second), so the curves drawn here follow the verdict's closely but not sample for sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vpp.config.models import DroopSettings, SiteConfig
from vpp.orchestrator.grid.compliance import ComplianceConfig, DroopCharacteristic
from vpp.orchestrator.grid.events import EventDetectionConfig
from vpp.orchestrator.grid.traces import interpolate
from vpp.reports.query import HistoryReader

__all__ = ["EventResponse", "UnitResponse", "event_response"]


@dataclass
class UnitResponse:
    """One unit's samples in the window (times in UNIX seconds)."""

    unit: str
    characteristic: DroopCharacteristic | None
    characteristic_from: str
    baseline_kw: float
    decision_t: list[float] = field(default_factory=list)
    freq_hz: list[float] = field(default_factory=list)
    decided_kw: list[float] = field(default_factory=list)
    expected_kw: list[float] = field(default_factory=list)
    power_t: list[float] = field(default_factory=list)
    measured_kw: list[float] = field(default_factory=list)


@dataclass
class EventResponse:
    """Everything the event report draws (see the module docstring)."""

    event: dict[str, Any]
    window: tuple[float, float]
    compliance: dict[str, Any] | None
    band_hz: tuple[float, float]
    deadband_hz: tuple[float, float]
    rocof_threshold_hz_s: float | None
    freq_t: list[float] = field(default_factory=list)
    freq_hz: list[float] = field(default_factory=list)
    rocof_t: list[float] = field(default_factory=list)
    rocof_hz_s: list[float] = field(default_factory=list)
    units: dict[str, UnitResponse] = field(default_factory=dict)
    fleet_power_t: list[float] = field(default_factory=list)
    fleet_measured_kw: list[float] = field(default_factory=list)
    fleet_decision_t: list[float] = field(default_factory=list)
    fleet_decided_kw: list[float] = field(default_factory=list)
    fleet_expected_kw: list[float] = field(default_factory=list)


def _characteristic(
    reader: HistoryReader,
    unit: str,
    event: dict[str, Any],
    compliance: dict[str, Any] | None,
    site: SiteConfig | None,
) -> tuple[DroopCharacteristic | None, str]:
    recorded = ((compliance or {}).get("units") or {}).get(unit) or {}
    if isinstance(recorded.get("characteristic"), dict):
        return DroopCharacteristic(**recorded["characteristic"]), "recorded with the compliance"
    share = recorded.get("share_kw") or ((compliance or {}).get("shares") or {}).get(unit)
    why = "the grid's share"
    if share is None:
        share = reader.participation(unit, event["start"])
        why = "the last set_participation share"
    if not share or share <= 0:
        return None, "no share at the event start"
    droop = next((u.droop for u in site.units() if u.id == unit), None) if site else None
    where = "configured droop" if droop is not None else "default droop"
    d = droop or DroopSettings()
    nominal = site.grid.events.nominal_hz if site else EventDetectionConfig().nominal_hz
    ch = DroopCharacteristic.of_settings(d, rated_kw=float(share), nominal_hz=nominal)
    return ch, f"{why}, {where}"


def _baseline(reader: HistoryReader, unit: str, start: float, span: float) -> float:
    before = [
        r["power_kw"]
        for r in reader.telemetry(start - span, start, unit)
        if r["power_kw"] is not None and r["t"] < start
    ]
    if before:
        return float(sum(before) / len(before))
    last = [r["power_kw"] for r in reader.telemetry(start - 60.0, start, unit)
            if r["power_kw"] is not None and r["t"] < start]  # fmt: skip
    return float(last[-1]) if last else 0.0


def event_response(
    reader: HistoryReader, number: int, *, margin_s: float = 5.0, site: SiteConfig | None = None
) -> EventResponse:
    """The response during event ``number`` with ``margin_s`` on both sides."""
    event = reader.event(number)
    start, end = reader.event_window(number, margin_s)
    compliance = reader.compliance(number)
    detection = site.grid.events if site else EventDetectionConfig()
    baseline_s = (site.grid.compliance if site else ComplianceConfig()).baseline_s
    out = EventResponse(
        event=event, window=(start, end), compliance=compliance,
        band_hz=(detection.low_hz, detection.high_hz), deadband_hz=(0.0, 0.0),
        rocof_threshold_hz_s=detection.rocof_threshold_hz_s,
    )  # fmt: skip
    seen: set[float] = set()
    for r in reader.decisions(start, end):
        if r["t"] in seen:
            continue
        seen.add(r["t"])
        if r["freq_hz"] is not None:
            out.freq_t.append(r["t"])
            out.freq_hz.append(r["freq_hz"])
        if r["rocof_hz_s"] is not None:
            out.rocof_t.append(r["t"])
            out.rocof_hz_s.append(r["rocof_hz_s"])
    for unit in reader.units():
        ch, why = _characteristic(reader, unit, event, compliance, site)
        u = UnitResponse(unit, ch, why, _baseline(reader, unit, event["start"], baseline_s))
        base_t: list[float] = []
        base_kw: list[float] = []
        for r in reader.decisions(start, end, unit):
            if r["base_kw"] is not None:
                base_t.append(r["t"])
                base_kw.append(r["base_kw"])
            if r["freq_hz"] is None or r["response_kw"] is None:
                continue
            u.decision_t.append(r["t"])
            u.freq_hz.append(r["freq_hz"])
            u.decided_kw.append(r["response_kw"])
        if ch is not None:
            u.expected_kw = [float(v) for v in ch.expected_kw(u.freq_hz, u.baseline_kw)]
        # A base that moved (AGC, a new target or block) is not response.
        ref = (float(np.interp(event["start"] - baseline_s - 0.5, base_t, base_kw))
               if base_t else 0.0)  # fmt: skip
        for r in reader.telemetry(start, end, unit):
            if r["power_kw"] is not None:
                moved = float(np.interp(r["t"], base_t, base_kw)) - ref if base_t else 0.0
                u.power_t.append(r["t"])
                u.measured_kw.append(r["power_kw"] - u.baseline_kw - moved)
        if u.decision_t or u.power_t:
            out.units[unit] = u
    deadbands = [(u.characteristic.deadband_low_hz, u.characteristic.deadband_high_hz)
                 for u in out.units.values() if u.characteristic is not None]  # fmt: skip
    d = DroopSettings()
    out.deadband_hz = deadbands[0] if deadbands else (d.deadband_low_hz, d.deadband_high_hz)
    # The fleet as the grid sums it: each unit's series interpolated linearly at every
    # time any unit reported (held flat beyond its first and last sample).
    with_power = [u for u in out.units.values() if u.power_t]
    out.fleet_power_t = sorted({t for u in with_power for t in u.power_t})
    out.fleet_measured_kw = _sum_at(out.fleet_power_t, [(u.power_t, u.measured_kw)
                                                        for u in with_power])  # fmt: skip
    with_decisions = [u for u in out.units.values() if u.decision_t]
    out.fleet_decision_t = sorted({t for u in with_decisions for t in u.decision_t})
    out.fleet_decided_kw = _sum_at(out.fleet_decision_t, [(u.decision_t, u.decided_kw)
                                                          for u in with_decisions])  # fmt: skip
    out.fleet_expected_kw = _sum_at(out.fleet_decision_t, [
        (u.decision_t, u.expected_kw) for u in with_decisions if u.characteristic is not None
    ])  # fmt: skip
    return out


def _sum_at(t: list[float], parts: list[tuple[list[float], list[float]]]) -> list[float]:
    """The sum of the series ``parts`` ((times, values), increasing times), each one
    interpolated at ``t``."""
    times = np.asarray(t, dtype=np.float64)
    total = np.zeros_like(times)
    for ts, vs in parts:
        total += interpolate(times, np.asarray(ts, np.float64), np.asarray(vs, np.float64))
    return [float(v) for v in total]
