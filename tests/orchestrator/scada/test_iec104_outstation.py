"""The IEC 104 outstation against the foreign master c104 on loopback, and against a
raw-socket master for malformed frames, silence and refusals."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import c104
import pytest

from vpp._core import iec104_encode_asdus
from vpp.errors import BindError
from vpp.orchestrator.scada.iec104_map import Iec104PointMap
from vpp.orchestrator.scada.points import CommandOutcome, PointValue

from .iec104_peers import UNITS, RawMaster, RecordingSink, c104_master, served, until

MAP = Iec104PointMap.load(None, UNITS)
MONITOR_TYPES = {
    "float": c104.Type.M_ME_NC_1,
    "single": c104.Type.M_SP_NA_1,
    "double": c104.Type.M_DP_NA_1,
}


def image(now: float) -> dict[str, PointValue]:
    """A value for every mapped point: floats i + 0.25, states alternating."""
    out = {}
    for i, p in enumerate(MAP.monitor):
        value: float | bool = i + 0.25 if p.type == "float" else i % 2 == 0
        out[p.name] = PointValue(value, now, valid=p.name != "plant.q_mvar")
    return out


def run(coro: object) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


def test_general_interrogation_returns_every_point() -> None:
    async def main() -> None:
        async with served() as (out, _):
            img = image(time.time())
            out.update(img)
            points = {p.ioa: MONITOR_TYPES[p.type] for p in MAP.monitor}
            async with c104_master(out.port, points) as m:
                assert await asyncio.to_thread(m.conn.interrogation, 1)
                for p in MAP.monitor:
                    got = m.points[p.ioa]
                    pv = img[p.name]
                    if p.type == "float":
                        assert got.value == pytest.approx(pv.value), p.name
                    elif p.type == "single":
                        assert got.value is pv.value, p.name
                    else:
                        assert got.value == (c104.Double.ON if pv.value else c104.Double.OFF), (
                            p.name
                        )
                    invalid = c104.Quality.Invalid in got.quality  # type: ignore[operator]
                    assert invalid == (not pv.valid), p.name
            stats = out.stats()
            assert stats["interrogations"] == 1
            assert stats["points_sent"] >= len(MAP.monitor)
            assert stats["frames_in"] >= 2 and stats["frames_out"] >= 4

    run(main())


def test_spontaneous_change_arrives_time_tagged_beyond_deadband_only() -> None:
    async def main() -> None:
        async with served() as (out, _):
            t0 = time.time() - 10.0
            out.update({"plant.p_mw": PointValue(10.0, t0), "plant.alarm": PointValue(False, t0)})
            points = {1001: c104.Type.M_ME_TF_1, 1103: c104.Type.M_SP_TB_1}
            async with c104_master(out.port, points) as m:
                p, alarm = m.points[1001], m.points[1103]
                t1 = time.time() - 5.0
                # 0.005 MW is inside the 0.01 MW deadband: not sent.
                out.update(
                    {"plant.p_mw": PointValue(10.005, t1), "plant.alarm": PointValue(True, t1)}
                )
                await until(lambda: alarm.value is True)
                assert alarm.recorded_at is not None
                assert alarm.recorded_at.timestamp() == pytest.approx(t1, abs=0.002)
                assert p.value != pytest.approx(10.005)
                t2 = time.time() - 1.0
                out.update({"plant.p_mw": PointValue(11.5, t2, valid=False)})
                await until(lambda: p.value == pytest.approx(11.5))
                assert p.recorded_at is not None
                assert p.recorded_at.timestamp() == pytest.approx(t2, abs=0.002)
                assert c104.Quality.Invalid in p.quality  # type: ignore[operator]

    run(main())


def test_set_point_reaches_the_sink_and_the_master_sees_success() -> None:
    async def main() -> None:
        async with served() as (out, sink):
            async with c104_master(out.port) as m:
                cmd = m.add(5001, c104.Type.C_SE_NC_1)
                cmd.value = 42.5
                assert await asyncio.to_thread(m.command, cmd)
                assert len(sink.calls) == 1
                master, point, value = sink.calls[0]
                assert master.startswith("iec104 127.0.0.1:")
                assert (point, value) == ("agc.setpoint_mw", 42.5)
            assert out.stats()["commands"] == 1 and out.stats()["commands_refused"] == 0

    run(main())


def test_select_before_execute() -> None:
    async def main() -> None:
        async with served() as (out, sink):
            async with c104_master(out.port) as m:
                sbe = m.add(5002, c104.Type.C_SE_NC_1, sbe=True)
                sbe.value = -20.0
                assert await asyncio.to_thread(m.command, sbe)
                assert sink.calls[-1][1:] == ("plant.target_mw", -20.0)
                enable = m.add(5004, c104.Type.C_DC_NA_1, sbe=True)
                enable.value = c104.Double.ON
                assert await asyncio.to_thread(m.command, enable)
                assert sink.calls[-1][1:] == ("plant.enable", True)
                # Direct execute to a select-before-execute point: refused, sink not called.
                sbe.command_mode = c104.CommandMode.DIRECT
                assert not await asyncio.to_thread(m.command, sbe)
                # A select to a direct-execute point: refused.
                direct = m.add(5001, c104.Type.C_SE_NC_1, sbe=True)
                direct.value = 1.0
                assert not await asyncio.to_thread(m.command, direct)
            assert len(sink.calls) == 2
            stats = out.stats()
            assert stats["error.not_selected"] == 1 and stats["error.not_allowed"] == 1
            assert stats["commands_refused"] == 2

    run(main())


def test_commands_outside_limits_are_refused_and_counted() -> None:
    async def main() -> None:
        async with served() as (out, sink):
            async with c104_master(out.port) as m:
                cmd = m.add(5001, c104.Type.C_SE_NC_1)
                for bad in (1000.5, -5000.0, float("inf"), float("nan")):
                    cmd.value = bad
                    assert not await asyncio.to_thread(m.command, cmd), bad
            assert sink.calls == []
            assert out.stats()["error.value"] == 4 and out.stats()["commands_refused"] == 4

    run(main())


def test_a_refused_sink_outcome_gives_a_negative_confirmation() -> None:
    async def main() -> None:
        sink = RecordingSink(CommandOutcome(False, "plant in local control"))
        async with served(sink) as (out, _):
            async with c104_master(out.port) as m:
                cmd = m.add(5001, c104.Type.C_SE_NC_1)
                cmd.value = 3.0
                assert not await asyncio.to_thread(m.command, cmd)
            assert len(sink.calls) == 1
            assert out.stats()["error.refused"] == 1

    run(main())


def test_clock_sync_records_the_offset_without_setting_the_clock() -> None:
    async def main() -> None:
        # The outstation's clock runs 5 s behind the master's.
        async with served(clock=lambda: time.time() - 5.0) as (out, _):
            async with c104_master(out.port) as m:
                assert await asyncio.to_thread(m.conn.clock_sync, 1)
                await until(lambda: out.stats()["clock_offset_ms"] != 0)
            assert out.stats()["clock_offset_ms"] == pytest.approx(5000, abs=200)

    run(main())


def test_a_peer_not_in_masters_is_refused() -> None:
    async def main() -> None:
        async with served() as (out, _):
            raw = await RawMaster.connect(out.port, source="127.0.0.2")
            assert await raw.closed(timeout=2.0)
            await raw.aclose()
            assert out.stats()["refused_peers"] == 1
            assert out.stats()["connections"] == 0

    run(main())


def test_connections_beyond_the_limit_are_refused() -> None:
    async def main() -> None:
        async with served(max_connections=1) as (out, _):
            first = await RawMaster.connect(out.port)
            await first.startdt()
            second = await RawMaster.connect(out.port)
            assert await second.closed(timeout=2.0)
            assert not await first.closed(timeout=0.2)
            assert out.stats()["refused_peers"] == 1
            await first.aclose()
            await second.aclose()

    run(main())


def _gi(ca: int = 1, cot: int = 6, qoi: int = 20) -> bytes:
    return iec104_encode_asdus(100, cot, ca, [(0, qoi, 0, False, None)])[0]


def _wrong_send_sequence(m: RawMaster) -> None:
    m.vs = 7  # the outstation expects N(S) 0
    m.send_asdu(_gi())


# Frames that must close the connection: (the kind they are counted under, the frame).
MALFORMED: list[tuple[str, bytes | Callable[[RawMaster], None]]] = [
    ("apdu", b"\x67\x04\x07\x00\x00\x00"),  # start octet
    ("apdu", b"\x68\x02\x07\x00"),  # length below 4
    ("asdu", bytes([0x68, 0x0E, 0, 0, 0, 0, 100, 3, 6, 0, 1, 0, 0, 0, 0, 20])),  # VSQ 3, 1 object
    # Clock synchronisation at minute 61.
    ("time", bytes([0x68, 0x14, 0, 0, 0, 0, 103, 1, 6, 0, 1, 0, 0, 0, 0, 0, 0, 61, 1, 1, 1, 24])),
    ("sequence", _wrong_send_sequence),
    ("sequence", bytes([0x68, 4, 1, 0, 20, 0])),  # acknowledges 10 frames never sent
]


def test_malformed_apdus_are_counted_and_close_only_their_connection() -> None:
    async def main() -> None:
        async with served() as (out, _):
            out.update(image(time.time()))
            async with c104_master(out.port, {1001: c104.Type.M_ME_NC_1}) as m:
                kinds: dict[str, int] = {}
                for kind, bad in MALFORMED:
                    raw = await RawMaster.connect(out.port)
                    await raw.startdt()
                    if isinstance(bad, bytes):
                        raw.send(bad)
                    else:
                        bad(raw)
                    assert await raw.closed(), kind
                    await raw.aclose()
                    kinds[kind] = kinds.get(kind, 0) + 1
                # An I-frame before STARTDT.
                raw = await RawMaster.connect(out.port)
                raw.send_asdu(_gi())
                assert await raw.closed()
                await raw.aclose()
                kinds["state"] = 1
                stats = out.stats()
                for kind, n in kinds.items():
                    assert stats[f"error.{kind}"] == n, kind
                # The c104 connection goes on.
                assert await asyncio.to_thread(m.conn.interrogation, 1)
                assert m.points[1001].value == pytest.approx(0.25)
                assert out.stats()["interrogations"] == 1

    run(main())


def test_a_master_that_stops_acknowledging_is_closed_after_t1() -> None:
    async def main() -> None:
        async with served(t1_s=0.5, t2_s=0.2, t3_s=5.0) as (out, _):
            raw = await RawMaster.connect(out.port)
            await raw.startdt()
            started = time.monotonic()
            raw.send_asdu(_gi())  # answered with I-frames this master never acknowledges
            assert await raw.closed(timeout=3.0)
            assert 0.4 < time.monotonic() - started < 2.0
            assert out.stats()["error.t1"] == 1
            await raw.aclose()

    run(main())


def test_link_layer_end_of_init_testfr_and_t2_acknowledgement() -> None:
    async def main() -> None:
        async with served(t1_s=1.0, t2_s=0.2, t3_s=0.3, w=8) as (out, _):
            raw = await RawMaster.connect(out.port)
            await raw.startdt()
            eoi = await raw.read_i()
            assert (eoi.type_id, eoi.cot) == (70, 4)
            raw.ack()
            # Idle for t3: the outstation tests the link; answered, it stays open.
            apdu = await raw.read(timeout=2.0)
            assert apdu is not None and apdu.u_function == "testfr_act"
            raw.send(bytes([0x68, 4, 0x83, 0, 0, 0]))
            # A received I-frame is acknowledged within t2 (here by the GI answers or an S-frame).
            raw.send_asdu(_gi())
            acked = None
            while acked is None:
                a = await raw.read(timeout=2.0)
                assert a is not None
                if a.format in ("I", "S") and a.recv_seq == 1:
                    acked = a
            await raw.aclose()

    run(main())


def _command(type_id: int, ioa: int, value: object, *, cot: int = 6, ca: int = 1,
             select: bool = False, t: float | None = None) -> bytes:  # fmt: skip
    return iec104_encode_asdus(type_id, cot, ca, [(ioa, value, 0, select, t)])[0]  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("asdu", "cot", "kind"),
    [
        (_command(50, 9999, 1.0), 47, "address"),  # no command point there
        (_command(45, 5001, True), 47, "address"),  # a set-point point, not a single command
        (_command(50, 5001, 1.0, ca=7), 46, "address"),
        (_command(50, 5001, 1.0, cot=5), 45, "cause"),
        (bytes([49, 1, 6, 0, 1, 0, 0x89, 0x13, 0, 1, 0, 0]), 44, "type"),  # C_SE_NB_1: not served
        (_command(46, 5004, 3, select=True), 7, "value"),  # double command 3 is invalid
        (_command(63, 5001, 1.0, t=time.time() - 100), 7, "stale"),
        (_gi(ca=9), 46, "address"),
        (_gi(qoi=21), 7, "value"),
    ],
)  # fmt: skip
def test_refusals_are_negative_with_their_cause(asdu: bytes, cot: int, kind: str) -> None:
    async def main() -> None:
        async with served() as (out, sink):
            raw = await RawMaster.connect(out.port)
            await raw.startdt()
            await raw.read_i()  # end of initialisation
            raw.send_asdu(asdu)
            reply = await raw.read_i()
            assert (reply.cot, reply.negative, reply.type_id) == (cot, True, asdu[0])
            assert out.stats()[f"error.{kind}"] == 1
            assert sink.calls == []
            assert not await raw.closed(timeout=0.1), "a refusal keeps the connection"
            await raw.aclose()

    run(main())


def test_deactivation_withdraws_a_select_and_time_tagged_commands_execute() -> None:
    async def main() -> None:
        async with served() as (out, sink):
            raw = await RawMaster.connect(out.port)
            await raw.startdt()
            await raw.read_i()
            raw.send_asdu(_command(50, 5002, 5.0, select=True))
            assert ((r := await raw.read_i()).cot, r.negative) == (7, False)
            raw.send_asdu(_command(50, 5002, 5.0, select=True, cot=8))
            assert ((r := await raw.read_i()).cot, r.negative) == (9, False)
            raw.send_asdu(_command(50, 5002, 5.0))  # the select is gone
            assert ((r := await raw.read_i()).cot, r.negative) == (7, True)
            raw.send_asdu(_command(63, 5001, 7.5, t=time.time() - 1))
            assert ((r := await raw.read_i()).cot, r.negative) == (7, False)
            assert ((r := await raw.read_i()).cot, r.negative) == (10, False)
            assert [c[1:] for c in sink.calls] == [("agc.setpoint_mw", 7.5)]
            await raw.aclose()

    run(main())


def test_cyclic_floats_and_bind_error() -> None:
    async def main() -> None:
        async with served(cyclic_s=0.2) as (out, _):
            out.update(image(time.time()))
            raw = await RawMaster.connect(out.port)
            await raw.startdt()
            await raw.read_i()
            periodic = await raw.read_i(timeout=2.0)
            assert (periodic.type_id, periodic.cot) == (13, 1)
            assert {o.ioa: o.value for o in periodic.objects}[1001] == pytest.approx(0.25)
            await raw.aclose()
            # Another outstation on the same port cannot bind.
            with pytest.raises(BindError):
                async with served(port=out.port):
                    pytest.fail("bound a port in use")

    run(main())
