"""Modbus polling: one process polling 100 simulated BESS servers on loopback.

The servers (:class:`vpp.sim.bess.BessSimulator`, a pymodbus server each) run in child
processes (``--server-procs``, default 2), so the figures are those of one polling
process. That process polls every server at once through the project's
:class:`~vpp.drivers.communicator.ResourceCommunicator` and ``modbus_tcp`` driver; one
status read of the default BESS map is 4 register block reads (coils, discrete inputs,
holding, input registers).

Two phases, each run in rounds that alternate our driver and the reference (the medians
over the rounds are reported, so a noisy moment on a shared machine hits both alike):

- saturation: every device polled back to back; block reads per second and full device
  polls per second, against raw pymodbus ``AsyncModbusTcpClient`` loops making the same
  block reads (no decoding, no timeout wrapper, no retry logic: the floor; a lock per
  device, as ours has, so a command waits for the poll in flight).
- target load: polling paced to just over 1000 block reads/s over the 100 devices (the
  loops started evenly over one interval, not in one burst), while one
  command stream sends ``set_power`` to the devices in turn (50 per second); the round
  trip of each (call to ``Ack``) gives p50/p99, against raw pymodbus writing the same
  registers under the same raw polling. Commands are also timed during saturation.

Target (issue 3): >= 1000 block reads/s; p99 command round trip <= 20 ms.

Usage: ``python benchmarks/bench_modbus.py [--quick] [--rounds N] [--seconds S]
[--server-procs K] [--raw]`` (``--raw`` prints every round; ``--serve N`` is the
child's entry point).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import select
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pymodbus.client import AsyncModbusTcpClient  # noqa: E402

from vpp.bench import percentile, row  # noqa: E402
from vpp.drivers.communicator import ResourceCommunicator  # noqa: E402
from vpp.drivers.register_map import (  # noqa: E402
    DEFAULT_MAP,
    ReadBlock,
    Table,
    encode,
    load_register_map,
    read_blocks,
)

Row = dict[str, Any]
DEVICES = 100
TARGET_READS = 1000.0  # block reads per second
# Each loop sleeps its interval after a poll, so the interval is set for a little more
# than the target to get at least the target.
PACED_READS = 1050.0
TARGET_P99_MS = 20.0
COMMAND_RATE = 50.0  # set_power commands per second, one at a time
REFERENCE = "raw pymodbus AsyncModbusTcpClient, same reads, same run"

MAP = load_register_map(DEFAULT_MAP)
BLOCKS: list[ReadBlock] = read_blocks(MAP.points)
SETPOINT = MAP.point("active_power_setpoint")


# --- the server side (child processes) ---------------------------------------------------


async def _serve(n: int) -> None:
    from vpp.sim.bess import BessSimulator

    # The model steps at 1 Hz: the figures are about Modbus, not the battery model.
    _quiet()
    sims = [BessSimulator(port=0, step_hz=1.0) for _ in range(n)]
    try:
        for sim in sims:
            await sim.start()
        print("PORTS " + json.dumps([s.port for s in sims]), flush=True)
        # Stop when the parent closes our stdin (or dies).
        await asyncio.to_thread(sys.stdin.readline)
    finally:
        for sim in sims:
            await sim.stop()


@contextlib.contextmanager
def servers(n: int, procs: int) -> Iterator[list[int]]:
    """Start ``n`` simulators over ``procs`` child processes; yields their ports."""
    children: list[subprocess.Popen[str]] = []
    ports: list[int] = []
    try:
        for k in range(procs):
            share = n // procs + (1 if k < n % procs else 0)
            children.append(
                subprocess.Popen(
                    [sys.executable, __file__, "--serve", str(share)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
        for child in children:
            ports.extend(_ports(child))
        yield ports
    finally:
        for child in children:
            if child.stdin is not None:
                with contextlib.suppress(OSError):
                    child.stdin.close()
        for child in children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            if child.stdout is not None:
                child.stdout.close()


def _ports(child: subprocess.Popen[str], timeout: float = 60.0) -> list[int]:
    assert child.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([child.stdout], [], [], 0.5)
        if ready:
            line = child.stdout.readline()
            if not line:
                break
            if line.startswith("PORTS "):
                return [int(p) for p in json.loads(line[6:])]
    raise RuntimeError(f"simulator process {child.pid} did not report its ports")


# --- measuring -----------------------------------------------------------------------------


async def _commands(
    send: Callable[[int, float], Awaitable[None]], seconds: float, rtt: list[float]
) -> None:
    """One command at a time to the devices in turn, at COMMAND_RATE, timing each."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    k = 0
    while loop.time() - start < seconds:
        kw = 100.0 if k % 2 else -100.0
        t0 = time.perf_counter()
        await send(k % DEVICES, kw)
        rtt.append(time.perf_counter() - t0)
        k += 1
        await asyncio.sleep(max(0.0, start + k / COMMAND_RATE - loop.time()))


