"""The bus messages a field controller publishes, built from its units' state."""

from __future__ import annotations

import math
from typing import Any

from vpp.core import Decision, Transition
from vpp.orchestrator.bus import schema as s
from vpp.orchestrator.field.unit import FieldUnit

__all__ = ["band_event", "decision", "frequency", "telemetry", "unit_heartbeat"]


def decision(uid: str, t: float, hz: float, d: Decision) -> s.Decision:
    """A unit's decision (published every ``decisions_every`` frames); ``hz`` None when
    the frame carried no frequency."""
    return s.Decision(
        unit=uid,
        t=t,
        hz=hz if math.isfinite(hz) else None,
        rocof=d.rocof,
        band=d.band.label if d.band is not None else "",
        response_kw=d.response_kw,
        base_kw=d.base_kw,
        setpoint_kw=d.setpoint_kw,
        action=d.action.label,
    )


def frequency(t: float, hz: float, d: Decision) -> s.Frequency:
    """The measured frequency with ROCOF and band (from the first unit's pipeline)."""
    band = d.band.label if d.band is not None else ""
    return s.Frequency(hz=hz, rocof=d.rocof or 0.0, t=t, band=band)


def band_event(tr: Transition, hz: float) -> s.Event:
    """A band transition."""
    frm, to = tr.from_band.label, tr.to_band.label
    return s.Event(
        kind="band",
        severity="info" if to == "normal" else "warning",
        text=f"{frm} -> {to} at {hz:.3f} Hz",
        data={"from": frm, "to": to, "t": tr.time, "hz": hz},
    )


def telemetry(unit: FieldUnit) -> s.Telemetry:
    """A unit's telemetry: measured values, the envelope's limits now and its action.
    Raises ValueError when a measured value is not a finite number (the schema refuses
    it, and a made-up number would be worse): the controller counts it, not sent."""
    st = unit.status or {}
    d = unit.decision
    safety = d.safety if d is not None else None
    limits = s.Limits(
        p_min_kw=-safety.max_charge_kw if safety is not None else 0.0,
        p_max_kw=safety.max_discharge_kw if safety is not None else 0.0,
    )
    action: Any = d.action.label if d is not None else "none"
    return s.Telemetry(
        unit=unit.id,
        p_kw=float(st.get("active_power", 0.0)),
        q_kvar=float(st.get("reactive_power", 0.0)),
        soc_pct=min(100.0, max(0.0, float(st.get("soc", 0.0)))),
        soh_pct=min(100.0, max(0.0, float(st.get("soh", 100.0)))),
        temp_c=float(st.get("temperature_max", 0.0)),
        limits=limits,
        safety=action,
        enabled=unit.enabled,
        location="/".join(unit.cfg.location.path()),
    )


def unit_heartbeat(unit: FieldUnit, owner: str, endpoint: str) -> s.Heartbeat:
    """A unit's heartbeat: its owner field controller, location and capabilities."""
    cfg = unit.cfg
    caps = s.Capabilities(
        rated_kw=cfg.rated_power_kw, rated_kwh=cfg.capacity_kwh, services=("fcr",)
    )
    return s.Heartbeat(
        role="unit",
        id=unit.id,
        owner=owner,
        endpoint=endpoint,
        location="/".join(cfg.location.path()),
        capabilities=caps,
    )
