"""The DNP3 outstation against a foreign master: opendnp3 (yadnp3 bindings) on loopback.

Every test starts our outstation on a free port with the bundled default map, gives it
an image, and lets opendnp3's master poll and command it. Raw TCP peers play the
strangers and the senders of garbage.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import opendnp3 as o
import pytest

from tests.orchestrator.scada.dnp3_peers import (
    ForeignMaster,
    RecordingSink,
    class0_read,
    closed_by_peer,
    frame,
    raw_connect,
    until,
)
from tests.support.aio import close_writer, run
from vpp.errors import BindError
from vpp.orchestrator.scada.dnp3 import Dnp3Outstation
from vpp.orchestrator.scada.dnp3_map import Dnp3Config, Dnp3PointMap
from vpp.orchestrator.scada.points import PLANT_POINTS, UNIT_POINTS, CommandOutcome, PointValue

UNITS = ["bess-1", "bess-2", "bess-3"]
T0 = 1_700_000_000.0


def image(t: float = T0, **override: float | bool) -> dict[str, PointValue]:
    """Every point, each with its own value (floats 1.25, 2.25, ...; bools alternate)."""
    out: dict[str, PointValue] = {}
    names = [(n, k) for n, (k, _, _) in PLANT_POINTS.items()]
    names += [(f"unit.{u}.{n}", k) for u in UNITS for n, (k, _, _) in UNIT_POINTS.items()]
    for i, (name, kind) in enumerate(names):
        out[name] = PointValue(i + 1.25 if kind == "float" else i % 2 == 0, t)
    for key, value in override.items():
        out[key.replace("__", ".")] = PointValue(value, t)
    return out


@asynccontextmanager
async def outstation(
    sink: Any = None, clock: Any = time.time, **cfg: Any
) -> AsyncIterator[Dnp3Outstation]:
    """Our outstation on a free port, closed at the end."""
    point_map = Dnp3PointMap.load(None, UNITS)
    station = Dnp3Outstation(
        Dnp3Config(port=0, **cfg), point_map, sink or RecordingSink(), clock=clock
    )
    await station.start()
    try:
        yield station
    finally:
        await station.close()


@contextmanager
def master(port: int, **kw: Any) -> Iterator[ForeignMaster]:
    m = ForeignMaster(port, **kw)
    try:
        yield m
    finally:
        m.close()


async def started(m: ForeignMaster) -> None:
    """Wait for opendnp3's startup sequence (integrity poll, unsolicited enabled)."""
    await until(lambda: m.done("ENABLE_UNSOLICITED"), 5, "the master's startup")


def test_integrity_poll_returns_every_point_with_its_value_and_flags() -> None:
    async def go() -> None:
        async with outstation() as station:
            img = image()
            img["plant.q_mvar"] = PointValue(7.5, T0, valid=False)
            img["unit.bess-2.online"] = PointValue(True, T0, valid=False)
            station.update(img)
            with master(station.port) as m:
                await started(m)
                pm = station.point_map
                await until(lambda: len(m.values("Group30Var1")) == len(pm.analog_inputs),
                            5, "every analog input")  # fmt: skip
                ai, bi = m.values("Group30Var1"), m.values("Group1Var2")
                ao, bo = m.values("Group40Var1"), m.values("Group10Var2")
        assert set(ai) == {p.index for p in pm.analog_inputs}
        for p in pm.analog_inputs:
            want = round(img[p.name].value * p.scale)
            assert ai[p.index].value == want, p.name
            online = p.name != "plant.q_mvar"
            assert bool(ai[p.index].flags & 0x01) is online, p.name
        assert set(bi) == {p.index for p in pm.binary_inputs}
        for p in pm.binary_inputs:
            assert bi[p.index].value is img[p.name].value, p.name
            assert bool(bi[p.index].flags & 0x01) is (p.name != "unit.bess-2.online"), p.name
        # the set-points in force, read back as analog output status (kW)
        assert ao[146].value == round(img["agc.setpoint_mw"].value * 1000)
        assert ao[508].value == round(img["plant.target_mw"].value * 1000)
        assert bo[1].value is img["plant.enabled"].value
        assert station.stats()["polls"] >= 1
        assert station.stats()["points_sent"] >= pm.point_count

    run(go())


def test_time_sync_is_recorded_as_an_offset() -> None:
    async def go() -> None:
        # Our clock runs 5 s behind the master's: the offset is +5000 ms.
        async with outstation(clock=lambda: time.time() - 5.0) as station:
            station.update(image())
            with master(station.port, time_sync=True) as m:
                await until(lambda: m.done("LAN_TIME_SYNC"), 5, "the time sync")
            offset = station.stats()["clock_offset_ms"]
        assert 4800 <= offset <= 5200

    run(go())


