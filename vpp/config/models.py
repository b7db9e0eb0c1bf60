"""The site configuration: one YAML file that every process of the VPP reads.

Sections: ``site``, ``bus``, ``field`` (one entry per field controller, each with its
battery units and their devices), ``campus``, ``grid``, ``market``, ``dsm`` (settlement),
``simulation``, ``history`` and ``supervision``. Every limit has a documented default
(docs/configuration.md). Models forbid unknown keys, so a misspelt key is an error rather
than silently ignored; each device's ``config`` is checked at load by its protocol's model
(:mod:`vpp.config.loader`).
"""

from __future__ import annotations

import collections
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from vpp.config.commands import CommandLimits
from vpp.config.field import (
    NOMINAL_HZ,
    DeviceConfig,
    DroopSettings,
    FieldConfig,
    FieldSite,
    Location,
    PmuSource,
    RealtimeConfig,
    UnitConfig,
)
from vpp.orchestrator.api.config import ApiSection
from vpp.orchestrator.bus.auth import SecuritySection
from vpp.orchestrator.bus.config import BusSection
from vpp.orchestrator.bus.receipt import ReceiptWindow
from vpp.orchestrator.campus.config import DispatchConfig, FleetConfig
from vpp.orchestrator.grid.agc import AgcConfig
from vpp.orchestrator.grid.config import ComplianceConfig, EventDetectionConfig
from vpp.orchestrator.market.bids import BidLimits
from vpp.orchestrator.market.dsm import DsmConfig
from vpp.orchestrator.market.file_exchange import FileExchangeConfig
from vpp.orchestrator.scada.config import ScadaSection
from vpp.sim.config import GridModelConfig

__all__ = [
    "NOMINAL_HZ",
    "CampusSection",
    "DeviceConfig",
    "DroopSettings",
    "FieldConfig",
    "FieldSite",
    "GridSection",
    "HistoryConfig",
    "Location",
    "MarketSection",
    "PmuSource",
    "RealtimeConfig",
    "SimBess",
    "SimEvent",
    "SimPmu",
    "SimulationConfig",
    "SiteConfig",
    "SiteInfo",
    "SupervisionConfig",
    "UnitConfig",
]

_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)


class CampusSection(BaseModel):
    """The campus aggregator."""

    model_config = _STRICT
    enabled: bool = True
    fleet: FleetConfig = Field(default_factory=FleetConfig)
    dispatch: DispatchConfig = Field(default_factory=DispatchConfig)
    dispatch_interval_s: float = Field(default=1.0, gt=0, le=3600)
    target_kw: float | None = Field(
        default=None, description="a fixed campus target; None follows the market schedule"
    )
    commands: CommandLimits = Field(
        default_factory=CommandLimits, description="what the campus's commands accept"
    )
    agc: AgcConfig = Field(
        default_factory=AgcConfig,
        description="AGC set-points and secondary reserve (docs/agc.md); nothing reserved "
        "by default",
    )


class GridSection(ReceiptWindow):
    """The grid service (frequency monitoring, response allocation, compliance)."""

    model_config = _STRICT
    enabled: bool = True
    events: EventDetectionConfig = Field(default_factory=EventDetectionConfig)
    compliance: ComplianceConfig = Field(default_factory=ComplianceConfig)
    obligation_kw: float | None = Field(
        default=None, gt=0, description="fleet response at full activation; None = fleet rating"
    )
    basis: Literal["headroom", "rating"] = Field(
        default="headroom", description="units share the obligation pro rata to this"
    )


class MarketSection(BaseModel):
    """The market gateway (IEX DAM/RTM)."""

    model_config = _STRICT
    enabled: bool = True
    limits: BidLimits = Field(default_factory=BidLimits)
    reserve_fraction: float = Field(
        default=0.2, ge=0, le=1, description="share of fleet power held back for frequency response"
    )
    degradation_rs_per_mwh: float = Field(default=500.0, ge=0)
    seed: int = 1
    rtm: bool = Field(
        default=True, description="re-trade each Real-Time Market session's 2 blocks"
    )
    from_current_block: bool = Field(
        default=False,
        description="also schedule the block under way (simulation: as if bid the day before)",
    )
    exchange: Literal["sim", "file"] = Field(
        default="sim",
        description="where bids go: the simulated exchange, or files a trader carries "
        "(docs/market-exchange.md)",
    )
    file_exchange: FileExchangeConfig = Field(
        default_factory=FileExchangeConfig, description="the file exchange (exchange: file)"
    )


class SimBess(BaseModel):
    """A simulated BESS (Modbus TCP server over a physical model) for one unit."""

    model_config = _STRICT
    unit: str = Field(description="the unit id it stands for")
    port: int = Field(default=0, ge=0, le=65535, description="0: chosen at start")
    initial_soc_pct: float = Field(default=60.0, ge=0, le=100)


