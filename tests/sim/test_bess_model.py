"""The BESS physical model alone: ramp, limits, SOC integration, reactive power, faults."""

from __future__ import annotations

import pytest

from vpp.errors import ConfigError
from vpp.sim.bess_model import ALARM_BITS, FAULT_BITS, BessCommand, BessModel, State

RUN = BessCommand(enable=True, mode=1)


def run(model: BessModel, cmd: BessCommand, seconds: float, dt: float = 0.1) -> None:
    for _ in range(round(seconds / dt)):
        model.step(cmd, dt)


def test_power_ramps_at_the_limit() -> None:
    m = BessModel(p_max_kw=100, ramp_kw_s=20)
    cmd = BessCommand(enable=True, mode=1, p_kw=50)
    run(m, cmd, 1.0)
    assert m.power_kw == pytest.approx(20)
    run(m, cmd, 2.0)
    assert m.power_kw == pytest.approx(50)
    run(m, BessCommand(enable=False, mode=1, p_kw=50), 1.0)
    assert m.power_kw == pytest.approx(30)  # disabling ramps down too


def test_soc_falls_and_rises_with_the_efficiencies() -> None:
    m = BessModel(capacity_kwh=10, p_max_kw=36, ramp_kw_s=1e6, discharge_efficiency=0.8, soc_pct=50)
    run(m, BessCommand(enable=True, mode=1, p_kw=36), 100.0)
    # 36 kW for 100 s = 1 kWh delivered; 1 / 0.8 = 1.25 kWh drawn = 12.5 % of 10 kWh.
    assert m.soc_pct == pytest.approx(50 - 12.5, abs=1e-6)
    c = BessModel(capacity_kwh=10, p_max_kw=36, ramp_kw_s=1e6, charge_efficiency=0.9, soc_pct=50)
    run(c, BessCommand(enable=True, mode=1, p_kw=-36), 100.0)
    assert c.soc_pct == pytest.approx(50 + 9.0, abs=1e-6)


def test_soh_shrinks_the_usable_energy() -> None:
    m = BessModel(
        capacity_kwh=10, p_max_kw=36, ramp_kw_s=1e6, discharge_efficiency=1, soh_pct=50, soc_pct=50
    )
    run(m, BessCommand(enable=True, mode=1, p_kw=36), 100.0)
    assert m.soc_pct == pytest.approx(50 - 20.0, abs=1e-6)


def test_setpoints_beyond_the_rating_are_clamped_and_flagged() -> None:
    m = BessModel(p_max_kw=100, s_max_kva=125, ramp_kw_s=1e6)
    run(m, BessCommand(enable=True, mode=1, p_kw=400, q_kvar=-500), 0.2)
    assert m.power_kw == pytest.approx(100)
    assert m.q_kvar == pytest.approx(-75)  # sqrt(125^2 - 100^2): P has priority
    assert m.alarms >> ALARM_BITS["setpoint_limited"] & 1
    run(m, BessCommand(enable=True, mode=1, p_kw=-400), 0.2)
    assert m.power_kw == pytest.approx(-100)


def test_no_discharge_when_empty_no_charge_when_full() -> None:
    empty = BessModel(soc_pct=0.0, ramp_kw_s=1e6)
    run(empty, BessCommand(enable=True, mode=1, p_kw=50), 1.0)
    assert empty.power_kw == 0 and empty.max_discharge_kw() == 0
    full = BessModel(soc_pct=100.0, ramp_kw_s=1e6)
    run(full, BessCommand(enable=True, mode=1, p_kw=-50), 1.0)
    assert full.power_kw == 0 and full.max_charge_kw() == 0
    assert full.alarms >> ALARM_BITS["soc_high"] & 1


def test_standby_mode_and_over_temperature_fault_stop_the_output() -> None:
    m = BessModel(ramp_kw_s=1e6)
    run(m, BessCommand(enable=True, mode=0, p_kw=50), 0.5)
    assert m.power_kw == 0 and m.state == State.STANDBY
    hot = BessModel(ramp_kw_s=1e6, temp_c=61.0)
    run(hot, BessCommand(enable=True, mode=1, p_kw=50), 0.5)
    assert hot.power_kw == 0 and hot.state == State.FAULT
    assert hot.faults >> FAULT_BITS["over_temperature"] & 1


def test_temperature_rises_with_power() -> None:
    m = BessModel(p_max_kw=100, ramp_kw_s=1e6)
    run(m, BessCommand(enable=True, mode=1, p_kw=100), 60.0)
    assert m.temp_c > m.ambient_c + 0.05


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"capacity_kwh": 0}, "capacity_kwh"),
        ({"ramp_kw_s": -1}, "ramp_kw_s"),
        ({"discharge_efficiency": 1.2}, "discharge_efficiency"),
        ({"p_max_kw": 100, "s_max_kva": 50}, "s_max_kva"),
        ({"soc_pct": 120}, "soc_pct"),
    ],
)
def test_invalid_parameters(kw: dict[str, float], field: str) -> None:
    with pytest.raises(ConfigError) as exc:
        BessModel(**kw)  # type: ignore[arg-type]
    assert exc.value.field == field


def test_faults_latch_until_reset_and_reset_keeps_a_present_cause() -> None:
    m = BessModel(ramp_kw_s=1e6, temp_c=61.0)
    cmd = BessCommand(enable=True, mode=1, p_kw=50)
    run(m, cmd, 0.5)
    assert m.faults == 1 << FAULT_BITS["over_temperature"] and m.state == State.FAULT
    assert m.reset_alarms() == m.faults == 1 << FAULT_BITS["over_temperature"]
    m.temp_c = 25.0
    run(m, cmd, 0.5)
    assert m.faults != 0 and m.power_kw == 0 and m.state == State.FAULT
    assert m.reset_alarms() == 0
    run(m, cmd, 0.5)
    assert m.state == State.RUNNING and m.power_kw == pytest.approx(5.0)  # the 5 kW rating
