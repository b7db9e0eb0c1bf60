"""Run a case against a device: a unit under test reached only through its protocols.

The harness is the device's PMU: a C37.118 server (:class:`~vpp.sim.pmu.PmuServer`,
TCP) at the plan's ``device.pmu`` address, whose frequency source is the case's profile.
It waits for the device to connect as the PDC and turn data on, holds the profile's first
frequency for ``settle_s``, then plays the case in real time. Meanwhile it polls the
device's meter (Modbus TCP points of a register map) every ``device.meter.poll_s``.

The record has one row per frame on the PMU's grid: its case time, the frequency and
ROCOF the frame carried (the profile, and its backward difference over one frame: the
same figures the simulated target's PMU sends), and the last meter reading at or before
the frame's time (so up to one poll interval old, plus the Modbus round trip). A device
has no setpoint, envelope or safety action to record: those columns are NaN, and the
criteria that need them are "not judged" (:mod:`vpp.hil.criteria`).

The starting conditions of a case cannot be set on a device: those the case states
(SOC, base power) are checked against the meter over the last second before case time
0; a device that is not in them, or never connects, makes the case "not run" with the
reason (a failed case), and no profile is played for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pymodbus.client import AsyncModbusTcpClient

from vpp.drivers.register_map import Point, Table, decode
from vpp.hil.plan import Case, DeviceSpec, MeterSpec, Plan, meter_map
from vpp.hil.profiles import CaseSource, ProfileFunction
from vpp.hil.runner import PRE_ROLL_S, CaseRecord
from vpp.sim.pmu import PmuServer

__all__ = ["DeviceSource", "Meter", "run_device_case"]

log = logging.getLogger(__name__)


class DeviceSource:
    """The PMU's frequency source for a device: the profile's first frequency until
    :meth:`arm`, then the case (``settle_s`` more at the first frequency, then the
    profile), on the PMU's frame grid."""

    def __init__(self, fn: ProfileFunction, settle_s: float, rate: int) -> None:
        self.case = CaseSource(fn, settle_s, rate)
        self.rate = rate
        #: PMU time (s since its first frame) at which the settle before the case starts.
        self.armed_at: float | None = None

    @property
    def nominal(self) -> float:
        """Nominal frequency, Hz."""
        return self.case.nominal

    def arm(self, k: int) -> None:
        """Start the case's settle at the PMU's frame ``k`` (frames since its start)."""
        self.armed_at = k / self.rate

    def sample(self, t: float) -> tuple[float, float]:
        """(frequency Hz, ROCOF Hz/s) at PMU time ``t``."""
        if self.armed_at is None:
            return self.case.sample(0.0)  # case time -settle_s: the first frequency
        return self.case.sample(t - self.armed_at)


@dataclass
class Meter:
    """Polls the device's power (and SOC) points over Modbus TCP; ``readings`` holds
    (UNIX time of the reply, power kW, SOC %) with NaN for what failed or is absent."""

    spec: MeterSpec
    power: Point
    soc: Point | None
    readings: list[tuple[float, float, float]] = field(default_factory=list)
    errors: int = 0
    last_error: str = ""

    async def _read(self, client: AsyncModbusTcpClient, p: Point) -> float:
        dev = self.spec.device_id
        if p.table is Table.HOLDING:
            reply = await client.read_holding_registers(p.address, count=p.type.words,
                                                        device_id=dev)  # fmt: skip
        elif p.table is Table.INPUT:
            reply = await client.read_input_registers(p.address, count=p.type.words,
                                                      device_id=dev)  # fmt: skip
        else:
            raise ValueError(f"point {p.name!r} is a bit, not a measurement")
        if reply.isError():
            raise ConnectionError(f"Modbus exception reading {p.name!r}: {reply}")
        return decode(p, list(reply.registers))

    async def run(self) -> None:
        """Poll until cancelled, reconnecting after a failure (a failed poll is a NaN
        reading: the record shows the gap rather than a stale value)."""
        s = self.spec
        client = AsyncModbusTcpClient(s.host, port=s.port, timeout=s.timeout_s, retries=0)
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        try:
            while True:
                power = soc = math.nan
                try:
                    if not client.connected:
                        await client.connect()
                    power = await self._read(client, self.power)
                    if self.soc is not None:
                        soc = await self._read(client, self.soc)
                except Exception as exc:  # any failure is a gap in the record, counted
                    self.errors += 1
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    client.close()
                self.readings.append((time.time(), power, soc))
                # Absolute deadlines: a slow reply does not stretch the interval after it.
                next_at = max(next_at + s.poll_s, loop.time())
                await asyncio.sleep(next_at - loop.time())
        finally:
            client.close()

    def window(self, t_from: float, t_to: float) -> tuple[np.ndarray, np.ndarray]:
        """The power and SOC readings with reply times in [t_from, t_to) (UNIX s)."""
        rows = [r for r in self.readings if t_from <= r[0] < t_to]
        return (np.array([r[1] for r in rows], dtype=np.float64),
                np.array([r[2] for r in rows], dtype=np.float64))  # fmt: skip


