"""One battery unit of a field controller: its core pipeline, base power and telemetry.

A :class:`FieldUnit` owns one :class:`vpp.core.Pipeline` for its whole life (droop at
the unit's participation share, safety envelope of its chemistry scaled to its DC string)
and everything that feeds it: the base power (a dispatch or operator value, or the
current block of a schedule), the inverter (and BMS) telemetry mapped to
:class:`vpp.core.Telemetry`, and the safety violations seen. New settings (share, droop)
are applied to that pipeline in place, so the setpoint moves on from where it is, within
the ramp. :meth:`FieldUnit.on_frame` is the per-frame step; it never awaits, so nothing
on the bus can hold the response up.

The ramp runs from the setpoint in force; when the controller (re)gains control of the
unit (at start, when the inverter is back online, when it is enabled again) nothing it
wrote is in force, so the unit writes nothing until the next inverter status has
anchored the ramp on the power the inverter reports (docs/pipeline.md).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

from vpp.config.field import DroopSettings, PmuSource, UnitConfig
from vpp.core import Decision, DroopController, Pipeline, SafetyEnvelope, SafetyReset, Telemetry
from vpp.drivers.errors import ValidationError
from vpp.validation import finite_or_none

__all__ = [
    "INVERTER_NEEDS",
    "SEVERITY",
    "Clock",
    "FieldUnit",
    "Schedule",
    "build_envelope",
    "inverter_status",
    "map_telemetry",
    "system_clock",
]

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
#: Telemetry is stale after this many polls without news (and never sooner than 2 s).
STALE_POLLS = 3.0


#: The controller's clocks: (wall UNIX s, monotonic s).
Clock = Callable[[], tuple[float, float]]


def system_clock() -> tuple[float, float]:
    """``(time.time(), time.monotonic())``."""
    return time.time(), time.monotonic()


def _stale_after(poll_interval_s: float) -> float:
    return max(2.0, STALE_POLLS * poll_interval_s)


def build_envelope(unit: UnitConfig) -> SafetyEnvelope:
    """The unit's envelope: the chemistry preset scaled from 16 cells and 5 kW to the
    unit's DC string (``series_cells``) and rating, staleness from each source's poll
    interval; ``unit.safety`` overrides any limit."""
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
        "stale_after_s": _stale_after(unit.inverter.poll_interval_s),
    }
    if unit.bms is not None:
        limits["bms_stale_after_s"] = _stale_after(unit.bms.poll_interval_s)
    limits.update(unit.safety)
    return SafetyEnvelope(unit.chemistry, **limits)


#: The register map's point names the unit reads, and the SunSpec driver's keys for the
#: same quantities (vpp.drivers.sunspec_status): a SunSpec inverter's status is read
#: through these. Its alarms (701 ``Alrm``) are its fault bits: any of them stops the
#: unit, as a register map's ``fault_bits`` do.
_SUNSPEC_NAMES = {
    "dc_voltage": "dc_voltage_v",
    "dc_current": "dc_current_a",
    "temperature_max": "temperature_c",
    "soc": "soc_pct",
    "soh": "soh_pct",
    "active_power": "power_kw",
    "reactive_power": "reactive_power_kvar",
    "fault_bits": "der_alarms",
}


#: The inverter status points :func:`map_telemetry` cannot do without (after
#: :func:`inverter_status`): commissioning checks a device's status has each, finite.
INVERTER_NEEDS = ("dc_voltage", "dc_current", "temperature_max", "soc", "active_power")


def inverter_status(raw: Mapping[str, float | bool | str]) -> dict[str, float | bool | str]:
    """A driver's status with the register map's names the unit reads: a point the
    status lacks is taken from the SunSpec driver's key for it, where there is one."""
    out = dict(raw)
    for name, key in _SUNSPEC_NAMES.items():
        if name not in out and key in raw:
            out[name] = raw[key]
    return out


