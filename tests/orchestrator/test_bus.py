"""The bus over real ZeroMQ sockets: ipc in temporary directories and tcp on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import zmq
import zmq.asyncio

from tests.orchestrator.test_schema import telemetry
from tests.support.aio import run
from vpp.errors import CommandTimeoutError, ConfigError
from vpp.orchestrator.bus import schema as s
from vpp.orchestrator.bus.config import BusConfig
from vpp.orchestrator.bus.curve import ClientCurve, ServerCurve
from vpp.orchestrator.bus.liveness import HeartbeatSender, Liveness, Peer
from vpp.orchestrator.bus.pubsub import Client, Publisher, Server, Subscriber


async def _until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        assert loop.time() < end, "condition not reached in time"
        await asyncio.sleep(0.01)


async def _join(pub: Publisher, sub: Subscriber, probe: s.Message) -> None:
    """Publish ``probe`` until the subscriber gets one (PUB drops until SUB has joined)."""
    while True:
        await pub.publish(probe)
        try:
            await asyncio.wait_for(sub.recv(), 0.05)
            return
        except asyncio.TimeoutError:
            continue


def _endpoint(kind: str, ipc_dir: Path, name: str) -> str:
    return f"ipc://{ipc_dir}/{name}" if kind == "ipc" else "tcp://127.0.0.1:0"


@pytest.mark.parametrize("kind", ["ipc", "tcp"])
def test_pub_sub_delivers_in_order_and_filters_topics(kind: str, ipc_dir: Path) -> None:
    async def go() -> list[float]:
        pub = Publisher(_endpoint(kind, ipc_dir, "ev"))
        sub = Subscriber(pub.endpoint, ("telemetry/bess1",))
        try:
            await _join(pub, sub, s.make(telemetry("bess1", p_kw=-1.0), "f"))
            for body in [
                telemetry("bess1", 1.0),
                telemetry("bess2", 2.0),
                s.Event(kind="trip", unit="bess1"),
                telemetry("bess1", 3.0),
                telemetry("bess1", 99.0),
            ]:
                await pub.publish(s.make(body, "field1"))
            got: list[float] = []
            while not got or got[-1] != 99.0:
                msg = await sub.recv()
                assert isinstance(msg, s.TelemetryMsg) and msg.sender in ("f", "field1")
                if msg.sender == "field1":
                    got.append(msg.body.p_kw)
            return got
        finally:
            sub.close()
            pub.close()

    assert run(go()) == [1.0, 3.0, 99.0]


def test_subscriber_counts_bad_messages_and_keeps_receiving(ipc_dir: Path) -> None:
    async def go() -> Subscriber:
        pub = Publisher(f"ipc://{ipc_dir}/ev")
        sub = Subscriber(pub.endpoint)
        try:
            await _join(pub, sub, s.make(telemetry(), "probe"))
            good = s.encode(s.make(telemetry(p_kw=7.0), "field1"))
            wrong_version = good.replace(b"\"v\":2", b"\"v\":9")
            await pub.publish_raw(b"telemetry/x", b"{not json")
            await pub.publish_raw(b"telemetry/x", b'{"v":2,"type":"weather"}')
            await pub.publish_raw(b"telemetry/x", wrong_version)
            await pub.publish_raw(b"telemetry/x", good.replace(b"7.0", b'"x"'))
            await pub.sock.send_multipart((b"telemetry/x", b"a", b"b"))
            await pub.publish_raw(b"telemetry/bess1", good)
            msg = await asyncio.wait_for(sub.recv(), 5)
            assert isinstance(msg, s.TelemetryMsg) and msg.body.p_kw == 7.0
            return sub
        finally:
            sub.close()
            pub.close()

    sub = run(go())
    assert dict(sub.errors) == {"json": 1, "type": 1, "version": 1, "field": 1, "frames": 1}


def test_recv_batch_returns_the_valid_messages_in_order(ipc_dir: Path) -> None:
    async def go() -> tuple[list[float], Subscriber]:
        pub = Publisher(f"ipc://{ipc_dir}/ev")
        sub = Subscriber(pub.endpoint, ("telemetry/",))
        try:
            await _join(pub, sub, s.make(telemetry(), "probe"))
            for i in range(300):
                if i % 100 == 50:
                    await pub.publish_raw(b"telemetry/x", b"{broken")
                await pub.publish(s.make(telemetry(p_kw=float(i)), "field1"))
            got: list[float] = []
            while len(got) < 300:
                batch = await asyncio.wait_for(sub.recv_batch(limit=64), 5)
                assert len(batch) <= 64
                got += [m.body.p_kw for m in batch if isinstance(m, s.TelemetryMsg)]
            return got, sub
        finally:
            sub.close()
            pub.close()

    got, sub = run(go())
    assert got == [float(i) for i in range(300)]
    assert dict(sub.errors) == {"json": 3}


def test_a_busy_stream_does_not_starve_other_tasks(ipc_dir: Path) -> None:
    async def go() -> int:
        pub = Publisher(f"ipc://{ipc_dir}/ev", hwm=5000)
        sub = Subscriber(pub.endpoint, ("telemetry/",), hwm=5000)
        ticks = 0

        async def other() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        try:
            await _join(pub, sub, s.make(telemetry(), "probe"))
            for i in range(2000):
                await pub.publish(s.make(telemetry(p_kw=float(i)), "field1"))
            # Wait until every message is queued, so that recv() never has to wait.
            await _until(lambda: sub.sock.getsockopt(zmq.EVENTS) & zmq.POLLIN != 0)
            await asyncio.sleep(0.2)
            task = asyncio.create_task(other())
            await asyncio.sleep(0)
            ticks = 0
            for _ in range(2000):
                await sub.recv()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return ticks
        finally:
            sub.close()
            pub.close()

    # recv() yields every 256 messages taken without waiting: 2000 // 256 = 7 turns.
    assert run(go()) >= 7


async def _add(msg: s.CommandMsg) -> Any:
    p = msg.body.params
    if p.get("fail"):
        raise ValueError("asked to fail")
    return {"sum": p["a"] + p["b"]}


def test_command_ack_result_unknown_command_and_handler_error(ipc_dir: Path) -> None:
    async def go() -> tuple[Server, list[s.Ack]]:
        async with Server(f"ipc://{ipc_dir}/cmd", {"add": _add}, name="campus") as srv:
            async with Client(srv.endpoint, name="ops", timeout=2.0) as cli:
                acks = [
                    await cli.request("add", {"a": 2, "b": 3}),
                    await cli.request("nope"),
                    await cli.request("add", {"fail": True}),
                ]
            return srv, acks

    srv, (ok, unknown, failed) = run(go())
    assert ok.ok and ok.result == {"sum": 5} and ok.error is None
    assert not unknown.ok and "unknown command 'nope'" in (unknown.error or "")
    assert not failed.ok and failed.error == "ValueError: asked to fail"
    assert srv.executed == 2 and srv.duplicates == 0 and not srv.errors


def test_request_times_out_without_server(ipc_dir: Path) -> None:
    async def go() -> int:
        async with Client(f"ipc://{ipc_dir}/nobody", timeout=0.1, retries=2) as cli:
            with pytest.raises(CommandTimeoutError) as info:
                await cli.request("stop")
            assert info.value.command == "stop" and "3 attempt(s)" in str(info.value)
            assert isinstance(info.value, TimeoutError)
            return cli.sent

    assert run(go()) == 3


def test_retry_runs_the_command_once(ipc_dir: Path) -> None:
    calls: list[str] = []

    async def slow(msg: s.CommandMsg) -> Any:
        calls.append(msg.id)
        await asyncio.sleep(0.4)  # longer than the client's timeout: it retries meanwhile
        return len(calls)

    async def go() -> tuple[Server, s.Ack, int]:
        srv = Server(f"ipc://{ipc_dir}/cmd", {"slow": slow})
        async with srv, Client(srv.endpoint, timeout=0.1, retries=10) as cli:
            ack = await cli.request("slow")
            # Let the retries still queued reach the server and be answered.
            await _until(lambda: srv.duplicates >= cli.sent - 1)
            return srv, ack, cli.sent

    srv, ack, sent = run(go())
    assert ack.ok and ack.result == 1
    assert len(calls) == 1 and srv.executed == 1
    assert sent >= 3 and srv.duplicates == sent - 1


def test_commands_sent_before_the_server_starts_run_once(ipc_dir: Path) -> None:
    calls: list[str] = []

    async def record(msg: s.CommandMsg) -> Any:
        calls.append(msg.id)
        return "done"

    async def go() -> s.Ack:
        endpoint = f"ipc://{ipc_dir}/late"
        async with Client(endpoint, timeout=0.15, retries=20) as cli:
            req = asyncio.create_task(cli.request("go"))
            await asyncio.sleep(0.5)  # three or so attempts queue in the DEALER
            async with Server(endpoint, {"go": record}):
                return await req

    ack = run(go())
    assert ack.ok and ack.result == "done" and len(calls) == 1


def test_server_answers_a_repeated_id_from_its_cache(ipc_dir: Path) -> None:
    async def go() -> tuple[Server, list[s.Message]]:
        async with Server(f"ipc://{ipc_dir}/cmd", {"add": _add}) as srv:
            sock = zmq.asyncio.Context.instance().socket(zmq.DEALER)
            try:
                sock.connect(srv.endpoint)
                cmd = s.encode(s.make(s.Command(name="add", params={"a": 1, "b": 1}), "raw"))
                await sock.send(cmd)
                await sock.send(cmd)
                acks = [s.decode(await sock.recv()) for _ in range(2)]
            finally:
                sock.close(linger=0)
            return srv, acks

    srv, (a, b) = run(go())
    assert a == b and a.body == s.Ack(ok=True, result={"sum": 2})
    assert srv.executed == 1 and srv.duplicates == 1


def test_server_counts_malformed_frames_and_keeps_serving(ipc_dir: Path) -> None:
    async def go() -> tuple[Server, s.Message, s.Ack]:
        async with Server(f"ipc://{ipc_dir}/cmd", {"add": _add}) as srv:
            sock = zmq.asyncio.Context.instance().socket(zmq.DEALER)
            try:
                sock.connect(srv.endpoint)
                await sock.send(b"\x00garbage")
                await sock.send_multipart((b"two", b"frames"))
                await sock.send(s.encode(s.make(s.Ack(ok=True), "confused")))
                bad = json.loads(s.encode(s.make(s.Command(name="add"), "raw", id="bad-1")))
                bad["body"]["params"] = "not a dict"
                await sock.send(json.dumps(bad).encode())
                refused = s.decode(await asyncio.wait_for(sock.recv(), 5))
            finally:
                sock.close(linger=0)
            async with Client(srv.endpoint, timeout=2.0) as cli:
                ack = await cli.request("add", {"a": 20, "b": 22})
            return srv, refused, ack

    srv, refused, ack = run(go())
    assert isinstance(refused, s.AckMsg) and refused.corr == "bad-1"
    assert not refused.body.ok and "body.params" in (refused.body.error or "")
    assert ack.ok and ack.result["sum"] == 42
    assert dict(srv.errors) == {"json": 1, "frames": 1, "unexpected": 1, "field": 1}
    assert srv.executed == 1


def test_non_finite_numbers_are_refused_and_counted_by_every_receive_loop(
    ipc_dir: Path,
) -> None:
    # Issue 8: a NaN or an infinity (as Python's json writes them) is an invalid field.
    nan_event = json.dumps(json.loads(s.encode(s.make(s.Event(kind="x"), "grid")))
                           | {"ts": math.inf}).encode()  # fmt: skip
    kw = json.loads(s.encode(s.make(s.Command(name="add"), "raw", id="nan-1")))
    kw["body"]["params"] = {"a": math.nan, "b": 1}

    async def go() -> tuple[Subscriber, Server, s.Message, s.Message, s.Ack]:
        pub = Publisher(f"ipc://{ipc_dir}/ev")
        sub = Subscriber(pub.endpoint)
        try:
            await _join(pub, sub, s.make(telemetry(), "probe"))
            await pub.publish_raw(b"event/grid", nan_event)
            await pub.publish(s.make(telemetry(p_kw=7.0), "field1"))
            got = await asyncio.wait_for(sub.recv(), 5)
        finally:
            sub.close()
            pub.close()
        async with Server(f"ipc://{ipc_dir}/cmd", {"add": _add, "nan": _nan}) as srv:
            sock = zmq.asyncio.Context.instance().socket(zmq.DEALER)
            try:
                sock.connect(srv.endpoint)
                await sock.send(json.dumps(kw).encode())
                refused = s.decode(await asyncio.wait_for(sock.recv(), 5))
            finally:
                sock.close(linger=0)
            async with Client(srv.endpoint, timeout=2.0) as cli:
                # A handler's result with a NaN: a not-ok ack, not a null sent as if fine.
                ack = await cli.request("nan")
            return sub, srv, got, refused, ack

    sub, srv, got, refused, ack = run(go())
    assert isinstance(got.body, s.Telemetry) and got.body.p_kw == 7.0
    assert isinstance(refused.body, s.Ack) and refused.corr == "nan-1"
    assert not refused.body.ok and "body.params.a" in (refused.body.error or "")
    assert dict(sub.errors) == {"field": 1}
    assert dict(srv.errors) == {"field": 1} and srv.executed == 1
    assert not ack.ok and "finite" in (ack.error or "")


async def _nan(msg: s.CommandMsg) -> Any:
    return {"soc_pct": math.nan}


def test_tcp_command_endpoint_requires_keys_or_insecure() -> None:
    with pytest.raises(ConfigError) as info:
        Server("tcp://127.0.0.1:0", {})
    assert info.value.field == "keys_dir"
    with pytest.raises(ConfigError):
        Client("tcp://127.0.0.1:5999")

    async def go() -> Any:
        srv = Server("tcp://127.0.0.1:0", {"add": _add}, insecure=True)
        async with srv, Client(srv.endpoint, insecure=True, timeout=2.0) as cli:
            return (await cli.request("add", {"a": 1, "b": 2})).result

    assert run(go())["sum"] == 3


def test_bad_endpoints_raise_config_error(keys_dir: Path) -> None:
    with pytest.raises(ConfigError) as info:
        Publisher("tcp://no-such-interface:1")
    assert info.value.field == "endpoint" and "no-such-interface" in str(info.value)
    with pytest.raises(ConfigError):
        Subscriber("bogus://x")

    async def go() -> None:
        tcp = Publisher("tcp://127.0.0.1:0")  # holds the port the servers try to bind
        try:
            taken = tcp.endpoint
            curve = ServerCurve(keys_dir / "server.key_secret", keys_dir / "authorized")
            with pytest.raises(ConfigError, match="cannot bind"):
                async with Server(taken, {}, curve=curve):
                    pass
            with pytest.raises(ConfigError, match="cannot bind"):
                async with Server(taken, {}, insecure=True):
                    pass
        finally:
            tcp.close()

    run(go())


def _curve(keys: Path, secret: str, server_key: str) -> ClientCurve:
    return ClientCurve(keys / f"{secret}.key_secret", keys / f"{server_key}.key")


def test_curve_admits_the_authorized_client_only(keys_dir: Path) -> None:
    server_curve = ServerCurve(keys_dir / "server.key_secret", keys_dir / "authorized")

    async def refused(srv: Server, cli: Client, kind: str) -> None:
        before = srv.errors[kind]
        async with cli:
            with pytest.raises(CommandTimeoutError):
                await cli.request("add", {"a": 1, "b": 1}, timeout=0.3, retries=0)
        await _until(lambda: srv.errors[kind] > before)

    async def go() -> tuple[Server, Any]:
        async with Server("tcp://127.0.0.1:0", {"add": _add}, curve=server_curve) as srv:
            ep = srv.endpoint
            async with Client(ep, curve=_curve(keys_dir, "client", "server"), timeout=5) as cli:
                result = (await cli.request("add", {"a": 4, "b": 5})).result
            # A key the server does not know: the authenticator refuses it.
            await refused(srv, Client(ep, curve=_curve(keys_dir, "rogue", "server")), "auth")
            # The right client key but a wrong server key: the handshake fails.
            await refused(srv, Client(ep, curve=_curve(keys_dir, "client", "rogue")), "handshake")
            # No keys at all (clear text against a Curve server).
            await refused(srv, Client(ep, insecure=True), "handshake")
            return srv, result

    srv, result = run(go())
    assert result["sum"] == 9
    assert srv.executed == 1 and srv.errors["auth"] >= 1 and srv.errors["handshake"] >= 2


def test_bus_config_builds_curve_setups(keys_dir: Path) -> None:
    cfg = BusConfig(name="server", keys_dir=keys_dir, commands="tcp://127.0.0.1:0")
    assert isinstance(cfg.server_curve(), ServerCurve)
    client = BusConfig(name="client", keys_dir=keys_dir).client_curve()
    assert client is not None and client.server_public == cfg.server_curve().public  # type: ignore[union-attr]
    assert BusConfig(name="x").server_curve() is None
    with pytest.raises(ConfigError, match="must start with") as info:
        BusConfig.load({"name": "x", "events": "http://host"})
    assert info.value.field == "events"
    with pytest.raises(ConfigError) as info:
        BusConfig.load({"name": "x", "liveness_misses": 0})
    assert info.value.field == "liveness_misses"
    assert BusConfig.load({"name": "x", "command_retries": 5}).command_retries == 5


def test_heartbeats_keep_a_peer_online_and_silence_takes_it_offline(ipc_dir: Path) -> None:
    changes: list[tuple[str, bool]] = []

    def on_change(peer: Peer) -> None:
        changes.append((peer.id, peer.alive))

    hb = s.Heartbeat(role="field", id="field1", location="c1/s1",
                     capabilities=s.Capabilities(rated_kw=250.0, rated_kwh=500.0))  # fmt: skip

    async def go() -> Liveness:
        pub = Publisher(f"ipc://{ipc_dir}/ev")
        sub = Subscriber(pub.endpoint, ("heartbeat/",))
        # Generous: a loaded shared VM can stall the loop for a good part of a 100 ms beat.
        live = Liveness(interval=0.1, misses=4, on_change=on_change)

        async def feed() -> None:
            async for msg in sub.messages():
                live.observe(msg)

        feeder = asyncio.create_task(feed())
        try:
            async with live:
                async with HeartbeatSender(pub, hb, 0.1):
                    await _until(lambda: live.alive() == ["field1"])
                    await asyncio.sleep(0.8)  # twice the timeout: still online
                    assert changes == [("field1", True)]
                stopped = asyncio.get_running_loop().time()
                await _until(lambda: changes[-1] == ("field1", False))
                # The last beat left at most one interval before the sender stopped.
                assert asyncio.get_running_loop().time() - stopped >= live.timeout - 0.11
                async with HeartbeatSender(pub, hb, 0.1):
                    await _until(lambda: changes[-1] == ("field1", True))
            return live
        finally:
            feeder.cancel()
            await asyncio.gather(feeder, return_exceptions=True)
            sub.close()
            pub.close()

    live = run(go())
    assert changes == [("field1", True), ("field1", False), ("field1", True)]
    peer = live.peers["field1"]
    assert peer.heartbeat is not None and peer.heartbeat.capabilities.rated_kwh == 500.0


def test_liveness_counts_misses_on_its_clock() -> None:
    now = [100.0]
    changes: list[bool] = []
    live = Liveness(interval=1.0, misses=3, on_change=lambda p: changes.append(p.alive),
                    clock=lambda: now[0])  # fmt: skip
    live.observe(s.make(s.Event(kind="x"), "grid"))
    now[0] = 102.9
    assert live.check() == [] and live.alive() == ["grid"]
    now[0] = 103.1
    assert [p.id for p in live.check()] == ["grid"] and live.alive() == []
    assert live.check() == []  # offline once, not on every check
    live.observe(s.make(s.Event(kind="x"), "grid"))
    assert changes == [True, False, True] and live.peers["grid"].changes == 3


def test_the_compiled_receiver_takes_what_pyzmq_takes(ipc_dir: Path) -> None:
    # Two subscribers of one publisher get the same messages: one taken by the compiled
    # core's FrameReceiver, one by pyzmq. Messages of 1 to 4 frames, empty frames, a large
    # one, in chunks that end mid-stream.
    from vpp.orchestrator.bus import sockets

    assert sockets._receiver() is not None, "libzmq of pyzmq not found: no compiled path"
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.sndhwm = 10_000
    pub.bind(f"ipc://{ipc_dir}/raw")
    subs = []
    for _ in range(2):
        sub = ctx.socket(zmq.SUB)
        sub.rcvhwm = 10_000
        sub.subscribe(b"")
        sub.connect(f"ipc://{ipc_dir}/raw")
        subs.append(sub)
    sent = [[b"t/%d" % i, *([b"x" * (i % 7)] * (i % 4)), b"\0" * (200_000 if i == 7 else i)]
            for i in range(500)]  # fmt: skip
    try:
        # Wait for both subscriptions: a probe each must arrive.
        for sub in subs:
            while True:
                pub.send(b"probe")
                if sub.poll(50):
                    break
        for sub in subs:
            while sub.poll(50):
                sub.recv_multipart()
        for frames in sent:
            pub.send_multipart(frames)
        for sub in subs:
            while sub.getsockopt(zmq.EVENTS) & zmq.POLLIN == 0:
                sub.poll(100)
        native: list[list[bytes]] = []
        python: list[list[bytes]] = []
        for got, native_ in ((native, True), (python, False)):
            sub = subs[0] if native_ else subs[1]
            deadline = time.monotonic() + 10
            while len(got) < len(sent) and time.monotonic() < deadline:
                got += sockets.recv_queued(sub, 37, native=native_)
                sub.poll(10)
        assert native == python == sent
        # As columns: two-frame messages' payloads, the rest whole.
        for frames in sent:
            pub.send_multipart(frames)
        parts: list[tuple[list[bytes], list[bytes], list[list[bytes]]]] = []
        for sub, native_ in ((subs[0], True), (subs[1], False)):
            cols: tuple[list[bytes], list[bytes], list[list[bytes]]] = ([], [], [])
            deadline = time.monotonic() + 10
            while len(cols[0]) + len(cols[2]) < len(sent) and time.monotonic() < deadline:
                got3 = sockets.recv_parts(sub, 64, 3, native=native_)
                for mine, more in zip(cols, got3, strict=True):
                    mine += more
                sub.poll(10)
            parts.append(cols)
        three = [f for f in sent if len(f) == 3]
        assert parts[0] == parts[1]
        assert parts[0][0] == [f[1] for f in three] and parts[0][1] == [f[2] for f in three]
        assert parts[0][2] == [f for f in sent if len(f) != 3]
        assert sockets.recv_queued(subs[0], 10) == []  # nothing queued: nothing, at once
    finally:
        for sub in subs:
            sub.close(linger=0)
        pub.close(linger=0)
        ctx.term()
    with pytest.raises(zmq.ZMQError):
        sockets.recv_queued(subs[0], 10)  # a closed socket is never handed to the core
