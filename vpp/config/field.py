"""The field controller's part of the site configuration: its PMU, its units, their
devices and response, and its real-time loop.

A leaf (pydantic and :mod:`vpp.config.commands` only), so that a field controller's
process, given :class:`FieldSite` instead of the whole site, never imports the models of
the other sections (SCADA point maps, market, grid, API): they cost about a third of
its start-up CPU. :mod:`vpp.config.models` re-exports every name here.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from vpp.config.commands import CommandLimits

__all__ = [
    "NOMINAL_HZ",
    "DeviceConfig",
    "DroopSettings",
    "FieldConfig",
    "FieldSite",
    "Location",
    "PmuSource",
    "RealtimeConfig",
    "UnitConfig",
    "check_knee",
]

_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)


def check_knee(
    nominal_hz: float,
    deadband_low_hz: float,
    deadband_high_hz: float,
    knee_hz: float,
    knee_percent: float,
    full_hz: float,
) -> None:
    """Raise ValueError ("FIELD reason") unless the knee is one the core takes
    (``DroopConfig::validate_knee``, so that a setting is refused when the configuration
    is loaded rather than when the core gets it): no knee (all three 0), or a knee
    beyond both deadband edges, ``knee_percent`` in (0, 100) and ``full_hz`` beyond
    ``knee_hz`` (a continuous, monotonic response)."""
    if not (math.isfinite(knee_hz) and knee_hz >= 0):
        raise ValueError(f"knee_hz must be >= 0 and finite (0 = no knee), got {knee_hz}")
    if knee_hz == 0:
        # A knee_percent or full_hz without knee_hz would be silently ignored.
        for name, v in (("knee_percent", knee_percent), ("full_hz", full_hz)):
            if v != 0:
                raise ValueError(f"{name} must be 0 without a knee (knee_hz 0), got {v}")
        return
    below, above = nominal_hz - deadband_low_hz, deadband_high_hz - nominal_hz
    if not (knee_hz > below and knee_hz > above):
        raise ValueError(
            f"knee_hz must be beyond both deadband edges ({below:.6g} and {above:.6g} Hz "
            f"from nominal), got {knee_hz}"
        )
    if not (math.isfinite(knee_percent) and 0 < knee_percent < 100):
        raise ValueError(f"knee_percent must be in (0, 100) with a knee, got {knee_percent}")
    if not (math.isfinite(full_hz) and full_hz > knee_hz):
        raise ValueError(f"full_hz must be finite and beyond knee_hz ({knee_hz}), got {full_hz}")


class Location(BaseModel):
    """Where a unit is: the six levels of the location hierarchy."""

    model_config = _STRICT
    country: str = "IN"
    state: str = "KA"
    city: str = "Bengaluru"
    campus: str = "campus-1"
    building: str = "building-1"
    node: str = "node-1"

    def path(self) -> tuple[str, str, str, str, str, str]:
        """(country, state, city, campus, building, node)."""
        return (self.country, self.state, self.city, self.campus, self.building, self.node)


class DeviceConfig(BaseModel):
    """A device behind a protocol of the ProtocolFactory (validated by it at start)."""

    model_config = _STRICT
    protocol: str = Field(description="modbus_tcp, modbus_rtu, sunspec, mqtt, can_bms, ...")
    config: dict[str, Any] = Field(default_factory=dict, description="the protocol's config")
    secondary: dict[str, Any] | None = Field(
        default=None, description="a second path to the same device, used on failover"
    )
    poll_interval_s: float = Field(default=0.2, gt=0, le=60)


#: The grid's nominal frequency (the droop's and the bands' reference), Hz.
NOMINAL_HZ = 50.0


class DroopSettings(BaseModel):
    """Primary frequency response of a unit (the core's DroopController): droop or knee."""

    # A straight droop from the deadband edge, or with knee_hz > 0 two segments through
    # the service's points, the same both sides of nominal: 0 at the deadband edge,
    # knee_percent of the share at knee_hz from nominal, 100 % at full_hz (droop_percent
    # is then unused; docs/control.md). GB Dynamic Containment: deadband 49.985-50.015,
    # knee_hz 0.2, knee_percent 5, full_hz 0.5.
    # Strict: numbers only (also when the set_droop command carries them), no bools.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)
    droop_percent: float = Field(default=5.0, gt=0, le=20)
    deadband_low_hz: float = 49.90
    deadband_high_hz: float = 50.05
    knee_hz: float = Field(
        default=0.0, ge=0, description="deviation from nominal at the knee, Hz (0: no knee)"
    )
    knee_percent: float = Field(
        default=0.0, ge=0, lt=100, description="response at the knee, % of the share"
    )
    full_hz: float = Field(
        default=0.0, ge=0, description="deviation from nominal at 100 % with a knee, Hz"
    )
    ramp_kw_per_s: float | None = Field(default=None, gt=0)
    inertia_kw_per_hz_s: float = Field(default=0.0, ge=0)

    @model_validator(mode="after")
    def _band(self) -> DroopSettings:
        if not self.deadband_low_hz < self.deadband_high_hz:
            raise ValueError("deadband_low_hz must be below deadband_high_hz")
        if not self.deadband_low_hz <= NOMINAL_HZ <= self.deadband_high_hz:
            # Outside it the unit would answer a normal grid as if it were an event.
            raise ValueError(f"the deadband must contain the nominal {NOMINAL_HZ:g} Hz")
        check_knee(NOMINAL_HZ, self.deadband_low_hz, self.deadband_high_hz,
                   self.knee_hz, self.knee_percent, self.full_hz)  # fmt: skip
        return self


class UnitConfig(BaseModel):
    """One battery unit: its rating, its inverter (and BMS) and its response."""

    model_config = _STRICT
    id: str = Field(min_length=1)
    location: Location = Field(default_factory=Location)
    rated_power_kw: float = Field(gt=0, description="discharge and charge limit, kW")
    capacity_kwh: float = Field(gt=0)
    chemistry: Literal["lfp_16s", "nmc_16s"] = "lfp_16s"
    inverter: DeviceConfig
    bms: DeviceConfig | None = None
    droop: DroopSettings = Field(default_factory=DroopSettings)
    write_threshold_kw: float = Field(
        default=0.0,
        ge=0,
        description="a new setpoint is written when it differs from the last by more than this",
    )
    series_cells: int = Field(
        default=240,
        ge=1,
        description="cells in series on the DC bus: scales the envelope's pack limits and "
        "gives the cell voltage when no BMS reports it",
    )
    safety: dict[str, float] = Field(
        default_factory=dict, description="safety envelope limits overriding the scaled preset"
    )


class PmuSource(BaseModel):
    """Where a field controller gets its synchrophasor stream (C37.118)."""

    model_config = _STRICT
    host: str = "127.0.0.1"
    port: int = Field(default=4712, ge=0, le=65535)
    idcode: int = Field(default=7734, ge=1, le=65534)
    transport: Literal["tcp", "udp"] = "tcp"
    udp_port: int = Field(default=0, ge=0, le=65535)
    max_time_offset_s: float | None = Field(
        default=5.0,
        gt=0,
        description="a frame whose time is further than this from the controller's clock "
        "is refused (null: no check)",
    )
    max_lead_s: float = Field(
        default=0.5,
        gt=0,
        le=10,
        description="how far the PMU time may advance beyond the real time elapsed between "
        "two frames (network jitter) before a frame is refused as a jump",
    )
    resync_after_s: float = Field(
        default=2.0,
        gt=0,
        le=600,
        description="how long refused frames must agree on a new PMU time base before it "
        "is taken",
    )
    accept_sync_lost: bool = Field(
        default=False,
        description="use frames whose PMU reports lost time sync (STAT bit 13); by default "
        "they count as invalid and the response ramps to zero",
    )
    max_deviation_hz: float = Field(
        default=5.0,
        gt=0,
        le=20,
        description="a frequency further than this from nominal is a bad measurement",
    )


class RealtimeConfig(BaseModel):
    """The field controller's real-time loop (docs/realtime-loop.md): the per-frame path
    in a thread of the compiled core, writing Modbus TCP inverters itself."""

    model_config = _STRICT
    enabled: bool = Field(
        default=True,
        description="run the frame path in the core's thread (false: the asyncio path)",
    )
    priority: int = Field(
        default=50,
        ge=0,
        le=99,
        description="SCHED_FIFO priority of the loop's thread where the system allows it "
        "(0: do not ask)",
    )
    lock_memory: bool = Field(
        default=True,
        description="lock the controller's memory (mlockall) where the system allows it",
    )
    write_timeout_s: float = Field(
        default=0.5, gt=0, le=10, description="a write unanswered this long resets the link"
    )
    watchdog_period_s: float = Field(
        default=0.2,
        gt=0,
        le=10,
        description="how often the loop writes the inverter's watchdog register (a map "
        "point named watchdog)",
    )
    watchdog_timeout_s: float = Field(
        default=2.0,
        ge=0,
        le=600,
        description="written to the inverter's watchdog_timeout point on each connect "
        "(0: the inverter's watchdog off)",
    )
    stall_after_s: float = Field(
        default=0.5,
        gt=0,
        le=60,
        description="the loop not iterating for this long is reported as stalled",
    )
    spin_us: float = Field(
        default=0.0,
        ge=0,
        le=5000,
        description="busy-wait this long either side of the next frame's expected arrival, "
        "so the CPU is awake when it comes (0: never; costs about twice this per frame "
        "period of one core)",
    )


class FieldConfig(BaseModel):
    """A field controller (one per site or RTU)."""

    model_config = _STRICT
    id: str = Field(min_length=1)
    pmu: PmuSource = Field(default_factory=PmuSource)
    units: list[UnitConfig] = Field(min_length=1)
    telemetry_interval_s: float = Field(default=1.0, gt=0, le=60)
    heartbeat_interval_s: float = Field(default=1.0, gt=0, le=60)
    decisions_every: int = Field(
        default=5, ge=1, description="publish one decision in this many PMU frames"
    )
    commands: CommandLimits = Field(
        default_factory=CommandLimits, description="what the controller's commands accept"
    )
    realtime: RealtimeConfig = Field(
        default_factory=RealtimeConfig, description="the real-time loop of the core"
    )

    @model_validator(mode="after")
    def _unique(self) -> FieldConfig:
        dup = {i for i, k in collections.Counter(u.id for u in self.units).items() if k > 1}
        if dup:
            raise ValueError(f"unit ids repeat: {sorted(dup)}")
        return self


@dataclass(frozen=True)
class FieldSite:
    """What a field controller's process is given in place of the whole
    :class:`~vpp.config.models.SiteConfig`: its own section (the launcher's choice, see
    the module docstring). It has the one attribute the controller reads, ``field``."""

    field: tuple[FieldConfig, ...]