def test_change_beyond_deadband_goes_out_unsolicited_with_its_time() -> None:
    async def go() -> None:
        async with outstation() as station:
            station.update(image())
            with master(station.port) as m:
                await started(m)
                m.clear()
                # p_mw: deadband 0.01 MW. 0.005 MW: no event; then 42 MW: an event.
                station.update(image(T0 + 1, plant__p_mw=image()["plant.p_mw"].value + 0.005))
                t2 = T0 + 2.5
                station.update(image(t2, plant__p_mw=42.0))
                await until(lambda: any(e.value == 42000 for e in m.events("Group32Var3", 537)),
                            5, "the event of plant.p_mw")  # fmt: skip
                events = m.events("Group32Var3", 537)
                sent = station.stats()["unsolicited_sent"]
        assert [e.value for e in events] == [42000]
        assert events[0].unsolicited
        assert events[0].time_ms == int(t2 * 1000)
        assert sent >= 1

    run(go())


def test_class_poll_reads_the_events_when_unsolicited_is_off() -> None:
    async def go() -> None:
        async with outstation(unsolicited=False) as station:
            station.update(image())
            with master(station.port) as m:
                await until(lambda: m.done("STARTUP_INTEGRITY_POLL"), 5, "the integrity poll")
                m.clear()
                station.update(image(T0 + 3, plant__alarm=True, grid__frequency_hz=49.9))
                await asyncio.sleep(0.3)
                assert m.events("Group2Var2", 1) == []  # nothing spontaneous
                m.master.ScanClasses(o.ClassField.AllEventClasses(), m._soe)
                await until(lambda: m.events("Group2Var2", 1) != [], 5, "the alarm event")
                freq = m.events("Group32Var3", 536)
        assert m.events("Group2Var2", 1)[0].value is True
        assert not m.events("Group2Var2", 1)[0].unsolicited
        assert [e.value for e in freq] == [49900]

    run(go())


def test_agc_setpoint_select_and_operate_reaches_the_sink() -> None:
    async def go() -> None:
        sink = RecordingSink()
        async with outstation(sink) as station:
            station.update(image())
            with master(station.port) as m:
                await started(m)
                status = await m.command("SelectAndOperate", o.AnalogOutputFloat32(12500.0), 146)
                status_i = await m.command("SelectAndOperate", o.AnalogOutputInt32(-2000), 508)
            stats = station.stats()
        assert (status, status_i) == ("SUCCESS", "SUCCESS")
        assert [c[1:] for c in sink.calls] == [("agc.setpoint_mw", 12.5), ("plant.target_mw", -2.0)]
        assert sink.calls[0][0].startswith("dnp3 127.0.0.1:")
        assert stats["commands"] == 2 and stats["commands_refused"] == 0

    run(go())


def test_direct_operate_of_a_select_before_operate_point_is_refused() -> None:
    async def go() -> None:
        sink = RecordingSink()
        async with outstation(sink) as station:
            station.update(image())
            with master(station.port) as m:
                await started(m)
                status = await m.command("DirectOperate", o.AnalogOutputFloat32(1000.0), 146)
                crob = await m.command("DirectOperate", o.ControlRelayOutputBlock(
                    o.OperationType.LATCH_ON), 1)  # fmt: skip
            stats = station.stats()
        assert (status, crob) == ("NO_SELECT", "NO_SELECT")
        assert sink.calls == []
        assert stats["commands_refused"] == 2 and stats["error.not_allowed"] == 2

    run(go())


def test_values_outside_the_limits_or_unknown_indexes_are_refused() -> None:
    async def go() -> None:
        sink = RecordingSink()
        async with outstation(sink) as station:
            station.update(image())
            with master(station.port) as m:
                await started(m)
                high = await m.command("SelectAndOperate", o.AnalogOutputFloat32(600_000.0), 146)
                nan = await m.command("SelectAndOperate", o.AnalogOutputFloat32(float("nan")), 146)
                unknown = await m.command("SelectAndOperate", o.AnalogOutputFloat32(1.0), 147)
            stats = station.stats()
        assert (high, nan, unknown) == ("OUT_OF_RANGE", "OUT_OF_RANGE", "NOT_SUPPORTED")
        assert sink.calls == []
        assert stats["error.value"] == 2 and stats["error.address"] == 1

    run(go())


def test_the_sinks_refusal_or_silence_fails_the_command() -> None:
    async def go() -> None:
        refusing = RecordingSink(CommandOutcome(False, "beyond the plant's limit"))
        async with outstation(refusing) as station:
            station.update(image())
            with master(station.port) as m:
                await started(m)
                refused = await m.command("SelectAndOperate", o.AnalogOutputFloat32(1000.0), 146)
            assert station.stats()["error.refused"] == 1
        slow = RecordingSink(delay=5.0)
        async with outstation(slow, command_timeout_s=0.3) as station:
            station.update(image())
            with master(station.port) as m:
                await started(m)
                timed_out = await m.command("SelectAndOperate", o.AnalogOutputFloat32(1.0), 146)
            assert station.stats()["error.timeout"] == 1
        assert refused == "BLOCKED"
        assert timed_out == "TIMEOUT"
        assert len(refusing.calls) == 1 and len(slow.calls) == 1

    run(go())


