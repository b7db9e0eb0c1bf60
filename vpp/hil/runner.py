"""Run a case in real time against the simulated target and record every frame.

The simulated target is this project's own field controller
(:class:`~vpp.orchestrator.field.controller.FieldController`, its asyncio frame path)
with one unit, driving the BESS simulator (:class:`~vpp.sim.bess.BessSimulator`) over
Modbus TCP on loopback, fed by a C37.118 PMU server (:class:`~vpp.sim.pmu.PmuServer`)
on loopback whose frequency source is the case's profile, paced in real time. Nothing is
mocked: the frames, the setpoints and the power read back all cross real sockets.

Per admitted frame the record keeps the frame's time (s from the case start), its
frequency and the pipeline's ROCOF, the decision (setpoint, the envelope's range, the
safety action), and the unit's last inverter status as polled over Modbus (measured
power, SOC). The power is the last poll's, so it lags by up to one poll interval. The
times of the frames the controller refused or took as invalid are kept apart.

A case with a ``trip`` (the ``safety_trip`` procedure) has it injected into the
simulated plant at its case time, and held to the end of the case: a cell over-voltage
(the BESS reports its DC voltage at the trip's cell voltage) or an over-temperature (the
battery and its ambient at the trip's temperature).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from vpp.config.models import DeviceConfig, DroopSettings, FieldConfig, PmuSource, UnitConfig
from vpp.errors import ConfigError, VppError
from vpp.hil.plan import (
    Case,
    CellOverVoltageTrip,
    OverTemperatureTrip,
    Plan,
    Procedure,
    UnitSettings,
    case_trip,
)
from vpp.hil.profiles import CaseSource, ProfileFunction
from vpp.orchestrator.field.controller import FieldController
from vpp.sim.bess import BessSimulator
from vpp.sim.bess_model import BessModel
from vpp.sim.pmu import PmuServer

__all__ = [
    "ACTIONS",
    "CaseRecord",
    "RecordingController",
    "participation_kw",
    "run_case",
    "unit_settings",
]

log = logging.getLogger(__name__)

UNIT_ID = "dut"
#: The safety actions, by severity (the record's ``action`` column is the index).
ACTIONS = ("none", "log", "reduce", "stop", "emergency_shutdown")
#: Seconds of the record kept before the case start (the compliance baseline needs 1 s).
PRE_ROLL_S = 1.5
#: Inverter poll interval, s: the measured power's lag is at most this.
POLL_S = 0.1
#: How much longer than the case a run may take before it is abandoned.
SLACK_S = 20.0

COLUMNS = (
    "t_s", "freq_hz", "rocof_hz_s", "setpoint_kw", "requested_kw", "min_kw", "max_kw",
    "measured_kw", "soc_pct", "action",
)  # fmt: skip


@dataclass
class CaseRecord:
    """The frames of one case: ``rows`` of :data:`COLUMNS`; ``start_unix_s`` is the
    UNIX time of case time 0; ``rated_kw`` and ``participation_kw`` what the unit had."""

    name: str
    start_unix_s: float
    rated_kw: float
    participation_kw: float
    rows: list[tuple[float, ...]] = field(default_factory=list)
    wall_s: float = 0.0
    #: Why the case was not run (a failed case), or None.
    not_run: str | None = None
    #: The target: "simulated", or "device" (no setpoint, envelope or safety action).
    target: str = "simulated"
    #: Meter polls that failed (device target).
    meter_errors: int = 0
    #: What the report should say about the run itself (frames the PMU skipped, ...).
    notes: list[str] = field(default_factory=list)
    #: Case times of the frames from case time 0 on that the controller refused (another
    #: stream, late, jumped...) or took as invalid (flagged, implausible): frames it did
    #: not respond to (simulated target only).
    unused_s: list[float] = field(default_factory=list)
    #: Case time the trip was injected at (None: no trip).
    trip_at_s: float | None = None
    #: Columns of a procedure's own after :data:`COLUMNS` in each row (an AGC case's
    #: set-point and the campus's offset, ...); the CSV and COMTRADE exports take them too.
    extra_columns: tuple[str, ...] = ()

    @property
    def columns(self) -> tuple[str, ...]:
        """The names of a row's values: :data:`COLUMNS` and the extra ones."""
        return COLUMNS + self.extra_columns

    def column(self, name: str) -> NDArray[np.float64]:
        """One column as an array."""
        i = self.columns.index(name)
        return np.array([r[i] for r in self.rows], dtype=np.float64)


class RecordingController(FieldController):
    """A field controller that records each admitted frame's decision (the step itself
    is the controller's own: this only looks at its result)."""

    def __init__(self, cfg: FieldConfig, record: CaseRecord, t0: float) -> None:
        super().__init__(cfg, realtime=False)
        self.record, self.t0 = record, t0

    def step(self, t: float, f: float, dfreq: float, stat: int, idcode: int, publish: bool) -> bool:
        """Step as the controller does, then record the unit's decision."""
        ok = super().step(t, f, dfreq, stat, idcode, publish)
        unit = self.units[UNIT_ID]
        d = unit.decision
        tc = t - self.t0
        if tc >= 0 and (not ok or d is None or not d.freq_valid):
            self.record.unused_s.append(tc)
        if ok and d is not None and tc >= -PRE_ROLL_S:
            st = unit.status or {}
            rocof = d.rocof if d.rocof is not None else math.nan
            self.record.rows.append((
                tc, f, rocof, d.setpoint_kw, d.requested_kw, d.min_kw, d.max_kw,
                float(st.get("active_power", math.nan)), float(st.get("soc", math.nan)),
                float(ACTIONS.index(d.action.label)) if d.action.label in ACTIONS else math.nan,
            ))  # fmt: skip
        return ok


