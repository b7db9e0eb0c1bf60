"""One battery unit of a field controller: its core pipeline, base power and telemetry.

A :class:`FieldUnit` owns a :class:`vpp.core.Pipeline` (droop at the unit's participation
share, safety envelope of its chemistry scaled to its DC string) and everything that
feeds it: the base power (a dispatch or operator value, or the current block of a
schedule), the inverter (and BMS) telemetry mapped to :class:`vpp.core.Telemetry`, and
the safety violations seen. :meth:`FieldUnit.on_frame` is the per-frame step; it never
awaits, so nothing on the bus can hold the response up.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
import time
from collections.abc import Mapping
from typing import Any

from vpp.config.models import UnitConfig
from vpp.core import Decision, DroopController, Pipeline, SafetyEnvelope, Telemetry
from vpp.drivers.errors import ValidationError

__all__ = ["SEVERITY", "FieldUnit", "Schedule", "build_envelope", "map_telemetry"]

log = logging.getLogger(__name__)

#: Event severity of a safety action.
SEVERITY = {
    "none": "info",
    "log": "info",
    "reduce": "warning",
    "stop": "alarm",
    "emergency_shutdown": "critical",
}
#: Cells in series of the presets (the envelope's pack limits are for 16 cells).
PRESET_CELLS = 16


def build_envelope(unit: UnitConfig) -> SafetyEnvelope:
    """The unit's envelope: the chemistry preset scaled from 16 cells and 5 kW to the
    unit's DC string (``series_cells``) and rating; ``unit.safety`` overrides any limit."""
    preset = SafetyEnvelope(unit.chemistry).limits
    cells, rated = unit.series_cells, unit.rated_power_kw
    scale = cells / PRESET_CELLS
    # Rated power at the lowest normal cell voltage, with a quarter of margin.
    current = 1.25 * rated * 1000.0 / (cells * preset["cell_v_min_warn"])
    limits: dict[str, float] = {
        "pack_v_min": preset["pack_v_min"] * scale,
        "pack_v_max": preset["pack_v_max"] * scale,
        "max_charge_current_a": current,
        "max_discharge_current_a": current,
        "max_charge_kw": rated,
        "max_discharge_kw": rated,
        "ramp_kw_per_s": rated,  # 1 p.u. per s, as the preset's 5 kW/s for 5 kW
        "power_tolerance_kw": 0.1 * rated,
    }
    limits.update(unit.safety)
    return SafetyEnvelope(unit.chemistry, **limits)


def map_telemetry(
    unit: UnitConfig,
    inverter: Mapping[str, float | bool | str],
    bms: Mapping[str, float | bool | str] | None,
    now: float,
) -> Telemetry:
    """Inverter status (register map point names, vpp sign) and optional BMS status (can_bms
    keys) -> core telemetry. Cell voltages come from the BMS, else the DC voltage over
    ``series_cells``. A missing point raises ValidationError naming it."""

    def need(key: str) -> float:
        if key not in inverter:
            raise ValidationError(f"inverter status has no {key!r}", resource=unit.id, point=key)
        return float(inverter[key])

    pack_v = need("dc_voltage")
    t_max = need("temperature_max")
    t_min = float(inverter.get("temperature_min", t_max))
    cell_v = pack_v / unit.series_cells
    v_min = v_max = cell_v
    faults = int(inverter.get("fault_bits", 0))
    soh = float(inverter.get("soh", 100.0))
    if bms:
        v_min = float(bms.get("cell_v_min", v_min))
        v_max = float(bms.get("cell_v_max", v_max))
        t_min = min(t_min, float(bms.get("temp_min_c", t_min)))
        t_max = max(t_max, float(bms.get("temp_max_c", t_max)))
        faults |= int(bms.get("bms_faults", 0)) << 16  # BMS bits above the inverter's
        soh = float(bms.get("soh_pct", soh))
    return Telemetry(
        timestamp=now,
        pack_voltage_v=pack_v,
        current_a=need("dc_current"),
        temp_min_c=t_min,
        temp_max_c=t_max,
        soc_pct=need("soc"),
        cell_v_min=v_min,
        cell_v_max=v_max,
        soh_pct=soh,
        bms_faults=faults,
        power_kw=need("active_power"),
    )


@dataclasses.dataclass(frozen=True)
class Schedule:
    """Base power by time block: ``base_kw[i]`` from ``start + i * block_s`` (UNIX s)."""

    start: float
    block_s: float
    base_kw: tuple[float, ...]

    def at(self, t: float) -> float | None:
        """The block value at ``t``, None outside the schedule."""
        i = math.floor((t - self.start) / self.block_s)
        return self.base_kw[i] if 0 <= i < len(self.base_kw) else None