class SimPmu(BaseModel):
    """The simulated PMU measuring the grid model's frequency."""

    model_config = _STRICT
    port: int = Field(default=0, ge=0, le=65535, description="0: chosen at start")
    idcode: int = Field(default=7734, ge=1, le=65534)
    rate: Literal[10, 25, 50] = 50
    noise_hz: float = Field(default=0.0005, ge=0)


class SimEvent(BaseModel):
    """A power step in the simulated grid: ``delta_mw`` > 0 is a deficit (a generator
    trips or load connects), < 0 a surplus."""

    model_config = _STRICT
    time_s: float = Field(ge=0, description="seconds after the start")
    delta_mw: float


class SimLdc(BaseModel):
    """A simulated load despatch centre: an IEC 104 master (vpp/sim/ldc.py) sending AGC
    set-points to the site's own outstation (needs ``scada`` with ``iec104`` enabled and
    ``agc.setpoint_mw`` among ``scada.commands``)."""

    model_config = _STRICT
    enabled: bool = False
    start_s: float = Field(default=5.0, ge=0, description="seconds after the start it connects")
    cycle_s: float = Field(default=4.0, gt=0, description="AGC set-point interval, s")
    amplitude_mw: float = Field(default=0.2, ge=0, description="AGC signal amplitude, MW")
    period_s: float = Field(default=120.0, gt=0, description="AGC signal period, s")
    interrogate_s: float = Field(
        default=60.0, gt=0, description="general interrogation interval, s"
    )


class SimulationConfig(BaseModel):
    """The simulated plant: BESS units, their BMSs, a grid with a PMU."""

    model_config = _STRICT
    enabled: bool = False
    grid: GridModelConfig = Field(default_factory=GridModelConfig)
    events: list[SimEvent] = Field(default_factory=list)
    repeat_s: float | None = Field(
        default=None, gt=0, description="the events repeat with this period; None = once"
    )
    pmu: SimPmu = Field(default_factory=SimPmu)
    bess: list[SimBess] = Field(default_factory=list)
    ldc: SimLdc = Field(default_factory=SimLdc)


class HistoryConfig(BaseModel):
    """The embedded SQLite history."""

    model_config = _STRICT
    enabled: bool = True
    path: str = "vpp-history.db"
    flush_interval_s: float = Field(default=1.0, gt=0, le=60)
    audit_key: str | None = Field(
        default=None,
        description="file of the secret key of the commands' audit chain (made 0600 when "
        "missing); None = <path>.audit-key. Put it where those who can edit the database "
        "cannot read it",
    )


#: The roles that may share a process (``supervision.shared``); ``ldc`` is the simulated
#: despatch centre.
SharedRole = Literal["campus", "grid", "market", "api", "scada", "ldc"]
SHARED_ROLES: tuple[SharedRole, ...] = ("campus", "grid", "market", "api", "scada", "ldc")


class SupervisionConfig(BaseModel):
    """How ``vpp run`` restarts the site's processes (roles and the simulated plant).

    A process that crashes is started again after ``backoff_s``, doubled with each quick
    death up to ``max_backoff_s``; a run of ``stable_s`` resets the backoff. One that
    dies more than ``max_restarts`` times within ``restart_window_s`` stops the site,
    and ``vpp run`` exits 1. A process stopped by its configuration (a ConfigError, an
    address it cannot bind) is never restarted: the site stops and ``vpp run`` exits 2.
    """

    model_config = _STRICT
    backoff_s: float = Field(default=0.5, gt=0, le=60, description="first restart delay, s")
    max_backoff_s: float = Field(default=10.0, gt=0, le=600, description="longest delay, s")
    stable_s: float = Field(default=30.0, gt=0, description="a run this long resets the backoff")
    max_restarts: int = Field(
        default=5, ge=0, description="restarts allowed within restart_window_s"
    )
    restart_window_s: float = Field(default=600.0, gt=0, description="the budget's window, s")
    stop_timeout_s: float = Field(
        default=5.0, gt=0, le=300, description="grace after SIGTERM before SIGKILL, s"
    )
    shared: dict[str, list[SharedRole]] = Field(
        default_factory=lambda: {"services": list(SHARED_ROLES)},
        description="roles that run together in one process, by that process's name "
        "(the default: every service in `services`, which halves the site's memory; "
        "`{}`: a process per role). A field controller always has a process of its own. "
        "A shared process is supervised as one: if a role in it fails, its roles are "
        "restarted together",
    )
    fields_first_s: float = Field(
        default=2.0, ge=0, le=60,
        description="at start, the field controllers start alone and the other roles once "
        "every unit has decided, or after this long (s; 0: all at once): on a small machine "
        "the services' imports would otherwise delay the first decisions",
    )  # fmt: skip

    @model_validator(mode="after")
    def _groups(self) -> SupervisionConfig:
        seen: dict[str, str] = {}
        for name, roles in self.shared.items():
            if not name or name in SHARED_ROLES or name in ("plant", "broker", "launcher"):
                raise ValueError(f"shared: {name!r} cannot name a shared process")
            if not roles:
                raise ValueError(f"shared.{name}: no role")
            for role in roles:
                if role in seen:
                    raise ValueError(f"shared: {role!r} is in both {seen[role]!r} and {name!r}")
                seen[role] = name
        return self


