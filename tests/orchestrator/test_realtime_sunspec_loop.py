"""SunSpec targets of the core's real-time loop (docs/realtime-loop.md), at the loop.

A real :class:`~vpp.core.RtLoop` writes a Modbus TCP server on loopback that answers
reads from a register image (so the loop's layout check on connect reads real answers)
and records every write request whole. The target is the one the field controller makes
from a SunSpec driver's discovered layout (:func:`~vpp.orchestrator.field.realtime.
sunspec_target`): 704 ``WSetEna``/``WSetMod`` written with ``WSet`` in one request,
the ``SunS`` marker, 704's header and ``WSet_SF`` checked on each connect.

- A device whose registers are not the layout's (another scale factor, another model
  chain, an exception) is never written, however many frames come; it is counted and
  written once it answers as the layout says.
- A target given after start (``set_target``) is taken within an iteration; taken
  away, the writes stop.
- Hypothesis: the generated sequences of tests/orchestrator/test_realtime_properties.py,
  with the target given again and taken away between frames, through a SunSpec target:
  the safety promise on every decision, the wire a subsequence of the decisions marked
  written, each write one request with its prefix.
"""

from __future__ import annotations

import socket
import struct
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.orchestrator.test_realtime_properties import (
    IDCODE,
    Recorder,
    _frame,
    action,
    check_sequence,
    run_sequence,
)
from tests.support.net import free_udp_port
from vpp import c37118 as c
from vpp.config.models import DeviceConfig, RealtimeConfig, UnitConfig
from vpp.core import Pipeline, RtLoop, RtTarget
from vpp.drivers.sunspec import SunSpecSetpoint
from vpp.orchestrator.field.realtime import sunspec_target
from vpp.orchestrator.field.unit import FieldUnit, map_telemetry
from vpp.sim.pmu import PmuServer

BASE, M704, L704 = 40000, 40100, 57
#: The layout as the driver would have found it: WSetEna, WSetMod, WSet (i32), WSet_SF.
WSETENA, WSET, WSET_SF, SF = 40110, 40112, 40150, 0
LAYOUT = SunSpecSetpoint(
    address=WSET,
    type="i32",
    sf=SF,
    prefix=(1, 1),
    verify=((BASE, (0x5375, 0x6E53)), (M704, (704, L704)), (WSET_SF, (SF & 0xFFFF,))),
)


class SunSpecRecorder(Recorder):
    """A Modbus TCP server with a register image for reads; it records every write
    request (address, words) and, for those that start at ``WSetEna``, the setpoint in
    kW (``setpoints``). ``refuse_reads``: every read gets exception 2."""

    def __init__(self, image: dict[int, int] | None = None) -> None:
        self.image = dict(image if image is not None else layout_image(SF))
        self.writes: list[tuple[int, list[int]]] = []
        self.refuse_reads = False
        super().__init__()

    def _reply(self, req: bytes) -> bytes:
        fc = req[7]
        addr, count = struct.unpack(">HH", req[8:12])
        if fc == 3 and self.refuse_reads:
            return bytes([0x83, 2])
        if fc == 3:
            words = [self.image.get(addr + k, 0xFFFF) for k in range(count)]
            return bytes([3, 2 * count]) + struct.pack(f">{count}H", *words)
        written = list(struct.unpack(f">{count}H", req[13 : 13 + 2 * count]))
        self.writes.append((addr, written))
        if addr == WSETENA and count == 4:
            raw = struct.unpack(">i", struct.pack(">HH", *written[2:4]))[0]
            self.setpoints.append(raw * 10.0**SF / 1000.0)
        return req[7:12]

    def inverter(self) -> DeviceConfig:
        return DeviceConfig(protocol="sunspec", config={"host": "127.0.0.1", "port": self.port})


def layout_image(sf: int) -> dict[int, int]:
    """The registers the layout's check reads, as a device with ``sf`` holds them."""
    return {BASE: 0x5375, BASE + 1: 0x6E53, M704: 704, M704 + 1: L704, WSET_SF: sf & 0xFFFF}


def _loop(rec: SunSpecRecorder, with_target: bool = True) -> tuple[RtLoop, Any, int, Any]:
    cfg = UnitConfig(id="u", rated_power_kw=200.0, capacity_kwh=400, inverter=rec.inverter())
    unit = FieldUnit(cfg)
    pipe: Pipeline = unit.pipeline
    status = {"dc_voltage": 768.0, "dc_current": 0.0, "temperature_max": 25.0, "soc": 50.0,
              "active_power": 0.0}  # fmt: skip
    pipe.set_telemetry(map_telemetry(cfg, status, None, time.time()))
    pipe.anchor(0.0)
    pipe.base_kw = 40.0  # ramps up at the unit's ramp: a new setpoint every frame
    udp = free_udp_port()
    target = sunspec_target(cfg, LAYOUT, RealtimeConfig()) if with_target else None
    loop = RtLoop("127.0.0.1:9", IDCODE, [(pipe, target)], udp_bind=f"127.0.0.1:{udp}",
                  backoff_max_s=0.2)  # fmt: skip
    loop.set_writable(0, True)
    return loop, cfg, udp, PmuServer(port=0, idcode=IDCODE).config


def _frames(loop: RtLoop, udp: int, config: Any, seconds: float) -> None:
    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        out.sendto(c.encode(config), ("127.0.0.1", udp))
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            out.sendto(_frame(config, time.time(), 49.9), ("127.0.0.1", udp))
            time.sleep(0.02)
            loop.drain()
    finally:
        out.close()


