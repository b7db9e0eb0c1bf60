"""An AGC set-point through the whole site: from the IEC 104 master to the dispatch.

The embedded simulated site runs in-process (``Launcher``; its own despatch centre off),
and a master on the project's own codec (:class:`vpp.sim.ldc.Iec104Master`) sends
C_SE_NC_1 set-points to its outstation. Measured per set-point, from the moment the
master writes it:

- **confirmed**: the master has the ACTCON and ACTTERM (the outstation answers after
  the campus acknowledged the ``agc`` command on the bus);
- **dispatched**: a viewer on the events bus has the campus's ``agc`` event with the new
  set-point, which the campus publishes after the round the set-point started has sent
  its setpoints to the field controllers and had them acknowledged.

Reference, in the same run: a ``fleet`` command (no levels) to the campus over the same
authenticated bus (operator identity), the floor of any command that crosses it. Also
a general interrogation of the site's points, in points per second. Medians and p99 of
``n`` set-points (alternating +-0.1 MW, 0.3 s apart). Run ``python
benchmarks/bench_scada_site.py [--quick]`` or ``vpp bench scada_site``.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vpp.bench import Row, row  # noqa: E402
from vpp.config import load  # noqa: E402
from vpp.orchestrator.bus import schema as s  # noqa: E402
from vpp.orchestrator.bus.pubsub import Client, Subscriber  # noqa: E402
from vpp.orchestrator.launcher import Launcher  # noqa: E402
from vpp.sim.ldc import C_SE_NC_1, Iec104Master  # noqa: E402

AGC_IOA = 5001  # the default map's AGC set-point


def _p99(xs: list[float]) -> float:
    return sorted(xs)[min(len(xs) - 1, round(0.99 * (len(xs) - 1)))]


async def _until_up(sub: Subscriber, units: set[str], timeout: float = 60.0) -> None:
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while seen != units:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the site did not come up")
        for msg in await asyncio.wait_for(sub.recv_batch(), left):
            if isinstance(msg, s.DecisionMsg):
                seen.add(msg.body.unit)


async def _agc_event(sub: Subscriber, mw: float, timeout: float = 10.0) -> float:
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no agc event with set-point {mw}")
        for msg in await asyncio.wait_for(sub.recv_batch(), left):
            if (isinstance(msg, s.EventMsg) and msg.body.kind == "agc"
                    and msg.body.data.get("setpoint_mw") == mw):  # fmt: skip
                return time.perf_counter()


async def _measure(n: int, tmp: Path) -> dict[str, list[float]]:
    os.environ["VPP_RUN_DIR"] = str(tmp / "run")  # not the user's own site's directory
    site = load(None, env={**os.environ, "VPP__SIMULATION__LDC__ENABLED": "false",
                           "VPP__SCADA__IEC104__PORT": "0", "VPP__SCADA__DNP3__PORT": "0",
                           "VPP__API__PORT": "0"})  # fmt: skip
    launcher = Launcher(site, history_path=tmp / "bench.db")
    stop = asyncio.Event()
    task = asyncio.create_task(launcher.run(None, stop))
    out: dict[str, list[float]] = {"confirmed": [], "dispatched": [], "status": [], "gi": []}
    try:
        while launcher.topo is None or not launcher.ready.is_set():
            await asyncio.sleep(0.05)
        topo = launcher.topo
        sub = topo.subscriber("viewer", ("decision/", "event/campus"))
        cli = Client(topo.commands["campus"], name="operator",
                     curve=topo.client_curve("operator", "campus"))  # fmt: skip
        await cli.__aenter__()
        host, _, port = launcher.scada_ports["iec104"].rpartition(":")
        master = Iec104Master(host, int(port))
        try:
            await _until_up(sub, {u.id for u in site.units()})
            for _ in range(50):  # the outstation binds once its process started
                try:
                    await master.connect()
                    break
                except OSError:
                    await asyncio.sleep(0.2)
            for _ in range(5):
                t0 = time.perf_counter()
                got = await master.interrogate()
                out["gi"].append(got / (time.perf_counter() - t0))
            for i in range(n):
                t0 = time.perf_counter()
                ack = await cli.request("fleet", {"levels": []})
                assert ack.ok, ack.error
                out["status"].append(time.perf_counter() - t0)
                mw = 0.1 if i % 2 else -0.1
                mw += i * 1e-4  # each set-point its own, to tell their events apart
                t0 = time.perf_counter()
                assert await master.command(C_SE_NC_1, AGC_IOA, mw)
                out["confirmed"].append(time.perf_counter() - t0)
                # The set-point goes over the wire as a 32-bit float.
                sent = struct.unpack("<f", struct.pack("<f", mw))[0]
                out["dispatched"].append(await _agc_event(sub, sent) - t0)
                await asyncio.sleep(0.3)
        finally:
            await master.close()
            await cli.__aexit__(None, None, None)
            sub.close()
    finally:
        stop.set()
        await task
    return out


def run(quick: bool = False) -> list[Row]:
    """Benchmark rows (quick: 20 set-points instead of 100)."""
    n = 20 if quick else 100
    with tempfile.TemporaryDirectory(prefix="vppbench-") as d:
        m = asyncio.run(_measure(n, Path(d)))
    ref = statistics.median(m["status"])
    ms = 1000.0
    rows = [
        row("fleet command to the campus over the bus (reference), p50",
            ref * ms, "ms"),
        row("fleet command, p99", _p99(m["status"]) * ms, "ms"),
    ]  # fmt: skip
    for key, what in (("confirmed", "AGC set-point -> ACTCON+ACTTERM at the master"),
                      ("dispatched", "AGC set-point -> dispatched to the field controllers")):
        med = statistics.median(m[key])
        rows.append(row(f"{what}, p50", med * ms, "ms", reference="fleet command",
                        ratio=med / ref))  # fmt: skip
        rows.append(row(f"{what}, p99", _p99(m[key]) * ms, "ms"))
    rows += [
        row("general interrogation of the site's points, median", statistics.median(m["gi"]),
            "points/s"),
        row("set-points (n)", float(n), "-"),
        row("load average (1 min) at the end", os.getloadavg()[0], "-"),
    ]  # fmt: skip
    return rows


if __name__ == "__main__":
    from vpp.bench import print_table

    print_table(run("--quick" in sys.argv))
