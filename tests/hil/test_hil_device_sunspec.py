"""The device target's SunSpec read-back (docs/hil.md, "The device target"), against the
project's SunSpec BESS simulator as a real Modbus TCP server on loopback: the meter
finds the models by discovery and reads the power (701 ``W``, positive = discharge, as
vpp) and the SOC (713 or 802 ``SoC``) with their scale factors; a plan's meter and PMU
keys are checked for their protocol and transport, each refusal one line."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

import pytest

from tests.hil.helpers import hil_run, write_plan
from tests.support.devices import run
from vpp.drivers.sunspec import SunSpecConfig, SunSpecProtocol
from vpp.errors import ConfigError
from vpp.hil.meters import Meter, SunSpecMeter
from vpp.hil.plan import MeterSpec, load_plan
from vpp.sim.bess import BessSimulator
from vpp.sim.sunspec import SunSpecBessSimulator


async def _settled(meter: Meter, seconds: float) -> tuple[float, float]:
    """Poll for ``seconds`` and return the last reading (power kW, SOC %)."""
    task = asyncio.create_task(meter.run())
    try:
        await asyncio.sleep(seconds)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    _, power, soc = meter.readings[-1]
    return power, soc


@pytest.mark.parametrize("soc_model", [713, 802])
def test_the_meter_reads_power_and_soc_over_sunspec(soc_model: int) -> None:
    async def main() -> None:
        async with SunSpecBessSimulator(
            port=0, rated_power_kw=500, capacity_kwh=1000, initial_soc_pct=63.0, ramp_kw_s=5000
        ) as sim:
            # The simulator driven as the field drives it: its own SunSpec driver.
            drv = SunSpecProtocol(SunSpecConfig(host="127.0.0.1", port=sim.port))
            await drv.send_command("enable")
            spec = MeterSpec(protocol="sunspec", port=sim.port, soc_model=soc_model, poll_s=0.05)
            try:
                for kw in (200.0, -150.0):  # a discharge, then a charge
                    await drv.send_command("set_power", {"kw": kw})
                    meter = SunSpecMeter(spec)
                    power, soc = await _settled(meter, 0.8)
                    assert meter.errors == 0, meter.last_error
                    assert power == pytest.approx(kw, abs=0.5)  # vpp's sign: + discharge
                    assert power == pytest.approx(sim.model.power_kw, abs=0.2)
                    assert soc == pytest.approx(sim.model.soc_pct, abs=0.1)
                    assert 62.5 < soc < 63.5
            finally:
                await drv.close()

    run(main)


def test_a_missing_model_or_a_device_without_sunspec_fails_every_poll_naming_why() -> None:
    async def main() -> None:
        # A battery with 802 only: a meter asking for 713's SoC reads nothing, and says so.
        async with SunSpecBessSimulator(port=0, models=(1, 701, 702, 704, 802)) as sim:
            meter = SunSpecMeter(MeterSpec(protocol="sunspec", port=sim.port, soc_model=713))
            power, _ = await _settled(meter, 0.5)
            assert math.isnan(power) and meter.errors == len(meter.readings) > 0
            assert "model 713" in meter.last_error, meter.last_error
        # A plain Modbus BESS (the register map, no SunS marker) is not a SunSpec device.
        async with BessSimulator(port=0) as plain:
            meter = SunSpecMeter(MeterSpec(protocol="sunspec", port=plain.port))
            power, _ = await _settled(meter, 0.5)
            assert math.isnan(power) and meter.errors > 0
            assert "not a SunSpec device" in meter.last_error, meter.last_error

    run(main)


def _device_plan(pmu: dict[str, Any], meter: dict[str, Any]) -> dict[str, Any]:
    case = {"name": "c1", "procedure": "iegc_primary", "duration_s": 5,
            "profile": {"kind": "step", "to_hz": 49.5}, "start": {"soc_pct": 50}}  # fmt: skip
    return {"name": "p", "target": "device", "device": {"pmu": pmu, "meter": meter},
            "cases": [case]}  # fmt: skip


PMU = {"port": 4713}


def test_sunspec_and_udp_plans_load(tmp_path: Path) -> None:
    udp = {**PMU, "transport": "udp", "udp_host": "127.0.0.1", "udp_port": 4714}
    for pmu, meter in (
        (PMU, {"protocol": "sunspec", "port": 502}),
        (PMU, {"protocol": "sunspec", "port": 502, "soc_model": 802, "device_id": 3}),
        (udp, {"port": 5020}),
        ({**udp, "await_command": False}, {"protocol": "sunspec", "port": 502}),
    ):
        plan, _ = load_plan(write_plan(tmp_path, _device_plan(pmu, meter)))
        assert plan.device is not None and plan.device.meter.reads_soc


@pytest.mark.parametrize(
    ("pmu", "meter", "says"),
    [
        (PMU, {"protocol": "sunspec", "port": 502, "register_map": "bess_default.yaml"},
         "field 'device.meter.register_map': not with protocol sunspec"),
        (PMU, {"protocol": "sunspec", "port": 502, "soc_point": "soc"},
         "field 'device.meter.soc_point': not with protocol sunspec"),
        (PMU, {"protocol": "sunspec", "port": 502, "soc_model": 124},
         "field 'device.meter.soc_model': the harness reads no SunSpec model 124"),
        (PMU, {"protocol": "sunspec", "port": 502, "power_model": 802},
         "field 'device.meter.power_model': the harness reads no SunSpec model 802"),
        (PMU, {"protocol": "sunspec", "port": 502, "device_id": 0},
         "field 'device.meter.device_id': a SunSpec device's unit id is 1-247"),
        (PMU, {"protocol": "sunspec", "port": 502, "soc_model": None},
         "field 'cases.0.start.soc_pct': the meter has no soc_point (sunspec: soc_model)"),
        (PMU, {"port": 5020, "soc_model": 713},
         "field 'device.meter.soc_model': only with protocol sunspec"),
        (PMU, {"protocol": "dnp3", "port": 5020}, "device.meter.protocol"),
        ({**PMU, "transport": "udp", "udp_host": "127.0.0.1"}, {"port": 5020},
         "field 'device.pmu.udp_port': transport udp needs the device's address"),
        ({**PMU, "transport": "udp", "udp_port": 4714}, {"port": 5020},
         "field 'device.pmu.udp_host': transport udp needs"),
        ({**PMU, "udp_port": 4714}, {"port": 5020},
         "field 'device.pmu.udp_port': only with transport udp"),
        ({**PMU, "await_command": False}, {"port": 5020},
         "field 'device.pmu.await_command': only with transport udp"),
        ({**PMU, "transport": "sctp"}, {"port": 5020}, "device.pmu.transport"),
    ],
)  # fmt: skip
def test_a_bad_device_section_is_refused_in_one_line(
    tmp_path: Path, pmu: dict[str, Any], meter: dict[str, Any], says: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_plan(write_plan(tmp_path, _device_plan(pmu, meter)))
    message = str(info.value)
    assert says in message and "\n" not in message, message


def test_the_cli_refuses_a_sunspec_meter_with_a_register_map(tmp_path: Path) -> None:
    meter = {"protocol": "sunspec", "port": 502, "register_map": "bess_default.yaml"}
    r = hil_run(write_plan(tmp_path, _device_plan(PMU, meter)), "--out", str(tmp_path / "o"))
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vpp hil: ConfigError:"), r.stderr
    assert "device.meter.register_map" in lines[0] and not (tmp_path / "o").exists()
