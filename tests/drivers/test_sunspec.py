"""SunSpecProtocol against the SunSpec BESS simulator on loopback (no mocks)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from tests.support.devices import run, silent_server, wait_until
from vpp.aio import Backoff
from vpp.drivers.communicator import ResourceCommunicator
from vpp.drivers.errors import DeviceOfflineError, DeviceTimeoutError, ValidationError
from vpp.drivers.factory import ProtocolFactory
from vpp.drivers.sunspec import (
    SunSpecModelMissingError,
    SunSpecNotFoundError,
    SunSpecProtocol,
)
from vpp.drivers.sunspec_models import model_length
from vpp.errors import ConfigError
from vpp.sim.bess import BessSimulator
from vpp.sim.sunspec import EVENT_BITS, SunSpecBessSimulator


def driver(port: int, **extra: Any) -> SunSpecProtocol:
    """A SunSpec driver for a device on loopback ``port``."""
    cfg = {"host": "127.0.0.1", "port": port, "timeout": 1.0, "retries": 0, **extra}
    proto = ProtocolFactory().create("sunspec", cfg, label="bess1")
    assert isinstance(proto, SunSpecProtocol)
    return proto


@asynccontextmanager
async def bess(
    driver_options: dict[str, Any] | None = None, **options: Any
) -> AsyncIterator[tuple[SunSpecBessSimulator, SunSpecProtocol]]:
    """A running simulator (small and fast-ramping, so SOC moves) and a driver for it."""
    opts: dict[str, Any] = {"capacity_kwh": 2.0, "rated_power_kw": 500.0, "ramp_kw_s": 1e4}
    opts.update(options)
    async with SunSpecBessSimulator(port=0, **opts) as sim:
        proto = driver(sim.port, **(driver_options or {}))
        try:
            yield sim, proto
        finally:
            await proto.close()


async def start_power(proto: SunSpecProtocol, kw: float) -> None:
    for command, params in (("enable", {}), ("set_power", {"kw": kw})):
        ack = await proto.send_command(command, params)
        assert ack.ok, ack


@pytest.mark.parametrize("base", [40000, 0, 50000])
def test_discovery_finds_every_model_at_its_address(base: int) -> None:
    async def main() -> None:
        async with bess(base_address=base) as (sim, proto):
            await proto.connect()
            assert proto.base_address == base
            ids = [m for m, _, _ in proto.chain]
            assert ids == [1, 701, 702, 704, 711, 713, 802]
            for model_id, address, length in proto.chain:
                assert address == sim.address_of(model_id)
                if model_id != 711:  # 711's length depends on its curve count
                    assert length == model_length(model_id)
            # One stored droop curve: 12 registers of settings and scale factors + 10 of curve.
            assert dict((m, n) for m, _, n in proto.chain)[711] == 22
            # Models follow each other: the next starts right after ID, L and L registers.
            for (_, a0, n0), (_, a1, _) in zip(proto.chain, proto.chain[1:], strict=False):
                assert a1 == a0 + 2 + n0
            # A status read takes models 701..802 (adjacent, 371 registers) in 3 requests.
            before = sim.requests
            await proto.read_status()
            assert sim.requests - before == 3
            assert proto.common == {
                "manufacturer": "vpp",
                "model": "sim-bess",
                "version": "1.0",
                "serial": "SIM0001",
            }

    run(main)


def test_values_are_scaled_to_vpp_units() -> None:
    async def main() -> None:
        async with bess(capacity_kwh=1000.0, initial_soc_pct=63.27) as (sim, proto):
            sim.frequency_hz = 49.987
            sim.model.temp_c = 31.44
            sim.step(0.1)
            status = await proto.read_status()
            m = sim.model
            # Resolutions: SoC 0.1 % (SoC_SF -1), Hz 0.001 (Hz_SF -3), V 0.1 (V_SF -1).
            assert status["soc_pct"] == pytest.approx(m.soc_pct, abs=0.05)
            assert status["soc_pct"] == pytest.approx(63.3)
            assert status["soh_pct"] == 100.0
            assert status["frequency_hz"] == pytest.approx(49.987)
            assert status["temperature_c"] == pytest.approx(m.temp_c, abs=0.05)
            assert status["dc_voltage_v"] == pytest.approx(m.dc_voltage_v(), abs=0.05)
            assert status["voltage_ll_v"] == pytest.approx(415.0)
            # 1000 kWh is 10000 x 100 Wh (WH_SF 2); 500 kW is 5000 x 100 W (W_SF 2).
            assert status["capacity_kwh"] == pytest.approx(1000.0)
            assert status["energy_available_kwh"] == pytest.approx(632.7, abs=0.05)
            assert status["rated_power_kw"] == pytest.approx(500.0)
            assert status["max_discharge_kw"] == pytest.approx(500.0)
            assert status["droop_deadband_over_hz"] == pytest.approx(0.05)
            assert status["droop_enabled"] is False
            assert proto.names["battery_state"] == "DISCONNECTED"
            assert proto.names["mode"] == "standby"

    run(main)


def test_discharge_is_positive_and_soc_falls() -> None:
    async def main() -> None:
        async with bess() as (sim, proto):
            soc0 = (await proto.read_status())["soc_pct"]
            await start_power(proto, 100.0)
            before = sim.requests
            await proto.send_command("set_power", {"kw": 234.5})
            # WSetEna, WSetMod, WSet are adjacent: one request, applied at once.
            assert sim.requests - before == 1
            # WSet is in W at WSet_SF 0: the model gets exactly what was asked.
            assert sim.command.p_kw == pytest.approx(234.5)
            assert sim.command.enable and sim.command.mode == 1
            await wait_until(lambda: sim.model.power_kw > 234.0)
            await asyncio.sleep(0.3)
            status = await proto.read_status()
            # 701 W at W_SF 2 (100 W steps): 234.5 kW reads as 234.5.
            assert status["power_kw"] == pytest.approx(234.5, abs=0.05)
            assert status["power_setpoint_kw"] == pytest.approx(234.5)
            assert status["dc_power_kw"] == pytest.approx(234.5, abs=0.05)
            assert status["soc_pct"] < soc0
            assert proto.names["charge_status"] == "DISCHARGING"
            assert proto.names["inverter_state"] == "RUNNING"

    run(main)


def test_negative_power_charges() -> None:
    async def main() -> None:
        async with bess() as (sim, proto):
            soc0 = (await proto.read_status())["soc_pct"]
            await start_power(proto, -150.0)
            assert sim.command.p_kw == pytest.approx(-150.0)
            await wait_until(lambda: sim.model.power_kw < -149.0)
            await asyncio.sleep(0.3)
            status = await proto.read_status()
            assert status["power_kw"] == pytest.approx(-150.0, abs=0.05)
            assert status["soc_pct"] > soc0
            assert proto.names["charge_status"] == "CHARGING"

    run(main)


def test_reactive_power_mode_and_emergency_stop() -> None:
    async def main() -> None:
        async with bess() as (sim, proto):
            await start_power(proto, 300.0)
            assert (await proto.send_command("set_reactive_power", {"kvar": -120.0})).ok
            assert sim.command.q_kvar == pytest.approx(-120.0)
            await wait_until(lambda: sim.model.q_kvar < -119.0)
            status = await proto.read_status()
            assert status["reactive_power_kvar"] == pytest.approx(-120.0, abs=0.05)
            assert (await proto.send_command("set_mode", {"mode": "standby"})).ok
            assert sim.command.mode == 0
            await wait_until(lambda: sim.model.power_kw == 0.0)
            assert (await proto.send_command("set_mode", {"mode": "power_control"})).ok
            await wait_until(lambda: sim.model.power_kw > 299.0)
            ack = await proto.send_command("emergency_stop")
            assert ack.ok and "SetInvState=INVERTER_STOPPED" in ack.detail
            assert not sim.command.enable and sim.command.p_kw == 0.0
            await wait_until(lambda: sim.model.power_kw == 0.0)
            status = await proto.read_status()
            assert status["power_kw"] == 0.0 and status["power_setpoint_enabled"] is False
            assert proto.names["battery_state"] == "DISCONNECTED"

    run(main)


def test_reset_alarms_clears_latched_events() -> None:
    async def main() -> None:
        async with bess() as (sim, proto):
            alarm = 1 << EVENT_BITS["OVER_TEMP_ALARM"]
            sim.model.temp_c = 70.0  # over the 60 C discharge limit: a fault
            await wait_until(lambda: sim.latched_events & alarm != 0)
            sim.model.temp_c = 25.0
            await asyncio.sleep(0.2)
            status = await proto.read_status()
            # Cooled down, but the event stays latched until reset.
            assert int(status["battery_events"]) & alarm
            assert (await proto.send_command("reset_alarms")).ok
            status = await proto.read_status()
            assert int(status["battery_events"]) == 0
            assert status["alarm_reset"] == 0.0  # the device sets AlmRst back to 0

    run(main)


def test_command_errors_are_clear() -> None:
    async def main() -> None:
        async with bess() as (_sim, proto):
            with pytest.raises(ValidationError, match="needs a number 'kw'"):
                await proto.send_command("set_power", {"kw": "lots"})
            with pytest.raises(ValidationError, match="mode 'turbo'"):
                await proto.send_command("set_mode", {"mode": "turbo"})
            # 3e6 kW is 3e9 W: more than WSet (int32 at WSet_SF 0) can hold.
            with pytest.raises(ValidationError, match="outside int32") as info:
                await proto.send_command("set_power", {"kw": 3e6})
            assert info.value.point == "WSet"
            assert proto.health.errors["validation"] == 3

    run(main)


def test_not_sunspec_device_is_a_typed_error() -> None:
    async def main() -> None:
        # A Modbus BESS with its own register map: no 'SunS' anywhere.
        async with BessSimulator(port=0) as sim:
            proto = driver(sim.port)
            try:
                with pytest.raises(SunSpecNotFoundError, match="no 'SunS' marker") as info:
                    await proto.read_status()
                for base in ("40000", "0:", "50000"):
                    assert base in str(info.value)
                assert proto.health.errors["protocol"] == 1
            finally:
                await proto.close()

    run(main)


def test_missing_required_model_is_named() -> None:
    async def main() -> None:
        async with bess(models=(1, 701, 702, 704, 713)) as (_sim, proto):
            with pytest.raises(SunSpecModelMissingError, match="model 802 \\(battery\\)") as info:
                await proto.read_status()
            assert info.value.model_id == 802

        # Not required: the driver works without it, and says so when a command needs it.
        opts = {"required_models": (1, 701, 704)}
        async with bess(opts, models=(1, 701, 704, 713)) as (sim, proto):
            status = await proto.read_status()
            assert "soc_pct" in status and "dc_voltage_v" not in status
            assert "droop_enabled" not in status
            with pytest.raises(ValidationError, match="model 802"):
                await proto.send_command("enable")
            # No 802 to start the inverter: 704 alone runs it.
            assert (await proto.send_command("set_power", {"kw": 50.0})).ok
            await wait_until(lambda: sim.model.power_kw > 49.9)

        # Without 713, SOC, SOH and capacity come from the battery model (802).
        async with bess(opts, models=(1, 701, 704, 802), initial_soc_pct=37.0) as (_sim, proto):
            status = await proto.read_status()
            assert status["soc_pct"] == pytest.approx(37.0)
            assert status["capacity_kwh"] == pytest.approx(2.0)
            assert "energy_available_kwh" not in status

    run(main)


def test_stopped_device_goes_offline_then_recovers() -> None:
    async def main() -> None:
        sim = SunSpecBessSimulator(port=0, initial_soc_pct=41.0)
        await sim.start()
        port = sim.port
        proto = driver(port, retries=1, backoff_initial=0.01)
        try:
            assert (await proto.read_status())["soc_pct"] == pytest.approx(41.0)
            await sim.stop()
            with pytest.raises((DeviceOfflineError, DeviceTimeoutError)):
                await proto.read_status()
            sim = SunSpecBessSimulator(port=port, initial_soc_pct=77.0)
            await sim.start()
            # The new device is discovered afresh on reconnect.
            assert (await proto.read_status())["soc_pct"] == pytest.approx(77.0)
            assert proto.health.connects == 2
        finally:
            await proto.close()
            await sim.stop()

    run(main)


def test_silent_device_times_out() -> None:
    async def main() -> None:
        async with silent_server() as port:
            proto = driver(port, timeout=0.3)
            with pytest.raises(DeviceTimeoutError):
                await proto.read_status()
            assert proto.health.errors["timeout"] == 1
            await proto.close()

    run(main)


def test_factory_validates_the_config() -> None:
    factory = ProtocolFactory()
    assert "sunspec" in factory.supported_protocols()
    with pytest.raises(ConfigError) as info:
        factory.create("sunspec", {"host": "127.0.0.1", "device_id": 0})
    assert info.value.field == "device_id"
    with pytest.raises(ConfigError) as info:
        factory.create("sunspec", {"host": "h", "base_addresses": [40000, 70000]})
    assert info.value.field == "base_addresses.1"


def test_communicator_polls_a_sunspec_resource_beside_a_modbus_one() -> None:
    async def main() -> None:
        comm = ResourceCommunicator(poll_interval=0.05, backoff=Backoff(initial=0.02, maximum=0.1))
        async with (
            SunSpecBessSimulator(port=0, ramp_kw_s=1e4, initial_soc_pct=55.0) as ss,
            BessSimulator(port=0, initial_soc_pct=45.0) as mb,
        ):
            try:
                comm.add_resource("ss", "sunspec", {"host": "127.0.0.1", "port": ss.port})
                comm.add_resource("mb", "modbus_tcp", {"host": "127.0.0.1", "port": mb.port})
                seen: list[dict[str, Any]] = []
                comm.subscribe_to_resource("ss", seen.append)
                comm.subscribe_to_resource("mb", lambda _s: None)
                await wait_until(lambda: len(seen) >= 2)
                assert seen[-1]["soc_pct"] == pytest.approx(55.0)
                for command, params in (("enable", {}), ("set_power", {"kw": -80.0})):
                    ack = await comm.send_command("ss", command, params, timeout=2.0)
                    assert ack.ok, ack
                await wait_until(lambda: bool(seen[-1]["power_kw"] < -79.9))
                state = comm.status()
                assert state["ss"]["online"] and state["mb"]["online"]
            finally:
                await comm.close()

    run(main)


@pytest.mark.parametrize("base", [40000, 50000])
def test_the_setpoint_layout_is_where_the_device_has_it(base: int) -> None:
    """What the field controller gives the core's real-time loop: 704's WSetEna, WSetMod
    and WSet, the registers that identify the layout, and the reversion points."""

    async def main() -> None:
        async with bess(base_address=base) as (sim, proto):
            await proto.read_status()
            lay = proto.setpoint_layout
            assert lay is not None
            m704 = sim.address_of(704)
            offset = {n: int(p.offset) for n, p in sim.blocks[704].points.items()}
            assert lay.address == m704 + offset["WSet"] and lay.type == "i32" and lay.sf == 0
            assert lay.prefix == (1, 1)  # WSetEna ENABLED, WSetMod WATTS
            assert lay.verify[0] == (base, (0x5375, 0x6E53))
            assert lay.verify[1] == (m704, (704, int(sim.blocks[704].len) - 2))
            assert lay.verify[2] == (m704 + offset["WSet_SF"], (0,))
            assert lay.reversion == ((m704 + offset["WSetRvrt"], (0, 0)),
                                     (m704 + offset["WSetEnaRvrt"], (1,)))  # fmt: skip
            assert lay.reversion_time == m704 + offset["WSetRvrtTms"]
            # Asked to, the driver walks the chain again before its next read.
            sim.blocks[704].points["WSetRvrtTms"].value = None  # "not implemented" now
            sim._serialise(704)
            proto.rediscover()
            await proto.read_status()
            again = proto.setpoint_layout
            assert again is not None and again.reversion == () and again.reversion_time is None
            assert again.address == lay.address

    run(main)


def test_a_device_without_704_has_no_setpoint_layout() -> None:
    async def main() -> None:
        models = (1, 701, 702, 713, 802)
        async with bess({"required_models": list(models)}, models=models) as (_sim, proto):
            await proto.read_status()
            assert proto.setpoint_layout is None

    run(main)
