"""The field controller's real-time loop in the core (docs/realtime-loop.md), end to end.

The PMU and the BESS simulator of the hog tests run in a process of their own (the
plant), so that a GIL hog or a garbage-collection storm in this process, the
controller's, cannot slow them: only the controller is under test. Each test that
claims the loop goes on also runs the asyncio path under the same hog, which must
stall: the hog really held the GIL, so the test can fail.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import multiprocessing
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.support.devices import run, wait_until
from vpp.config.models import DeviceConfig, FieldConfig, PmuSource, RealtimeConfig, UnitConfig
from vpp.orchestrator.field.controller import FieldController
from vpp.sim.bess import BessSimulator
from vpp.sim.frequency import FrequencyProfile
from vpp.sim.pmu import PmuServer

RATED = 500.0
HOG_S = 0.5


class Sawtooth:
    """49.85 down to 49.60 Hz every 10 s: every frame moves the droop setpoint 0.4 kW."""

    nominal = 50.0

    def sample(self, t: float) -> tuple[float, float]:
        return 49.85 - (t % 10.0) * 0.1, -0.1


class TimedBess(BessSimulator):
    """Records the arrival time of every active-power setpoint write."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.writes: list[float] = []

    def _write_registers(self, start: int, address: int, values: list[int],
                         registers: list[int]) -> Any:  # fmt: skip
        result = super()._write_registers(start, address, values, registers)
        if address == 0 and result is None:
            self.writes.append(time.monotonic())
        return result


def _plant(conn: Any) -> None:
    async def main() -> None:
        pmu = PmuServer(port=0, rate=50, source=Sawtooth())
        bess = TimedBess(port=0, rated_power_kw=RATED, ramp_kw_s=5000.0)
        async with pmu, bess:
            conn.send((pmu.port, bess.port))
            while not conn.poll():
                await asyncio.sleep(0.05)
        conn.send(bess.writes)

    asyncio.run(main())


def _unit(port: int, poll: float = 0.1) -> UnitConfig:
    where = {"host": "127.0.0.1", "port": port, "timeout": 0.5, "retries": 0}
    inv = DeviceConfig(protocol="modbus_tcp", config=where, poll_interval_s=poll)
    return UnitConfig(id="bess-1", rated_power_kw=RATED, capacity_kwh=1000, inverter=inv)


def _field(pmu_port: int, bess_port: int, **rt: Any) -> FieldConfig:
    return FieldConfig(id="field-a", pmu=PmuSource(port=pmu_port), units=[_unit(bess_port)],
                       realtime=RealtimeConfig(**rt))  # fmt: skip


def _gil_hog(marks: list[float]) -> None:
    n = 200_000
    t0 = time.perf_counter()
    sum(range(n))
    n = int(HOG_S / ((time.perf_counter() - t0) / n))
    marks.append(time.monotonic())
    sum(range(n))  # one C call: the GIL is held for HOG_S throughout
    marks.append(time.monotonic())


def _gc_storm(marks: list[float]) -> None:
    # Cycles only the collector frees, collected again and again with the GIL held
    # (600,000 of them: each full collection then holds the GIL for a few hundred ms on
    # this VM, which the asyncio path's control check below must see).
    junk: list[Any] = []
    for _ in range(600_000):
        a: list[Any] = []
        a.append(a)
        junk.append(a)
    marks.append(time.monotonic())
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        gc.collect()
        for _ in range(20_000):
            b: list[Any] = []
            b.append(b)
    marks.append(time.monotonic())
    del junk


def _writes_under(
    hog: Callable[[list[float]], None],
    realtime: bool,
    plant_main: Callable[[Any], None] = _plant,
    make_field: Callable[..., FieldConfig] = _field,
) -> tuple[list[float], float, float]:
    """Setpoint arrivals at the plant while ``hog`` runs in the controller's process.
    ``plant_main`` sends (PMU port, where the BESS is) and, when told to stop, the
    arrivals; ``make_field`` builds the field from those two (test_realtime_rtu.py
    passes a BESS on a serial line)."""
    ctx = multiprocessing.get_context("fork")
    here, there = ctx.Pipe()
    plant = ctx.Process(target=plant_main, args=(there,), daemon=True)
    plant.start()
    try:
        pmu_port, bess_where = here.recv()
        marks: list[float] = []

        async def main() -> None:
            # SCHED_FIFO for the loop's thread where allowed, as in a controller process;
            # the memory of this test process is left unlocked.
            cfg = make_field(pmu_port, bess_where, lock_memory=False)
            async with FieldController(cfg, realtime=realtime, realtime_settings=True) as ctl:
                await wait_until(lambda: ctl.frames > 50, timeout=10)
                t = threading.Thread(target=hog, args=(marks,))
                t.start()
                while t.is_alive():
                    await asyncio.sleep(0.01)
                await asyncio.sleep(0.2)

        run(main, timeout=40)
        here.send("stop")
        writes: list[float] = here.recv()
    finally:
        plant.join(5)
        if plant.is_alive():
            plant.kill()
    return writes, marks[0], marks[1]


