"""The simulated PMU server under load: 50 frames/s to 100 TCP clients on loopback.

Measures how far each frame's send lies behind its deadline on the k / rate grid (the
time when the frame had been written to every client's socket, minus
``start + k / rate``: p50, p99, max) and how many data frames every client received
and decoded. Server and clients share one event loop (the clients' decoding is load the
server's ticker competes with, as it would in a busy process), so the figures are an
upper bound for a server running alone.

Run: ``python benchmarks/bench_pmu_server.py [--quick]`` or ``vpp bench pmu_server``.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vpp import c37118 as c  # noqa: E402
from vpp.bench import percentile  # noqa: E402
from vpp.sim.pmu import PmuServer  # noqa: E402

Row = dict[str, Any]
RATE, CLIENTS = 50, 100


async def _client(port: int, counts: list[int], i: int, stop: asyncio.Event) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(c.encode(c.CommandFrame(i + 1, 5)) + c.encode(c.CommandFrame(i + 1, 2)))
        await writer.drain()
        dec = c.StreamDecoder()
        while not stop.is_set():
            chunk = await reader.read(1 << 16)
            if not chunk:
                break
            counts[i] += sum(1 for _o, f in dec.feed(chunk) if isinstance(f, c.DataFrame))
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def _measure(seconds: float) -> dict[str, Any]:
    n_frames = int(seconds * RATE)
    async with PmuServer(rate=RATE, port=0, record_lateness=n_frames * 2) as srv:
        counts = [0] * CLIENTS
        stop = asyncio.Event()
        tasks = [asyncio.create_task(_client(srv.port, counts, i, stop)) for i in range(CLIENTS)]
        while len(srv.clients) < CLIENTS or not all(s.data_on for s in srv.clients):
            await asyncio.sleep(0.01)
        srv.lateness.clear()
        srv.wake_lateness.clear()
        ticks0, dropped0 = srv.ticks, sum(s.dropped for s in srv.clients)
        counts[:] = [0] * CLIENTS
        await asyncio.sleep(seconds)
        ticks = srv.ticks - ticks0
        lateness = sorted(srv.lateness)
        wake = sorted(srv.wake_lateness)
        dropped = sum(s.dropped for s in srv.clients) - dropped0
        got = list(counts)
        stop.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {"ticks": ticks, "lateness": lateness, "wake": wake, "counts": got, "dropped": dropped,
            "skipped": srv.skipped}  # fmt: skip


def run(quick: bool = False) -> list[Row]:
    """Benchmark rows (see vpp.bench)."""
    seconds = 3.0 if quick else 20.0
    r = asyncio.run(_measure(seconds))
    lat = [x * 1e3 for x in r["lateness"]]
    counts, ticks = r["counts"], r["ticks"]
    p50, p99, mx = percentile(lat, 0.5), percentile(lat, 0.99), max(lat)
    wake = [x * 1e3 for x in r["wake"]]
    # A frame in flight when the window closes may be counted on one side only.
    lo = min(counts)
    return [
        {"name": f"send lateness vs k/rate grid, p50 ({CLIENTS} clients, {RATE}/s, "
                 f"{seconds:.0f} s)", "value": p50, "unit": "ms", "reference": None,
         "ratio": None, "target": "-", "ok": None},
        {"name": "send lateness, p99", "value": p99, "unit": "ms", "reference": None,
         "ratio": None, "target": "<= 5 ms", "ok": p99 <= 5.0},
        {"name": "send lateness, max", "value": mx, "unit": "ms", "reference": None,
         "ratio": None, "target": "< 1 period (20 ms)", "ok": mx < 20.0},
        {"name": "ticker wake-up vs grid, p50", "value": percentile(wake, 0.5),
         "unit": "ms", "reference": None, "ratio": None, "target": "-", "ok": None},
        {"name": "ticker wake-up vs grid, p99", "value": percentile(wake, 0.99), "unit": "ms",
         "reference": None, "ratio": None, "target": "-", "ok": None},
        {"name": "frames received per client, min", "value": float(lo), "unit": "frames",
         "reference": f"{ticks} sent", "ratio": lo / ticks if ticks else None,
         "target": ">= sent - 1", "ok": lo >= ticks - 1},
        {"name": "frames received per client, mean", "value": statistics.fmean(counts),
         "unit": "frames", "reference": f"{ticks} sent", "ratio": None, "target": "-",
         "ok": None},
        {"name": "frames dropped (slow client) + skipped (late ticker)",
         "value": float(r["dropped"] + r["skipped"]), "unit": "frames", "reference": None,
         "ratio": None, "target": "0", "ok": r["dropped"] + r["skipped"] == 0},
    ]  # fmt: skip


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(row)
