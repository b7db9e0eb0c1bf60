"""Frame-to-setpoint through the real drivers: a PMU frame sent -> each unit's setpoint
written at its Modbus server (shared by ``vpp bench --commission`` and the development
benchmarks ``bench_rtloop`` and ``bench_e2e``).

Three processes, as on a site: the caller's runs the PMU (:class:`TimedPmu`, 50
frames/s, a sawtooth between 49.60 and 49.85 Hz, so every frame moves every unit's droop
setpoint by about 0.4 kW); a Modbus server process serves the units (one port each, the
simulated BESS's register image for the controller's polls) and stamps each setpoint
write with the kernel's receive time of its bytes (SO_TIMESTAMPNS), so the server's own
scheduling and Python work add nothing to the figure; the field controller runs in a
process of its own (``python -m vpp.commission.e2e --controller ...``), with the
real-time loop or the asyncio path. Times are CLOCK_MONOTONIC, system wide. A setpoint
value (0.1 kW steps) recurs only 10 s later: a write is matched to the latest frame
within the last second whose droop setpoint it carries.

Cases: ``quiet``; ``cpu hog`` (a busy process per core at normal priority; the PMU and
the server stand for devices with CPUs of their own and run under SCHED_FIFO where
allowed); ``gil hog`` (a thread of the controller's process holding the GIL for ~500 ms
at a time).

``protocol`` ``sunspec``: the units are SunSpec devices (the SunSpec BESS simulator's
register image at 40000; a setpoint is a write of 704 ``WSetEna``, ``WSetMod`` and
``WSet`` in one request, from the loop or from the driver's ``set_power``).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import selectors
import socket
import struct
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from vpp.bench import child_output, percentile
from vpp.sim.pmu import PmuServer

__all__ = ["CASES", "RATE", "RATED", "UNITS", "Sawtooth", "TimedPmu", "fifo", "match",
           "measure"]  # fmt: skip

RATE, RATED, UNITS = 50, 500.0, 10
LOW, HIGH, PERIOD = 49.60, 49.85, 10.0  # Hz, Hz, s
KW_PER_HZ = RATED / (0.05 * 50.0)  # 5 % droop, deadband edge 49.90 Hz
CASES = ("quiet", "cpu hog", "gil hog")
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux


class TimedPmu(PmuServer):
    """Records (send time, expected setpoint) of every frame."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.sent: deque[tuple[float, float]] = deque(maxlen=100_000)
        self._expected = 0.0

    def data_frame(self, k: int) -> bytes:
        f, _, _ = self._signal.at(k)
        # The wire carries float32: the controller computes from the rounded value.
        self._expected = KW_PER_HZ * (49.90 - float(np.float32(f)))
        # The base class asks the signal again: frame k is a pure function of k.
        return super().data_frame(k)

    def _broadcast(self, data: bytes) -> None:
        super()._broadcast(data)
        self.sent.append((time.monotonic(), self._expected))


def match(sent: list[tuple[float, float]], writes: list[tuple[float, float]]) -> list[float]:
    """Latency (ms) of each write: arrival minus the send of the latest frame carrying it."""
    lat = []
    i = 0
    for t_w, kw in writes:
        while i < len(sent) and sent[i][0] <= t_w:
            i += 1
        for j in range(i - 1, max(-1, i - 50), -1):
            if abs(sent[j][1] - kw) < 0.051:
                lat.append((t_w - sent[j][0]) * 1e3)
                break
    return lat


class Sawtooth:
    """A frequency source: from HIGH down to LOW in PERIOD seconds, again and again."""

    nominal = 50.0

    def sample(self, t: float) -> tuple[float, float]:
        slope = (HIGH - LOW) / PERIOD
        return HIGH - (t % PERIOD) * slope, -slope


