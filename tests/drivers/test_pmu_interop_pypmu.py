"""Interoperability of the C37.118 transport with pyPMU (PyPI ``synchrophasor``) on loopback.

Both directions, real sockets: our PDC client reads pyPMU's ``Pmu`` server, and pyPMU's
``Pdc`` reads our :class:`~vpp.sim.pmu.PmuServer`.

pyPMU 1.0.0a0 quirks met here and how the tests deal with them:
- ``Pmu.run()`` binds a fixed port and its acceptor thread loops on ``accept()`` for
  ever, with no stop: an exception on close would escape the thread. The tests bind an
  ephemeral port themselves and run ``Pmu.acceptor`` in a thread that ends when the
  listening socket is shut down.
- ``Pmu`` serves each client in a forked ``multiprocessing.Process`` that never ends by
  itself (after the client hangs up it spins on ``recv() == b""``): the tests terminate
  and join those processes.
- ``Pmu.send_data`` fails on integer phasors (it divides the (magnitude, angle) tuple by
  PHUNIT), so frames built by pyPMU's own ``DataFrame`` are queued with ``Pmu.send``
  (raw bytes are sent as they are, keeping their timestamps).
- ``Pdc.get()`` assumes one ``recv`` holds exactly one frame and returns None otherwise
  (the frame is lost); the PMU side here runs at 10 frames/s so frames do not coalesce,
  and None results are skipped.
- pyPMU cannot decode a float FREQ of absolute Hz (it range-checks it as a deviation,
  |FREQ| <= 32.767, and ``get_measurements()`` adds it to FNOM as mHz), so our server is
  run with integer FREQ/DFREQ (FORMAT 0b0111: int16 mHz from nominal) for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import math
import socket
import threading
import time
from typing import Any

import pytest

from tests.support.aio import run, take
from tests.support.pypmu import ConfigFrame2, DataFrame, Stream
from vpp import c37118 as c
from vpp.aio import cancel_and_wait
from vpp.drivers.pmu import PdcClient
from vpp.sim.frequency import FrequencyProfile
from vpp.sim.pmu import V_PHASE, PmuServer

# Imported after tests.support.pypmu, which makes pyPMU importable on Python 3.10+.
Pdc: Any = importlib.import_module("synchrophasor.pdc").Pdc
Pmu: Any = importlib.import_module("synchrophasor.pmu").Pmu


class PypmuServer:
    """pyPMU's ``Pmu`` on an ephemeral port, stoppable (see the module docstring)."""

    def __init__(self, stream: Stream) -> None:
        self.pmu: Any = Pmu(pmu_id=stream.cfg.get_id_code(), data_rate=stream.rate)
        self.pmu.set_configuration(stream.cfg)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(5)
        self.pmu.socket = sock
        self.port: int = sock.getsockname()[1]
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):  # the listening socket was shut down
            self.pmu.acceptor()

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.pmu.socket.shutdown(socket.SHUT_RDWR)
        self.pmu.socket.close()
        self.thread.join(timeout=5)
        for proc in self.pmu.clients:
            proc.terminate()
            proc.join(timeout=5)
            proc.close()
        for q in self.pmu.client_buffers:
            q.close()
            q.join_thread()
        assert not self.thread.is_alive()


def test_our_client_reads_a_pypmu_server() -> None:
    stream = Stream(idcode=7734, rate=50)
    freqs = [49.95 + 0.005 * k for k in range(10)]
    sent = [stream.frame(f) for f in freqs]
    srv = PypmuServer(stream)

    async def main() -> tuple[list[c.ConfigFrame], list[c.DataFrame]]:
        task = asyncio.create_task(take(PdcClient("127.0.0.1", srv.port, idcode=3), len(sent)))
        try:
            # pyPMU queues data only for clients already connected.
            while not srv.pmu.client_buffers:
                await asyncio.sleep(0.02)
            for _t, frame in sent:
                srv.pmu.send(frame)
            return await asyncio.wait_for(task, 10)
        finally:
            await cancel_and_wait([task])

    try:
        cfgs, data = run(main(), timeout=30)
    finally:
        srv.stop()
    assert len(cfgs) == 1
    cfg = cfgs[0]
    assert cfg.kind == "cfg2" and cfg.idcode == 7734 and cfg.data_rate == 50
    assert cfg.pmus[0].station.strip() == "Station A"
    assert cfg.pmus[0].phasor_names == ["VA", "VB", "VC", "I1"]
    assert [f.time for f in data] == [t for t, _ in sent]
    for f, want in zip(data, freqs, strict=True):
        p = f.pmus[0]
        assert abs(p.freq - want) < 1e-9
        assert abs(p.phasors[0][0] - 14635 * 915527e-5) < 1e-6
        assert p.analogs == [100.0, 1000.0, 10000.0]
        assert p.digitals == [0x3C12]


