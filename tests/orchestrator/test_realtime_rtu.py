"""The core's real-time loop writing a Modbus RTU unit on a serial line it owns, end to end.

The BESS simulator serves Modbus RTU on the device end of a pty null-modem
(tests/support/ptylink.py) and the field controller's loop opens the host end; the PMU
server streams 50 frames/s. The unit's driver must not open the port: its status polls
go through the loop (``RtLoop.transact``), between the loop's own writes. The properties
of test_realtime_properties.py are played again to a Modbus RTU recorder on a pty.
"""

from __future__ import annotations

import asyncio
import math
import os
import struct
import threading
import time
import tty
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from pymodbus.framer.rtu import FramerRTU

from tests.orchestrator.test_realtime_loop import (
    DROOP_KW,
    RATED,
    STEP,
    Sawtooth,
    TimedBess,
    _gil_hog,
    _largest_gap,
    _writes_under,
)
from tests.orchestrator.test_realtime_properties import actions, check_sequence, run_sequence
from tests.support.devices import run, wait_until
from tests.support.ptylink import PtyLink, pty_link
from vpp.config.models import DeviceConfig, FieldConfig, PmuSource, RealtimeConfig, UnitConfig
from vpp.core import RtLoop
from vpp.drivers.modbus_loop import LoopClient
from vpp.drivers.modbus_rtu import ModbusRtuProtocol
from vpp.orchestrator.field.controller import FieldController
from vpp.orchestrator.field.realtime import rt_target
from vpp.orchestrator.field.unit import FieldUnit
from vpp.sim.bess import BessSimulator, SerialLine
from vpp.sim.pmu import PmuServer


def _unit(port: str, poll: float = 0.1) -> UnitConfig:
    # 8N1: a Linux pty refuses parity (tests/drivers/test_modbus_rtu.py).
    where = {"port": port, "parity": "N", "timeout": 0.5, "retries": 0}
    inv = DeviceConfig(protocol="modbus_rtu", config=where, poll_interval_s=poll)
    return UnitConfig(id="bess-1", rated_power_kw=RATED, capacity_kwh=1000, inverter=inv)


def _field(pmu_port: int, port: str, **rt: Any) -> FieldConfig:
    return FieldConfig(id="field-a", pmu=PmuSource(port=pmu_port), units=[_unit(port)],
                       realtime=RealtimeConfig(**rt))  # fmt: skip


def _bess(port: str, **kw: Any) -> BessSimulator:
    return BessSimulator(rtu=SerialLine(port, parity="N"), rated_power_kw=RATED,
                         ramp_kw_s=5000.0, **kw)  # fmt: skip


@asynccontextmanager
async def _rig(**bess: Any) -> AsyncIterator[tuple[PtyLink, BessSimulator, PmuServer]]:
    """A pty null-modem, the BESS on its device end, a PMU streaming 50 frames/s."""
    async with (
        pty_link() as link,
        _bess(link.device_end, **bess) as sim,
        PmuServer(port=0, rate=50, profile=STEP) as pmu,
    ):
        yield link, sim, pmu


def _driver(ctl: FieldController) -> ModbusRtuProtocol:
    driver = ctl.comms["bess-1"].protocol("bess-1")
    assert isinstance(driver, ModbusRtuProtocol)
    return driver