def fifo(priority: int) -> bool:
    """Run this process under SCHED_FIFO (the simulated devices); False if refused."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except (OSError, AttributeError):
        return False
    return True


def _normal() -> None:
    """In a child: back to the normal policy (the controller and the hogs)."""
    os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))


# --- the Modbus server process -------------------------------------------------------


def _i32(hi: int, lo: int) -> int:
    return int(struct.unpack(">i", struct.pack(">HH", hi, lo))[0])


@dataclass(frozen=True)
class Setpoint:
    """Where a unit's setpoint write lands: a function 16 request at ``address`` of at
    least ``words`` registers, and its value in kW (``kw``)."""

    address: int = 0
    words: int = 2
    #: SunSpec: WSetEna, WSetMod, WSet (i32 W at 10^sf, + = discharge); else the
    #: register map's active_power_setpoint (i32, 0.1 kW, charge positive).
    sunspec_sf: int | None = None

    def kw(self, words: tuple[int, ...]) -> float:
        if self.sunspec_sf is not None:
            return _i32(words[2], words[3]) * 10.0**self.sunspec_sf / 1000.0
        return -_i32(words[0], words[1]) * 0.1


Image = dict[int, dict[int, int]]


def _image(protocol: str) -> tuple[Image, Setpoint]:
    """The simulated BESS's register image by function code table (1-4), and where its
    setpoint is written."""
    if protocol == "sunspec":
        from vpp.sim.sunspec import SunSpecBessSimulator

        ss = SunSpecBessSimulator(port=0, rated_power_kw=RATED, capacity_kwh=1000.0)
        m704 = ss.blocks[704]
        sp = Setpoint(ss.address_of(704) + int(m704.points["WSetEna"].offset), 4,
                      int(m704.points["WSet_SF"].value))  # fmt: skip
        holding = {ss.base_address + k: w for k, w in enumerate(ss._words)}
        return {1: {}, 2: {}, 3: holding, 4: {}}, sp
    from vpp.drivers.register_map import Table
    from vpp.sim.bess import BessSimulator

    sim = BessSimulator(port=0, rated_power_kw=RATED, capacity_kwh=1000.0)
    sim._init_image()
    t = sim.image.tables
    return {1: dict(t[Table.COIL]), 2: dict(t[Table.DISCRETE]),
            3: dict(t[Table.HOLDING]), 4: dict(t[Table.INPUT])}, Setpoint()  # fmt: skip


def _answer(req: bytes, image: Image, log: list[tuple[float, float]], t: float,
            sp: Setpoint) -> bytes:  # fmt: skip
    tid, _, _, uid, fc = struct.unpack(">HHHBB", req[:8])
    body = req[8:]
    if fc in (1, 2, 3, 4):
        addr, n = struct.unpack(">HH", body[:4])
        table = image[fc]
        if fc in (3, 4):
            data = b"".join(struct.pack(">H", int(table.get(a, 0)) & 0xFFFF)
                            for a in range(addr, addr + n))  # fmt: skip
        else:
            bits = [bool(table.get(a, 0)) for a in range(addr, addr + n)]
            data = bytes(sum(1 << i for i, b in enumerate(bits[k : k + 8]) if b)
                         for k in range(0, n, 8))  # fmt: skip
        pdu = bytes([fc, len(data)]) + data
    elif fc in (5, 6):
        addr, v = struct.unpack(">HH", body[:4])
        if fc == 6:
            image[3][addr] = v
        pdu = bytes([fc]) + body[:4]
    elif fc in (15, 16):
        addr, n = struct.unpack(">HH", body[:4])
        if fc == 16:
            words = struct.unpack(f">{n}H", body[5 : 5 + 2 * n])
            for i, w in enumerate(words):
                image[3][addr + i] = w
            if addr == sp.address and n >= sp.words:
                log.append((t, sp.kw(words)))
        pdu = bytes([fc]) + body[:4]
    else:
        pdu = bytes([fc | 0x80, 1])
    return struct.pack(">HHHB", tid, 0, len(pdu) + 1, uid) + pdu


def _server(conn: Any, n: int, protocol: str) -> None:
    """Serve ``n`` units until told to stop; send back every setpoint write's arrival."""
    sel = selectors.DefaultSelector()
    listeners = []
    for i in range(n):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        s.listen()
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, ("listen", i))
        listeners.append(s)
    # Below the loop's priority (50): the server's stamps are the kernel's, so its own
    # scheduling does not matter, and at 60 it took the CPU from the loop mid-frame.
    fifo(40)
    offset = time.time() - time.monotonic()  # realtime - monotonic, for the stamps
    conn.send([s.getsockname()[1] for s in listeners])
    image, sp = _image(protocol)
    # One image per unit: each takes its own writes.
    images = [{fc: dict(table) for fc, table in image.items()} for _ in range(n)]
    logs: list[list[tuple[float, float]]] = [[] for _ in range(n)]
    bufs: dict[socket.socket, bytearray] = {}
    while not conn.poll():
        ready = []
        # Every ready socket is read and stamped first, then answered: the stamps are
        # the arrivals, not the arrivals plus the answers to the sockets before.
        for key, _ in sel.select(0.05):
            kind, i = key.data
            sock: socket.socket = key.fileobj  # type: ignore[assignment]
            if kind == "listen":
                c, _ = sock.accept()
                c.setblocking(False)
                c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                c.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                sel.register(c, selectors.EVENT_READ, ("conn", i))
                bufs[c] = bytearray()
                continue
            t = time.monotonic()
            try:
                data, anc, _, _ = sock.recvmsg(65536, 64)
            except OSError:
                data, anc = b"", []
            for level, kind, raw in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(raw) >= 16:
                    sec, nsec = struct.unpack("qq", raw[:16])
                    t = sec + nsec * 1e-9 - offset  # the kernel's arrival, as monotonic
            ready.append((sock, i, data, t))
        for sock, i, data, t in ready:
            if not data:
                sel.unregister(sock)
                sock.close()
                continue
            buf = bufs[sock]
            buf += data
            out = bytearray()
            while len(buf) >= 7:
                size = 6 + struct.unpack(">H", buf[4:6])[0]
                if len(buf) < size:
                    break
                out += _answer(bytes(buf[:size]), images[i], logs[i], t, sp)
                del buf[:size]
            if out:
                sock.sendall(out)
    conn.send(logs)