async def ours(ports: list[int], interval: float, seconds: float) -> dict[str, Any]:
    """Poll every port through ResourceCommunicator for ``seconds``; time commands."""
    # A tiny interval rather than 0: the communicator requires > 0.
    comm = ResourceCommunicator(poll_interval=max(interval, 1e-6))
    polls = [0]
    counting = [False]

    def count(_status: object) -> None:
        if counting[0]:
            polls[0] += 1

    try:
        for i, port in enumerate(ports):
            cfg = {"host": "127.0.0.1", "port": port, "timeout": 2.0}
            comm.add_resource(f"bess{i}", "modbus_tcp", cfg)
        for i in range(len(ports)):
            # Staggered over one interval, as devices added over time would be; started
            # together, every loop would poll in the same burst ever after.
            comm.subscribe_to_resource(f"bess{i}", count)
            await asyncio.sleep(interval / len(ports))
        await _settle(lambda: all(s["online"] for s in comm.status().values()))
        failed = [0]

        async def send(i: int, kw: float) -> None:
            ack = await comm.send_command(f"bess{i}", "set_power", {"kw": kw})
            failed[0] += not ack.ok

        rtt: list[float] = []
        counting[0] = True
        t0 = time.perf_counter()
        await _commands(send, seconds, rtt)
        counting[0] = False
        elapsed = time.perf_counter() - t0
        errors = sum(sum(h["errors"].values()) for h in comm.health().values())
    finally:
        await comm.close()
    return _result(polls[0], elapsed, rtt, failed[0] + errors)


async def raw(ports: list[int], interval: float, seconds: float) -> dict[str, Any]:
    """The same with bare pymodbus clients: one loop per device, a lock per device."""
    clients = [
        AsyncModbusTcpClient("127.0.0.1", port=p, timeout=2.0, retries=0, reconnect_delay=0)
        for p in ports
    ]
    locks = [asyncio.Lock() for _ in ports]
    polls = [0]
    counting = [True]
    stop = asyncio.Event()
    failed = [0]

    async def poll(i: int) -> None:
        c = clients[i]
        calls = {
            Table.COIL: c.read_coils,
            Table.DISCRETE: c.read_discrete_inputs,
            Table.HOLDING: c.read_holding_registers,
            Table.INPUT: c.read_input_registers,
        }
        while not stop.is_set():
            async with locks[i]:
                for b in BLOCKS:
                    reply = await calls[b.table](b.start, count=b.count, device_id=1)
                    failed[0] += reply.isError()
            polls[0] += counting[0]
            await asyncio.sleep(interval)

    async def send(i: int, kw: float) -> None:
        words = encode(SETPOINT, kw)
        async with locks[i]:
            reply = await clients[i].write_registers(SETPOINT.address, words, device_id=1)
        failed[0] += reply.isError()

    tasks: list[asyncio.Task[None]] = []
    try:
        for c in clients:
            if not await c.connect():
                raise RuntimeError("reference client cannot connect")
        for i in range(len(clients)):
            tasks.append(asyncio.create_task(poll(i)))
            await asyncio.sleep(interval / len(clients))
        await asyncio.sleep(0.2)
        polls[0] = 0
        rtt: list[float] = []
        t0 = time.perf_counter()
        await _commands(send, seconds, rtt)
        counting[0] = False
        elapsed = time.perf_counter() - t0
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        for c in clients:
            c.close()
    return _result(polls[0], elapsed, rtt, failed[0])


async def _settle(ready: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError("devices did not come online")
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)


def _result(polls: int, elapsed: float, rtt: list[float], errors: int) -> dict[str, Any]:
    return {
        "polls_s": polls / elapsed,
        "reads_s": polls * len(BLOCKS) / elapsed,
        "p50_ms": percentile(rtt, 0.5) * 1e3,
        "p99_ms": percentile(rtt, 0.99) * 1e3,
        "commands": len(rtt),
        "errors": errors,
    }