def test_setpoints_follow_the_frames_and_the_driver_polls_through_the_loop() -> None:
    async def main() -> None:
        async with (
            _rig(initial_soc_pct=63.0) as (link, sim, pmu),
            FieldController(_field(pmu.port, link.host_end), realtime=True) as ctl,
        ):
            assert ctl.rt is not None and ctl._rt_written == [True]
            unit = ctl.units["bess-1"]
            await wait_until(lambda: abs(sim.model.power_kw - DROOP_KW) < 1, timeout=10)
            # The driver's reads came through the loop: the unit is online with
            # the simulator's figures, and its client is the loop's, not a port.
            assert unit.online is True and unit.status is not None
            assert unit.status["soc"] == pytest.approx(sim.model.soc_pct, abs=0.5)
            await wait_until(
                lambda: (
                    unit.status is not None
                    and abs(float(unit.status["active_power"]) - DROOP_KW) < 1
                ),
                timeout=5,
            )
            driver = _driver(ctl)
            assert driver.through_loop and isinstance(driver._client, LoopClient)
            before = ctl.rt.stats()["units"][0]
            await asyncio.sleep(1.0)
            st = ctl.rt.stats()["units"][0]
            # Polls every 0.1 s, several requests each, beside the watchdog writes.
            assert st["transactions"] - before["transactions"] >= 10, st
            assert st["watchdog_writes"] - before["watchdog_writes"] >= 3, st
            assert st["writes"] >= 1 and st["acks"] > 0, st
            assert st["timeouts"] == st["bad_replies"] == st["io_errors"] == 0, st
            assert st["acked_kw"] == pytest.approx(DROOP_KW, abs=0.1)
            # The frame's setpoint write is the first thing on the line: the time
            # from the frame's arrival to its write leaving is short.
            assert ctl.rt.stats()["max_frame_ms"] < 50, ctl.rt.stats()

    run(main, timeout=40)


def _plant_rtu(conn: Any) -> None:
    """The plant of the hog test with the BESS on a serial line: (PMU port, host end)."""

    async def main() -> None:
        async with pty_link() as link:
            pmu = PmuServer(port=0, rate=50, source=Sawtooth())
            bess = TimedBess(rtu=SerialLine(link.device_end, parity="N"),
                             rated_power_kw=RATED, ramp_kw_s=5000.0)  # fmt: skip
            async with pmu, bess:
                conn.send((pmu.port, link.host_end))
                while not conn.poll():
                    await asyncio.sleep(0.05)
            conn.send(bess.writes)

    asyncio.run(main())


def test_writes_go_on_through_a_gil_hog() -> None:
    writes, start, end = _writes_under(_gil_hog, True, _plant_rtu, _field)
    gap, n = _largest_gap(writes, start, end)
    # 50 frames/s, each a new setpoint: a write every 20 ms, all through the hog.
    assert gap < 0.1, f"the loop's writes stopped for {gap * 1e3:.0f} ms"
    assert n >= 0.6 * 50 * (end - start), (n, end - start)
    # The same hog on the asyncio path (the driver's own serial port): its writes stop.
    writes, start, end = _writes_under(_gil_hog, False, _plant_rtu, _field)
    gap, _ = _largest_gap(writes, start, end)
    # Longer than the loop's bound above (a loaded VM shortens the calibrated hog).
    assert gap > 0.15, f"the hog did not hold the asyncio path up ({gap * 1e3:.0f} ms)"


def test_a_cut_line_lets_the_watchdog_expire_then_the_loop_recovers() -> None:
    async def main() -> None:
        async with (
            _rig() as (link, sim, pmu),
            FieldController(
                _field(pmu.port, link.host_end, watchdog_timeout_s=0.5), realtime=True
            ) as ctl,
        ):
            assert ctl.rt is not None
            unit = ctl.units["bess-1"]
            await wait_until(lambda: abs(sim.model.power_kw - DROOP_KW) < 1, timeout=10)
            assert sim.watchdog_expiries == 0
            link.silent = True
            # Nothing reaches the inverter: its watchdog expires, it ramps to 0;
            # the loop counts the requests unanswered, the driver's polls fail.
            await wait_until(lambda: sim.watchdog_expiries > 0, timeout=3)
            await wait_until(lambda: abs(sim.model.power_kw) < 1, timeout=2)
            await wait_until(lambda: unit.online is False, timeout=3)
            st = ctl.rt.stats()["units"][0]
            assert st["timeouts"] >= 1 and st["connected"], st
            assert ctl.rt.running
            # The line is back: polls bring the unit online, it is enabled again,
            # the watchdog is fed and the setpoint written anew.
            link.silent = False
            await wait_until(lambda: unit.online is True, timeout=5)
            await wait_until(lambda: abs(sim.model.power_kw - DROOP_KW) < 1, timeout=5)
            assert ctl.rt.stats()["units"][0]["connects"] == 1  # never reopened

    run(main, timeout=40)