def _start_check(case: Case, dev: DeviceSpec, meter: Meter, t0: float, rated: float) -> str:
    """Why the device is not in the case's stated starting conditions ('' if it is),
    from the meter over the second before case time 0."""
    power, soc = meter.window(t0 - 1.0, t0)
    given = case.start.model_fields_set
    tol = dev.start_tolerance
    if not np.isfinite(power).any():
        return (f"no meter reading in the second before the case start "
                f"({meter.errors} failed polls; last: {meter.last_error or 'none'})")  # fmt: skip
    if "soc_pct" in given:
        ok = soc[np.isfinite(soc)]
        if not ok.size:
            return "no SOC reading in the second before the case start"
        got = float(ok.mean())
        if abs(got - case.start.soc_pct) > tol.soc_pct:
            return (f"the device's SOC is {got:.1f} %, not the stated {case.start.soc_pct:g} % "
                    f"(tolerance {tol.soc_pct:g} %)")  # fmt: skip
    if "base_kw" in given:
        got = float(np.nanmean(power))
        if abs(got - case.start.base_kw) > tol.base_pct * rated / 100:
            return (
                f"the device's power is {got:.1f} kW, not the stated base "
                f"{case.start.base_kw:g} kW (tolerance {tol.base_pct:g} % of the rating)"
            )
    return ""


def _rows(
    source: DeviceSource, meter: Meter, t0: float, rate: int, duration: float
) -> list[tuple[float, ...]]:
    """One row per frame from ``-PRE_ROLL_S`` to ``duration`` (case time)."""
    times = np.array([r[0] for r in meter.readings], dtype=np.float64)
    n0 = math.ceil(-PRE_ROLL_S * rate)
    n1 = math.floor(duration * rate)
    rows: list[tuple[float, ...]] = []
    nan = math.nan
    for n in range(n0, n1 + 1):
        tc = n / rate
        f, rocof = source.case.sample(tc + source.case.settle_s)
        # The last reading whose reply came at or before the frame's time.
        i = int(np.searchsorted(times, t0 + tc, side="right")) - 1
        power, soc = (meter.readings[i][1], meter.readings[i][2]) if i >= 0 else (nan, nan)
        # No setpoint, requested power, envelope or safety action: a device shows none.
        rows.append((tc, f, rocof, nan, nan, nan, nan, power, soc, nan))
    return rows


async def run_device_case(
    plan: Plan, case: Case, fn: ProfileFunction, base: Path
) -> CaseRecord:
    """Run ``case`` (its frequency ``fn``) against the plan's device (its meter's map
    relative to ``base``) and return its record (``not_run`` set when the device never
    turned data on or was not in the stated conditions)."""
    dev = plan.device
    assert dev is not None  # load_plan checked target and section together
    regmap = meter_map(dev.meter, base)
    meter = Meter(dev.meter, regmap.point(dev.meter.power_point),
                  regmap.point(dev.meter.soc_point) if dev.meter.soc_point else None)  # fmt: skip
    rated = plan.unit.rated_kw
    part = rated if case.start.participation_kw is None else case.start.participation_kw
    source = DeviceSource(fn, plan.settle_s, plan.rate)
    pmu = PmuServer(idcode=dev.pmu.idcode, rate=plan.rate, host=dev.pmu.host,
                    port=dev.pmu.port, source=source, station="VPP HIL PMU")  # fmt: skip
    wall0 = time.monotonic()
    record = CaseRecord(case.name, math.nan, rated, part, target="device")
    async with pmu:
        poller = asyncio.create_task(meter.run())
        try:
            deadline = time.monotonic() + dev.pmu.connect_timeout_s
            while not any(c.data_on for c in pmu.clients):
                if time.monotonic() > deadline:
                    record.not_run = (
                        f"the device did not connect to the PMU at {dev.pmu.host}:"
                        f"{dev.pmu.port} and turn data on within {dev.pmu.connect_timeout_s:g} s"
                    )
                    return record
                await asyncio.sleep(0.05)
            # Two frames ahead of the one being built: no frame already built moves.
            k = pmu.ticks + pmu.skipped + 2
            source.arm(k)
            t0 = (pmu.k0 + k) / plan.rate + plan.settle_s
            record.start_unix_s = t0
            await asyncio.sleep(max(0.0, t0 - time.time()))
            why = _start_check(case, dev, meter, t0, rated)
            if why:
                record.not_run = f"the device is not in the case's starting conditions: {why}"
                return record
            await asyncio.sleep(max(0.0, t0 + case.duration_s + 2 * dev.meter.poll_s
                                    - time.time()))  # fmt: skip
            if not any(c.data_on for c in pmu.clients):
                record.notes.append("the device turned data off or left during the case")
            # The harness's own faults, so that a dip in the response is not blamed on
            # the device when the PMU fell behind or the device's socket was full.
            dropped = sum(c.dropped for c in pmu.clients)
            if pmu.skipped or dropped:
                record.notes.append(
                    f"the harness's PMU skipped {pmu.skipped} frames (fell behind) and "
                    f"dropped {dropped} (the device's socket full)"
                )
        finally:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
            record.wall_s = time.monotonic() - wall0
    record.rows = _rows(source, meter, record.start_unix_s, plan.rate, case.duration_s)
    record.meter_errors = meter.errors
    for note in record.notes:
        log.warning("case %s: %s", case.name, note)
    log.info("case %s: %d frames, %d meter polls (%d failed) in %.1f s", case.name,
             len(record.rows), len(meter.readings), meter.errors, record.wall_s)  # fmt: skip
    return record
