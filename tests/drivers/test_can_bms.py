"""CanBmsProtocol against the BMS simulator on python-can's virtual bus (no mocks)."""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import can
import pytest

from tests.support.devices import run, wait_until
from tests.support.net import free_udp_port, non_loopback_ipv4, send_can
from vpp.core import SafetyEnvelope, ViolationCode
from vpp.drivers.can_bms import CanBmsProtocol, default_dbc_path
from vpp.drivers.errors import DeviceOfflineError
from vpp.drivers.factory import ProtocolFactory
from vpp.errors import ConfigError
from vpp.sim.battery import SimBattery
from vpp.sim.bms import BmsSimulator

PERIOD_S = 0.02
STALE_S = 0.2
GROUP = "239.74.163.2"
FOREIGN = non_loopback_ipv4()
_counter = itertools.count()


def channel() -> str:
    """A channel name no other test uses (virtual buses of one name share frames)."""
    return f"vpp-test-{uuid.uuid4().hex[:8]}-{next(_counter)}"


def driver(chan: str, **extra: Any) -> CanBmsProtocol:
    """A CAN BMS driver on virtual channel ``chan``, made by the factory."""
    cfg: dict[str, Any] = {"interface": "virtual", "channel": chan, "retries": 0}
    cfg.update(extra)
    proto = ProtocolFactory().create("can_bms", cfg, label="bms1")
    assert isinstance(proto, CanBmsProtocol)
    return proto


@asynccontextmanager
async def bms(**extra: Any) -> AsyncIterator[tuple[BmsSimulator, CanBmsProtocol]]:
    """A running simulator and a connected driver on a fresh channel; every message goes
    stale after ``STALE_S``."""
    chan = channel()
    sim = BmsSimulator(interface="virtual", channel=chan, period_s=PERIOD_S)
    proto = driver(chan, stale_after_s=dict.fromkeys(sim.periods, STALE_S), **extra)
    await proto.connect()
    try:
        async with sim:
            yield sim, proto
    finally:
        await proto.close()


async def fresh(proto: CanBmsProtocol) -> None:
    """Wait until every message is fresh."""
    await wait_until(lambda: not proto.stale_messages(time.time()))


async def settle(proto: CanBmsProtocol, cond: Any) -> dict[str, Any]:
    """Read until ``cond(status)`` holds; the status that satisfied it."""
    box: dict[str, Any] = {}

    def check() -> bool:
        box.update(proto.status(time.time()))
        return bool(cond(box))

    await wait_until(check)
    return box


def test_values_round_trip_exactly() -> None:
    async def main() -> None:
        async with bms() as (sim, proto):
            sim.cells_mv = [3200 + 7 * i for i in range(16)]
            sim.temps_c = [-40.0, -5.0, 0.0, 21.0, 25.0, 33.0, 47.0, 60.0]
            sim.current_a = -123.4
            sim.soc_pct = 61.7
            sim.soh_pct = 97.5
            sim.cycle_count = 1234
            sim.state = 1
            sim.balancing[3] = sim.balancing[15] = True
            await fresh(proto)
            s = await settle(proto, lambda s: s.get("cycle_count") == 1234.0 and
                             s.get("balancing_16") is True)
            for i in range(16):
                assert round(s[f"cell_{i + 1:02d}_v"] * 1000) == 3200 + 7 * i
            assert [s[f"temp_{j + 1}_c"] for j in range(8)] == sim.temps_c
            assert s["current_a"] == pytest.approx(-123.4, abs=1e-9)
            assert s["soc_pct"] == pytest.approx(61.7, abs=1e-9)
            assert s["soh_pct"] == pytest.approx(97.5, abs=1e-9)
            assert s["pack_voltage_v"] == pytest.approx(sum(sim.cells_mv) / 1000, abs=1e-9)
            assert s["state"] == 1.0
            assert s["cell_v_min"] == 3.2 and s["cell_v_max"] == pytest.approx(3.305)
            assert [s[f"balancing_{j + 1:02d}"] for j in range(16)] == sim.balancing
            # 60 and -40 degrees C and a 105 mV spread: over- and under-temperature, imbalance.
            assert s["bms_faults"] == float(1 << 2 | 1 << 3 | 1 << 5)
            assert s["stale"] is False
            read = await proto.read_status()
            assert read["current_a"] == pytest.approx(-123.4, abs=1e-9)
            tel = proto.telemetry(time.time())
            assert tel.current_a == pytest.approx(-123.4, abs=1e-9)
            assert tel.cell_v_min == pytest.approx(3.2) and tel.temp_max_c == 60.0

    run(main)