def test_a_dead_loop_gives_the_port_back_to_the_driver() -> None:
    async def main() -> None:
        async with (
            _rig() as (link, sim, pmu),
            FieldController(_field(pmu.port, link.host_end), realtime=True) as ctl,
        ):
            assert ctl.rt is not None
            await wait_until(lambda: abs(sim.model.power_kw - DROOP_KW) < 1, timeout=10)
            ctl.rt.inject("panic")
            await wait_until(lambda: ctl.rt is None, timeout=2)
            driver = _driver(ctl)
            assert not driver.through_loop
            # A poll in flight as the loop ended failed (the unit may show offline
            # for a poll); the next one opens the driver's own port.
            unit = ctl.units["bess-1"]
            await wait_until(
                lambda: (
                    unit.online is True
                    and driver._client is not None
                    and not isinstance(driver._client, LoopClient)
                ),
                timeout=5,
            )
            await ctl.command("set_base", {"unit": "bess-1", "kw": 100.0})
            # The asyncio path writes through the driver's own serial port.
            await wait_until(lambda: abs(sim.model.power_kw - DROOP_KW - 100) < 1, timeout=5)
            assert ctl.units["bess-1"].online is True

    run(main, timeout=40)


class RtuRecorder:
    """A Modbus RTU device on the far end of a pty (the loop opens the near end): it
    answers every write with its echo and records the setpoint writes, like the TCP
    :class:`~tests.orchestrator.test_realtime_properties.Recorder`."""

    def __init__(self) -> None:
        #: Answer with a broken CRC ("crc") or as another device ("device"); None: right.
        self.fault: str | None = None
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)  # kept open: the master never sees a hang-up
        self.path = os.ttyname(self._slave)
        os.set_blocking(self.master, False)
        self.setpoints: list[float] = []
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def inverter(self) -> DeviceConfig:
        return DeviceConfig(protocol="modbus_rtu", config={"port": self.path, "parity": "N"})

    def _serve(self) -> None:
        buf = b""
        while not self._stop:
            try:
                buf += os.read(self.master, 4096)
            except BlockingIOError:
                time.sleep(0.001)
                continue
            buf = self._answer(buf)

    def _answer(self, buf: bytes) -> bytes:
        while len(buf) >= 8:
            fc = buf[1]
            size = 8 if fc == 6 else 9 + buf[6] if fc == 16 else 0
            if size == 0:
                return b""  # not a write of the loop's: a real device would stay silent
            if len(buf) < size:
                break
            req, buf = buf[:size], buf[size:]
            crc = FramerRTU.compute_CRC(req[:-2]).to_bytes(2, "big")
            assert crc == req[-2:], req.hex()
            addr = struct.unpack(">H", req[2:4])[0]
            if fc == 16 and addr == 0:
                raw = struct.unpack(">i", req[7:11])[0]
                self.setpoints.append(-raw * 0.1)  # bess_default: i32, 0.1 kW, charge +
            echo = bytes([req[0] + (self.fault == "device"), *req[1:6]])
            crc = FramerRTU.compute_CRC(echo) ^ (self.fault == "crc")
            os.write(self.master, echo + crc.to_bytes(2, "big"))
        return buf

    def unplug(self) -> None:
        """The far end goes away, as a USB adapter pulled out: the pty is hung up."""
        self._stop = True
        self._thread.join(2)
        if self.master >= 0:
            os.close(self.master)
            self.master = -1

    def close(self) -> None:
        self.unplug()
        os.close(self._slave)


def test_the_rtu_recorder_sees_what_the_loop_writes() -> None:
    # The recorder can tell: a sequence that moves the setpoint records it on the wire.
    seq = [("frame", 0.02, 49.8)] * 10 + [("base", 50.0, 0.0)] + [("frame", 0.02, 49.8)] * 10
    rec = RtuRecorder()
    records, setpoints, _unwritable, _ramp = run_sequence(seq, rec)
    assert setpoints and any(w for *_rest, w in records)
    assert not math.isclose(setpoints[0], setpoints[-1])


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(actions)
def test_over_a_serial_line_the_loop_writes_only_when_bidden(seq: list[tuple[Any, ...]]) -> None:
    check_sequence(*run_sequence(seq, RtuRecorder()))


