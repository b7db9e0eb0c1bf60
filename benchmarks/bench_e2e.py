"""End to end: a PMU frame leaves the simulator -> its setpoint reaches the Modbus simulator.

The simulated plant (a :class:`PmuServer` at 50 frames/s and a :class:`BessSimulator`)
runs in this process; the field controller runs alone in a process of its own, as in
``vpp run``. Each frame's send time is taken right after the PMU server has written it to
the socket, each setpoint's arrival inside the simulator's register write handler, both
on CLOCK_MONOTONIC (``time.monotonic`` is system wide on Linux, so the two processes
share it). The frequency is a triangle wave between 49.60 and 49.85 Hz, always below the
deadband and changing on every frame, so every frame yields a new setpoint
(200 kW/Hz x 0.002 Hz = 0.4 kW per frame); a write is matched to the latest frame whose
droop setpoint it carries (registers hold 0.1 kW).

Reference in the same run: the round trip of a bare pymodbus write of the same register
from the controller's process, before the controller starts.

Also: the frame path's two options inside the controller, a decoded frame (what the PDC
client yields) through ``Pipeline.step`` against the raw bytes through ``Pipeline.process``.

Run: ``python benchmarks/bench_e2e.py [--quick]`` or ``vpp bench e2e``.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vpp import c37118 as c  # noqa: E402
from vpp.bench import child_output, percentile, row  # noqa: E402
from vpp.commission.e2e import TimedPmu, match  # noqa: E402
from vpp.core import Pipeline  # noqa: E402
from vpp.sim.bess import BessSimulator  # noqa: E402
from vpp.sim.pmu import PmuServer  # noqa: E402

Row = dict[str, Any]
RATE, RATED = 50, 500.0
LOW, HIGH, SLOPE = 49.60, 49.85, 0.1  # Hz, Hz, Hz/s


class Triangle:
    """A frequency source: a triangle wave between LOW and HIGH at SLOPE Hz/s."""

    nominal = 50.0

    def sample(self, t: float) -> tuple[float, float]:
        span = HIGH - LOW
        x = (t * SLOPE) % (2 * span)
        return (HIGH - x, -SLOPE) if x < span else (LOW + (x - span), SLOPE)


class TimedBess(BessSimulator):
    """Records (arrival time, kW) of every active-power setpoint write."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.writes: list[tuple[float, float]] = []

    def _write_registers(self, start: int, address: int, values: list[int],
                         registers: list[int]) -> Any:  # fmt: skip
        result = super()._write_registers(start, address, values, registers)
        if address == 0 and result is None:
            self.writes.append((time.monotonic(), self.command.p_kw))
        return result


def _controller(pmu_port: int, bess_port: int, seconds: float) -> None:
    """The field controller's process: raw write round trips first, then the controller."""
    from pymodbus.client import AsyncModbusTcpClient

    from vpp.config.models import DeviceConfig, FieldConfig, PmuSource, UnitConfig
    from vpp.orchestrator.field.controller import FieldController

    async def raw_rtt(n: int) -> list[float]:
        client = AsyncModbusTcpClient("127.0.0.1", port=bess_port)
        await client.connect()
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            await client.write_registers(2, [0, 0], device_id=1)  # reactive setpoint, 0
            times.append((time.perf_counter() - t0) * 1e3)
        client.close()
        return times

    async def main() -> None:
        rtt = await raw_rtt(500)
        where = {"host": "127.0.0.1", "port": bess_port, "timeout": 1.0}
        inverter = DeviceConfig(protocol="modbus_tcp", config=where)
        unit = UnitConfig(id="bess-1", rated_power_kw=RATED, capacity_kwh=1000, inverter=inverter)
        cfg = FieldConfig(id="field-a", pmu=PmuSource(port=pmu_port), units=[unit])
        async with FieldController(cfg) as ctl:
            await asyncio.sleep(seconds)
            w = ctl.writers["bess-1"]
            stats = {"frames": ctl.frames, "written": w.written, "coalesced": w.coalesced}
        print(json.dumps({"rtt": rtt, **stats}))

    asyncio.run(main())