def _largest_gap(writes: list[float], start: float, end: float) -> tuple[float, int]:
    inside = [w for w in writes if start <= w <= end]
    edges = [start, *inside, end]
    return max(b - a for a, b in itertools.pairwise(edges)), len(inside)


@pytest.mark.parametrize("hog", [_gil_hog, _gc_storm], ids=["gil_hog_500ms", "gc_storm"])
def test_writes_go_on_under_a_hog(hog: Callable[[list[float]], None]) -> None:
    writes, start, end = _writes_under(hog, realtime=True)
    gap, n = _largest_gap(writes, start, end)
    # 50 frames/s, each a new setpoint: a write every 20 ms, all through the hog.
    assert gap < 0.1, f"the loop's writes stopped for {gap * 1e3:.0f} ms"
    assert n >= 0.6 * 50 * (end - start), (n, end - start)
    # The same hog on the asyncio path: its writes stop (the hog did hold the GIL).
    writes, start, end = _writes_under(hog, realtime=False)
    gap, _ = _largest_gap(writes, start, end)
    # Longer than the loop's bound above (a loaded VM shortens the calibrated hog).
    assert gap > 0.15, f"the hog did not hold the asyncio path up ({gap * 1e3:.0f} ms)"


STEP = FrequencyProfile(kind="step", magnitude=-0.2, start=0.0, noise=0.0)
DROOP_KW = RATED * 0.1 / (0.05 * 50.0)  # 49.80 Hz: 0.1 Hz beyond the deadband at 5 %


def test_a_stalled_loop_lets_the_inverter_watchdog_fall_back_then_resumes() -> None:
    async def main() -> None:
        sim = BessSimulator(port=0, rated_power_kw=RATED, ramp_kw_s=5000.0)
        async with sim, PmuServer(port=0, rate=50, profile=STEP) as pmu:
            cfg = _field(pmu.port, sim.port, watchdog_timeout_s=0.5, stall_after_s=0.3)
            async with FieldController(cfg, realtime=True) as ctl:
                assert ctl.rt is not None
                await wait_until(lambda: abs(sim.model.power_kw - DROOP_KW) < 1, timeout=10)
                assert ctl.rt.stats()["units"][0]["watchdog_writes"] > 0
                ctl.rt.inject("stall", 2.0)
                # The counter stops: the inverter's watchdog expires, it ramps to 0.
                await wait_until(lambda: sim.watchdog_expiries > 0, timeout=2)
                await wait_until(lambda: abs(sim.model.power_kw) < 1, timeout=2)
                assert ctl._rt_stalled  # reported while it lasts
                # The loop resumes: the counter moves, the setpoint is written anew.
                await wait_until(lambda: abs(sim.model.power_kw - DROOP_KW) < 1, timeout=5)
                assert not ctl._rt_stalled and ctl.rt.stats()["gaps"] >= 1

    run(main, timeout=40)


def test_a_dead_loop_hands_the_frames_to_the_asyncio_path() -> None:
    async def main() -> None:
        sim = BessSimulator(port=0, rated_power_kw=RATED, ramp_kw_s=5000.0)
        async with sim, PmuServer(port=0, rate=50, profile=STEP) as pmu:
            cfg = _field(pmu.port, sim.port)
            async with FieldController(cfg, realtime=True) as ctl:
                assert ctl.rt is not None
                await wait_until(lambda: abs(sim.model.power_kw - DROOP_KW) < 1, timeout=10)
                ctl.rt.inject("panic")
                await wait_until(lambda: ctl.rt is None, timeout=2)
                assert ctl.rt_fallbacks == 1
                frames = ctl.frames
                await ctl.command("set_base", {"unit": "bess-1", "kw": 100.0})
                # The asyncio path takes the frames and writes the new setpoint.
                await wait_until(lambda: abs(sim.model.power_kw - DROOP_KW - 100) < 1, timeout=5)
                assert ctl.frames > frames

    run(main, timeout=40)
