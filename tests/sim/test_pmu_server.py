"""The simulated PMU server (vpp.sim.pmu) on loopback, read by our client and raw sockets."""

from __future__ import annotations

import asyncio
import socket

import numpy as np
import pytest

from tests.support.aio import close_writer, command, drain_quiet, read_frames, run, take
from vpp import c37118 as c
from vpp.drivers.pmu import PdcClient
from vpp.sim.frequency import FrequencyProfile
from vpp.sim.pmu import PmuServer


def grid_index(f: c.DataFrame, rate: int) -> int:
    """The frame's index on the k / rate grid; fails unless FRACSEC is exactly on it."""
    step = f.time_base // rate
    assert f.fracsec % step == 0, f"FRACSEC {f.fracsec} is off the 1/{rate} s grid"
    return f.soc * rate + f.fracsec // step


@pytest.mark.parametrize("rate", [10, 25, 50])
def test_cfg2_then_data_frames_on_the_exact_time_grid(rate: int) -> None:
    async def main() -> None:
        async with PmuServer(idcode=42, rate=rate, port=0) as srv:
            cfgs, data = await take(PdcClient("127.0.0.1", srv.port, idcode=5), 8)
            assert len(cfgs) == 1 and cfgs[0].kind == "cfg2"
            assert cfgs[0].idcode == 42 and cfgs[0].data_rate == rate
            assert cfgs[0].pmus[0].phasor_names == ["VA", "VB", "VC"]
            idx = [grid_index(f, rate) for f in data]
            assert idx == list(range(idx[0], idx[0] + 8)), "consecutive, no gap"
            assert idx[0] >= srv.k0
            assert all(f.idcode == 42 for f in data)

    run(main())


def test_frequency_follows_the_profile() -> None:
    ramp = FrequencyProfile("ramp", magnitude=0.5, start=0.2, noise=0.0)

    async def main() -> None:
        async with PmuServer(rate=50, profile=ramp, port=0) as srv:
            _, data = await take(PdcClient("127.0.0.1", srv.port), 30)
            k = np.array([grid_index(f, 50) - srv.k0 for f in data])
            want = ramp.at(k / 50.0)
            got = np.array([f.freq for f in data])
            # FREQ is float32 on the wire.
            np.testing.assert_allclose(got, want, atol=1e-4)
            assert got[-1] > got[0] or k[-1] / 50 < 0.2
            rocof = np.array([f.dfreq for f in data])
            np.testing.assert_allclose(rocof[k / 50 > 0.25], 0.5, atol=1e-3)

    run(main())


def test_noise_is_fresh_per_frame_around_the_profile() -> None:
    noisy = FrequencyProfile("constant", magnitude=0.0, noise=0.01, seed=3)

    async def main() -> None:
        async with PmuServer(rate=50, profile=noisy, port=0) as srv:
            _, data = await take(PdcClient("127.0.0.1", srv.port), 40)
            f = np.array([d.freq for d in data])
            assert len(set(f.tolist())) > 30, "each frame draws its own noise"
            assert abs(f.mean() - 50.0) < 0.01
            assert 0.004 < f.std() < 0.02

    run(main())


def test_several_clients_each_with_its_own_data_on_off() -> None:
    async def main() -> None:
        async with PmuServer(rate=50, port=0) as srv:
            conns = [await asyncio.open_connection("127.0.0.1", srv.port) for _ in range(3)]
            decs = [c.StreamDecoder() for _ in conns]
            try:
                for (r, w), d in zip(conns, decs, strict=True):
                    await command(w, 5)
                    assert isinstance((await read_frames(r, d, 1))[0], c.ConfigFrame)
                    await command(w, 2)
                for (r, _w), d in zip(conns, decs, strict=True):
                    assert all(isinstance(f, c.DataFrame) for f in await read_frames(r, d, 5))
                # Client 1 turns data off: it goes quiet, the others do not.
                r1, w1 = conns[1]
                await command(w1, 1)
                await drain_quiet(r1, 0.2)
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(r1.read(4096), 0.3)
                assert [s.data_on for s in srv.clients].count(False) == 1
                for i in (0, 2):
                    frames = await read_frames(conns[i][0], decs[i], 5)
                    assert len(frames) >= 5 and all(f.type == "data" for f in frames)
                # ... and on again.
                await command(w1, 2)
                frames = await read_frames(r1, decs[1], 3)
                assert all(isinstance(f, c.DataFrame) for f in frames)
                # Header, CFG-1 and CFG-3 on request.
                r0, w0 = conns[0]
                await command(w0, 1)
                await drain_quiet(r0, 0.2)
                for code, kind in ((3, "header"), (4, "cfg1"), (6, "cfg3")):
                    await command(w0, code)
                    frames = await read_frames(r0, decs[0], 1)
                    assert [f.type for f in frames] == [kind]
            finally:
                for _r, w in conns:
                    await close_writer(w)

    run(main())


def test_a_client_that_disconnects_or_stalls_does_not_stop_the_others() -> None:
    async def main() -> None:
        # A small write limit, and a stalled client whose receive buffer is tiny: its
        # frames pile up on the server side and must be dropped, not waited for.
        async with PmuServer(rate=50, port=0, write_limit=256, send_buffer=4096) as srv:
            stalled = socket.socket()
            stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
            stalled.setblocking(False)
            await asyncio.get_running_loop().sock_connect(stalled, ("127.0.0.1", srv.port))
            stalled.send(c.encode(c.CommandFrame(1, 2)))
            gone_r, gone_w = await asyncio.open_connection("127.0.0.1", srv.port)
            await command(gone_w, 2)
            await read_frames(gone_r, c.StreamDecoder(), 1, timeout=2)
            gone_w.transport.abort()  # vanishes without a goodbye
            await close_writer(gone_w)
            client = PdcClient("127.0.0.1", srv.port)
            try:
                _, data = await take(client, 150)  # 3 s at 50 frames/s
                slow = [s for s in srv.clients if s.dropped]
                assert slow and slow[0].dropped > 10, srv.clients
            finally:
                stalled.close()
            idx = [grid_index(f, 50) for f in data]
            assert idx == list(range(idx[0], idx[0] + 150)), "the reader lost no frame"

    run(main(), timeout=30)
