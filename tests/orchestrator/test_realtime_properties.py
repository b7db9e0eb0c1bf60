"""Safety properties of the core's real-time loop, over generated sequences.

A real :class:`~vpp.core.RtLoop` takes C37.118 frames over UDP (sent by this test:
late, duplicate, jumped, implausible), steps a unit's pipeline built as the field
controller builds it, and writes Modbus TCP to a recording server on loopback; between
frames the test changes the telemetry, the base power and whether the unit may be
written. Whatever the sequence:

- every decision keeps the safety promise (tests/support/ramp.py: inside the envelope,
  0 when stopped, never faster than the ramp) over the loop's own clock;
- what reaches the device is the decisions the loop marked written, in order (newer ones
  may replace one still waiting for its answer), the last one included;
- nothing is marked written once the unit was made not writable.

:func:`run_sequence` takes the device (a :class:`Device`): tests/orchestrator/
test_realtime_rtu.py plays the same sequences to a Modbus RTU recorder on a pty.
"""

from __future__ import annotations

import math
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.net import free_udp_port
from tests.support.ramp import InForce, check_step
from vpp import c37118 as c
from vpp.config.models import DeviceConfig, RealtimeConfig, UnitConfig
from vpp.core import RtLoop, RtTarget
from vpp.orchestrator.field.realtime import rt_target
from vpp.orchestrator.field.unit import FieldUnit, map_telemetry
from vpp.sim.pmu import TIME_BASE, V_PHASE, PmuServer

IDCODE, RATED = 7734, 200.0


class Device(Protocol):
    """A device that answers the loop's writes and records the setpoints written."""

    setpoints: list[float]

    def inverter(self) -> DeviceConfig:
        """The unit's inverter configuration that reaches this device."""
        ...

    def close(self) -> None:
        """Stop serving."""
        ...


class Recorder:
    """A Modbus TCP server that answers every write and records the setpoint writes."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.setpoints: list[float] = []
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self.sock, selectors.EVENT_READ)
        bufs: dict[socket.socket, bytes] = {}
        while not self._stop:
            for key, _ in sel.select(0.01):
                sock: socket.socket = key.fileobj  # type: ignore[assignment]
                if sock is self.sock:
                    conn, _ = sock.accept()
                    sel.register(conn, selectors.EVENT_READ)
                    bufs[conn] = b""
                    continue
                try:
                    data = sock.recv(4096)
                except OSError:  # reset by the loop as it stops
                    data = b""
                if not data:
                    sel.unregister(sock)
                    sock.close()
                    del bufs[sock]
                    continue
                try:
                    bufs[sock] = self._answer(sock, bufs[sock] + data)
                except OSError:
                    bufs[sock] = b""
        for conn in bufs:
            conn.close()
        sel.close()
        self.sock.close()

    def _answer(self, conn: socket.socket, buf: bytes) -> bytes:
        while len(buf) >= 7:
            size = 6 + struct.unpack(">H", buf[4:6])[0]
            if len(buf) < size:
                break
            req, buf = buf[:size], buf[size:]
            tid, _, _, uid = struct.unpack(">HHHB", req[:7])
            pdu = self._reply(req)
            conn.sendall(struct.pack(">HHHB", tid, 0, len(pdu) + 1, uid) + pdu)
        return buf

    def _reply(self, req: bytes) -> bytes:
        """The answer's PDU to request ``req`` (MBAP included): every write done."""
        fc, addr = req[7], struct.unpack(">H", req[8:10])[0]
        if fc == 16 and addr == 0:
            raw = struct.unpack(">i", req[13:17])[0]
            self.setpoints.append(-raw * 0.1)  # bess_default: i32, 0.1 kW, charge +
        return req[7:12]

    def inverter(self) -> DeviceConfig:
        return DeviceConfig(protocol="modbus_tcp", config={"host": "127.0.0.1", "port": self.port})

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)


def _frame(cfg: Any, t: float, freq: float) -> bytes:
    soc = int(t)
    frac = min(TIME_BASE - 1, round((t - soc) * TIME_BASE))
    phasors = [(V_PHASE, s * 2 * math.pi / 3) for s in (0, -1, 1)]
    return c.encode(c.DataFrame(cfg, [c.PmuData(phasors, freq, 0.0)], soc=soc, fracsec=frac))


def _status(soc: float, temp: float) -> dict[str, float]:
    return {"dc_voltage": 768.0, "dc_current": 0.0, "temperature_max": temp, "soc": soc,
            "active_power": 0.0}  # fmt: skip


frame_step = st.tuples(
    st.just("frame"),
    st.sampled_from([0.0, -0.02, 0.01, 0.01, 0.01, 0.02, 0.7]),
    st.one_of(st.floats(49.0, 51.0), st.sampled_from([math.nan, 0.0, 60.0, 49.5])),
)
action = st.one_of(
    frame_step,
    frame_step,
    frame_step,
    st.tuples(st.just("telemetry"), st.floats(0.0, 100.0), st.floats(-10.0, 80.0)),
    st.tuples(st.just("base"), st.floats(-2 * RATED, 2 * RATED), st.just(0.0)),
    st.tuples(st.just("writable"), st.booleans(), st.just(0.0)),
)
actions = st.lists(action, min_size=5, max_size=40)


