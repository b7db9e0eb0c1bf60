"""ModbusTcpProtocol against the real BESS simulator on loopback (no mocks)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.aio import free_port
from tests.support.devices import run, short_reply_server, silent_server, wait_until
from vpp.drivers.errors import (
    DeviceOfflineError,
    DeviceTimeoutError,
    ProtocolError,
    ValidationError,
)
from vpp.drivers.factory import ProtocolFactory
from vpp.drivers.modbus import ModbusTcpProtocol
from vpp.drivers.register_map import DEFAULT_MAP, read_blocks
from vpp.sim.bess import BessSimulator
from vpp.sim.bess_model import FAULT_BITS, State


def driver(port: int, **extra: Any) -> ModbusTcpProtocol:
    """A Modbus TCP driver for a device on loopback ``port``."""
    cfg = {"host": "127.0.0.1", "port": port, "timeout": 1.0, "retries": 0, **extra}
    proto = ProtocolFactory().create("modbus_tcp", cfg, label="bess1")
    assert isinstance(proto, ModbusTcpProtocol)
    return proto


@asynccontextmanager
async def bess(**options: Any) -> AsyncIterator[tuple[BessSimulator, ModbusTcpProtocol]]:
    """A running simulator (small and fast-ramping, so SOC moves) and a driver for it."""
    opts: dict[str, Any] = {"capacity_kwh": 2.0, "rated_power_kw": 500.0, "ramp_kw_s": 1e4}
    opts.update(options)
    async with BessSimulator(port=0, **opts) as sim:
        proto = driver(sim.port, device_id=sim.device_id)
        try:
            yield sim, proto
        finally:
            await proto.close()


def test_read_status_decodes_every_point_in_few_requests() -> None:
    async def main() -> None:
        async with bess(initial_soc_pct=60.0) as (sim, proto):
            status = await proto.read_status()
            assert set(status) == {p.name for p in sim.map.points}
            assert status["soc"] == pytest.approx(60.0)
            assert status["rated_power"] == pytest.approx(500.0)
            assert status["enable"] is False and status["running"] is False
            assert status["mode"] == "standby" and status["state"] == "standby"
            assert len(proto.blocks) == len(read_blocks(sim.map.points)) == 4

    run(main)


async def start_power(proto: ModbusTcpProtocol, kw: float) -> None:
    for command, params in (
        ("enable", {}),
        ("set_mode", {"mode": "power_control"}),
        ("set_power", {"kw": kw}),
    ):
        ack = await proto.send_command(command, params)
        assert ack.ok, ack


def test_discharge_is_positive_and_soc_falls() -> None:
    async def main() -> None:
        async with bess() as (sim, proto):
            soc0 = (await proto.read_status())["soc"]
            await start_power(proto, 200.0)
            # The device counts charge as positive; the driver reports vpp's sign.
            assert sim.command.p_kw == pytest.approx(200.0)
            status: dict[str, float | bool] = {}

            async def measured() -> bool:
                status.update(await proto.read_status())
                return bool(status["active_power"] > 190.0)

            for _ in range(100):
                if await measured():
                    break
                await asyncio.sleep(0.02)
            assert status["active_power"] == pytest.approx(200.0, abs=1.0)
            assert sim.model.power_kw > 0
            await asyncio.sleep(0.3)
            assert (await proto.read_status())["soc"] < soc0

    run(main)


def test_negative_power_charges() -> None:
    async def main() -> None:
        async with bess() as (sim, proto):
            soc0 = (await proto.read_status())["soc"]
            await start_power(proto, -150.0)
            await wait_until(lambda: sim.model.power_kw < -140.0)
            await asyncio.sleep(0.3)
            status = await proto.read_status()
            assert status["active_power"] == pytest.approx(-150.0, abs=1.0)
            assert status["active_power_setpoint"] == pytest.approx(-150.0)
            assert status["soc"] > soc0

    run(main)


def test_reactive_power_and_emergency_stop() -> None:
    async def main() -> None:
        async with bess() as (sim, proto):
            await start_power(proto, 300.0)
            assert (await proto.send_command("set_reactive_power", {"kvar": -100.0})).ok
            await wait_until(lambda: sim.model.power_kw > 250.0)
            ack = await proto.send_command("emergency_stop")
            assert ack.ok and "enable=off" in ack.detail
            await wait_until(lambda: sim.model.power_kw == 0.0)
            status = await proto.read_status()
            assert status["active_power"] == 0.0
            assert status["enable"] is False and status["mode"] == "standby"
            assert status["state"] == "standby"
            assert status["active_power_setpoint"] == 0.0

    run(main)


def test_command_errors_are_clear() -> None:
    async def main() -> None:
        async with bess() as (_sim, proto):
            with pytest.raises(ValidationError, match="unknown command 'fly'"):
                await proto.send_command("fly")
            with pytest.raises(ValidationError, match="needs a number 'kw'"):
                await proto.send_command("set_power", {"kw": "lots"})
            with pytest.raises(ValidationError, match="'turbo' is not one of"):
                await proto.send_command("set_mode", {"mode": "turbo"})
            with pytest.raises(ValidationError, match="active_power_setpoint") as info:
                await proto.send_command("set_power", {"kw": 1e12})
            assert info.value.point == "active_power_setpoint"
            with pytest.raises(ValidationError, match="read-only") as info:
                await proto._put("set_power", "soc", 1.0)
            assert info.value.point == "soc"
            assert proto.health.errors["validation"] == 4

    run(main)


def test_modbus_exception_is_a_protocol_error() -> None:
    async def main() -> None:
        async with BessSimulator(port=0) as sim:
            # Another unit id: the server answers with a Modbus exception.
            proto = driver(sim.port, device_id=sim.device_id + 1)
            try:
                with pytest.raises(ProtocolError, match="exception code") as info:
                    await proto.read_status()
                assert info.value.code is not None and info.value.point
                assert proto.health.errors["protocol"] == 1
            finally:
                await proto.close()

    run(main)


def test_nothing_listening_is_offline() -> None:
    async def main() -> None:
        proto = driver(free_port(), retries=1, backoff_initial=0.01)
        with pytest.raises(DeviceOfflineError, match="cannot connect"):
            await proto.read_status()
        assert proto.health.errors["connection"] == 2
        await proto.close()

    run(main)


def test_silent_device_times_out() -> None:
    async def main() -> None:
        async with silent_server() as port:
            proto = driver(port, timeout=0.3)
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            with pytest.raises(DeviceTimeoutError):
                await proto.read_status()
            assert loop.time() - t0 < 2.0
            assert proto.health.errors["timeout"] == 1
            await proto.close()

    run(main)


def test_wrong_reply_length_is_a_protocol_error() -> None:
    async def main() -> None:
        async with short_reply_server() as port:
            proto = driver(port)
            try:
                with pytest.raises(ProtocolError, match="registers in the reply") as info:
                    await proto.read_status()
                assert info.value.point
                assert proto.health.errors["protocol"] == 1
            finally:
                await proto.close()

    run(main)


def test_reset_alarms_clears_a_latched_fault_once_its_cause_has_gone() -> None:
    async def main() -> None:
        async with bess() as (sim, proto):
            sim.model.temp_c = 70.0  # over the 60 C discharge limit: over-temperature
            await start_power(proto, 100.0)
            await wait_until(lambda: sim.model.state == State.FAULT)
            status = await proto.read_status()
            assert status["state"] == "fault" and status["fault_active"] is True
            assert status["fault_bits"] == 1 << FAULT_BITS["over_temperature"]
            assert status["alarm_reset"] is False
            # The cause is still there: the reset clears nothing.
            assert (await proto.send_command("reset_alarms")).ok
            assert (await proto.read_status())["state"] == "fault"
            # Cooled down, the fault stays latched until reset.
            sim.model.temp_c = 25.0
            await asyncio.sleep(0.3)
            assert (await proto.read_status())["fault_bits"] == 1
            assert sim.model.power_kw == 0.0
            ack = await proto.send_command("reset_alarms")
            assert ack.ok and ack.detail == "alarm_reset=on"
            status = await proto.read_status()
            assert status["fault_bits"] == 0 and status["fault_active"] is False
            assert status["alarm_reset"] is False  # a pulse: reads back off
            # Enabled and in power control all along: it runs again without more commands.
            await wait_until(lambda: sim.model.power_kw > 90.0)
            assert (await proto.read_status())["state"] == "running"

    run(main)


def test_reset_alarms_needs_the_point(tmp_path: Path) -> None:
    shipped = yaml.safe_load(
        resources.files("vpp.drivers").joinpath("maps", DEFAULT_MAP).read_text("utf-8")
    )
    shipped["points"] = [p for p in shipped["points"] if p["name"] != "alarm_reset"]
    path = tmp_path / "no_reset.yaml"
    path.write_text(yaml.safe_dump(shipped), encoding="utf-8")

    async def main() -> None:
        async with BessSimulator(port=0) as sim:
            proto = driver(sim.port, map=str(path))
            try:
                with pytest.raises(ValidationError, match="needs point 'alarm_reset'") as info:
                    await proto.send_command("reset_alarms")
                assert info.value.point == "alarm_reset"
            finally:
                await proto.close()

    run(main)
