"""The SunSpec simulator and driver against pysunspec2's own Modbus TCP client.

pysunspec2's client is synchronous (blocking sockets), so it runs in a worker thread
(``asyncio.to_thread``) while the simulator serves on the event loop. It is the foreign
peer: it scans the simulator with its own discovery and decoding, and what it reads
and writes must agree with what vpp's driver reads.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sunspec2.modbus.client import (  # type: ignore[import-untyped]
    SunSpecModbusClientDeviceTCP,
)

from tests.support.devices import run, wait_until
from vpp.drivers.factory import ProtocolFactory
from vpp.drivers.sunspec import SunSpecProtocol
from vpp.sim.sunspec import SunSpecBessSimulator


def scan(port: int) -> dict[str, Any]:
    """Scan the device with pysunspec2 and collect the values the test compares."""
    dev = SunSpecModbusClientDeviceTCP(ipaddr="127.0.0.1", ipport=port, timeout=2.0)
    try:
        dev.scan()
        ac = dev.DERMeasureAC[0]
        storage = dev.DERStorageCapacity[0]
        battery = dev.battery[0]
        return {
            "chain": [(m.model_id, m.model_addr, m.model_len) for m in dev.model_list],
            "errors": [m.error_info for m in dev.model_list if m.error_info],
            "base": dev.base_addr,
            "W": ac.W.cvalue,
            "Hz": ac.Hz.cvalue,
            "LLV": ac.LLV.cvalue,
            "SoC": storage.SoC.cvalue,
            "WHRtg": storage.WHRtg.cvalue,
            "V": battery.V.cvalue,
            "WMaxRtg": dev.DERCapacity[0].WMaxRtg.cvalue,
            "DbOf": dev.DERFreqDroop[0].Ctl[0].DbOf.cvalue,
            "SN": dev.common[0].SN.value,
            # pysunspec2 leaves a not-implemented point as None.
            "TmpAmb": ac.TmpAmb.value,
        }
    finally:
        dev.disconnect()


def write_setpoint(port: int, watts: int) -> None:
    """Enable power control at ``watts`` through pysunspec2 (writes 704 and 802)."""
    dev = SunSpecModbusClientDeviceTCP(ipaddr="127.0.0.1", ipport=port, timeout=2.0)
    try:
        dev.scan()
        ctl = dev.DERCtlAC[0]
        ctl.WSet.cvalue = watts
        ctl.WSetMod.value = 1  # WATTS
        ctl.WSetEna.value = 1  # ENABLED
        ctl.write()
        bat = dev.battery[0]
        bat.SetOp.value = 1  # CONNECT
        bat.SetInvState.value = 3  # INVERTER_STARTED
        bat.write()
    finally:
        dev.disconnect()


def driver(port: int) -> SunSpecProtocol:
    cfg = {"host": "127.0.0.1", "port": port, "retries": 0}
    proto = ProtocolFactory().create("sunspec", cfg)
    assert isinstance(proto, SunSpecProtocol)
    return proto


def test_pysunspec2_reads_what_the_driver_reads() -> None:
    async def main() -> None:
        async with SunSpecBessSimulator(
            port=0, capacity_kwh=1000.0, rated_power_kw=500.0, initial_soc_pct=72.5
        ) as sim:
            sim.frequency_hz = 50.021
            sim.step(0.0)  # publish now, not at the next tick
            proto = driver(sim.port)
            try:
                status = await proto.read_status()
                theirs = await asyncio.to_thread(scan, sim.port)
            finally:
                await proto.close()
            assert theirs["errors"] == []
            assert theirs["base"] == proto.base_address == 40000
            assert theirs["chain"] == proto.chain
            assert theirs["Hz"] == pytest.approx(status["frequency_hz"]) == pytest.approx(50.021)
            assert theirs["SoC"] == pytest.approx(status["soc_pct"]) == pytest.approx(72.5)
            assert theirs["WHRtg"] / 1000 == pytest.approx(status["capacity_kwh"])
            assert theirs["WMaxRtg"] / 1000 == pytest.approx(status["rated_power_kw"])
            assert theirs["V"] == pytest.approx(status["dc_voltage_v"])
            assert theirs["LLV"] == pytest.approx(status["voltage_ll_v"]) == 415.0
            assert theirs["DbOf"] == pytest.approx(status["droop_deadband_over_hz"])
            assert theirs["SN"] == proto.common["serial"] == "SIM0001"
            assert theirs["TmpAmb"] is None

    run(main)


def test_pysunspec2_writes_act_on_the_model_in_vpp_sign() -> None:
    async def main() -> None:
        async with SunSpecBessSimulator(port=0, ramp_kw_s=1e4) as sim:
            # SunSpec's sign: negative WSet charges, and vpp reads it back negative.
            await asyncio.to_thread(write_setpoint, sim.port, -42000)
            assert sim.command.enable and sim.command.p_kw == pytest.approx(-42.0)
            await wait_until(lambda: sim.model.power_kw < -41.9)
            await asyncio.sleep(0.2)
            proto = driver(sim.port)
            try:
                status = await proto.read_status()
            finally:
                await proto.close()
            assert status["power_setpoint_kw"] == pytest.approx(-42.0)
            assert status["power_kw"] == pytest.approx(-42.0, abs=0.05)
            theirs = await asyncio.to_thread(scan, sim.port)
            assert theirs["W"] == pytest.approx(-42000.0, abs=50.0)

    run(main)
