"""DNP3 outstation: integrity polls of a 100-unit plant, and command latency.

The outstation (:class:`vpp.orchestrator.scada.dnp3.Dnp3Outstation`, the bundled default
map for 100 units: 520 points) and a minimal raw DNP3 master (in this script: class 0
READ, SELECT/OPERATE of a float32 analog output, application confirms for multi-fragment
responses) share one event loop on loopback.

- integrity polls back to back: points per second served (class 0, every point), against
  dnp3py's own TCP runner (``OutstationTcpRunner``) serving the same dnp3py outstation
  object on another port (the reference: dnp3py without our TCP server, admission, link
  checks and counters), rounds alternating the two, medians reported.
- AGC set-point commands (SELECT then OPERATE of AO 146): OPERATE sent -> command sink
  called, and OPERATE sent -> response received, p50/p99; against a raw TCP echo round
  trip on loopback of the same size, in the same run.

Usage: ``python benchmarks/bench_scada_dnp3.py [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import struct
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from dnp3.application.parser import parse_response  # noqa: E402
from dnp3.datalink.builder import build_unconfirmed_user_data  # noqa: E402
from dnp3.outstation import OutstationTcpRunner  # noqa: E402
from dnp3.transport.reassembler import Reassembler  # noqa: E402
from dnp3.transport.segment import TransportSegment  # noqa: E402

from vpp.bench import percentile, row  # noqa: E402
from vpp.errors import ScadaError  # noqa: E402
from vpp.orchestrator.scada._dnp3_engine import LinkReader, object_count  # noqa: E402
from vpp.orchestrator.scada.dnp3 import Dnp3Outstation  # noqa: E402
from vpp.orchestrator.scada.dnp3_map import Dnp3Config, Dnp3PointMap  # noqa: E402
from vpp.orchestrator.scada.points import (  # noqa: E402
    PLANT_POINTS,
    UNIT_POINTS,
    CommandOutcome,
    PointValue,
)

UNITS = 100
Row = dict[str, Any]


class RawMaster:
    """A minimal DNP3 master over one TCP connection (link address 1 -> 10)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._r, self._w = reader, writer
        self._link = LinkReader("bench")
        self._reasm = Reassembler()
        self._seq = 0
        self._tseq = 0

    def _send(self, app: bytes) -> None:
        seg = bytes([0xC0 | self._tseq]) + app
        self._tseq = (self._tseq + 1) % 64
        self._w.write(build_unconfirmed_user_data(10, 1, True, seg).to_bytes())

    async def _fragment(self) -> bytes:
        while True:
            data = await self._r.read(65536)
            if not data:
                raise ConnectionError("closed")
            for item in self._link.feed(data):
                if isinstance(item, ScadaError):
                    raise item
                done = self._reasm.add(TransportSegment.from_bytes(item.user_data))
                if done is not None:
                    return done.data

    async def request(self, fc: int, objects: bytes) -> list[bytes]:
        """Send a request; every fragment of its response (confirming the non-final)."""
        seq = self._seq
        self._seq = (self._seq + 1) % 16
        self._send(bytes([0xC0 | seq, fc]) + objects)
        await self._w.drain()
        out = []
        while True:
            frag = await self._fragment()
            out.append(frag)
            if frag[0] & 0x20:  # CON: confirm
                self._send(bytes([0xC0 | (frag[0] & 0x0F), 0x00]))
            if frag[0] & 0x40:  # FIN
                return out

    async def integrity(self) -> int:
        """A class 0 READ; the number of points received."""
        frags = await self.request(0x01, bytes([60, 1, 0x06]))
        return sum(object_count(b) for f in frags for b in parse_response(f).objects)

    async def select_operate(self, index: int, value: float, sent: list[float]) -> int:
        """SELECT then OPERATE of g41v3; the OPERATE's status. ``sent`` gets the time the
        OPERATE was written."""
        obj = bytes([41, 3, 0x28, 1, 0]) + index.to_bytes(2, "little") + struct.pack("<f", value)
        obj += b"\x00"
        await self.request(0x03, obj)
        sent.append(time.perf_counter())
        frags = await self.request(0x04, obj)
        return frags[-1][-1]


def plant_image(units: list[str]) -> dict[str, PointValue]:
    """Every point of the plant with a value."""
    now = time.time()
    img = {
        n: PointValue(1.5 if k == "float" else True, now) for n, (k, _, _) in PLANT_POINTS.items()
    }
    for u in units:
        for n, (k, _, _) in UNIT_POINTS.items():
            img[f"unit.{u}.{n}"] = PointValue(2.5 if k == "float" else False, now)
    return img


class TimedSink:
    """Records when it is called."""

    def __init__(self) -> None:
        self.at: list[float] = []

    async def __call__(self, master: str, point: str, value: float | bool) -> CommandOutcome:
        self.at.append(time.perf_counter())
        return CommandOutcome(True)