async def _plant(seconds: float) -> tuple[list[float], dict[str, Any]]:
    pmu = TimedPmu(port=0, rate=RATE, source=Triangle())
    bess = TimedBess(port=0, rated_power_kw=RATED, ramp_kw_s=1000.0)
    async with bess, pmu:
        out = await child_output(sys.executable, __file__, "--controller", str(pmu.port),
                                 str(bess.port), str(seconds), timeout=seconds + 60)  # fmt: skip
        stats: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    # Leave the first 2 s out: connection set-up and the first telemetry.
    start = pmu.sent[0][0] + 2.0 if pmu.sent else 0.0
    sent = [s for s in pmu.sent if s[0] >= start - 1.0]
    writes = [w for w in bess.writes if w[0] >= start]
    lat = match(sent, writes)
    stats.update(sent=len([s for s in sent if s[0] >= start]), writes=len(writes),
                 matched=len(lat))  # fmt: skip
    return lat, stats


def _frame_path(n: int) -> tuple[float, float, float]:
    """(decode + step, process raw, step alone) in microseconds per frame."""
    cfg = c.ConfigFrame(
        "cfg2", 7734, PmuServer(port=0).config.pmus, time_base=1_000_000, data_rate=RATE
    )
    pmu = PmuServer(port=0, rate=RATE, source=Triangle())
    frames = [pmu.data_frame(k) for k in range(n)]
    a, b = Pipeline(p_max_kw=RATED), Pipeline(p_max_kw=RATED)
    b.process(c.encode(cfg))
    configs = [cfg]
    t0 = time.perf_counter()
    for raw in frames:
        fr = c.decode(raw, configs)
        assert isinstance(fr, c.DataFrame)
        p = fr.pmus[0]
        a.step(fr.time, p.freq, p.dfreq, p.stat, fr.idcode, wall=fr.time, mono=fr.time)
    t1 = time.perf_counter()
    for raw in frames:
        b.process(raw, replay=True)
    t2 = time.perf_counter()
    decoded = [c.decode(raw, configs) for raw in frames]
    vals = [(fr.time, fr.freq, fr.dfreq) for fr in decoded if isinstance(fr, c.DataFrame)]
    a = Pipeline(p_max_kw=RATED)
    t3 = time.perf_counter()
    for t, f, df in vals:
        a.step(t, f, df, wall=t, mono=t)
    t4 = time.perf_counter()
    return (t1 - t0) / n * 1e6, (t2 - t1) / n * 1e6, (t4 - t3) / n * 1e6


def run(quick: bool = False) -> list[Row]:
    seconds = 12.0 if quick else 60.0
    lat, st = asyncio.run(_plant(seconds))
    rtt = st["rtt"]
    raw_p50 = statistics.median(rtt)
    p50, p99 = percentile(lat, 0.5), percentile(lat, 0.99)
    step_us, process_us, step_only = _frame_path(500 if quick else 5000)
    return [
        row("PMU frame sent -> setpoint at Modbus sim, p50", p50, "ms",
            reference=f"raw pymodbus write RTT p50 {raw_p50:.3g} ms", ratio=p50 / raw_p50),
        row("PMU frame sent -> setpoint at Modbus sim, p99", p99, "ms",
            target="<= 10 ms", ok=p99 <= 10.0),
        row("PMU frame sent -> setpoint at Modbus sim, max", max(lat, default=float("nan")),
            "ms"),
        row("frames sent / writes received / matched", st["sent"], "frames",
            reference=f"{st['writes']} writes, {st['matched']} matched"),
        row("setpoints coalesced (replaced before written)", st["coalesced"], "setpoints"),
        row("raw pymodbus write round trip p50 (reference)", raw_p50, "ms",
            reference=f"p99 {percentile(rtt, 0.99):.3g} ms"),
        row("frame path: decoded frame + Pipeline.step", step_us, "us",
            reference=f"Pipeline.process(raw) {process_us:.3g} us", ratio=process_us / step_us),
        row("frame path: Pipeline.step alone (the PDC client decodes anyway)", step_only, "us",
            reference=f"Pipeline.process(raw) {process_us:.3g} us", ratio=process_us / step_only),
    ]  # fmt: skip


if __name__ == "__main__" and sys.argv[1:2] == ["--controller"]:
    _controller(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
elif __name__ == "__main__":
    from vpp.bench import print_table

    print_table(run(quick="--quick" in sys.argv))
