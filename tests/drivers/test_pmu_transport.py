"""The C37.118 PDC client and UDP receiver (vpp.drivers.pmu): faults and UDP, on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import random

from tests.support.aio import close_writer, free_port, run
from vpp import c37118 as c
from vpp.aio import Backoff
from vpp.drivers.pmu import PdcClient, UdpReceiver
from vpp.sim.pmu import PmuServer, build_config


def fast_backoff(seed: int = 1) -> Backoff:
    return Backoff(initial=0.05, maximum=0.4, jitter=0.2, rng=random.Random(seed))


async def collect(
    client: PdcClient, n_data: int, until: asyncio.Event | None = None
) -> list[c.DataFrame]:
    data: list[c.DataFrame] = []
    async with contextlib.aclosing(client.frames()) as frames:
        async for f in frames:
            if isinstance(f, c.DataFrame):
                data.append(f)
                if len(data) == n_data:
                    break
    return data


def test_backoff_grows_exponentially_with_bounded_jitter() -> None:
    b = Backoff(initial=0.1, maximum=2.0, factor=2.0, jitter=0.25, rng=random.Random(7))
    for attempt, base in enumerate([0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]):
        d = b.delay(attempt)
        assert 0.75 * base <= d <= 1.25 * base
    assert len({round(b.delay(3), 9) for _ in range(10)}) > 1, "jitter varies"


def test_server_closing_mid_stream_client_reconnects_and_resumes() -> None:
    async def main() -> None:
        srv = PmuServer(rate=50, port=0)
        await srv.start()
        port = srv.port
        client = PdcClient("127.0.0.1", port, backoff=fast_backoff())
        got: list[c.DataFrame] = []
        restarted = False
        try:
            async with contextlib.aclosing(client.frames()) as frames:
                async for f in frames:
                    if not isinstance(f, c.DataFrame):
                        continue
                    got.append(f)
                    if len(got) == 10 and not restarted:
                        # The PMU goes away mid-stream and comes back on the same port.
                        await srv.close()
                        await asyncio.sleep(0.2)
                        srv = PmuServer(rate=50, port=port)
                        await srv.start()
                        restarted = True
                    if len(got) == 20:
                        break
        finally:
            await client.close()
            await srv.close()
        h = client.health
        assert h.reconnects >= 1 and h.errors["disconnect"] >= 1
        assert got[-1].time > got[9].time
        assert h.state == "closed" and h.data_frames == 20
        assert h.last_frame_time == got[-1].time and h.last_arrival is not None

    run(main())


def test_garbage_in_the_stream_is_counted_and_the_stream_goes_on() -> None:
    cfg = build_config(9, 25)
    pmus = [[c.PmuData([(1.0, 0.0)] * 3, 50.0 + k * 1e-3)] for k in range(6)]
    frames = [
        c.encode(c.DataFrame(cfg, p, soc=1000, fracsec=k * 40_000)) for k, p in enumerate(pmus)
    ]
    bad_crc = bytearray(frames[3])
    bad_crc[-1] ^= 0xFF
    # Config, 2 frames, garbage, frame 2, a frame with a broken CHK, frames 4 and 5.
    stream = (
        c.encode(cfg) + frames[0] + frames[1] + b"\x00garbage\x13\x37" + frames[2]
        + bytes(bad_crc) + frames[4] + frames[5]
    )  # fmt: skip

    served = 0

    async def pmu(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal served
        served += 1
        with contextlib.suppress(ConnectionError):
            await reader.read(100)  # the CFG-2 request
            for i in range(0, len(stream), 7):  # in awkward chunks
                writer.write(stream[i : i + 7])
                await writer.drain()
                await asyncio.sleep(0)
            await reader.read(100)  # until the client hangs up
        await close_writer(writer)

    async def main() -> None:
        srv = await asyncio.start_server(pmu, "127.0.0.1", 0)
        errors: list[c.FrameError] = []
        client = PdcClient("127.0.0.1", srv.sockets[0].getsockname()[1], on_error=errors.append)
        try:
            data = await collect(client, 5)
        finally:
            await client.close()
            srv.close()
            await srv.wait_closed()
        assert [round((f.freq - 50.0) * 1e3) for f in data] == [0, 1, 2, 4, 5]
        assert client.health.errors["crc"] == 1
        assert client.health.errors["sync"] >= 1
        assert served == 1 and client.health.reconnects == 0
        assert len(errors) == client.health.error_count

    run(main())


def test_connection_refused_at_start_retries_with_backoff_then_connects() -> None:
    async def main() -> None:
        port = free_port()
        client = PdcClient("127.0.0.1", port, backoff=fast_backoff())
        task = asyncio.create_task(collect(client, 3))
        await asyncio.sleep(0.7)
        assert not task.done(), "no exception escapes while the PMU is away"
        refused = client.health.errors["connect"]
        # Delays 0.05, 0.1, 0.2, 0.4 (+-20 %): a handful of attempts, not a busy loop.
        assert 3 <= refused <= 6, refused
        assert client.health.state in ("backoff", "connecting")
        async with PmuServer(rate=50, port=port):
            data = await asyncio.wait_for(task, 5)
        assert len(data) == 3 and client.health.reconnects == 0
        await client.close()

    run(main())


def test_udp_receiver_with_config_fetched_over_tcp() -> None:
    async def main() -> None:
        rx_port = free_port()
        async with PmuServer(rate=50, port=0, udp_targets=[("127.0.0.1", rx_port)]) as srv:
            rx = UdpReceiver("127.0.0.1", rx_port, config_from=("127.0.0.1", srv.port))
            await rx.start()
            try:
                # A stray datagram is counted and skipped.
                loop = asyncio.get_running_loop()
                tr, _ = await loop.create_datagram_endpoint(
                    asyncio.DatagramProtocol, remote_addr=("127.0.0.1", rx.port)
                )
                tr.sendto(b"\xaa\x02not a frame")
                tr.close()
                data: list[c.DataFrame] = []
                async with contextlib.aclosing(rx.frames()) as frames:
                    async for f in frames:
                        data.append(f)
                        if len(data) == 10:
                            break
            finally:
                await rx.close()
        assert rx.config is not None and rx.config.idcode == srv.idcode
        step = 1_000_000 // 50
        idx = [f.soc * 50 + f.fracsec // step for f in data]
        assert idx == list(range(idx[0], idx[0] + 10))
        assert rx.health.error_count == 1

    run(main())


def test_a_silent_connection_times_out_and_the_client_reconnects() -> None:
    accepted = 0

    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        with contextlib.suppress(ConnectionError):
            while await reader.read(100):  # takes the commands, never answers
                pass
        await close_writer(writer)

    async def main() -> None:
        srv = await asyncio.start_server(mute, "127.0.0.1", 0)
        client = PdcClient(
            "127.0.0.1", srv.sockets[0].getsockname()[1], read_timeout=0.2,
            backoff=fast_backoff(),
        )  # fmt: skip
        task = asyncio.create_task(collect(client, 1))
        try:
            await asyncio.sleep(1.0)
            assert not task.done()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await client.close()
            srv.close()
            await srv.wait_closed()
        h = client.health
        assert h.errors["timeout"] >= 2 and h.reconnects >= 1 and accepted >= 2
        assert h.data_frames == 0 and h.state == "closed"

    run(main())