async def poll_rate(port: int, seconds: float) -> float:
    """Points per second served by back-to-back integrity polls on ``port``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        m = RawMaster(reader, writer)
        await m.integrity()  # warm-up
        points, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            points += await m.integrity()
        return points / (time.perf_counter() - t0)
    finally:
        writer.close()
        await writer.wait_closed()


async def echo_round_trips(n: int, size: int) -> list[float]:
    """Raw TCP round trips (s) of ``size`` octets on loopback."""

    async def echo(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while data := await r.read(65536):
            w.write(data)
            await w.drain()
        w.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    out = []
    payload = b"x" * size
    for _ in range(n):
        t0 = time.perf_counter()
        writer.write(payload)
        await writer.drain()
        got = 0
        while got < size:
            got += len(await reader.read(65536))
        out.append(time.perf_counter() - t0)
    writer.close()
    await writer.wait_closed()
    server.close()
    await server.wait_closed()
    return out


async def measure(rounds: int, seconds: float, commands: int) -> dict[str, Any]:
    """Rounds of polls (ours, dnp3py's runner) and the command latencies."""
    units = [f"bess-{i:03d}" for i in range(UNITS)]
    pm = Dnp3PointMap.load(None, units)
    sink = TimedSink()
    station = Dnp3Outstation(Dnp3Config(port=0, keepalive_s=0), pm, sink)
    await station.start()
    station.update(plant_image(units))
    runner = OutstationTcpRunner(station.engine, host="127.0.0.1", port=0)
    # dnp3py's runner binds in run(); give it a port of its own.
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    runner.port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    runner_task = asyncio.create_task(runner.run())
    await asyncio.sleep(0.2)
    out: dict[str, Any] = {"ours": [], "ref": [], "points": pm.point_count}
    try:
        for _ in range(rounds):
            out["ours"].append(await poll_rate(station.port, seconds))
            out["ref"].append(await poll_rate(runner.port, seconds))
        reader, writer = await asyncio.open_connection("127.0.0.1", station.port)
        m, sent, statuses = RawMaster(reader, writer), [], []
        for i in range(commands):
            statuses.append(await m.select_operate(146, 1000.0 + i, sent))
        done = time.perf_counter()
        writer.close()
        await writer.wait_closed()
        out["sink_s"] = [s - t for s, t in zip(sink.at, sent, strict=True)]
        out["errors"] = sum(1 for s in statuses if s != 0)
        out["cmd_s"] = (done - sent[0]) / commands
        out["echo_s"] = await echo_round_trips(commands, 40)
    finally:
        await runner.stop()
        runner_task.cancel()
        await asyncio.gather(runner_task, return_exceptions=True)
        await station.close()
    return out


def rows(out: dict[str, Any], seconds: float) -> list[Row]:
    """Benchmark rows from the medians."""
    ours, ref = statistics.median(out["ours"]), statistics.median(out["ref"])
    sink_ms = [s * 1000 for s in out["sink_s"]]
    echo_ms = [s * 1000 for s in out["echo_s"]]
    e50, e99 = percentile(echo_ms, 0.5), percentile(echo_ms, 0.99)
    tag = f"{UNITS} units, {out['points']} points, median of {len(out['ours'])} x {seconds:g} s"
    return [
        row(f"integrity polls: points served/s ({tag})", ours, "points/s",
            reference=f"{ref:.0f} points/s, dnp3py OutstationTcpRunner", ratio=ours / ref),
        row("integrity polls/s", ours / out["points"], "polls/s",
            reference=f"{ref / out['points']:.1f} polls/s dnp3py runner"),
        row(f"AO OPERATE sent -> sink called, p50 ({len(sink_ms)} commands)",
            percentile(sink_ms, 0.5), "ms", reference=f"{e50:.3g} ms raw TCP echo p50",
            ratio=percentile(sink_ms, 0.5) / e50),
        row("AO OPERATE sent -> sink called, p99", percentile(sink_ms, 0.99), "ms",
            reference=f"{e99:.3g} ms raw TCP echo p99", ratio=percentile(sink_ms, 0.99) / e99),
        row("SELECT + OPERATE cycle, mean", out["cmd_s"] * 1000, "ms"),
        row("commands refused", float(out["errors"]), "count", target="0", ok=out["errors"] == 0),
    ]  # fmt: skip


def run(quick: bool = False) -> list[Row]:
    """Benchmark rows (see vpp.bench)."""
    rounds, seconds, commands = (1, 1.0, 50) if quick else (3, 3.0, 300)
    return rows(asyncio.run(measure(rounds, seconds, commands)), seconds)


def main() -> None:
    """Command line (see the module docstring)."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    for r in run(args.quick):
        print(r)


if __name__ == "__main__":
    main()
