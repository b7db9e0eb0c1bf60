"""Run a case against a device: a unit under test reached only through its protocols.

The harness is the device's PMU: a C37.118 server (:class:`~vpp.sim.pmu.PmuServer`)
at the plan's ``device.pmu`` address, whose frequency source is the case's profile.
Over TCP it waits for the device to connect as the PDC and turn data on; over UDP it
sends every frame to the device's address from the start and waits for the device's
first command over TCP (its configuration request), or not at all
(:class:`~vpp.hil.plan.PdcSpec`). It holds the profile's first frequency until then,
and for ``settle_s`` more, then plays the case in real time. Meanwhile it polls the
device's meter (:mod:`vpp.hil.meters`: Modbus points of a register map, or SunSpec
models) every ``device.meter.poll_s``.

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
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from vpp import c37118
from vpp.hil.meters import Meter, make_meter
from vpp.hil.plan import Case, DeviceSpec, PdcSpec, Plan
from vpp.hil.profiles import CaseSource, ProfileFunction
from vpp.hil.runner import PRE_ROLL_S, CaseRecord
from vpp.sim.pmu import PmuServer

__all__ = ["DeviceSource", "run_device_case"]

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


class _HarnessPmu(PmuServer):
    """The harness's PMU: counts the commands of every TCP client, those gone too (a
    device on UDP fetches the configuration over TCP and closes the link)."""

    commands = 0

    def _command(self, cl: Any, cmd: c37118.CommandFrame) -> None:
        self.commands += 1
        super()._command(cl, cmd)


#: UDP devices (PMU address, data address, IDCODE) that have sent a command in this
#: process. A device on UDP fetches the configuration once and keeps it (the field
#: controller's loop does): it does not ask again for the next case's PMU, whose
#: stream is configured the same, so its first command stands for the whole run.
_heard: set[tuple[str, int, str | None, int | None, int]] = set()


def _connected(pmu: _HarnessPmu, spec: PdcSpec) -> bool:
    """Whether the device is there: data on over TCP; over UDP its first command in this
    run (or at once without ``await_command``: nothing tells whether a UDP device
    listens)."""
    if spec.transport == "tcp":
        return any(c.data_on for c in pmu.clients)
    key = (spec.host, spec.port, spec.udp_host, spec.udp_port, spec.idcode)
    if pmu.commands:
        _heard.add(key)
    return not spec.await_command or key in _heard


def _not_connected(spec: PdcSpec) -> str:
    where = f"{spec.host}:{spec.port}"
    if spec.transport == "tcp":
        return (f"the device did not connect to the PMU at {where} and turn data on "
                f"within {spec.connect_timeout_s:g} s")  # fmt: skip
    return (f"the device did not connect to the PMU at {where} (UDP data to "
            f"{spec.udp_host}:{spec.udp_port}) and send a command, e.g. ask for the "
            f"configuration, within {spec.connect_timeout_s:g} s")  # fmt: skip


async def run_device_case(plan: Plan, case: Case, fn: ProfileFunction, base: Path) -> CaseRecord:
    """Run ``case`` (its frequency ``fn``) against the plan's device (its meter's map
    relative to ``base``) and return its record (``not_run`` set when the device never
    connected (see :class:`~vpp.hil.plan.PdcSpec`) or was not in the stated
    conditions)."""
    dev = plan.device
    assert dev is not None  # load_plan checked target and section together
    meter = make_meter(dev.meter, base)
    rated = plan.unit.rated_kw
    part = rated if case.start.participation_kw is None else case.start.participation_kw
    source = DeviceSource(fn, plan.settle_s, plan.rate)
    spec = dev.pmu
    udp: list[tuple[str, int]] = []
    if spec.transport == "udp":
        assert spec.udp_host is not None and spec.udp_port is not None  # load_plan checked
        udp.append((spec.udp_host, spec.udp_port))
    pmu = _HarnessPmu(idcode=spec.idcode, rate=plan.rate, host=spec.host, port=spec.port,
                      source=source, station="VPP HIL PMU", udp_targets=udp)  # fmt: skip
    wall0 = time.monotonic()
    record = CaseRecord(case.name, math.nan, rated, part, target="device")
    async with pmu:
        poller = asyncio.create_task(meter.run())
        try:
            deadline = time.monotonic() + spec.connect_timeout_s
            # k0, the first frame's grid index, is set with the first tick.
            while pmu.ticks == 0 or not _connected(pmu, spec):
                if time.monotonic() > deadline:
                    record.not_run = _not_connected(spec)
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
            if spec.transport == "tcp" and not any(c.data_on for c in pmu.clients):
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
            meter.stop()
            poller.cancel()
            # Bounded: a poller whose cancellation was lost ends at its next poll.
            done, _ = await asyncio.wait(
                [poller], timeout=dev.meter.poll_s + 2 * dev.meter.timeout_s + 1
            )
            if not done:
                log.warning("case %s: the meter's poller did not stop", case.name)
            record.wall_s = time.monotonic() - wall0
    record.rows = _rows(source, meter, record.start_unix_s, plan.rate, case.duration_s)
    record.meter_errors = meter.errors
    for note in record.notes:
        log.warning("case %s: %s", case.name, note)
    log.info("case %s: %d frames, %d meter polls (%d failed) in %.1f s", case.name,
             len(record.rows), len(meter.readings), meter.errors, record.wall_s)  # fmt: skip
    return record
