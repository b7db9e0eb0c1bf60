"""The simulated target of an AGC case: the campus in the loop (docs/hil.md, "AGC").

Per case, in the harness's process, on real sockets, paced in real time, nothing mocked:

- an authenticated ZeroMQ bus as a site's launcher makes it (:class:`Topology` over ipc
  in a temporary directory, Curve keys made for every identity, the events broker with
  the site's policy);
- the campus aggregator (:class:`~vpp.orchestrator.campus.service.Campus`) with the
  case's ``campus.agc`` (reserve, ramp, timeout) and dispatch interval;
- one field controller (:class:`~vpp.orchestrator.field.controller.FieldController`,
  its asyncio frame path) with the case's units, each driving its own BESS simulator
  over Modbus TCP, fed by a C37.118 PMU server holding the profile's frequency; it
  takes the campus's ``set_base`` on its command server and publishes heartbeats and
  telemetry to the broker, as in a site;
- the despatch centre: the harness sends ``agc`` {mw} to the campus's command server as
  the identity ``scada`` (the SCADA gateway's, whose role may send ``agc``) every
  ``cycle_s``, the set-point in force in the profile.

Per admitted frame the record keeps :data:`~vpp.hil.runner.COLUMNS` summed over the
units (setpoint, requested, envelope range, measured power; the SOC is their mean, the
safety action the worst) and :data:`EXTRA`: the set-point in force (the last one sent),
the campus's obligation and offset (its AGC handler's last step), the units' base (what
the campus dispatched), the worst envelope excess of a unit and the largest unit's
measured power in % of its rating.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vpp.config.models import FieldConfig, PmuSource, SiteConfig
from vpp.errors import ConfigError, VppError
from vpp.hil.agc_plan import AgcProfile, ResolvedAgc, agc_limits, resolve_agc
from vpp.hil.plan import Case, Plan, Procedure
from vpp.hil.profiles import CaseSource, ProfileFunction
from vpp.hil.runner import (
    ACTIONS,
    PRE_ROLL_S,
    SLACK_S,
    CaseRecord,
    _unit_config,
    participation_kw,
    unit_settings,
)
from vpp.orchestrator.bus.pubsub import Client
from vpp.orchestrator.bus.topology import SCADA, Topology
from vpp.orchestrator.campus.service import Campus
from vpp.orchestrator.field.controller import FieldController
from vpp.orchestrator.grid.agc import AgcConfig
from vpp.sim.bess import BessSimulator
from vpp.sim.bess_model import BessModel
from vpp.sim.pmu import PmuServer

__all__ = ["EXTRA", "FIELD_ID", "campus_agc_config", "run_agc_case"]

log = logging.getLogger(__name__)

#: The field controller of the campus under test.
FIELD_ID = "hil-field"
#: The AGC record's columns after :data:`~vpp.hil.runner.COLUMNS`.
EXTRA = (
    "agc_setpoint_kw", "campus_requested_kw", "campus_offset_kw", "base_kw",
    "envelope_excess_kw", "unit_peak_pct",
)  # fmt: skip
#: How fast the field controller tells the campus about its units (the campus's fleet,
#: and so its headroom and SOC, are as fresh as this).
TELEMETRY_S = 0.2
HEARTBEAT_S = 0.5

#: (set-point in force, the campus's obligation, its offset), kW; NaN when none.
AgcNow = Callable[[], tuple[float, float, float]]


class AgcRecordingController(FieldController):
    """A field controller on the site's bus that records each admitted frame's decisions
    summed over its units (the step itself is the controller's own)."""

    def __init__(
        self, cfg: FieldConfig, record: CaseRecord, t0: float, agc_now: AgcNow, **bus: Any
    ) -> None:
        super().__init__(cfg, realtime=False, **bus)
        self.record, self.t0, self.agc_now = record, t0, agc_now

    def step(self, t: float, f: float, dfreq: float, stat: int, idcode: int, publish: bool) -> bool:
        """Step as the controller does, then record the units' decisions."""
        ok = super().step(t, f, dfreq, stat, idcode, publish)
        tc = t - self.t0
        units = list(self.units.values())
        decisions = [u.decision for u in units]
        if tc >= 0 and (not ok or any(d is None or not d.freq_valid for d in decisions)):
            self.record.unused_s.append(tc)
        if not ok or tc < -PRE_ROLL_S:
            return ok
        sums = [0.0] * 5  # setpoint, requested, min, max, measured
        socs: list[float] = []
        action, excess, peak = 0.0, 0.0, 0.0
        for u, d in zip(units, decisions, strict=True):
            if d is None:
                return ok
            st = u.status or {}
            p = float(st.get("active_power", math.nan))
            for i, v in enumerate((d.setpoint_kw, d.requested_kw, d.min_kw, d.max_kw, p)):
                sums[i] += v
            socs.append(float(st.get("soc", math.nan)))
            a = ACTIONS.index(d.action.label) if d.action.label in ACTIONS else math.nan
            action = max(action, a)
            excess = max(excess, d.setpoint_kw - d.max_kw, d.min_kw - d.setpoint_kw)
            peak = max(peak, 100.0 * abs(p) / u.cfg.rated_power_kw)
        rocof = decisions[0].rocof if decisions[0] is not None else None
        sp, req, off = self.agc_now()
        self.record.rows.append((
            tc, f, math.nan if rocof is None else rocof, *sums,
            sum(socs) / len(socs), action,
            sp, req, off, sum(u.base_kw for u in units), excess, peak,
        ))  # fmt: skip
        return ok


def campus_agc_config(agc: ResolvedAgc, limits: dict[str, float]) -> AgcConfig:
    """The campus's ``campus.agc``: the case's reserve, ramp and timeout, and the case's
    limits for its own performance reports (so its ``agc`` events agree with the
    harness's criteria)."""
    return AgcConfig(
        cycle_s=agc.cycle_s,
        reserved_up_mw=agc.campus_up_mw,
        reserved_down_mw=agc.campus_down_mw,
        ramp_mw_per_min=agc.ramp_mw_per_min,
        timeout_s=agc.timeout_s,
        start_s=limits["agc_start_s"],
        full_s=limits["agc_full_s"],
        start_fraction=limits["agc_start_fraction"],
        tolerance_pct=limits["agc_tolerance_pct"],
    )


class _SetPointState:
    """What the despatch centre last sent (kW; NaN before the first)."""

    def __init__(self) -> None:
        self.kw = math.nan


async def _despatch(
    client: Client, profile: AgcProfile, cycle_s: float, t0: float, duration_s: float,
    state: _SetPointState, record: CaseRecord,
) -> None:  # fmt: skip
    """Send the set-point in force every ``cycle_s`` from its first, on a grid from case
    time 0, as the despatch centre does; a refusal is noted in the record."""
    k = 0
    while (tc := k * cycle_s) < duration_s:
        k += 1
        mw = profile.mw_at(tc)
        if mw is None:
            continue
        delay = t0 + tc - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        # In force from when it is sent: the campus acts on it as it arrives.
        state.kw = mw * 1000.0
        ack = await client.request("agc", {"mw": mw})
        if not ack.ok:
            record.notes.append(f"the campus refused the set-point {mw:g} MW at {tc:g} s: "
                                f"{ack.error}")  # fmt: skip


def _site(
    plan: Plan, case: Case, agc: ResolvedAgc, field: FieldConfig, run_dir: Path,
    limits: dict[str, float],
) -> SiteConfig:  # fmt: skip
    base_kw = case.start.base_kw * agc.units
    return SiteConfig.model_validate({
        "field": [field],
        "bus": {"dir": run_dir, "command_timeout_s": 1.0, "command_retries": 0},
        "campus": {
            "dispatch_interval_s": agc.dispatch_interval_s,
            # The schedule the offset goes on: the units' base power, all of them.
            "target_kw": base_kw if base_kw else None,
            "agc": campus_agc_config(agc, limits),
        },
        # Nothing of a site runs but the campus and the field controller.
        "grid": {"enabled": False},
        "market": {"enabled": False},
        "simulation": {"enabled": False},
        "api": {"enabled": False},
        "scada": {"enabled": False},
    })  # fmt: skip


async def run_agc_case(plan: Plan, case: Case, proc: Procedure, fn: ProfileFunction) -> CaseRecord:
    """Run the AGC ``case`` against the campus in the loop in real time (``plan.settle_s``
    before it, its duration after) and return its record."""
    profile = case.profile
    if not isinstance(profile, AgcProfile):
        raise ConfigError(f"case {case.name}: an AGC case needs a profile of kind 'agc'")
    agc = resolve_agc(proc, case)
    limits = agc_limits(proc, case)
    settings = unit_settings(proc, case)
    rated = plan.unit.rated_kw
    part = participation_kw(plan, case)
    models = []
    for _ in range(agc.units):
        # The inverters follow at 10 p.u./s: the response under test is the campus's.
        m = BessModel(capacity_kwh=plan.unit.capacity_kwh, p_max_kw=rated,
                      soc_pct=case.start.soc_pct, ramp_kw_s=10 * rated)  # fmt: skip
        m.temp_c = case.start.temperature_c
        models.append(m)
    source = CaseSource(fn, plan.settle_s, plan.rate)
    pmu = PmuServer(rate=plan.rate, port=0, source=source)
    state = _SetPointState()
    wall0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="vpp-hil-agc-") as tmp:
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(pmu)
            besses = [await stack.enter_async_context(BessSimulator(port=0, model=m))
                      for m in models]  # fmt: skip
            while pmu.ticks == 0:  # k0, the PMU's first frame on the time grid, is set then
                await asyncio.sleep(0.01)
            t0 = pmu.k0 / plan.rate + plan.settle_s
            record = CaseRecord(case.name, t0, rated * agc.units, part * agc.units,
                                extra_columns=EXTRA)  # fmt: skip
            admit: dict[str, Any] = {}
            if settings.max_deviation_hz is not None:
                admit["max_deviation_hz"] = settings.max_deviation_hz
            units = [_unit_config(plan, settings, b.port, uid=f"dut-{k + 1}")
                     for k, b in enumerate(besses)]  # fmt: skip
            field = FieldConfig(id=FIELD_ID, pmu=PmuSource(port=pmu.port, **admit), units=units,
                                telemetry_interval_s=TELEMETRY_S,
                                heartbeat_interval_s=HEARTBEAT_S)  # fmt: skip
            try:
                site = _site(plan, case, agc, field, Path(tmp), limits)
            except ValueError as exc:
                raise ConfigError(
                    f"case {case.name}: the campus refuses its settings: {exc}"
                ) from exc
            topo = Topology.build(site.bus, [FIELD_ID], Path(tmp), site.security, make_keys=True)
            await stack.enter_async_context(topo.broker())
            campus = Campus(site, topo)

            def agc_now() -> tuple[float, float, float]:
                last = campus.agc.last
                if last is None:
                    return state.kw, math.nan, math.nan
                return state.kw, 1000.0 * last.requested_mw, 1000.0 * last.offset_mw

            ctl = AgcRecordingController(
                field, record, t0, agc_now,
                events_in=topo.events_in, command_endpoint=topo.commands[FIELD_ID],
                curve=topo.server_curve(FIELD_ID), authorizer=topo.authorizer(FIELD_ID),
                publish_curve=topo.client_curve(FIELD_ID, "broker"),
                max_message_bytes=topo.security.max_message_bytes,
            )  # fmt: skip
            for unit in ctl.units.values():
                unit.set_participation(part)
            await stack.enter_async_context(ctl)
            await stack.enter_async_context(campus)
            # The despatch centre's set-points come through the SCADA gateway's identity.
            client = Client(topo.commands["campus"], name=SCADA,
                            curve=topo.client_curve(SCADA, "campus"), timeout=1.0,
                            retries=0)  # fmt: skip
            await stack.enter_async_context(client)
            record.notes.append(
                f"target: the campus aggregator and field controller {FIELD_ID} with "
                f"{agc.units} units of {rated:g} kW on an authenticated ZeroMQ bus; the "
                f"harness sends agc as '{SCADA}' every {agc.cycle_s:g} s; campus reserve "
                f"+{agc.campus_up_mw:g}/-{agc.campus_down_mw:g} MW, ramp "
                f"{agc.ramp_mw_per_min:g} MW/min, rounds every {agc.dispatch_interval_s:g} s"
            )
            sender = asyncio.create_task(
                _despatch(client, profile, agc.cycle_s, t0, case.duration_s, state, record)
            )
            try:
                await _until_done(record, case, plan, campus, agc.units)
                if sender.done() and sender.exception() is not None:
                    raise VppError(f"case {case.name}: sending the set-points failed: "
                                   f"{sender.exception()}")  # fmt: skip
            finally:
                sender.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sender
    record.wall_s = time.monotonic() - wall0
    log.info("case %s: %d frames in %.1f s", case.name, len(record.rows), record.wall_s)
    return record


async def _until_done(record: CaseRecord, case: Case, plan: Plan, campus: Campus, n: int) -> None:
    """Wait for the frames to reach the case's end; note whether the campus knew every
    unit at case time 0 (else its first rounds split over fewer)."""
    deadline = time.monotonic() + plan.settle_s + case.duration_s + SLACK_S
    checked = False
    while not record.rows or record.rows[-1][0] < case.duration_s:
        if time.monotonic() > deadline:
            raise VppError(
                f"case {case.name}: the target recorded {len(record.rows)} frames in "
                f"{SLACK_S:g} s more than the case's duration; is the machine overloaded?"
            )
        if not checked and record.rows and record.rows[-1][0] >= 0:
            checked = True
            if len(campus.fleet) < n:
                record.notes.append(f"the campus knew {len(campus.fleet)} of the {n} units at "
                                    "case time 0")  # fmt: skip
        await asyncio.sleep(0.05)