def test_positive_current_is_discharge_from_a_sim_battery() -> None:
    async def main() -> None:
        async with bms() as (sim, proto):
            battery = SimBattery(soc_pct=70.0)
            battery.apply(4.0, 1.0)
            sim.follow(battery)
            s = await settle(proto, lambda s: s.get("current_a", 0.0) > 0)
            assert s["state"] == 2.0
            assert s["soc_pct"] == pytest.approx(battery.soc_pct, abs=0.05)

    run(main)


@pytest.mark.parametrize(
    ("inject", "alarm", "check"),
    [
        (lambda sim: sim.inject_over_temperature(2, 70.0), "OverTemperature",
         lambda s: s["temp_max_c"] == 70.0),
        (lambda sim: sim.inject_imbalance(5, 250), "Imbalance",
         lambda s: s["cell_imbalance_v"] == pytest.approx(0.25)),
        (lambda sim: sim.inject_dead_cell(9), "DeadCell",
         lambda s: s["cell_v_min"] == 0.0 and s["cell_10_v"] == 0.0),
    ],
    ids=["over-temperature", "imbalance", "dead-cell"],
)
def test_faults_show_up(inject: Any, alarm: str, check: Any) -> None:
    async def main() -> None:
        async with bms() as (sim, proto):
            await fresh(proto)
            inject(sim)
            s = await settle(proto, lambda s: s.get(f"alarm_{alarm}") is True)
            assert check(s)
            others = [k for k in s if k.startswith("alarm_") and s[k] and k != f"alarm_{alarm}"]
            assert others == []
            status = SafetyEnvelope().evaluate(proto.telemetry(time.time()), time.time())
            assert status.has(ViolationCode.BMS_FAULT)
            assert status.max_kw == 0.0 and status.min_kw == 0.0

    run(main)


def test_stuck_cell_keeps_its_value_and_is_reported_dead() -> None:
    async def main() -> None:
        async with bms() as (sim, proto):
            sim.inject_dead_cell(0, stuck=True)
            sim.cells_mv = [3400] * 16
            s = await settle(proto, lambda s: s.get("alarm_DeadCell") is True and
                             s.get("cell_02_v") == 3.4)
            assert s["cell_01_v"] == 3.3

    run(main)


def test_silence_goes_stale_stops_the_envelope_and_resume_clears_it() -> None:
    async def main() -> None:
        async with bms() as (sim, proto):
            await fresh(proto)
            env = SafetyEnvelope()
            now = time.time()
            ok = env.evaluate(proto.telemetry(now), now)
            assert not ok.has(ViolationCode.STALE_TELEMETRY)

            sim.silence("BMS_Temperatures")
            s = await settle(proto, lambda s: s["stale_BMS_Temperatures"] is True)
            assert s["stale"] is True and s["stale_BMS_PackStatus"] is False
            assert s["temp_1_c"] == 25.0  # the last value is kept, flagged stale
            # The envelope's own limit (2 s) decides: look at the data from 3 s later.
            later = time.time() + 3.0
            tel = proto.telemetry(later)
            assert tel.timestamp < later - 2.0
            status = env.evaluate(tel, later)
            assert status.has(ViolationCode.STALE_TELEMETRY)
            assert status.max_kw == 0.0 and status.min_kw == 0.0

            sim.silence()
            await settle(proto, lambda s: all(
                s[f"stale_{m.name}"] for m in proto.db.messages))
            sim.resume()
            await fresh(proto)
            now = time.time()
            tel = proto.telemetry(now)
            assert tel.timestamp == now
            assert not SafetyEnvelope().evaluate(tel, now).has(ViolationCode.STALE_TELEMETRY)

    run(main)


def test_never_received_is_stale() -> None:
    async def main() -> None:
        proto = driver(channel())
        await proto.connect()
        try:
            s = await proto.read_status()
            assert s["stale"] is True and "cell_01_v" not in s
            now = time.time()
            status = SafetyEnvelope().evaluate(proto.telemetry(now), now)
            assert status.max_kw == 0.0 and status.min_kw == 0.0
        finally:
            await proto.close()

    run(main)