def test_the_sunspec_target_writes_the_enables_with_each_setpoint() -> None:
    rec = SunSpecRecorder()
    loop, _cfg, udp, config = _loop(rec)
    try:
        _frames(loop, udp, config, 1.0)
        st = loop.stats()["units"][0]
    finally:
        loop.stop()
        rec.close()
    assert st["verified"] and st["layout_mismatches"] == 0, st
    assert len(rec.setpoints) >= 10, (st, rec.writes[:5])
    # One request each: WSetEna = ENABLED, WSetMod = WATTS, WSet (W at 10^0, i32).
    assert {(a, tuple(w[:2])) for a, w in rec.writes} == {(WSETENA, (1, 1))}, rec.writes[:5]
    assert rec.setpoints == sorted(rec.setpoints)  # the base power ramping up
    assert 0.0 < rec.setpoints[-1] <= 40.0


@pytest.mark.parametrize(
    "what",
    ["another scale factor", "another model chain", "no SunS marker", "an exception"],
)
def test_a_device_with_another_layout_is_never_written(what: str) -> None:
    image = layout_image(SF)
    if what == "another scale factor":
        image = layout_image(-1)  # a 10x smaller step: every write would be 10x off
    elif what == "another model chain":
        image[M704] = 713
    elif what == "no SunS marker":
        image[BASE] = 0
    rec = SunSpecRecorder(image)
    rec.refuse_reads = what == "an exception"
    loop, _cfg, udp, config = _loop(rec)
    try:
        _frames(loop, udp, config, 1.0)
        st = loop.stats()
        assert rec.writes == [], rec.writes[:3]
        u = st["units"][0]
        assert u["layout_mismatches"] >= 2 and not u["verified"], u  # tried again, refused
        assert u["writes"] == 0, u
        assert "layout check" in st["last_error"], st["last_error"]
        # The device answers as the layout says again: written from the next connect on.
        rec.image, rec.refuse_reads = layout_image(SF), False
        _frames(loop, udp, config, 1.0)
        assert loop.stats()["units"][0]["verified"]
    finally:
        loop.stop()
        rec.close()
    assert rec.setpoints, rec.writes[:3]
    assert all(a == WSETENA for a, _w in rec.writes)


def test_a_target_given_after_start_is_taken_and_can_be_taken_away() -> None:
    rec = SunSpecRecorder()
    loop, cfg, udp, config = _loop(rec, with_target=False)
    try:
        _frames(loop, udp, config, 0.3)
        assert rec.writes == [] and not loop.stats()["units"][0]["has_target"]
        # Only a Modbus TCP target can come after start.
        serial = RtTarget("/dev/null", 1, (0, "i32", 0.1, False, False),
                          serial=(19200, "E", 1, 8))  # fmt: skip
        with pytest.raises(ValueError, match="Modbus TCP"):
            loop.set_target(0, serial)
        loop.set_target(0, sunspec_target(cfg, LAYOUT, RealtimeConfig()))
        _frames(loop, udp, config, 0.6)
        st = loop.stats()["units"][0]
        assert st["has_target"] and st["verified"] and rec.setpoints, st
        loop.set_target(0, None)
        deadline = time.monotonic() + 1.0
        while loop.stats()["units"][0]["has_target"]:
            assert time.monotonic() < deadline, "the target was not taken away"
            time.sleep(0.01)
        n = len(rec.writes)
        _frames(loop, udp, config, 0.5)
        assert len(rec.writes) == n, rec.writes[n:]
    finally:
        loop.stop()
        rec.close()


def test_a_bad_target_is_refused_in_one_line() -> None:
    point = (WSET, "i32", 1.0, False, False)
    with pytest.raises(ValueError, match="prefix"):
        RtTarget("127.0.0.1:502", 1, point, prefix=[1] * 7)
    with pytest.raises(ValueError, match="prefix"):
        RtTarget("127.0.0.1:502", 1, (1, "i32", 1.0, False, False), prefix=[1, 1])
    with pytest.raises(ValueError, match="verify"):
        RtTarget("127.0.0.1:502", 1, point, verify=[(65535, [1, 2])])
    with pytest.raises(ValueError, match="verify"):
        RtTarget("127.0.0.1:502", 1, point, verify=[(0, [])])
    with pytest.raises(ValueError, match="Modbus TCP"):
        RtTarget("/dev/ttyS0", 1, point, serial=(19200, "E", 1, 8), prefix=[1])


#: The sequences of test_realtime_properties, with the target given again or taken away
#: (as the controller does after a rediscovery) between frames.
with_targets = st.lists(
    st.one_of(action, st.tuples(st.just("target"), st.booleans(), st.just(0.0))),
    min_size=5,
    max_size=40,
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(with_targets)
def test_a_sunspec_target_keeps_the_safety_promise_and_writes_only_when_bidden(
    seq: list[tuple[Any, ...]],
) -> None:
    rec = SunSpecRecorder()
    records, setpoints, unwritable, ramp = run_sequence(
        seq, rec, make_target=lambda cfg: sunspec_target(cfg, LAYOUT, RealtimeConfig())
    )
    check_sequence(records, setpoints, unwritable, ramp)
    # Every write is one request of the enables and the setpoint.
    assert all(a == WSETENA and w[:2] == [1, 1] and len(w) == 4 for a, w in rec.writes)