def test_crob_on_and_off_enable_and_disable_the_plant() -> None:
    async def go() -> None:
        sink = RecordingSink()
        crob = o.ControlRelayOutputBlock
        async with outstation(sink) as station:
            station.update(image())
            with master(station.port) as m:
                await started(m)
                s = [
                    await m.command("SelectAndOperate", crob(o.OperationType.LATCH_ON), 1),
                    await m.command("SelectAndOperate", crob(o.OperationType.LATCH_OFF), 1),
                    await m.command("SelectAndOperate", crob(o.OperationType.PULSE_ON), 2),
                    await m.command("SelectAndOperate", crob(o.OperationType.PULSE_OFF), 2),
                ]
        assert s == ["SUCCESS", "SUCCESS", "SUCCESS", "NOT_SUPPORTED"]
        assert [c[1:] for c in sink.calls] == [
            ("plant.enable", True),
            ("plant.enable", False),
            ("plant.enable", False),
        ]

    run(go())


def test_a_peer_not_admitted_is_closed_and_counted() -> None:
    async def go() -> None:
        async with outstation(masters=["127.0.0.1"]) as station:
            station.update(image())
            reader, writer = await raw_connect(station.port, local="127.0.0.2")
            writer.write(frame(class0_read()))
            assert await closed_by_peer(reader)
            await close_writer(writer)
            assert station.stats()["refused_peers"] == 1
            assert station.stats()["frames_in"] == 0
        async with outstation(masters=["127.0.0.2"]) as station:
            station.update(image())
            with master(station.port) as m:
                await until(lambda: station.stats()["refused_peers"] >= 1, 5, "the refusal")
                await asyncio.sleep(0.3)
                assert m.values("Group30Var1") == {}

    run(go())


def test_malformed_frames_are_counted_and_the_master_is_unaffected() -> None:
    async def go() -> None:
        async with outstation() as station:
            station.update(image())
            with master(station.port) as m:
                await started(m)
                reader, writer = await raw_connect(station.port)
                good = frame(class0_read())
                bad_header = bytearray(good)
                bad_header[3] ^= 0x40  # control octet: header CRC fails
                bad_data = bytearray(good)
                bad_data[12] ^= 0xFF  # in the data block: its CRC fails
                writer.write(b"\x00garbage\xff" + bytes(bad_header) + bytes(bad_data))
                writer.write(frame(class0_read(), dest=11))  # not our link address
                writer.write(frame(class0_read(), source=7))  # not the master's
                await writer.drain()
                await until(lambda: station.stats().get("error.address", 0) == 2, 5, "counts")
                stats = station.stats()
                assert stats["error.sync"] >= 1
                assert stats["error.crc"] == 2
                # still served: the master's own poll goes on as before
                m.clear()
                m.master.ScanClasses(o.ClassField.AllClasses(), m._soe)
                await until(lambda: len(m.values("Group30Var1")) > 0, 5, "the master's poll")
                # a stream of garbage gets its connection closed
                writer.write(b"\x05\x64\x05\xc4\x0a\x00\x01\x00\x00\x00" * 10)
                assert await closed_by_peer(reader)
                await close_writer(writer)
                assert station.stats()["error.closed"] == 1
                m.clear()
                m.master.ScanClasses(o.ClassField.AllClasses(), m._soe)
                await until(lambda: len(m.values("Group30Var1")) > 0, 5, "the master's poll")

    run(go())


def test_a_silent_master_is_logged_lost_and_the_plant_left_alone() -> None:
    async def go() -> None:
        sink = RecordingSink()
        async with outstation(sink, keepalive_s=0.4) as station:
            station.update(image())
            reader, writer = await raw_connect(station.port)
            writer.write(frame(class0_read()))
            assert not await closed_by_peer(reader, 0.2)
            assert await closed_by_peer(reader, 3.0)
            await close_writer(writer)
            assert station.stats()["masters_lost"] == 1
        assert sink.calls == []

    run(go())


def test_an_address_in_use_is_a_bind_error() -> None:
    async def go() -> None:
        async with outstation() as first:
            point_map = Dnp3PointMap.load(None, UNITS)
            second = Dnp3Outstation(Dnp3Config(port=first.port), point_map, RecordingSink())
            with pytest.raises(BindError):
                await second.start()

    run(go())


def test_an_image_given_during_a_command_is_served_after_it() -> None:
    async def go() -> None:
        sink = RecordingSink(delay=0.5)
        async with outstation(sink) as station:
            station.update(image())
            with master(station.port) as m:
                await started(m)
                command = asyncio.create_task(
                    m.command("SelectAndOperate", o.AnalogOutputFloat32(3000.0), 146)
                )
                await until(lambda: sink.calls != [], 5, "the command in the sink")
                station.update(image(T0 + 9, plant__p_mw=77.0))  # the worker holds the engine
                assert await command == "SUCCESS"
                await until(lambda: any(e.value == 77000 for e in m.events("Group32Var3", 537)),
                            5, "the image given meanwhile")  # fmt: skip
                # closed with the master still connected: no error, no thread left
        assert sink.calls[0][1:] == ("agc.setpoint_mw", 3.0)

    run(go())
