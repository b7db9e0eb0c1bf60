"""ModbusRtuProtocol against the BESS simulator serving RTU over a real pty pair.

The shared-base tests run on both transports (the same driver code must give the same
figures over TCP and RTU); the line faults (silence, a stopped device, a wrong device
id) are RTU's own.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from tests.support.devices import run, wait_until
from tests.support.ptylink import PtyLink, pty_link
from vpp.drivers.base import BaseProtocol
from vpp.drivers.errors import DeviceOfflineError, DeviceTimeoutError
from vpp.drivers.factory import ProtocolFactory
from vpp.drivers.modbus import ModbusProtocol
from vpp.drivers.modbus_rtu import ModbusRtuProtocol
from vpp.errors import ConfigError
from vpp.sim.bess import BessSimulator, SerialLine

FAST = {"capacity_kwh": 2.0, "rated_power_kw": 500.0, "ramp_kw_s": 1e4}


def rtu_driver(port: str, **extra: Any) -> ModbusRtuProtocol:
    """A Modbus RTU driver on serial ``port``, 19200 8N1 (Linux ptys refuse parity)."""
    cfg = {"port": port, "parity": "N", "timeout": 0.5, "retries": 0, **extra}
    proto = ProtocolFactory().create("modbus_rtu", cfg, label="bess-rtu")
    assert isinstance(proto, ModbusRtuProtocol)
    return proto


@asynccontextmanager
async def rtu_bess(
    link: PtyLink, device_id: int = 1, **options: Any
) -> AsyncIterator[BessSimulator]:
    """A simulator serving RTU on the device end of ``link``."""
    line = SerialLine(link.device_end, parity="N")
    async with BessSimulator(rtu=line, device_id=device_id, **{**FAST, **options}) as sim:
        yield sim


@asynccontextmanager
async def bess_over(transport: str, **options: Any) -> AsyncIterator[tuple[BessSimulator, Any]]:
    """A simulator and a driver for it, over ``transport`` ("tcp" or "rtu")."""
    factory = ProtocolFactory()
    proto: BaseProtocol
    if transport == "tcp":
        async with BessSimulator(port=0, **{**FAST, **options}) as sim:
            proto = factory.create("modbus_tcp", {"host": "127.0.0.1", "port": sim.port})
            try:
                yield sim, proto
            finally:
                await proto.close()
    else:
        async with pty_link() as link, rtu_bess(link, **options) as sim:
            proto = rtu_driver(link.host_end)
            try:
                yield sim, proto
            finally:
                await proto.close()


@pytest.mark.parametrize("transport", ["tcp", "rtu"])
def test_status_and_commands_over_both_transports(transport: str) -> None:
    async def main() -> None:
        async with bess_over(transport, initial_soc_pct=70.0) as (sim, proto):
            assert isinstance(proto, ModbusProtocol)
            status = await proto.read_status()
            assert set(status) == {p.name for p in sim.map.points}
            assert status["soc"] == pytest.approx(70.0)
            assert status["rated_power"] == pytest.approx(500.0)
            assert status["rated_energy"] == pytest.approx(2.0)
            for command, params in (
                ("enable", {}),
                ("set_mode", {"mode": "power_control"}),
                ("set_power", {"kw": -120.0}),
                ("set_reactive_power", {"kvar": 30.0}),
            ):
                assert (await proto.send_command(command, params)).ok
            assert sim.command.enable is True and sim.command.mode == 1
            assert sim.command.p_kw == pytest.approx(-120.0)
            assert sim.command.q_kvar == pytest.approx(30.0)
            # Coded points read as their names from the map's enum.
            await wait_until(lambda: sim.model.state == 1)
            named = await proto.read_status()
            assert named["mode"] == "power_control" and named["state"] == "running"
            await wait_until(lambda: sim.model.power_kw < -110.0)
            await asyncio.sleep(0.2)
            status = await proto.read_status()
            # Charging: negative in vpp's sign, SOC rising.
            assert status["active_power"] == pytest.approx(-120.0, abs=1.0)
            assert status["reactive_power"] == pytest.approx(30.0, abs=0.5)
            assert float(status["soc"]) > 70.0
            assert proto.health.errors.total() == 0

    run(main)


def test_rtu_bytes_really_cross_the_ptys() -> None:
    async def main() -> None:
        async with pty_link() as link, rtu_bess(link):
            proto = rtu_driver(link.host_end)
            try:
                await proto.read_status()
                # 4 read requests of 8 bytes each (address, fc, start, count, CRC).
                assert link.to_device == 4 * 8
                assert link.to_host > 4 * 5
            finally:
                await proto.close()

    run(main)


def test_rtu_device_id_is_honoured() -> None:
    async def main() -> None:
        async with pty_link() as link, rtu_bess(link, device_id=7) as sim:
            other = rtu_driver(link.host_end, device_id=8, timeout=0.3)
            try:
                # Not addressed: the device keeps quiet, as on a multi-drop bus.
                with pytest.raises(DeviceTimeoutError, match="no answer"):
                    await other.send_command("set_power", {"kw": 50.0})
                assert sim.command.p_kw == 0.0
                assert other.health.errors["timeout"] == 1
            finally:
                await other.close()
            mine = rtu_driver(link.host_end, device_id=7)
            try:
                assert (await mine.send_command("set_power", {"kw": 50.0})).ok
                assert sim.command.p_kw == pytest.approx(50.0)
            finally:
                await mine.close()

    run(main)


def test_rtu_silent_line_times_out_then_recovers() -> None:
    async def main() -> None:
        async with pty_link() as link, rtu_bess(link, initial_soc_pct=40.0):
            proto = rtu_driver(link.host_end, timeout=0.3, retries=1, backoff_initial=0.01)
            try:
                assert (await proto.read_status())["soc"] == pytest.approx(40.0, abs=0.1)
                link.silent = True
                loop = asyncio.get_running_loop()
                t0 = loop.time()
                with pytest.raises(DeviceTimeoutError):
                    await proto.read_status()
                # Two attempts of 0.3 s and a short backoff, not pymodbus's 3 s default.
                assert loop.time() - t0 < 1.5
                assert proto.health.errors["timeout"] == 2
                assert link.dropped > 0
                link.silent = False
                assert (await proto.read_status())["soc"] == pytest.approx(40.0, abs=0.1)
                assert proto.health.connects >= 2  # the port was reopened
            finally:
                await proto.close()

    run(main)


def test_rtu_stopped_simulator_times_out_and_a_restarted_one_is_read() -> None:
    async def main() -> None:
        async with pty_link() as link:
            proto = rtu_driver(link.host_end, timeout=0.3)
            try:
                async with rtu_bess(link, initial_soc_pct=30.0):
                    assert (await proto.read_status())["soc"] == pytest.approx(30.0, abs=0.1)
                with pytest.raises(DeviceTimeoutError):
                    await proto.read_status()
                # A new device on the same line: stale requests must not confuse it.
                async with rtu_bess(link, initial_soc_pct=80.0):
                    assert (await proto.read_status())["soc"] == pytest.approx(80.0, abs=0.1)
                assert proto.health.errors["timeout"] == 1
            finally:
                await proto.close()

    run(main)


def test_rtu_config_and_missing_port_errors() -> None:
    with pytest.raises(ConfigError, match="parity") as info:
        ProtocolFactory().create("modbus_rtu", {"port": "/dev/ttyS9", "parity": "X"})
    assert info.value.field == "parity"
    with pytest.raises(ConfigError, match="port") as info:
        ProtocolFactory().create("modbus_rtu", {"baudrate": 9600})
    assert info.value.field == "port"

    async def main() -> None:
        proto = rtu_driver("/dev/vpp-no-such-tty")
        with pytest.raises(DeviceOfflineError, match="serial port /dev/vpp-no-such-tty"):
            await proto.read_status()
        await proto.close()
        sim = BessSimulator(rtu=SerialLine("/dev/vpp-no-such-tty"))
        with pytest.raises(ConfigError, match="cannot listen on serial port") as err:
            await sim.start()
        assert err.value.field == "rtu"

    run(main)