def test_bad_replies_are_counted_and_fail_the_request() -> None:
    loop, rec = _silent_loop()
    try:
        write = bytes([6, 0, 12, 0, 7])  # the watchdog register, which the recorder echoes
        assert loop.transact(0, write, 1.0) == write
        u = loop.stats()["units"][0]
        assert u["bad_replies"] == 0 and u["acks"] > 0, u  # the watchdog writes too
        for fault in ("crc", "device"):
            rec.fault = fault
            before = loop.stats()["units"][0]
            t0 = time.monotonic()
            with pytest.raises(TimeoutError):
                loop.transact(0, write, 1.0)
            # Failed when the bad reply came, not at the end of the timeout.
            assert time.monotonic() - t0 < 0.5
            u = loop.stats()["units"][0]
            assert u["bad_replies"] > before["bad_replies"], (fault, u)
            assert u["acks"] == before["acks"], (fault, u)  # nor a watchdog write acked
        rec.fault = None
        assert loop.transact(0, write, 1.0) == write
    finally:
        loop.stop()
        rec.close()


def test_an_unplugged_line_is_closed_and_polls_hear_so() -> None:
    loop, rec = _silent_loop()
    try:
        write = bytes([6, 0, 12, 0, 7])
        assert loop.transact(0, write, 1.0) == write
        assert loop.stats()["units"][0]["connected"]
        rec.unplug()
        # The hang-up closes the tty (reopening it fails: the pty is gone); a poll is
        # told the line is not open rather than left to time out; the loop goes on.
        deadline = time.monotonic() + 3.0
        while loop.stats()["units"][0]["connected"]:
            assert time.monotonic() < deadline, loop.stats()
            time.sleep(0.01)
        t0 = time.monotonic()
        with pytest.raises(ConnectionError):
            loop.transact(0, write, 2.0)
        assert time.monotonic() - t0 < 1.0
        assert loop.running and loop.stats()["units"][0]["connects"] == 1
    finally:
        loop.stop()
        rec.close()


def _silent_loop() -> tuple[Any, RtuRecorder]:
    """A loop writing a serial unit on a pty whose far end never answers a read."""
    rec = RtuRecorder()  # answers writes only: a read of the driver's gets no answer
    cfg = UnitConfig(id="u", rated_power_kw=RATED, capacity_kwh=400, inverter=rec.inverter())
    target = rt_target(cfg, RealtimeConfig())
    assert target is not None and target.serial == (19200, "N", 1, 8)
    loop = RtLoop("127.0.0.1:9", 1, [(FieldUnit(cfg).pipeline, target)], write_timeout_s=2.0)
    return loop, rec


def test_a_transaction_times_out_and_stop_ends_one_waiting() -> None:
    loop, rec = _silent_loop()
    try:
        with pytest.raises(TimeoutError):
            loop.transact(0, bytes([3, 0, 0, 0, 2]), 0.3)
        with pytest.raises(ValueError):
            loop.transact(0, bytes([0x2B, 14, 1, 0]), 0.3)  # a length the loop cannot frame
        # Stopped while a worker thread waits in a transaction: stop() does not fail on
        # the call in progress, and the waiter hears the line is gone at once.
        errors: list[BaseException] = []

        def wait() -> None:
            try:
                loop.transact(0, bytes([3, 0, 0, 0, 2]), 10.0)
            except BaseException as exc:  # what it raised is the check
                errors.append(exc)

        waiter = threading.Thread(target=wait)
        waiter.start()
        time.sleep(0.2)
        t0 = time.monotonic()
        loop.stop()
        waiter.join(2)
        assert not waiter.is_alive() and time.monotonic() - t0 < 1.0
        assert len(errors) == 1 and isinstance(errors[0], ConnectionError), errors
        # The first request was sent and still waits for its answer (2 s): the second
        # waited behind it, never sent, until the loop stopped.
        assert loop.stats()["units"][0]["transactions"] == 1
    finally:
        loop.stop()
        rec.close()
