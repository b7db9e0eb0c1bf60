"""The BESS simulator over real Modbus TCP: pymodbus server on loopback, pymodbus client.

Every test runs its coroutine under a timeout, stops the server, and fails if a task
is left behind on the loop.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from pymodbus.exceptions import ModbusException

from tests.support.bess_client import bess, read_all, settle, start_power, write_point
from tests.support.devices import run
from vpp.errors import ConfigError
from vpp.sim.bess import BessSimulator
from vpp.sim.bess_model import ALARM_BITS

TIMEOUT_S = 20.0


def test_every_point_reads_a_plausible_value() -> None:
    async def body() -> None:
        async with bess(
            capacity_kwh=2000, rated_power_kw=500, rated_kva=600, initial_soc_pct=42.5
        ) as (
            sim,
            client,
        ):
            assert sim.port != 0
            first = await read_all(sim, client)
            assert set(first) == {p.name for p in sim.map.points}
            assert first["soc"] == pytest.approx(42.5)
            assert first["soh"] == pytest.approx(100)
            assert first["rated_power"] == pytest.approx(500)
            assert first["rated_apparent_power"] == pytest.approx(600)
            assert first["rated_energy"] == pytest.approx(2000)
            assert first["max_charge_power"] == pytest.approx(500)
            assert first["max_discharge_power"] == pytest.approx(500)
            assert 700 < first["dc_voltage"] < 900
            assert first["temperature_min"] <= first["temperature_max"]
            assert 15 < first["temperature_max"] < 35
            assert first["active_power"] == 0 and first["enable"] == 0 and first["mode"] == 0
            assert first["state"] == 0 and first["fault_bits"] == 0
            await asyncio.sleep(0.35)
            # The heartbeat counts model steps: ~10 Hz on the real clock.
            beats = (await read_all(sim, client))["heartbeat"] - first["heartbeat"]
            assert 2 <= beats <= 6

    run(body, TIMEOUT_S)


def test_discharge_follows_the_ramp_and_soc_falls_at_the_right_rate() -> None:
    ramp, target, energy, eff = 50.0, 80.0, 2.0, 0.8

    async def body() -> None:
        async with bess(capacity_kwh=energy, rated_power_kw=100, ramp_kw_s=ramp, step_hz=50) as (
            sim,
            client,
        ):
            sim.model.discharge_efficiency = eff
            t0 = await start_power(sim, client, target)
            samples: list[tuple[float, float]] = []
            while time.monotonic() - t0 < target / ramp + 0.5:
                p = (await read_all(sim, client))["active_power"]
                samples.append((time.monotonic() - t0, p))
                await asyncio.sleep(0.05)
            for t, p in samples:
                # Never faster than the ramp (one step of slack), never past the target.
                assert p <= ramp * (t + sim.step_s) + 0.1, (t, p)
                assert p <= target + 0.05
            assert any(0 < p < target for _, p in samples)  # it did ramp, not jump
            assert samples[-1][1] == pytest.approx(target, abs=0.05)

            a = await read_all(sim, client)
            ta = time.monotonic()
            await asyncio.sleep(3.0)
            b = await read_all(sim, client)
            tb = time.monotonic()
            # 80 kW from a 2 kWh store at 80 % discharge efficiency: 5 %-points a minute.
            expected = 100 * target * (tb - ta) / 3600 / eff / energy
            assert a["soc"] - b["soc"] == pytest.approx(expected, rel=0.05)
            assert b["active_power"] == pytest.approx(target, abs=0.05)
            assert b["dc_current"] > 0 and b["state"] == 1 and b["running"] == 1

    run(body, TIMEOUT_S)


def test_charge_setpoint_raises_soc() -> None:
    async def body() -> None:
        async with bess(capacity_kwh=2.0, rated_power_kw=100, ramp_kw_s=1000, step_hz=50) as (
            sim,
            client,
        ):
            sim.model.charge_efficiency = 0.8
            await start_power(sim, client, -60.0)
            await settle(sim, client, "active_power", -60.0, within_s=2)
            a = await read_all(sim, client)
            ta = time.monotonic()
            await asyncio.sleep(2.5)
            b = await read_all(sim, client)
            tb = time.monotonic()
            assert a["active_power"] == pytest.approx(-60, abs=0.05)
            expected = 100 * 60 * (tb - ta) / 3600 * 0.8 / 2.0
            assert b["soc"] - a["soc"] == pytest.approx(expected, rel=0.05)
            assert b["dc_current"] < 0

    run(body, TIMEOUT_S)


def test_setpoints_beyond_the_rating_are_clamped() -> None:
    async def body() -> None:
        async with bess(rated_power_kw=100, rated_kva=125, ramp_kw_s=2000) as (sim, client):
            await start_power(sim, client, 300.0)
            await write_point(sim, client, "reactive_power_setpoint", 200.0)
            pts = await settle(sim, client, "active_power", 100.0, within_s=2)
            assert pts["active_power"] == pytest.approx(100, abs=0.05)
            assert pts["reactive_power"] == pytest.approx(75, abs=0.05)
            assert int(pts["alarm_bits"]) >> ALARM_BITS["setpoint_limited"] & 1
            assert pts["alarm_active"] == 1
            # The command register keeps what was written; only the output is limited.
            assert pts["active_power_setpoint"] == pytest.approx(300)
            await write_point(sim, client, "active_power_setpoint", -300.0)
            pts = await settle(sim, client, "active_power", -100.0, within_s=2)
            assert pts["active_power"] == pytest.approx(-100, abs=0.05)

    run(body, TIMEOUT_S)


def test_negative_values_travel_as_twos_complement() -> None:
    async def body() -> None:
        async with bess(rated_power_kw=500, ramp_kw_s=5000) as (sim, client):
            # This device counts charge positive: 123.4 kW of discharge is raw -1234.
            await start_power(sim, client, 123.4)
            rr = await client.read_holding_registers(0, count=2, device_id=sim.device_id)
            assert rr.registers == [0xFFFF, 0x10000 - 1234]
            await settle(sim, client, "active_power", 123.4, within_s=2)
            rr = await client.read_input_registers(0, count=2, device_id=sim.device_id)
            assert rr.registers == [0xFFFF, 0x10000 - 1234]
            # Reactive power is export-positive: -45.6 kvar is raw -456.
            await write_point(sim, client, "reactive_power_setpoint", -45.6)
            rr = await client.read_holding_registers(2, count=2, device_id=sim.device_id)
            assert rr.registers == [0xFFFF, 0x10000 - 456]

    run(body, TIMEOUT_S)


def test_the_device_id_is_honoured() -> None:
    async def body() -> None:
        async with bess(device_id=7) as (sim, client):
            assert sim.device_id == 7
            ok = await client.read_input_registers(0, count=2, device_id=7)
            assert not ok.isError()
            try:
                wrong = await client.read_input_registers(0, count=2, device_id=8)
            except ModbusException:
                return  # no answer (a timeout) is also how a device may ignore it
            assert wrong.isError()
            assert not hasattr(wrong, "registers") or not wrong.registers

    run(body, TIMEOUT_S)


def test_illegal_addresses_and_values_get_exception_responses() -> None:
    async def body() -> None:
        async with bess() as (sim, client):
            dev = sim.device_id
            beyond = await client.read_holding_registers(200, count=1, device_id=dev)
            assert beyond.isError() and beyond.exception_code == 2
            # One register past the input table's end fails the whole read.
            over = await client.read_input_registers(0, count=21, device_id=dev)
            assert over.isError() and over.exception_code == 2
            ro = sim.map.point("rated_power")
            write_ro = await client.write_registers(ro.address, [0, 1], device_id=dev)
            assert write_ro.isError() and write_ro.exception_code == 2
            mode = sim.map.point("mode")
            bad_mode = await client.write_register(mode.address, 9, device_id=dev)
            assert bad_mode.isError() and bad_mode.exception_code == 3
            assert sim.command.mode == 0

    run(body, TIMEOUT_S)


def test_stop_closes_the_port() -> None:
    async def body() -> None:
        async with bess() as (sim, _client):
            port = sim.port
        with pytest.raises(OSError):
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            await writer.wait_closed()

    run(body, TIMEOUT_S)


@pytest.mark.parametrize(
    ("options", "field"),
    [({"device_id": 0}, "device_id"), ({"step_hz": 0}, "step_hz"), ({"port": -1}, "port")],
)
def test_invalid_options(options: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as exc:
        BessSimulator(**options)
    assert exc.value.field == field


def test_a_port_in_use_is_a_config_error() -> None:
    async def main() -> None:
        async with BessSimulator(port=0) as first:
            second = BessSimulator(port=first.port)
            with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{first.port}") as e:
                await second.start()
            assert e.value.field == "port"

    run(main, TIMEOUT_S)
