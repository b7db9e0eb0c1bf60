"""A field unit's pieces: envelope scaling, telemetry mapping, schedule, violations, and
the coalescing setpoint writer against a real Modbus BESS simulator."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import pytest

from tests.support.devices import run, wait_until
from vpp.config.models import DeviceConfig, UnitConfig
from vpp.core import Decision
from vpp.drivers.communicator import ResourceCommunicator
from vpp.drivers.errors import ValidationError
from vpp.orchestrator.field import messages
from vpp.orchestrator.field.unit import FieldUnit, Schedule, build_envelope, map_telemetry
from vpp.orchestrator.field.writer import SetpointWriter
from vpp.sim.bess import BessSimulator


def unit(**kw: Any) -> UnitConfig:
    inv = DeviceConfig(protocol="modbus_tcp", config={"host": "127.0.0.1", "port": 1})
    return UnitConfig(id="u1", rated_power_kw=500, capacity_kwh=1000, inverter=inv, **kw)


def inverter_status(**kw: float) -> dict[str, float | bool]:
    st: dict[str, float | bool] = {"active_power": 20.0, "dc_voltage": 792.0, "dc_current": 25.0,
                                   "soc": 60.0, "soh": 98.0, "temperature_min": 24.0,
                                   "temperature_max": 25.0, "fault_bits": 0}  # fmt: skip
    st.update(kw)
    return st


def frame(u: FieldUnit, t: float, f: float = 50.0) -> Decision:
    """One admitted measurement of the default stream (IDCODE 7734) at PMU time ``t``."""
    d = u.on_frame(t, f, math.nan, 0, 7734)
    assert d is not None, u.pipeline.stats()["refused"]
    return d


def test_envelope_is_scaled_to_the_string_and_rating() -> None:
    lim = build_envelope(unit(series_cells=240)).limits
    # LFP 16S pack 40.0-58.4 V -> 2.5-3.65 V per cell x 240.
    assert lim["pack_v_min"] == pytest.approx(600.0)
    assert lim["pack_v_max"] == pytest.approx(876.0)
    assert lim["max_charge_kw"] == 500 and lim["max_discharge_kw"] == 500
    assert lim["ramp_kw_per_s"] == 500
    assert lim["max_discharge_current_a"] == pytest.approx(1.25 * 500e3 / (240 * 2.8))
    over = build_envelope(unit(safety={"soc_min_pct": 12.0})).limits
    assert over["soc_min_pct"] == 12.0


def test_telemetry_mapping_with_and_without_bms() -> None:
    cfg = unit(series_cells=240)
    tm = map_telemetry(cfg, inverter_status(), None, 1000.0)
    assert tm.cell_v_min == pytest.approx(3.3) and tm.cell_v_max == pytest.approx(3.3)
    assert (tm.power_kw, tm.soc_pct, tm.soh_pct, tm.temp_max_c) == (20.0, 60.0, 98.0, 25.0)
    bms = {"cell_v_min": 3.28, "cell_v_max": 3.34, "temp_max_c": 31.0, "bms_faults": 2.0}
    tm = map_telemetry(cfg, inverter_status(fault_bits=1), bms, 1000.0)
    assert (tm.cell_v_min, tm.cell_v_max, tm.temp_max_c) == (3.28, 3.34, 31.0)
    assert tm.bms_faults == 1 | (2 << 16)
    st = inverter_status()
    del st["soc"]
    with pytest.raises(ValidationError, match="'soc'"):
        map_telemetry(cfg, st, None, 1000.0)


def test_bad_telemetry_is_counted_and_goes_stale() -> None:
    u = FieldUnit(unit(safety={"stale_after_s": 0.05}))
    u.on_status(inverter_status())
    assert u.telemetry_errors == 0
    bad = inverter_status()
    del bad["dc_voltage"]
    u.on_status(bad)
    assert u.telemetry_errors == 1
    time.sleep(0.1)
    d = frame(u, time.time(), 49.8)
    assert d.action.label == "stop" and d.setpoint_kw == 0.0


def test_schedule_blocks_and_fallback() -> None:
    sch = Schedule(100.0, 10.0, (1.0, 2.0))
    assert [sch.at(t) for t in (99.9, 100.0, 109.9, 110.0, 120.0)] == [None, 1.0, 1.0, 2.0, None]
    u = FieldUnit(unit())
    u.set_base(7.0)
    u.set_schedule(sch)
    u.on_status(inverter_status())
    now = u.pipeline.telemetry.timestamp
    u.schedule = Schedule(now - 1, 2.0, (40.0,))
    assert frame(u, now).base_kw == 40.0
    # After the last block: the set base again.
    time.sleep(1.1)
    assert frame(u, time.time()).base_kw == 7.0


def test_violations_are_recorded_once_per_onset() -> None:
    u = FieldUnit(unit(), history_size=3)
    u.on_status(inverter_status(soc=3.0))
    t = u.pipeline.telemetry.timestamp
    new = [u.violations(frame(u, t + 0.02 * k)) for k in range(5)]
    assert [len(n) for n in new] == [1, 0, 0, 0, 0]
    assert new[0][0]["code"] == "soc_low" and new[0][0]["action"] == "reduce"
    u.on_status(inverter_status(soc=50.0))
    assert u.violations(frame(u, t + 0.2)) == []
    u.on_status(inverter_status(soc=3.0))
    assert len(u.violations(frame(u, t + 0.22))) == 1
    assert len(u.safety_history) == 2


def test_writer_coalesces_and_skips_small_changes() -> None:
    async def main() -> None:
        async with BessSimulator(port=0, rated_power_kw=500) as sim:
            comm = ResourceCommunicator(poll_interval=0.5)
            comm.add_resource("u1", "modbus_tcp", {"host": "127.0.0.1", "port": sim.port})
            w = SetpointWriter(comm, "u1", threshold_kw=1.0)
            try:
                # Offered before the write task runs: the first two are replaced and only
                # the newest is written (after enable and power-control mode).
                w.offer(10.0)
                w.offer(20.0)
                w.offer(30.0)
                await wait_until(lambda: not w.busy)
                assert sim.command.enable and sim.command.mode == 1
                assert sim.command.p_kw == 30.0
                assert (w.written, w.coalesced) == (1, 2)
                w.offer(30.5)  # within the threshold: not written
                await asyncio.sleep(0.05)
                assert not w.busy and sim.command.p_kw == 30.0
                w.offer(32.0)
                await wait_until(lambda: sim.command.p_kw == 32.0)
            finally:
                await w.close()
                await comm.close()

    run(main)


def test_limits_reported_survive_a_participation_change() -> None:
    # The grid service allocates from the limits in a unit's telemetry. A new share once
    # built a new pipeline with no decision yet; reporting zero limits in between made the
    # grid drop the unit, and its zero share rebuilt the pipeline again: stuck at 0.
    u = FieldUnit(unit())
    u.on_status(inverter_status())
    t = u.pipeline.telemetry.timestamp
    frame(u, t)
    before = messages.telemetry(u).limits
    assert before.p_max_kw > 0 and before.p_min_kw < 0
    u.set_participation(0.0)
    assert messages.telemetry(u).limits == before
    assert u.state()["setpoint"] is not None
