"""`vpp run`'s launcher on the embedded simulated site: how long the site takes to come up,
to recover from a SIGKILLed campus, and to stop.

- Start-up: from ``Launcher.run`` to the first decision of every unit on the bus (plant
  spawned and ready, five role processes spawned, PMU streams flowing, pipelines
  deciding).
- Recovery: from SIGKILL of the campus process to the first campus dispatch that gives
  every unit a setpoint again (the launcher's 0.5 s backoff, a fresh interpreter, the
  campus re-registering the units from their heartbeats, its dispatch interval of 2 s).
- Stop: from setting the stop event to ``Launcher.run`` returning (SIGTERM to six
  processes, joins, broker and history closed).

Reference, in the same run: one spawned Python process that imports nothing and does
nothing, from ``start()`` to ``join()`` (the floor of any process the launcher starts). Medians of 3
runs (1 with ``--quick``). Run ``python benchmarks/bench_launcher.py [--quick]`` or
``vpp bench launcher``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vpp.bench import Row, row  # noqa: E402
from vpp.config import load  # noqa: E402
from vpp.orchestrator.bus import schema as s  # noqa: E402
from vpp.orchestrator.bus.pubsub import Subscriber  # noqa: E402
from vpp.orchestrator.launcher import Launcher  # noqa: E402
from vpp.orchestrator.processes import spawn_context  # noqa: E402

UNITS = {"bess-1", "bess-2", "bess-3"}


def _spawn_floor() -> float:
    t0 = time.perf_counter()
    # A builtin target: this module is loaded under another name by `vpp bench`, so a
    # function of its own could not be pickled for the child.
    p = spawn_context().Process(target=time.sleep, args=(0.0,))
    p.start()
    p.join()
    p.close()
    return time.perf_counter() - t0


async def _wait(sub: Subscriber, done: object, timeout: float = 60.0) -> float:
    """Receive until ``done(msg)`` is true; the monotonic time then."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the site did not get there in time")
        batch = await asyncio.wait_for(sub.recv_batch(), left)
        for msg in batch:
            if done(msg):  # type: ignore[operator]
                return time.monotonic()


async def _once(tmp: Path) -> tuple[float, float, float]:
    launcher = Launcher(load(), history_path=tmp / "bench.db")
    stop = asyncio.Event()
    t0 = time.monotonic()
    task = asyncio.create_task(launcher.run(None, stop))
    try:
        while launcher.topo is None:
            await asyncio.sleep(0.01)
        # The bus is authenticated (keys made at start): read it as the viewer.
        sub = launcher.topo.subscriber("viewer", ("decision/", "event/"))
        try:
            seen: set[str] = set()

            def decided(msg: s.Message) -> bool:
                if isinstance(msg, s.DecisionMsg):
                    seen.add(msg.body.unit)
                return seen == UNITS

            up = await _wait(sub, decided) - t0

            def dispatched(msg: s.Message) -> bool:
                return (isinstance(msg, s.EventMsg) and msg.body.kind == "dispatch"
                        and set(msg.body.data.get("setpoints", {})) == UNITS)  # fmt: skip

            await _wait(sub, dispatched)
            pid = launcher.procs["campus"].pid
            assert pid is not None
            killed = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            recovered = await _wait(sub, dispatched) - killed
        finally:
            sub.close()
        t_stop = time.monotonic()
        stop.set()
        await task
        return up, recovered, time.monotonic() - t_stop
    finally:
        stop.set()
        if not task.done():
            await task


def run(quick: bool = False) -> list[Row]:
    """Benchmark rows (quick: one run instead of three)."""
    n = 1 if quick else 3
    ups, recs, stops, floors = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="vppbench-") as d:
        for _ in range(n):
            floors.append(_spawn_floor())
            up, rec, st = asyncio.run(_once(Path(d)))
            ups.append(up)
            recs.append(rec)
            stops.append(st)
    floor = statistics.median(floors)
    up = statistics.median(ups)
    return [
        row("site start-up to every unit deciding", up, "s", reference="spawn one process",
            ratio=up / floor),
        row("campus SIGKILL to a dispatch to every unit", statistics.median(recs), "s"),
        row("stop (SIGTERM to 6 processes, joins, close)", statistics.median(stops), "s"),
        row("spawn + join of an empty process (reference)", floor, "s"),
        row("runs (median of)", float(n), "runs"),
        row("load average (1 min) at the end", os.getloadavg()[0], "-"),
    ]  # fmt: skip


if __name__ == "__main__":
    from vpp.bench import print_table

    print_table(run("--quick" in sys.argv))
