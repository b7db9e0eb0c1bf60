"""The IEC 104 outstation under load, with the foreign master c104 on loopback.

- General interrogation of a plant with 100 units (~516 points): points per second from
  the C_IC_NA_1 sent to its ACTTERM received by c104 (median of several).
- Set-point (C_SE_NC_1) received -> sink called: latency p50 / p99 over many commands,
  from c104's transmit to the sink's call.
- Codec alone: points per second encoded into I-frames and decoded back.
- Reference, same run: a raw TCP echo round trip on loopback (asyncio both ends).

Run: ``python benchmarks/bench_scada_iec104.py [--quick]`` or ``vpp bench scada_iec104``.
"""

# No `from __future__ import annotations`: c104 checks a callback's annotations as
# objects, not strings.
import asyncio
import contextlib
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import c104

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vpp._core import iec104_decode, iec104_encode_asdus, iec104_encode_i  # noqa: E402
from vpp.bench import percentile, row  # noqa: E402
from vpp.orchestrator.scada.iec104 import Iec104Outstation  # noqa: E402
from vpp.orchestrator.scada.iec104_map import Iec104Config, Iec104PointMap  # noqa: E402
from vpp.orchestrator.scada.points import CommandOutcome, PointValue  # noqa: E402

Row = dict[str, Any]
UNITS = [f"u{i:03d}" for i in range(100)]
TYPES = {"float": c104.Type.M_ME_NC_1, "single": c104.Type.M_SP_NA_1, "double": c104.Type.M_DP_NA_1}


class _Sink:
    def __init__(self) -> None:
        self.times: list[float] = []

    async def __call__(self, master: str, point: str, value: float | bool) -> CommandOutcome:
        self.times.append(time.perf_counter())
        return CommandOutcome(True)


async def _echo_rtt(n: int) -> list[float]:
    async def echo(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while data := await r.read(4096):
            w.write(data)
        w.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    r, w = await asyncio.open_connection("127.0.0.1", port)
    out = []
    for _ in range(n):
        t = time.perf_counter()
        w.write(b"\x68\x04\x43\x00\x00\x00")
        await r.readexactly(6)
        out.append(time.perf_counter() - t)
    w.close()
    with contextlib.suppress(Exception):
        await w.wait_closed()
    server.close()
    await server.wait_closed()
    return out


def _master_work(
    port: int, pmap: Iec104PointMap, rounds: int, commands: int, sink: _Sink
) -> dict[str, Any]:
    client = c104.Client(tick_rate_ms=50, command_timeout_ms=5000)
    conn = client.add_connection(ip="127.0.0.1", port=port, init=c104.Init.NONE)
    assert conn is not None
    station = conn.add_station(common_address=1)
    assert station is not None
    for p in pmap.monitor:
        station.add_point(io_address=p.ioa, type=TYPES[p.type])
    cmd = station.add_point(io_address=5001, type=c104.Type.C_SE_NC_1)
    assert cmd is not None
    actterm = threading.Event()
    cmd_term = threading.Event()

    def on_raw(connection: c104.Connection, data: bytes) -> None:
        # ACTTERM (cause 10) of the interrogation (type 100) or of a set-point (50).
        if len(data) > 8 and data[8] & 0x3F == 10:
            (actterm if data[6] == 100 else cmd_term).set()

    conn.on_receive_raw(on_raw)
    client.start()
    try:
        deadline = time.monotonic() + 10
        while not conn.is_connected and time.monotonic() < deadline:
            time.sleep(0.01)
        conn.unmute()
        while conn.state != c104.ConnectionState.OPEN and time.monotonic() < deadline:
            time.sleep(0.01)
        gi = []
        for _ in range(rounds):
            actterm.clear()
            t = time.perf_counter()
            conn.interrogation(common_address=1, wait_for_response=False)
            if not actterm.wait(10):
                raise RuntimeError("no ACTTERM")
            gi.append(time.perf_counter() - t)
        sent = []
        for i in range(commands):
            cmd.value = float(i % 100)
            cmd_term.clear()
            sent.append(time.perf_counter())
            if not cmd.transmit(cause=c104.Cot.ACTIVATION):
                raise RuntimeError(f"set-point {i} refused")
            # c104 returns on ACTCON; an ACTTERM arriving while it waits for the next
            # command's ACTCON makes it report that command failed: wait for it.
            if not cmd_term.wait(5):
                raise RuntimeError(f"set-point {i}: no ACTTERM")
        return {"gi": gi, "sent": sent}
    finally:
        client.disconnect_all()
        client.stop()


async def _measure(rounds: int, commands: int) -> dict[str, Any]:
    rtt = await _echo_rtt(max(commands, 200))
    pmap = Iec104PointMap.load(None, UNITS)
    sink = _Sink()
    out = Iec104Outstation(Iec104Config(port=0, cyclic_s=0), pmap, sink)
    await out.start()
    try:
        now = time.time()
        out.update(
            {p.name: PointValue(1.0 if p.type == "float" else True, now) for p in pmap.monitor}
        )
        res = await asyncio.to_thread(_master_work, out.port, pmap, rounds, commands, sink)
    finally:
        await out.close()
    lat = [s - t for t, s in zip(res["sent"], sink.times, strict=True)]
    return {"rtt": rtt, "gi": res["gi"], "lat": lat, "points": len(pmap.monitor)}


def _codec(points: int, rounds: int) -> float:
    objs = [(i + 1, float(i), 0, False, None) for i in range(points)]
    t = time.perf_counter()
    for _ in range(rounds):
        for asdu in iec104_encode_asdus(13, 20, 1, objs):
            iec104_decode(iec104_encode_i(0, 0, asdu))
    return points * rounds / (time.perf_counter() - t)


def run(quick: bool = False) -> list[Row]:
    """Benchmark rows (see vpp.bench)."""
    rounds, commands = (5, 100) if quick else (20, 500)
    r = asyncio.run(_measure(rounds, commands))
    rtt_p50 = percentile(r["rtt"], 0.5) * 1e3
    gi_s = statistics.median(r["gi"])
    pps = r["points"] / gi_s
    lat = [x * 1e3 for x in r["lat"]]
    p50, p99 = percentile(lat, 0.5), percentile(lat, 0.99)
    codec = _codec(r["points"], 20 if quick else 200)
    ref = f"TCP echo RTT p50 {rtt_p50:.3f} ms"
    return [
        row("TCP echo round trip on loopback, p50 (reference)", rtt_p50, "ms"),
        row(f"general interrogation to c104, {r['points']} points (median of {rounds})",
            gi_s * 1e3, "ms", reference=ref, ratio=gi_s * 1e3 / rtt_p50),
        row("points per second served by interrogation", pps, "points/s"),
        row(f"set-point -> sink called, p50 ({commands} commands, c104)", p50, "ms",
            reference=ref, ratio=p50 / rtt_p50),
        row("set-point -> sink called, p99", p99, "ms", reference=ref, ratio=p99 / rtt_p50),
        row("codec alone: points encoded + decoded per second", codec, "points/s",
            reference="interrogation over TCP", ratio=codec / pps),
    ]  # fmt: skip


if __name__ == "__main__":
    for line in run(quick="--quick" in sys.argv):
        print(line)