def pypmu_pdc_session(port: int, n: int) -> tuple[Any, list[Any]]:
    """pyPMU's ``Pdc``: connect, get CFG-2, start, read ``n`` data frames, stop."""
    pdc: Any = Pdc(pdc_id=7, pmu_ip="127.0.0.1", pmu_port=port)
    pdc.run()
    assert pdc.pmu_socket is not None
    pdc.pmu_socket.settimeout(5)  # a silent server fails the test instead of hanging it
    try:
        cfg = pdc.get_config("cfg2")
        pdc.start()
        frames: list[Any] = []
        deadline = time.monotonic() + 10
        while len(frames) < n:
            assert time.monotonic() < deadline, f"pyPMU decoded {len(frames)} of {n} frames"
            f = pdc.get()
            if isinstance(f, DataFrame):
                frames.append(f)
        pdc.stop()
        return cfg, frames
    finally:
        pdc.quit()


def test_pypmu_pdc_reads_our_server() -> None:
    ramp = FrequencyProfile("ramp", magnitude=0.2, start=0.0, noise=0.0)

    async def main() -> tuple[Any, list[Any], PmuServer]:
        async with PmuServer(idcode=321, rate=10, profile=ramp, port=0, data_format=0b0111) as srv:
            cfg, frames = await asyncio.to_thread(pypmu_pdc_session, srv.port, 5)
            return cfg, frames, srv

    cfg, frames, srv = run(main(), timeout=30)
    assert isinstance(cfg, ConfigFrame2)
    assert cfg.get_id_code() == 321 and cfg.get_data_rate() == 10
    assert cfg.get_station_name().strip() == "VPP SIM PMU"
    # CHNAM is padded to 16 bytes on the wire; pyPMU keeps the padding.
    assert [n.strip() for n in cfg.get_channel_names()[:3]] == ["VA", "VB", "VC"]
    for f in frames:
        assert f.get_id_code() == 321
        soc, frac = f.get_soc(), f.get_frasec()[0]
        assert frac % 100_000 == 0, "on the 1/10 s grid"
        k = soc * 10 + frac // 100_000 - srv.k0
        # int16 FREQ: mHz deviation from 50 Hz, rounded.
        assert abs(50 + f.get_freq() / 1000 - float(ramp.at(k / 10.0))) <= 0.5e-3 + 1e-9
        assert f.get_measurements()["measurements"][0]["frequency"] == 50 + f.get_freq() / 1000
        assert abs(f.get_phasors()[0][0] - V_PHASE) < 0.01
        assert f.get_stat()[0] == "ok"


def test_pypmu_pdc_reads_every_frame_of_an_under_frequency_stream(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Below nominal the phase turns backwards from the first frame. Before the angles
    # were wrapped to (-pi, pi] they ran in [0, 2 pi + 2 pi / 3) and pyPMU refused every
    # such frame ("Received unknown message"); the 60 s stream at 50 frames/s is in
    # tests/sim/test_pmu_ranges.py, this is the same over a real TCP session.
    under = FrequencyProfile("step", magnitude=-0.3, start=0.0, noise=0.0)

    async def main() -> tuple[list[Any], PmuServer]:
        async with PmuServer(idcode=322, rate=10, profile=under, port=0, data_format=0b0111) as srv:
            _, frames = await asyncio.to_thread(pypmu_pdc_session, srv.port, 25)
            return frames, srv

    with caplog.at_level(logging.WARNING, logger="synchrophasor.pdc"):
        frames, srv = run(main(), timeout=30)
    refused = [r.getMessage() for r in caplog.records if r.name == "synchrophasor.pdc"]
    assert refused == []
    ks = []
    for f in frames:
        soc, frac = f.get_soc(), f.get_frasec()[0]
        ks.append(soc * 10 + frac // 100_000 - srv.k0)
        assert f.get_freq() == -300  # mHz from 50 Hz
        angles = [a for _, a in f.get_phasors()]
        assert all(-math.pi < a <= math.pi for a in angles)
        # VA turns by 2 pi x -0.3 Hz / 10 frames/s per frame.
        turned = math.remainder(-0.06 * math.pi * ks[-1], 2 * math.pi)
        assert angles[0] == pytest.approx(turned, abs=1e-5)
    assert ks == sorted(ks) and len(ks) == 25
