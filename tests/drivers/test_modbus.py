"""ModbusTcpProtocol against the real BESS simulator on loopback (no mocks)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

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
from vpp.drivers.register_map import read_blocks
from vpp.sim.bess import BessSimulator


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
            with pytest.raises(ValidationError, match="alarm_reset"):
                await proto.send_command("reset_alarms")
            assert proto.health.errors["validation"] == 5

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