# --- the controller process ------------------------------------------------------------


def _gil_hog(stop: threading.Event) -> None:
    n = 1_000_000
    t0 = time.perf_counter()
    sum(range(n))
    per = (time.perf_counter() - t0) / n
    n = int(0.5 / per)
    while not stop.is_set():
        sum(range(n))  # one C call: the GIL is held throughout
        time.sleep(0.1)


def _controller(pmu_port: int, ports: list[int], realtime: bool, seconds: float,
                gil: bool, protocol: str) -> None:  # fmt: skip
    from vpp.config.models import (
        DeviceConfig,
        FieldConfig,
        PmuSource,
        RealtimeConfig,
        UnitConfig,
    )
    from vpp.orchestrator.field.controller import FieldController

    units = []
    for i, port in enumerate(ports):
        where = {"host": "127.0.0.1", "port": port, "timeout": 1.0}
        inv = DeviceConfig(protocol=protocol, config=where)
        units.append(UnitConfig(id=f"bess-{i + 1}", rated_power_kw=RATED, capacity_kwh=1000,
                                inverter=inv))  # fmt: skip
    rt = RealtimeConfig()
    if "BENCH_RTLOOP_SPIN_US" in os.environ:  # the spin's effect, by hand
        rt = RealtimeConfig(spin_us=float(os.environ["BENCH_RTLOOP_SPIN_US"]))
    cfg = FieldConfig(id="field-a", pmu=PmuSource(port=pmu_port), units=units, realtime=rt)

    async def main() -> None:
        stop = threading.Event()
        async with FieldController(cfg, realtime=realtime, realtime_settings=True) as ctl:
            hog = threading.Thread(target=_gil_hog, args=(stop,), daemon=True)
            if gil:
                await asyncio.sleep(2.0)
                hog.start()
            await asyncio.sleep(seconds)
            stop.set()
            st = ctl.realtime_status() or {}
        loop_units = sum(bool(u.get("loop_writes")) for u in st.get("units", []))
        print(json.dumps({"frames": ctl.frames, "realtime": st.get("realtime"),
                          "loop_units": loop_units,
                          "memory_locked": st.get("memory_locked"),
                          "max_frame_ms": st.get("max_frame_ms")}))  # fmt: skip

    asyncio.run(main())


