"""SunSpec status reads on loopback: vpp's async driver against pysunspec2's client.

Both read the same six models (701, 702, 704, 711, 713, 802; model 1 only at
discovery) from the SunSpec BESS simulator and decode them with pysunspec2's model
definitions. vpp's driver reads adjacent models together (3 requests of up to 125
registers for the 371 registers) where pysunspec2 reads model by model (7 requests:
701 is split at its 123-register access regions). vpp's driver runs on the simulator's
event loop; pysunspec2's blocking
client runs in a worker thread (as the tests run it), so it also pays a thread hop
per read; the ratio is pysunspec2's median over vpp's. Discovery (connect, find
'SunS', walk the chain, read every model) is timed for both as well.

Run: ``python benchmarks/bench_sunspec.py [--quick]`` or ``vpp bench sunspec``.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sunspec2.modbus.client import (  # type: ignore[import-untyped]  # noqa: E402
    SunSpecModbusClientDeviceTCP,
)

from vpp.bench import row  # noqa: E402
from vpp.drivers.factory import ProtocolFactory  # noqa: E402
from vpp.sim.sunspec import SunSpecBessSimulator  # noqa: E402

Row = dict[str, Any]
MODELS = ("DERMeasureAC", "DERCapacity", "DERCtlAC", "DERFreqDroop", "DERStorageCapacity",
          "battery")  # fmt: skip


def _theirs(port: int, n: int) -> tuple[float, list[float]]:
    """pysunspec2: scan once (timed), then ``n`` reads of the six models (each timed)."""
    dev = SunSpecModbusClientDeviceTCP(ipaddr="127.0.0.1", ipport=port, timeout=2.0)
    try:
        t0 = time.perf_counter()
        dev.scan()
        scan_s = time.perf_counter() - t0
        models = [getattr(dev, name)[0] for name in MODELS]
        dev.connect()  # one connection for all reads, as the vpp driver keeps one
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            for m in models:
                m.read()
            times.append(time.perf_counter() - t0)
        return scan_s, times
    finally:
        dev.disconnect()


async def _measure(n: int) -> dict[str, Any]:
    async with SunSpecBessSimulator(port=0) as sim:
        proto = ProtocolFactory().create("sunspec", {"host": "127.0.0.1", "port": sim.port})
        try:
            t0 = time.perf_counter()
            await proto.connect()
            connect_s = time.perf_counter() - t0
            ours = []
            for _ in range(n):
                t0 = time.perf_counter()
                await proto.read_status()
                ours.append(time.perf_counter() - t0)
        finally:
            await proto.close()
        scan_s, theirs = await asyncio.to_thread(_theirs, sim.port, n)
    return {"connect": connect_s, "scan": scan_s, "ours": ours, "theirs": theirs}


def run(quick: bool = False) -> list[Row]:
    """Benchmark rows (see vpp.bench)."""
    n = 50 if quick else 500
    r = asyncio.run(_measure(n))
    ours = statistics.median(r["ours"]) * 1e3
    theirs = statistics.median(r["theirs"]) * 1e3
    return [
        row(f"read_status, 6 models, median of {n}", ours, "ms",
            reference=f"pysunspec2 {theirs:.2f} ms", ratio=theirs / ours),
        row("read_status, p99", sorted(r["ours"])[int(0.99 * n)] * 1e3, "ms"),
        row("connect + discovery + first read of 7 models", r["connect"] * 1e3, "ms",
            reference=f"pysunspec2 scan {r['scan'] * 1e3:.2f} ms",
            ratio=r["scan"] / r["connect"]),
    ]  # fmt: skip


if __name__ == "__main__":
    for line in run(quick="--quick" in sys.argv):
        print(line)