async def measure(ports: list[int], rounds: int, seconds: float) -> dict[str, list[Any]]:
    """Rounds of (ours, raw) at saturation and at the target load."""
    paced = len(ports) * len(BLOCKS) / PACED_READS
    out: dict[str, list[Any]] = {"sat_ours": [], "sat_raw": [], "load_ours": [], "load_raw": []}
    for _ in range(rounds):
        out["sat_ours"].append(await ours(ports, 0.0, seconds))
        out["sat_raw"].append(await raw(ports, 0.0, seconds))
        out["load_ours"].append(await ours(ports, paced, seconds))
        out["load_raw"].append(await raw(ports, paced, seconds))
    return out


def _med(results: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in results)


def rows(out: dict[str, list[Any]], seconds: float) -> list[Row]:
    """Benchmark rows from the rounds' medians."""
    so, sr, lo, lr = (out[k] for k in ("sat_ours", "sat_raw", "load_ours", "load_raw"))
    n = len(so)
    reads, raw_reads = _med(so, "reads_s"), _med(sr, "reads_s")
    p99, raw_p99 = _med(lo, "p99_ms"), _med(lr, "p99_ms")
    errors = sum(r["errors"] for r in so + sr + lo + lr)
    tag = f"{DEVICES} devices, median of {n} x {seconds:g} s"
    return [
        row(f"block reads/s at saturation ({tag})", reads, "reads/s",
            reference=f"{raw_reads:.0f} reads/s, {REFERENCE}", ratio=reads / raw_reads,
            target=">= 1000 reads/s", ok=reads >= TARGET_READS),
        row("device polls/s at saturation (4 block reads each)", _med(so, "polls_s"),
            "polls/s", reference=f"{_med(sr, 'polls_s'):.0f} polls/s raw",
            ratio=_med(so, "polls_s") / _med(sr, "polls_s")),
        row("set_power round trip at saturation, p50", _med(so, "p50_ms"), "ms",
            reference=f"{_med(sr, 'p50_ms'):.3g} ms raw"),
        row("set_power round trip at saturation, p99", _med(so, "p99_ms"), "ms",
            reference=f"{_med(sr, 'p99_ms'):.3g} ms raw"),
        row("block reads/s paced to the target load", _med(lo, "reads_s"), "reads/s",
            reference=f"{_med(lr, 'reads_s'):.0f} reads/s raw", target=">= 1000 reads/s",
            ok=_med(lo, "reads_s") >= TARGET_READS),
        row(f"set_power round trip at target load, p50 ({COMMAND_RATE:g}/s)",
            _med(lo, "p50_ms"), "ms", reference=f"{_med(lr, 'p50_ms'):.3g} ms raw",
            ratio=_med(lo, "p50_ms") / _med(lr, "p50_ms")),
        row("set_power round trip at target load, p99", p99, "ms",
            reference=f"{raw_p99:.3g} ms raw", ratio=p99 / raw_p99,
            target="<= 20 ms", ok=p99 <= TARGET_P99_MS),
        row("errors and failed acks, all phases", float(errors), "count", target="0",
            ok=errors == 0),
    ]  # fmt: skip


def run(quick: bool = False, rounds: int | None = None, seconds: float | None = None,
        server_procs: int = 2) -> list[Row]:  # fmt: skip
    """Benchmark rows (see vpp.bench)."""
    rounds = rounds or (1 if quick else 3)
    seconds = seconds or (2.0 if quick else 8.0)
    _quiet()
    with servers(DEVICES, server_procs) as ports:
        out = asyncio.run(measure(ports, rounds, seconds))
    return rows(out, seconds)


def _quiet() -> None:
    # pymodbus logs the replies still in flight when a phase closes its clients; errors
    # during the measurement are counted from the replies and the acks instead.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


def main() -> None:
    """Command line (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--seconds", type=float)
    ap.add_argument("--server-procs", type=int, default=2)
    ap.add_argument("--raw", action="store_true", help="print each round's figures")
    args = ap.parse_args()
    if args.serve:
        asyncio.run(_serve(args.serve))
        return
    rounds = args.rounds or (1 if args.quick else 3)
    seconds = args.seconds or (2.0 if args.quick else 8.0)
    _quiet()
    with servers(DEVICES, args.server_procs) as ports:
        out = asyncio.run(measure(ports, rounds, seconds))
    if args.raw:
        for k, v in out.items():
            for r in v:
                print(k, json.dumps({a: round(b, 3) for a, b in r.items()}))
    for r in rows(out, seconds):
        print(r)


if __name__ == "__main__":
    main()
