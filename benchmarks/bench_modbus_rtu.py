"""Modbus status reads: the same driver over TCP (loopback) and RTU (a pty pair).

Measures the time of one ``read_status()`` of the default BESS map (4 requests: coils,
discrete inputs, holding and input registers) against the BESS simulator, p50 and p99,
over Modbus TCP and over Modbus RTU through the pty relay of the tests
(``tests/support/ptylink.py``). Driver, simulator and relay share one event loop, so
the figures include all three; a pty has no baud-rate delay, so RTU here is the
framing and the extra hops, not the line (at 19200 baud 8N1 a real line adds ~75 ms:
118 bytes per read of this map, plus the gaps between frames).

Run: ``python benchmarks/bench_modbus_rtu.py [--quick]`` or ``vpp bench modbus_rtu``.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.support

from tests.support.ptylink import pty_link
from vpp.bench import Row, percentile, row
from vpp.drivers.base import BaseProtocol
from vpp.drivers.factory import ProtocolFactory
from vpp.sim.bess import BessSimulator, SerialLine


async def _time_reads(proto: BaseProtocol, n: int) -> list[float]:
    await proto.read_status()  # connect outside the timing
    out: list[float] = []
    for _ in range(n):
        t0 = time.perf_counter()
        await proto.read_status()
        out.append(time.perf_counter() - t0)
    await proto.close()
    return sorted(out)


async def _measure(n: int) -> dict[str, list[float]]:
    factory = ProtocolFactory()
    async with BessSimulator(port=0) as sim:
        tcp = factory.create("modbus_tcp", {"host": "127.0.0.1", "port": sim.port})
        tcp_times = await _time_reads(tcp, n)
    async with pty_link() as link, BessSimulator(rtu=SerialLine(link.device_end, parity="N")):
        rtu = factory.create("modbus_rtu", {"port": link.host_end, "parity": "N"})
        rtu_times = await _time_reads(rtu, n)
    return {"tcp": tcp_times, "rtu": rtu_times}


def run(quick: bool = False) -> list[Row]:
    """Benchmark rows (see vpp.bench)."""
    n = 50 if quick else 500
    r: dict[str, Any] = asyncio.run(_measure(n))
    tcp50, rtu50 = percentile(r["tcp"], 0.5) * 1e3, percentile(r["rtu"], 0.5) * 1e3
    return [
        row(f"read_status over TCP, p50 ({n} reads, 4 requests each)", tcp50, "ms"),
        row("read_status over TCP, p99", percentile(r["tcp"], 0.99) * 1e3, "ms"),
        row(
            "read_status over RTU (pty pair), p50",
            rtu50,
            "ms",
            reference=f"TCP p50 {tcp50:.2f} ms",
            ratio=rtu50 / tcp50 if tcp50 else None,
        ),
        row("read_status over RTU (pty pair), p99", percentile(r["rtu"], 0.99) * 1e3, "ms"),
    ]


if __name__ == "__main__":
    for item in run(quick="--quick" in sys.argv):
        print(item)