class SiteInfo(BaseModel):
    model_config = _STRICT
    name: str = "site"


class CommissioningConfig(BaseModel):
    """What ``vpp bench --commission`` requires of the machine a site is deployed on
    (docs/deploy.md); each figure is measured on the target and compared with these."""

    model_config = _STRICT
    pipeline_us: float = Field(
        default=20.0, gt=0, le=10_000,
        description="per-frame pipeline (decode, estimate, droop, envelope) called from "
        "Python, median, microseconds",
    )  # fmt: skip
    frame_to_setpoint_p50_ms: float = Field(
        default=0.25, gt=0, le=1000,
        description="PMU frame sent -> setpoint written at the inverter's Modbus server, "
        "real-time loop, median (ms)",
    )  # fmt: skip
    frame_to_setpoint_p99_ms: float = Field(default=1.0, gt=0, le=1000, description="the same, p99")
    frame_to_setpoint_max_ms: float = Field(
        default=5.0, gt=0, le=10_000, description="the same, largest"
    )
    ticker_late_p99_ms: float = Field(
        default=1.0, gt=0, le=1000,
        description="the core's ticker (the field loop's 100 ms step): lateness p99 (ms)",
    )  # fmt: skip
    field_rss_mb: float = Field(
        default=60.0, gt=0, le=100_000, description="RSS of each field controller (MB)"
    )
    site_rss_mb: float = Field(
        default=400.0, gt=0, le=100_000,
        description="RSS of all the site's processes together, simulators included (MB)",
    )  # fmt: skip
    first_decision_s: float = Field(
        default=1.5, gt=0, le=600,
        description="a field controller's process start to its first decision (s)",
    )  # fmt: skip
    device_poll_p99_ms: float = Field(
        default=100.0, gt=0, le=60_000,
        description="a status read of each of the site's own inverters and BMSs (simulation "
        "off), p99 (ms); read only, never written",
    )  # fmt: skip
    devices_required: bool = Field(
        default=True,
        description="fail commissioning when one of the site's own devices does not answer "
        "every read or its status lacks what the field controller needs (false: reported "
        "only, e.g. before the devices are wired)",
    )
    realtime_required: bool = Field(
        default=False,
        description="fail commissioning when SCHED_FIFO or memory locking is refused "
        "(otherwise reported as a shortfall)",
    )


class SiteConfig(BaseModel):
    """The whole site: every process reads this."""

    model_config = _STRICT
    site: SiteInfo = Field(default_factory=SiteInfo)
    bus: BusSection = Field(default_factory=BusSection)
    security: SecuritySection = Field(default_factory=SecuritySection)
    field: list[FieldConfig] = Field(min_length=1)
    campus: CampusSection = Field(default_factory=CampusSection)
    grid: GridSection = Field(default_factory=GridSection)
    market: MarketSection = Field(default_factory=MarketSection)
    dsm: DsmConfig = Field(
        default_factory=DsmConfig,
        description="deviation settlement and reserve payments for `vpp settle` "
        "(docs/settlement.md)",
    )
    simulation: SimulationConfig = Field(default_factory=SimulationConfig)
    history: HistoryConfig = Field(default_factory=HistoryConfig)
    api: ApiSection = Field(default_factory=ApiSection)
    scada: ScadaSection = Field(default_factory=ScadaSection)
    supervision: SupervisionConfig = Field(default_factory=SupervisionConfig)
    commissioning: CommissioningConfig = Field(default_factory=CommissioningConfig)

    @model_validator(mode="after")
    def _consistent(self) -> SiteConfig:
        ids = [f.id for f in self.field]
        units = [u.id for f in self.field for u in f.units]
        for what, names in (("field controller", ids), ("unit", units)):
            # Counted once (list.count per id made a 100,000-unit site take minutes).
            dup = sorted(i for i, k in collections.Counter(names).items() if k > 1)
            if dup:
                raise ValueError(f"{what} ids repeat: {dup}")
        clash = sorted(set(self.supervision.shared) & set(ids))
        if clash:
            raise ValueError(f"supervision.shared: a process may not take a field id: {clash}")
        known = set(units)
        for b in self.simulation.bess:
            if b.unit not in known:
                raise ValueError(f"simulation.bess names unit {b.unit!r}, which no field has")
        return self

    def units(self) -> list[UnitConfig]:
        """Every unit of every field controller."""
        return [u for f in self.field for u in f.units]
