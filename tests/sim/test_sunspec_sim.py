"""The SunSpec BESS simulator, driven by pymodbus's own client on loopback."""

from __future__ import annotations

import pytest
from pymodbus.client import AsyncModbusTcpClient

from tests.support.devices import run
from vpp.errors import ConfigError
from vpp.sim.sunspec import SunSpecBessSimulator

# Offsets in model 704 (ID = 0) from the SunSpec definition.
WSETENA, WSETMOD, WSETPCT = 22, 23, 28


def test_map_starts_with_suns_and_ends_with_the_end_model() -> None:
    async def main() -> None:
        async with SunSpecBessSimulator(port=0, models=(1, 713)) as sim:
            client = AsyncModbusTcpClient("127.0.0.1", port=sim.port)
            await client.connect()
            try:
                head = await client.read_holding_registers(40000, count=4)
                assert head.registers == [0x5375, 0x6E53, 1, 66]
                end = sim.address_of(713) + 2 + 7
                tail = await client.read_holding_registers(end, count=2)
                assert tail.registers == [0xFFFF, 0]
                # Only holding registers exist: input registers are refused.
                assert (await client.read_input_registers(40000, count=1)).isError()
            finally:
                client.close()

    run(main)


def test_writes_are_checked_and_percent_setpoints_act() -> None:
    async def main() -> None:
        async with SunSpecBessSimulator(port=0, rated_power_kw=500.0) as sim:
            client = AsyncModbusTcpClient("127.0.0.1", port=sim.port)
            await client.connect()
            try:
                ctl = sim.address_of(704)
                # A read-only point (701 W) and the marker: ILLEGAL_ADDRESS (2).
                w = sim.address_of(701) + 10
                reply = await client.write_register(w, 5)
                assert reply.isError() and reply.exception_code == 2
                reply = await client.write_register(40000, 1)
                assert reply.isError() and reply.exception_code == 2
                # WSetEna has symbols 0 and 1 only: ILLEGAL_VALUE (3), nothing applied.
                reply = await client.write_registers(ctl + WSETENA, [7, 0])
                assert reply.isError() and reply.exception_code == 3
                assert sim.command.mode == 0
                # 40.00 % (WSetPct_SF -2) of 500 kW in W_MAX_PCT mode.
                assert not (await client.write_register(ctl + WSETPCT, 4000)).isError()
                assert not (await client.write_registers(ctl + WSETENA, [1, 0])).isError()
                assert sim.command.mode == 1
                assert sim.command.p_kw == pytest.approx(200.0)
                back = await client.read_holding_registers(ctl + WSETENA, count=2)
                assert back.registers == [1, 0]
            finally:
                client.close()

    run(main)


def test_unsupported_model_or_base_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        SunSpecBessSimulator(port=0, models=(1, 103))
    assert info.value.field == "models"
    with pytest.raises(ConfigError) as info:
        SunSpecBessSimulator(port=0, base_address=65000)
    assert info.value.field == "base_address"