class FieldUnit:
    """One unit's control state (see the module docstring)."""

    def __init__(self, cfg: UnitConfig, history_size: int = 1000) -> None:
        self.cfg = cfg
        self.id = cfg.id
        self.participation_kw = cfg.rated_power_kw
        self.base_kw = 0.0
        """Dispatch or operator base power (kW), used outside a schedule."""
        self.schedule: Schedule | None = None
        self.enabled = True
        """False after disable or emergency stop: decisions go on, nothing is written."""
        self.online: bool | None = None
        self.status: dict[str, float | bool | str] | None = None
        self.bms_status: dict[str, float | bool | str] | None = None
        self.telemetry_errors = 0
        self.safety_history: collections.deque[dict[str, Any]] = collections.deque(
            maxlen=history_size
        )
        self._active: dict[str, str] = {}  # violation code -> action, as last seen
        self.pipeline = self._pipeline(self.participation_kw, None)
        #: The last frame's decision. Kept across a new pipeline (a participation change),
        #: whose own ``decision`` is None until its first frame: what the unit reports
        #: (its limits in telemetry, its status) must not drop to nothing meanwhile.
        self.decision: Decision | None = None

    def _pipeline(self, share: float, old: Pipeline | None) -> Pipeline:
        d = self.cfg.droop
        # Out of the service (share 0): a droop with zero limits answers nothing.
        droop = DroopController(
            p_max_kw=share if share > 0 else self.cfg.rated_power_kw,
            droop_percent=d.droop_percent,
            deadband_low_hz=d.deadband_low_hz,
            deadband_high_hz=d.deadband_high_hz,
            max_charge_kw=share,
            max_discharge_kw=share,
            ramp_kw_per_s=d.ramp_kw_per_s,
            inertia_kw_per_hz_s=d.inertia_kw_per_hz_s,
        )
        if old is not None and old.decision is not None:
            # Carry the response over so a new share ramps from where it was, not from 0.
            droop.reset(max(-share, min(share, old.decision.response_kw)))
        pipe = Pipeline(
            p_max_kw=self.cfg.rated_power_kw,
            droop=droop,
            safety=build_envelope(self.cfg),
            base_kw=self.base_kw,
        )
        if old is not None:
            pipe.set_telemetry(old.telemetry)
        return pipe

    # --- inputs ------------------------------------------------------------------------

    def set_participation(self, share_kw: float) -> None:
        """The droop's full-response kW (0 = out of the service), within the rating."""
        if not 0 <= share_kw <= self.cfg.rated_power_kw:
            raise ValidationError(
                f"p_max_kw must be within [0, {self.cfg.rated_power_kw:g}], got {share_kw:g}",
                resource=self.id,
            )
        if self.pipeline.decision is not None and self.pipeline.decision.safety.latched:
            # A new pipeline would start unlatched: the emergency must be reset first.
            raise ValidationError(
                "safety envelope latched (emergency shutdown); reset_alarms first",
                resource=self.id,
            )
        self.participation_kw = share_kw
        self.pipeline = self._pipeline(share_kw, self.pipeline)

    def set_base(self, kw: float) -> None:
        """Base power outside any schedule (kW, + = discharge); cancels the schedule."""
        self.base_kw = kw
        self.schedule = None
        self.pipeline.base_kw = kw

    def set_schedule(self, schedule: Schedule) -> None:
        """Base power by block from now on (outside it: :attr:`base_kw`)."""
        self.schedule = schedule

    def on_status(self, status: Mapping[str, float | bool | str]) -> None:
        """A new inverter status: map it into the pipeline's telemetry."""
        self.status = dict(status)
        self._telemetry()

    def on_bms_status(self, status: Mapping[str, float | bool | str]) -> None:
        """A new BMS status: merged into the next telemetry."""
        self.bms_status = dict(status)
        self._telemetry()

    def _telemetry(self) -> None:
        if self.status is None:
            return
        try:
            tm = map_telemetry(self.cfg, self.status, self.bms_status, time.time())
            self.pipeline.set_telemetry(tm)
        except (ValidationError, ValueError) as exc:
            # Left as it was, the telemetry goes stale and the envelope stops the unit.
            self.telemetry_errors += 1
            log.warning("%s: telemetry not usable: %s", self.id, exc)

    # --- per frame -----------------------------------------------------------------------

    def on_frame(self, t: float, f: float, dfreq: float, valid: bool) -> Decision:
        """One PMU frame through the pipeline (base from the schedule's block if any)."""
        pipe = self.pipeline
        if self.schedule is not None:
            block = self.schedule.at(t)
            base = self.base_kw if block is None else block
            if base != pipe.base_kw:
                pipe.base_kw = base
        self.decision = pipe.step(t, f, dfreq, valid)
        return self.decision

    @property
    def has_violations(self) -> bool:
        """Some violation was active on the last frame."""
        return bool(self._active)

    def violations(self, d: Decision) -> list[dict[str, Any]]:
        """New violations of ``d`` (codes not active on the previous frame), recorded."""
        if not d.violations and not self._active:
            return []
        now: dict[str, str] = {}
        new: list[dict[str, Any]] = []
        for v in d.violations:
            code, action = v.code.label, v.action.label
            now[code] = action
            if self._active.get(code) != action:
                rec = {
                    "time": d.time,
                    "unit": self.id,
                    "code": code,
                    "action": action,
                    "detail": f"{code}: value {v.value:g}, limit {v.limit:g}",
                    "value": v.value,
                    "limit": v.limit,
                }
                self.safety_history.append(rec)
                new.append(rec)
        self._active = now
        return new

    def state(self) -> dict[str, Any]:
        """What the ``status`` command reports for this unit."""
        d = self.decision
        st = self.status or {}
        return {
            "online": self.online,
            "enabled": self.enabled,
            "soc": st.get("soc"),
            "power": st.get("active_power"),
            "base": d.base_kw if d is not None else self.pipeline.base_kw,
            "response": d.response_kw if d is not None else 0.0,
            "setpoint": d.setpoint_kw if d is not None else None,
            "safety": d.action.label if d is not None else "none",
            "participation": self.participation_kw,
        }