async def measure(
    realtime: bool, case: str, seconds: float, units: int = UNITS, protocol: str = "modbus_tcp"
) -> tuple[list[float], dict[str, Any]]:
    """One case (one of :data:`CASES`) for ``seconds`` with ``units`` units of
    ``protocol`` (``modbus_tcp`` or ``sunspec``): the latencies (ms) of the writes
    matched to frames after the first 3 s, and the controller's figures (``frames``,
    ``realtime``, ``memory_locked``, ``max_frame_ms``, ``unit_p50``, ``sent``,
    ``matched``, ``writes``, ``devices_fifo``).

    The PMU (this process) runs under SCHED_FIFO 60 for the case where allowed, as a
    device with a CPU of its own would: it takes each frame's send time after its write,
    and a loop above it in priority would otherwise answer (at 50) before that stamp is
    taken, so that its writes could not be matched to their frames."""
    policy, param = os.sched_getscheduler(0), os.sched_getparam(0)
    devices_fifo = fifo(60)
    try:
        lat, stats = await _measure(realtime, case, seconds, units, protocol)
    finally:
        if devices_fifo:
            os.sched_setscheduler(0, policy, param)  # the caller's own policy again
    stats["devices_fifo"] = devices_fifo
    return lat, stats


async def _measure(
    realtime: bool, case: str, seconds: float, units: int, protocol: str
) -> tuple[list[float], dict[str, Any]]:
    ctx = multiprocessing.get_context("fork")
    here, there = ctx.Pipe()
    server = ctx.Process(target=_server, args=(there, units, protocol), daemon=True)
    server.start()
    ports: list[int] = here.recv()
    hogs = []
    if case == "cpu hog":
        for _ in range(os.cpu_count() or 2):
            hogs.append(await asyncio.create_subprocess_exec(
                sys.executable, "-c", "while True: pass", preexec_fn=_normal))  # fmt: skip
    pmu = TimedPmu(port=0, rate=RATE, source=Sawtooth())
    try:
        async with pmu:
            out = await child_output(
                sys.executable, "-m", "vpp.commission.e2e", "--controller", str(pmu.port),
                json.dumps(ports),
                "1" if realtime else "0", str(seconds), "1" if case == "gil hog" else "0",
                protocol,
                timeout=seconds + 60, preexec_fn=_normal,
            )  # fmt: skip
    finally:
        for h in hogs:
            h.kill()
            await h.wait()
        here.send("stop")
        logs: list[list[tuple[float, float]]] = here.recv()
        server.join(5)
    stats: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    # Leave the first 3 s out: connection set-up, the first telemetry, the hog's start.
    start = pmu.sent[0][0] + 3.0 if pmu.sent else 0.0
    sent = [s for s in pmu.sent if s[0] >= start - 1.0]
    lat: list[float] = []
    firsts: list[float] = []
    for writes in logs:
        one = match(sent, [w for w in writes if w[0] >= start])
        lat += one
        firsts.append(percentile(one, 0.5) if one else float("nan"))
    stats["unit_p50"] = firsts
    stats.update(sent=len([s for s in sent if s[0] >= start]), matched=len(lat),
                 writes=sum(len(w) for w in logs))  # fmt: skip
    return lat, stats


if __name__ == "__main__" and sys.argv[1:2] == ["--controller"]:
    _controller(int(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4] == "1",
                float(sys.argv[5]), sys.argv[6] == "1", sys.argv[7])  # fmt: skip