def test_garbage_frames_are_counted_not_raised() -> None:
    async def main() -> None:
        async with bms() as (sim, proto):
            await fresh(proto)
            with can.Bus(interface="virtual", channel=sim.channel) as bus:
                bus.send(can.Message(arbitration_id=0x7FF, data=b"\x01\x02",
                                     is_extended_id=False))
                bus.send(can.Message(arbitration_id=0x400, data=b"\x01\x02\x03",
                                     is_extended_id=False))
                await settle(proto, lambda s: s["frames_unknown"] == 1.0 and
                             s["frames_malformed"] == 1.0)
            # Still decoding the good frames.
            sim.current_a = 42.0
            s = await settle(proto, lambda s: s.get("current_a") == 42.0)
            assert s["cell_01_v"] == 3.3

    run(main)


def test_factory_validates_the_config() -> None:
    factory = ProtocolFactory()
    assert "can_bms" in factory.supported_protocols()
    with pytest.raises(ConfigError) as info:
        factory.create("can_bms", {"interface": "virtual"})
    assert info.value.field == "channel"
    with pytest.raises(ConfigError) as info:
        factory.create("can_bms", {"channel": "x", "stale_after_s": {"BMS_Alarms": -1}})
    assert info.value.field == "stale_after_s"
    with pytest.raises(ConfigError) as info:
        factory.create("can_bms", {"channel": "x", "stale_after_s": {"BMS_Nope": 1.0}})
    assert info.value.field == "stale_after_s" and "BMS_Nope" in str(info.value)
    with pytest.raises(ConfigError) as info:
        factory.create("can_bms", {"channel": "x", "bogus": 1})
    assert info.value.field == "bogus"
    proto = factory.create("can_bms", {"interface": "virtual", "channel": "x"})
    assert isinstance(proto, CanBmsProtocol)
    assert proto.stale_after["BMS_Temperatures"] == pytest.approx(3.0)


def test_the_dbc_ships_with_the_package() -> None:
    path = default_dbc_path()
    assert path.is_file() and path.read_text().count("\nBO_ ") == 9


def test_a_bus_that_cannot_open_is_offline() -> None:
    async def main() -> None:
        proto = driver(channel(), interface="no-such-interface")
        with pytest.raises(DeviceOfflineError):
            await proto.connect()
        await proto.close()

    run(main)


@pytest.mark.skipif(FOREIGN is None, reason="no non-loopback IPv4 address to send from")
def test_udp_loopback_carries_the_simulator_and_refuses_frames_from_elsewhere(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert FOREIGN is not None
    # Frames of an 80 C pack with its alarm bits set: what latched a unit before.
    forger = BmsSimulator()
    forger.inject_over_temperature(0, 80.0)
    forged = [forger.frame("BMS_Temperatures"), forger.frame("BMS_Alarms")]

    async def main() -> None:
        bus = {"bus_options": {"port": free_udp_port()}}
        sim = BmsSimulator(interface="udp_loopback", channel=GROUP, period_s=PERIOD_S, **bus)
        proto = driver(GROUP, interface="udp_loopback",
                       stale_after_s=dict.fromkeys(sim.periods, STALE_S), **bus)  # fmt: skip
        await proto.connect()
        try:
            async with sim:
                await fresh(proto)
                port = proto.cfg.bus_options["port"]
                for _ in range(20):
                    for f in forged:
                        assert send_can(f, (GROUP, port), source=FOREIGN)
                s = await settle(proto, lambda s: s["frames_refused"] == 40.0)
                assert s["temp_max_c"] == 25.0 and s["bms_faults"] == 0.0
                now = time.time()
                status = SafetyEnvelope().evaluate(proto.telemetry(now), now)
                assert not status.latched and status.violations == []
                # The simulator's own frames, over the same bus, still carry a fault.
                sim.inject_over_temperature(0, 80.0)
                s = await settle(proto, lambda s: s.get("alarm_OverTemperature") is True)
                assert s["temp_max_c"] == 80.0 and s["frames_refused"] == 40.0
        finally:
            await proto.close()

    with caplog.at_level("WARNING", logger="vpp.drivers.can_bms"):
        run(main)
    refused = [r for r in caplog.records if FOREIGN in r.getMessage()]
    assert len(refused) == 1 and "frames_refused" in refused[0].getMessage()