def run_sequence(
    seq: list[tuple[Any, ...]],
    device: Device | None = None,
    make_target: Callable[[UnitConfig], RtTarget | None] | None = None,
) -> tuple[list[Any], list[float], list[Any], float]:
    """Play ``seq`` through a loop writing ``device`` (a Modbus TCP :class:`Recorder` by
    default, closed here) with the target ``make_target`` makes of the unit (the
    register map's, :func:`rt_target`, by default); (records, setpoints on the wire,
    unwritable spans, ramp)."""
    rec = device or Recorder()
    cfg_unit = UnitConfig(id="u", rated_power_kw=RATED, capacity_kwh=400,
                          inverter=rec.inverter())  # fmt: skip
    unit = FieldUnit(cfg_unit)
    make = make_target or (lambda cfg: rt_target(cfg, RealtimeConfig()))
    target = make(cfg_unit)
    assert target is not None
    pipe = unit.pipeline
    pipe.set_telemetry(map_telemetry(cfg_unit, _status(50.0, 25.0), None, time.time()))
    pipe.anchor(0.0)
    udp = free_udp_port()
    loop = RtLoop("127.0.0.1:9", IDCODE, [(pipe, target)], udp_bind=f"127.0.0.1:{udp}",
                  stale_s=0.3, idle_period_s=0.05, backoff_max_s=5.0)  # fmt: skip
    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    config = PmuServer(port=0, idcode=IDCODE).config
    records: list[tuple[int, bool, Any, float, bool]] = []
    has_target = True
    unwritable_since: list[tuple[float, float]] = []  # (made not writable, made writable again)
    try:
        out.sendto(c.encode(config), ("127.0.0.1", udp))
        loop.set_writable(0, True)
        t = time.time()
        for kind, a, b in seq:
            if kind == "frame":
                t += a
                out.sendto(_frame(config, t, b), ("127.0.0.1", udp))
                time.sleep(0.01)
            elif kind == "telemetry":
                tm = map_telemetry(cfg_unit, _status(a, b), None, time.time())
                pipe.set_telemetry(tm)
            elif kind == "base":
                pipe.base_kw = a
            elif kind == "target":  # given again or taken away (a rediscovery)
                loop.set_target(0, target if a else None)
                has_target = bool(a)
            elif a:
                # Stamped before: a frame read after it may already be written.
                back = time.monotonic()
                loop.set_writable(0, True)
                if unwritable_since and math.isinf(unwritable_since[-1][1]):
                    unwritable_since[-1] = (unwritable_since[-1][0], back)
            else:
                loop.set_writable(0, False)
                if not unwritable_since or not math.isinf(unwritable_since[-1][1]):
                    unwritable_since.append((time.monotonic(), math.inf))
            records += loop.drain()
        # The newest setpoint marked written reaches the device (the ramp may still be
        # moving it: each new one goes once the one before is answered).
        deadline = time.monotonic() + 3.0
        while True:
            time.sleep(0.02)
            records += loop.drain()
            last = [d.setpoint_kw for _i, _idle, d, _r, w in records if w]
            done = not last or (rec.setpoints and abs(rec.setpoints[-1] - last[-1]) < 0.051)
            # Made not writable: a setpoint still waiting is dropped, as a disable must;
            # the target taken away: its connection with it.
            stopped = unwritable_since and math.isinf(unwritable_since[-1][1])
            if done or stopped or not has_target:
                break
            assert time.monotonic() < deadline, (rec.setpoints[-3:], last[-3:], loop.stats())
        loop.stop()
        records += loop.drain()  # what it decided (and sent) since the last drain
    finally:
        loop.stop()
        out.close()
        rec.close()
    return records, rec.setpoints, unwritable_since, unit.limits["ramp_kw_per_s"]


def check_sequence(
    records: list[Any], setpoints: list[float], unwritable_since: list[Any], ramp: float
) -> None:
    """The properties of the module docstring, over what :func:`run_sequence` returns."""
    prev = InForce(0.0, -math.inf)  # anchored at 0 before the first frame
    marked = []
    for _i, _idle, d, received, written in records:
        # The envelope's clock is read just after the frame: 1 ms of slack on the ramp.
        check_step(prev, d, received + 0.001, ramp, "real-time loop")
        prev = InForce(d.setpoint_kw, received)
        if written:
            marked.append(round(d.setpoint_kw, 1))
            assert not any(a < received < b for a, b in unwritable_since), (received, d)
    wire = [round(v, 1) for v in setpoints]
    it = iter(marked)
    assert all(any(abs(w - m) < 0.051 for m in it) for w in wire), (wire, marked)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(actions)
def test_the_loop_keeps_the_safety_promise_and_writes_only_when_bidden(
    seq: list[tuple[Any, ...]],
) -> None:
    check_sequence(*run_sequence(seq))