def unit_settings(proc: Procedure, case: Case) -> UnitSettings:
    """The procedure's unit settings with the case's overrides on top."""
    merged = proc.unit.model_dump(exclude_none=True) | case.unit.model_dump(exclude_none=True)
    return UnitSettings(**merged)


@dataclass
class TrippableModel(BessModel):
    """The BESS model with the harness's cell over-voltage: while :attr:`cell_v_trip` is
    set the DC voltage is reported at that voltage per cell (the simulator itself has no
    such fault; the over-temperature needs no help: it sets the temperature)."""

    cell_v_trip: float | None = field(default=None, init=False)

    def dc_voltage_v(self) -> float:
        """The pack voltage: the tripped cell voltage times the cells while tripped."""
        if self.cell_v_trip is not None:
            return self.cell_v_trip * self.cells
        return super().dc_voltage_v()


def _inject(model: TrippableModel, trip: CellOverVoltageTrip | OverTemperatureTrip) -> None:
    """Put the plant into the trip's state (held: nothing in the case clears it)."""
    if isinstance(trip, CellOverVoltageTrip):
        model.cell_v_trip = trip.cell_v
    else:
        # The ambient too, or the thermal model would cool the battery back down.
        model.temp_c = model.ambient_c = trip.temperature_c


def _unit_config(
    plan: Plan, settings: UnitSettings, bess_port: int, uid: str = UNIT_ID
) -> UnitConfig:
    rated = plan.unit.rated_kw
    droop: dict[str, Any] = {
        k: v
        for k, v in settings.model_dump(exclude_none=True).items()
        if k in DroopSettings.model_fields
    }
    where = {"host": "127.0.0.1", "port": bess_port, "timeout": 0.5, "retries": 0}
    inverter = DeviceConfig(protocol="modbus_tcp", config=where, poll_interval_s=POLL_S)
    safety = {}
    if settings.ramp_pu_per_s is not None:
        # Both ramps: the droop's own (its default is 1 p.u./s) and the envelope's.
        droop["ramp_kw_per_s"] = safety["ramp_kw_per_s"] = settings.ramp_pu_per_s * rated
    try:
        return UnitConfig(
            id=uid,
            rated_power_kw=rated,
            capacity_kwh=plan.unit.capacity_kwh,
            inverter=inverter,
            droop=DroopSettings(**droop),
            safety=safety,
        )
    except ValueError as exc:
        # A deadband or droop the controller refuses: the plan's fault, said in one line.
        raise ConfigError(f"unit settings {droop}: {exc}") from exc


def participation_kw(plan: Plan, case: Case) -> float:
    """The unit's participation in ``case`` (kW; its rating unless the case says); above
    the rating is a ConfigError naming the field."""
    rated = plan.unit.rated_kw
    part = rated if case.start.participation_kw is None else case.start.participation_kw
    if part > rated:
        raise ConfigError(
            f"case {case.name}: field 'start.participation_kw': {part:g} kW is above the "
            f"unit's rating {rated:g} kW"
        )
    return part


async def run_case(plan: Plan, case: Case, proc: Procedure, fn: ProfileFunction) -> CaseRecord:
    """Run ``case`` (its frequency ``fn``) in real time (``plan.settle_s`` before it, its
    duration after) and return its record."""
    source = CaseSource(fn, plan.settle_s, plan.rate)
    settings = unit_settings(proc, case)
    rated = plan.unit.rated_kw
    part = participation_kw(plan, case)
    trip = case_trip(proc, case)
    model = TrippableModel(
        capacity_kwh=plan.unit.capacity_kwh,
        p_max_kw=rated,
        soc_pct=case.start.soc_pct,
        # The inverter follows at 10 p.u./s: the ramp under test is the controller's.
        ramp_kw_s=10 * rated,
    )
    model.temp_c = case.start.temperature_c
    bess = BessSimulator(port=0, model=model)
    pmu = PmuServer(rate=plan.rate, port=0, source=source)
    wall0 = time.monotonic()
    async with pmu, bess:
        while pmu.ticks == 0:  # k0, the PMU's first frame on the time grid, is set then
            await asyncio.sleep(0.01)
        t0 = pmu.k0 / plan.rate + plan.settle_s
        record = CaseRecord(case.name, t0, rated, part)
        admit: dict[str, Any] = {}
        if settings.max_deviation_hz is not None:
            admit["max_deviation_hz"] = settings.max_deviation_hz
        cfg = FieldConfig(id="hil", pmu=PmuSource(port=pmu.port, **admit),
                          units=[_unit_config(plan, settings, bess.port)])  # fmt: skip
        ctl = RecordingController(cfg, record, t0)
        unit = ctl.units[UNIT_ID]
        unit.set_participation(part)
        unit.set_base(case.start.base_kw)
        async with ctl:
            deadline = time.monotonic() + plan.settle_s + case.duration_s + SLACK_S
            while not record.rows or record.rows[-1][0] < case.duration_s:
                if time.monotonic() > deadline:
                    raise VppError(
                        f"case {case.name}: the target recorded "
                        f"{len(record.rows)} frames in {SLACK_S:g} s more than the case's "
                        "duration; is the machine overloaded?"
                    )
                if trip is not None and record.trip_at_s is None:
                    now = time.time() - t0  # case time (the PMU's clock is the wall clock)
                    if now >= trip.at_s:
                        _inject(model, trip)
                        record.trip_at_s = now
                        log.info("case %s: %s injected at %.3f s", case.name, trip.kind, now)
                        continue
                    await asyncio.sleep(min(0.05, trip.at_s - now))
                    continue
                await asyncio.sleep(0.05)
    record.wall_s = time.monotonic() - wall0
    log.info("case %s: %d frames in %.1f s", case.name, len(record.rows), record.wall_s)
    return record