def map_telemetry(
    unit: UnitConfig,
    inverter: Mapping[str, float | bool | str],
    bms: Mapping[str, float | bool | str] | None,
    now: float,
    bms_time: float | None = None,
) -> Telemetry:
    """Inverter status (register map point names, vpp sign) measured at ``now`` and the
    optional BMS status (can_bms keys) measured at ``bms_time`` -> core telemetry. Cell
    voltages come from the BMS, else the DC voltage over ``series_cells``. For a unit
    with a BMS, BMS data never received is stale (its time NaN). A missing inverter point
    raises ValidationError naming it."""

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
    bms_timestamp = None
    if unit.bms is not None:
        bms_timestamp = math.nan if bms is None or bms_time is None else bms_time
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
        bms_timestamp=bms_timestamp,
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
    """One unit's control state (see the module docstring). ``pmu`` gives the admission
    rule's settings (the stream's IDCODE, time checks; default ``PmuSource()``); ``clock``
    the controller's clocks (default the system's; a test or a replay gives its own)."""

    def __init__(
        self,
        cfg: UnitConfig,
        pmu: PmuSource | None = None,
        history_size: int = 1000,
        clock: Clock = system_clock,
    ) -> None:
        pmu = pmu or PmuSource()
        self.clock = clock
        self.cfg = cfg
        self.id = cfg.id
        self.participation_kw = cfg.rated_power_kw
        self.droop_settings: DroopSettings = cfg.droop
        self.base_kw = 0.0
        """Dispatch or operator base power (kW), used outside a schedule."""
        self.schedule: Schedule | None = None
        self.enabled = True
        """False after disable or emergency stop: decisions go on, nothing is written."""
        self.online: bool | None = None
        self.status: dict[str, float | bool | str] | None = None
        self.bms_status: dict[str, float | bool | str] | None = None
        self.bms_received: float | None = None
        """When the last BMS status arrived (UNIX s)."""
        self.bms_online: bool | None = None
        self.telemetry_errors = 0
        self.step_errors = 0
        """Failures while stepping this unit (each stopped it through the envelope)."""
        self.resume_pending = True
        """No setpoint of ours is in force: write nothing until a status anchors the ramp."""
        self.safety_history: collections.deque[dict[str, Any]] = collections.deque(
            maxlen=history_size
        )
        self._active: dict[str, str] = {}  # violation code -> action, as last seen
        envelope = build_envelope(cfg)
        self.limits: dict[str, float] = envelope.limits
        """The safety envelope's limits."""
        self.pipeline = Pipeline(
            p_max_kw=cfg.rated_power_kw,
            droop=self._droop(self.participation_kw, self.droop_settings),
            safety=envelope,
            idcode=pmu.idcode,
            max_deviation_hz=pmu.max_deviation_hz,
            accept_sync_lost=pmu.accept_sync_lost,
            max_lead_s=pmu.max_lead_s,
            resync_after_s=pmu.resync_after_s,
            max_time_offset_s=pmu.max_time_offset_s,
        )

    @property
    def decision(self) -> Decision | None:
        """The last decision (None before the first)."""
        return self.pipeline.decision

    def _droop(self, share: float, d: DroopSettings) -> DroopController:
        # Out of the service (share 0): a droop with zero limits answers nothing.
        return DroopController(
            p_max_kw=share if share > 0 else self.cfg.rated_power_kw,
            droop_percent=d.droop_percent,
            deadband_low_hz=d.deadband_low_hz,
            deadband_high_hz=d.deadband_high_hz,
            knee_hz=d.knee_hz,
            knee_percent=d.knee_percent,
            full_hz=d.full_hz,
            max_charge_kw=share,
            max_discharge_kw=share,
            ramp_kw_per_s=d.ramp_kw_per_s,
            inertia_kw_per_hz_s=d.inertia_kw_per_hz_s,
        )

    # --- inputs ------------------------------------------------------------------------

    def set_participation(self, share_kw: float) -> None:
        """The droop's full-response kW (0 = out of the service), within the rating."""
        if not 0 <= share_kw <= self.cfg.rated_power_kw:
            raise ValidationError(
                f"p_max_kw must be within [0, {self.cfg.rated_power_kw:g}], got {share_kw:g}",
                resource=self.id,
            )
        self.pipeline.set_droop(self._droop(share_kw, self.droop_settings))
        self.participation_kw = share_kw

    def set_droop(self, settings: DroopSettings) -> None:
        """New droop settings (droop or knee, deadband, ramp, inertia) at the present share."""
        self.pipeline.set_droop(self._droop(self.participation_kw, settings))
        self.droop_settings = settings

    def set_base(self, kw: float) -> None:
        """Base power outside any schedule (kW, + = discharge); cancels the schedule."""
        self.base_kw = kw
        self.schedule = None
        self.pipeline.base_kw = kw

    def set_schedule(self, schedule: Schedule) -> None:
        """Base power by block from now on (outside it: :attr:`base_kw`)."""
        self.schedule = schedule

    def resume(self) -> None:
        """The controller takes the unit (back): the next status anchors the ramp."""
        self.resume_pending = True

    @property
    def writable(self) -> bool:
        """Its setpoints may be written: enabled, online, and the ramp anchored."""
        return self.enabled and self.online is True and not self.resume_pending

    def on_status(self, status: Mapping[str, float | bool | str]) -> None:
        """A new inverter status: map it into the pipeline's telemetry."""
        self.status = inverter_status(status)
        if self._telemetry() and self.resume_pending:
            self.pipeline.anchor(float(self.status["active_power"]), mono=self.clock()[1])
            self.resume_pending = False

    def on_bms_status(self, status: Mapping[str, float | bool | str]) -> None:
        """A new BMS status: merged into the telemetry with its own time."""
        self.bms_status = dict(status)
        self.bms_received = self.clock()[0]
        self._telemetry()

    def bms_time(self) -> float | None:
        """When the BMS data was measured: the driver's ``data_time`` if it reports one
        (a CAN BMS: its oldest required message), else when the status arrived."""
        if self.bms_status is None or self.bms_received is None:
            return None
        t = self.bms_status.get("data_time", self.bms_received)
        if isinstance(t, bool) or not isinstance(t, int | float) or t <= 0:
            return None  # never heard (a CAN BMS says 0.0 until every message came)
        return float(t)

    def _telemetry(self) -> bool:
        if self.status is None:
            return False
        try:
            now = self.clock()[0]
            tm = map_telemetry(self.cfg, self.status, self.bms_status, now, self.bms_time())
            self.pipeline.set_telemetry(tm)
        except (ValidationError, ValueError, TypeError) as exc:
            # Left as it was, the telemetry goes stale and the envelope stops the unit.
            self.telemetry_errors += 1
            log.warning("%s: telemetry not usable: %s", self.id, exc)
            return False
        return True

    # --- per frame -----------------------------------------------------------------------

    def on_frame(self, t: float, f: float, dfreq: float, stat: int, idcode: int) -> Decision | None:
        """One PMU measurement through the pipeline (base from the schedule's block if
        any); None when the admission rule refused it (counted in the pipeline's stats)."""
        self._schedule_base(t)
        wall, mono = self.clock()
        return self.pipeline.step(t, f, dfreq, stat, idcode, wall=wall, mono=mono)

    def idle(self) -> Decision:
        """A step without a measurement (no admitted frame lately): the response ramps to
        zero, the base power and the envelope go on."""
        wall, mono = self.clock()
        self._schedule_base(wall)
        return self.pipeline.idle(wall=wall, mono=mono)

    def fail_safe(self, exc: BaseException) -> Decision:
        """Stepping this unit failed: stop it through the envelope (base power 0 and the
        schedule dropped, since the input that failed may be theirs), counted and logged.
        The frequency response goes on at the next frame that steps cleanly."""
        self.step_errors += 1
        log.error("%s: step failed, base power set to 0: %r", self.id, exc)
        self.schedule = None
        self.base_kw = 0.0
        self.pipeline.base_kw = 0.0
        wall, mono = self.clock()
        return self.pipeline.idle(wall=wall, mono=mono)

    def apply_schedule(self, t: float) -> None:
        """Set the pipeline's base power from the schedule's block at ``t`` (the core's
        loop steps the pipeline itself; the controller calls this between frames)."""
        self._schedule_base(t)

    def _schedule_base(self, t: float) -> None:
        pipe = self.pipeline
        if self.schedule is not None:
            block = self.schedule.at(t)
            base = self.base_kw if block is None else block
            if base != pipe.base_kw:
                pipe.base_kw = base

    def reset_safety(self) -> SafetyReset:
        """Try to clear the envelope's emergency latch (see :class:`vpp.core.SafetyReset`)."""
        return self.pipeline.reset_safety()

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
                    # None where unknown (a source never heard): no NaN on the bus.
                    "value": v.value if math.isfinite(v.value) else None,
                    "limit": v.limit if math.isfinite(v.limit) else None,
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
            "soc": finite_or_none(st.get("soc")),
            "power": finite_or_none(st.get("active_power")),
            "base": d.base_kw if d is not None else self.pipeline.base_kw,
            "response": d.response_kw if d is not None else 0.0,
            "setpoint": d.setpoint_kw if d is not None else None,
            "safety": d.action.label if d is not None else "none",
            "latched": self.pipeline.latched,
            "participation": self.participation_kw,
            "bms_online": self.bms_online,
            "step_errors": self.step_errors,
        }
