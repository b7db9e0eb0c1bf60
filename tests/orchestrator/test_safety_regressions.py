"""Each way the safety promise was seen broken (issue 8), as it was tried then.

These run the field unit and controller without their devices (no I/O is needed to
show them); a clock of the test's own stands for the controller's clocks, so that
elapsed time is exact.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest

from tests.orchestrator.test_field_unit_properties import Clock
from tests.support.ramp import InForce, check_step
from vpp import c37118 as c
from vpp.config.models import DeviceConfig, FieldConfig, PmuSource, UnitConfig
from vpp.core import Pipeline, Telemetry
from vpp.errors import CommandError
from vpp.orchestrator.field.controller import FieldController
from vpp.orchestrator.field.unit import FieldUnit, Schedule
from vpp.sim.frequency import FrequencyProfile
from vpp.sim.pmu import PmuServer

RATED = 500.0
ID = 7734
T0 = 1_763_700_000.0


def unit_cfg(uid: str = "u1", bms: bool = False) -> UnitConfig:
    inv = DeviceConfig(protocol="modbus_tcp", config={"host": "127.0.0.1", "port": 1},
                       poll_interval_s=0.2)  # fmt: skip
    b = DeviceConfig(protocol="can_bms", config={"channel": "x"}, poll_interval_s=0.1)
    return UnitConfig(id=uid, rated_power_kw=RATED, capacity_kwh=1000, inverter=inv,
                      bms=b if bms else None)  # fmt: skip


def status(power: float, **kw: Any) -> dict[str, Any]:
    st = {"active_power": power, "dc_voltage": 792.0, "dc_current": 0.0, "soc": 50.0,
          "temperature_max": 25.0, "temperature_min": 24.0}  # fmt: skip
    st.update(kw)
    return st


class Running:
    """A unit running at a steady frequency with fresh telemetry, frame by frame."""

    def __init__(self, unit: FieldUnit, clock: Clock) -> None:
        self.u, self.clock, self.t = unit, clock, T0
        self.in_force: InForce | None = None

    def frames(
        self, n: int, f: float, dt_pmu: float = 0.02, power: float | None = None, **tel: Any
    ) -> list[float]:
        """``n`` frames at ``f`` Hz; the inverter reports ``power`` (default: it follows)."""
        out = []
        for _ in range(n):
            self.clock.mono += 0.02
            self.t += dt_pmu
            follows = self.u.decision.setpoint_kw if self.u.decision else 0.0
            self.u.on_status(status(follows if power is None else power, **tel))
            d = self.u.on_frame(self.t, f, math.nan, 0, ID)
            assert d is not None
            if self.in_force is not None:
                check_step(self.in_force, d, self.clock.mono, RATED)
            self.in_force = InForce(d.setpoint_kw, self.clock.mono)
            out.append(d.setpoint_kw)
        return out


def test_a_participation_change_ramps_from_where_the_unit_is() -> None:
    # Seen: 390 -> 70 kW within 0.1 s, and 500 -> 0 kW in one 20 ms frame, because a
    # new share built a new pipeline whose ramp started anew.
    clock = Clock()
    r = Running(FieldUnit(unit_cfg(), clock=clock), clock)
    r.frames(300, 47.0)  # full discharge response
    assert r.u.decision is not None and r.u.decision.setpoint_kw == pytest.approx(RATED)
    r.u.set_participation(0.0)
    # The inverter lags behind what it was told (as seen in a vpp run): no matter.
    after = r.frames(5, 47.0, power=0.0)
    assert after[0] == pytest.approx(RATED - 10.0)  # one 20 ms step at 500 kW/s
    r.u.set_participation(70.0)
    r.frames(100, 47.0)
    assert r.u.decision.setpoint_kw == pytest.approx(70.0)


def test_a_late_or_duplicate_frame_does_not_move_the_ramp_clock_back() -> None:
    # Seen: 0 -> 5 kW in 20 ms against a 0.1 kW allowance after a late frame moved the
    # envelope's clock back.
    p = Pipeline(p_max_kw=5.0, base_kw=5.0, idcode=ID)
    tel = {"pack_voltage_v": 52.8, "current_a": 0.0, "temp_min_c": 24.0, "temp_max_c": 25.0,
           "soc_pct": 50.0, "cell_v_min": 3.3, "cell_v_max": 3.31}  # fmt: skip
    p.set_telemetry(Telemetry(timestamp=T0 + 10.0, **tel))
    p.anchor(0.0, mono=10.0)
    d = p.step(T0 + 10.0, 50.0, idcode=ID, wall=T0 + 10.0, mono=10.0)
    assert d is not None and d.setpoint_kw == 0.0
    assert p.step(T0 + 0.0, 50.0, idcode=ID, wall=T0 + 10.01, mono=10.01) is None  # late
    assert p.step(T0 + 10.0, 50.0, idcode=ID, wall=T0 + 10.01, mono=10.01) is None  # dup
    d = p.step(T0 + 10.02, 50.0, idcode=ID, wall=T0 + 10.02, mono=10.02)
    assert d is not None and d.setpoint_kw == pytest.approx(0.1)
    assert p.stats()["refused"]["late"] == 1 and p.stats()["refused"]["duplicate"] == 1


def test_a_forward_jump_of_the_pmu_time_does_not_open_the_ramp() -> None:
    # Seen: -50 -> +500 kW in one frame when the PMU time leapt inside the stale window.
    clock = Clock()
    u = FieldUnit(unit_cfg(), clock=clock)
    u.set_base(-50.0)
    r = Running(u, clock)
    r.frames(100, 50.0)
    assert u.decision is not None and u.decision.setpoint_kw == pytest.approx(-50.0)
    u.set_base(RATED)
    # Within the jitter allowance (+0.4 s in 20 ms): admitted, one 20 ms ramp step.
    (sp,) = r.frames(1, 50.0, dt_pmu=0.4)
    assert sp == pytest.approx(-40.0)
    # The PMU clock leaps 1.5 s and runs on from there: refused (the controller steps the
    # unit without a measurement meanwhile) until the new time base has held for 2 s.
    assert r.in_force is not None
    r.t += 1.5
    decided = []
    for _ in range(150):
        clock.mono += 0.02
        r.t += 0.02
        u.on_status(status(r.in_force.kw))
        d = u.on_frame(r.t, 50.0, math.nan, 0, ID) or u.idle()
        check_step(r.in_force, d, clock.mono, RATED)
        r.in_force = InForce(d.setpoint_kw, clock.mono)
        decided.append(d.freq_valid)
    stats = u.pipeline.stats()
    assert stats["refused"]["time_jump"] == 100 and stats["resyncs"] == 1
    assert decided[:100] == [False] * 100 and all(decided[100:])


def test_stale_bms_data_stops_the_unit_while_the_inverter_answers() -> None:
    # Seen: BMS data ten minutes old used as fresh (action none, 300 kW) because the
    # inverter kept answering.
    clock = Clock()
    u = FieldUnit(unit_cfg(bms=True), clock=clock)
    u.set_base(300.0)
    r = Running(u, clock)
    u.on_bms_status({"cell_v_min": 3.3, "cell_v_max": 3.31, "temp_max_c": 25.0,
                     "data_time": T0})  # fmt: skip
    r.frames(50, 50.0)
    assert u.decision is not None and u.decision.action.label == "none"
    clock.mono += 600.0  # ten minutes: the inverter answers, the BMS does not
    r.t += 600.0
    r.in_force = None
    (sp,) = r.frames(1, 50.0)
    assert u.decision.action.label == "stop" and sp == 0.0
    assert "stale_bms" in {v.code.label for v in u.decision.violations}
    # A unit with a BMS that was never heard is stopped from the start.
    fresh = FieldUnit(unit_cfg(bms=True), clock=clock)
    fresh.on_status(status(0.0))
    d = fresh.on_frame(r.t + 0.02, 50.0, math.nan, 0, ID)
    assert d is not None and d.action.label == "stop"


def test_the_decoded_values_path_checks_plausibility_like_the_frame_path() -> None:
    # Seen: Pipeline.step(), the path vpp run uses, took 56 Hz or 40 Hz with a good STAT
    # as a grid event and drove a full response.
    clock = Clock()
    u = FieldUnit(unit_cfg(), clock=clock)
    r = Running(u, clock)
    for f in (56.0, 40.0):
        r.frames(100, f)
        assert u.decision is not None
        assert not u.decision.freq_valid and u.decision.response_kw == 0.0
    assert u.pipeline.stats()["invalid"]["implausible"] == 200


def test_frames_of_another_idcode_are_refused_on_the_controller_path() -> None:
    # Seen: frames from another IDCODE on the PMU connection were used for control.
    field = FieldConfig(id="f", pmu=PmuSource(idcode=ID), units=[unit_cfg()])
    ctl = FieldController(field)
    other = PmuServer(idcode=ID + 1, port=0, profile=FrequencyProfile(magnitude=-3.0))
    ctl.units["u1"].on_status(status(0.0))
    frame = c.decode(other.data_frame(0), [other.config])
    assert isinstance(frame, c.DataFrame) and frame.idcode == ID + 1
    ctl.on_frame(frame)
    assert ctl.frames_refused == 1 and not ctl.pmu_live
    assert ctl.units["u1"].pipeline.stats()["refused"]["wrong_idcode"] == 1
    assert ctl.units["u1"].decision is None


def test_a_tiny_schedule_block_is_refused_and_a_failing_unit_stops_alone() -> None:
    # Seen: a schedule with a tiny block length was accepted; every later frame raised,
    # so no unit of that controller was stepped (no envelope at all).
    field = FieldConfig(id="f", pmu=PmuSource(idcode=ID), units=[unit_cfg("u1"), unit_cfg("u2")])
    ctl = FieldController(field)
    now = ctl.units["u1"].clock()[0]
    bad = {"unit": "u1", "start": now, "block_s": 1e-300, "base_kw": [100.0]}
    with pytest.raises(CommandError, match="block_s"):
        asyncio.run(ctl.command("set_schedule", bad))
    assert ctl.units["u1"].schedule is None
    # Had one got in (here set by hand), only that unit stops, through its envelope.
    for u in ctl.units.values():
        u.on_status(status(0.0))
        u.set_base(100.0)
    ctl.units["u1"].schedule = Schedule(now, 5e-324, (100.0,))  # (t - start) / block: inf
    t = now
    for _ in range(10):
        t += 0.02
        assert ctl.step(t, 50.0, math.nan, 0, ID, False)
    u1, u2 = ctl.units["u1"], ctl.units["u2"]
    assert u1.step_errors == 1 and u1.schedule is None and u1.base_kw == 0.0
    assert u1.decision is not None and u1.decision.base_kw == 0.0
    assert u2.step_errors == 0 and u2.decision is not None and u2.decision.base_kw == 100.0


def test_a_latch_is_not_reset_while_temperatures_read_nan() -> None:
    # Seen: a latched emergency could be reset while the temperatures read NaN.
    field = FieldConfig(id="f", pmu=PmuSource(idcode=ID), units=[unit_cfg()])
    ctl = FieldController(field)
    u = ctl.units["u1"]
    t = u.clock()[0]
    u.on_status(status(0.0, temperature_max=80.0))
    assert u.on_frame(t, 50.0, math.nan, 0, ID) is not None and u.pipeline.latched
    u.on_status(status(0.0, temperature_max=math.nan, temperature_min=math.nan))
    u.on_frame(t + 0.02, 50.0, math.nan, 0, ID)
    reset = {"unit": "u1", "action": "reset_alarms"}
    with pytest.raises(CommandError, match="latch kept: invalid_telemetry"):
        asyncio.run(ctl.command("control", reset))
    assert u.pipeline.latched


def test_a_nan_from_a_device_or_the_pmu_never_stops_the_frame_path(ipc_dir: Any) -> None:
    # The schema refuses NaN (issue 8); building a message with one raised inside the
    # frame loop, which then skipped the units after it for that frame.
    from vpp.orchestrator.bus.broker import Broker
    from vpp.orchestrator.bus.pubsub import Publisher
    from vpp.orchestrator.bus.topology import BusSection, Topology
    from vpp.orchestrator.field import messages

    topo = Topology.build(BusSection(), ["f"], ipc_dir)
    field = FieldConfig(id="f", pmu=PmuSource(idcode=ID), units=[unit_cfg("u1"), unit_cfg("u2")])

    async def main() -> None:
        async with Broker(topo.events_in, topo.events_out):
            ctl = FieldController(field, events_in=topo.events_in)
            ctl.publisher = Publisher(topo.events_in, bind=False)
            try:
                u1, u2 = ctl.units["u1"], ctl.units["u2"]
                for u in (u1, u2):
                    u.on_status(status(0.0))
                t = u1.clock()[0]
                # A float FREQ marked missing (NaN) on a frame whose decision is published.
                assert ctl.step(t, math.nan, math.nan, 0, ID, True)
                assert u2.decision is not None and ctl.publish_errors == 0
                assert messages.decision("u1", t, math.nan, u2.decision).hz is None
                # A NaN read from an inverter register: that telemetry is not sent, counted.
                u1.on_status(status(math.nan))
                u1.online = True
                ctl.publish(lambda: messages.telemetry(u1))
                assert ctl.publish_errors == 1
                assert u1.state()["power"] is None
                # A violation whose value is unknown (a BMS never heard) publishes.
                rec = u1.violations(u1.on_frame(t + 0.02, 50.0, math.nan, 0, ID) or u1.idle())
                assert all(r["value"] is None or math.isfinite(r["value"]) for r in rec)
            finally:
                ctl.publisher.close()

    asyncio.run(main())
