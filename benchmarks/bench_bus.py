"""The orchestrator bus: message codec rate, PUB->SUB throughput, command round trip.

- Telemetry encode and decode (validated into the typed message) in messages/s; target:
  the campus aggregator ingests >= 50,000 telemetry messages/s. Reference: ``json.loads``
  of the same bytes (parsing only, no validation).
- PUB->SUB ingest over ipc: another process publishes pre-encoded telemetry, queued in
  the subscriber before timing starts; one :class:`Subscriber` receives and validates it.
  Reference: the same subscriber socket receiving the same bytes with a plain awaited
  ``recv_multipart``.
- Command round trip (request -> ack) p50/p99 over ipc and over Curve tcp on loopback,
  against a raw DEALER/ROUTER echo of the same bytes over ipc; and as a site's server
  does it (Curve on ipc, the identity's roles and rate decided, the command audited as
  an event), against the plain ipc server measured in the same run (target <= 1.5x).
- Ingest through the events broker (issue 9): the subscriber side of a site's bus, the
  broker plain (libzmq's proxy, no identities) against Curve on both ends with the
  stamping relay and an authenticated subscriber (target: >= 0.7x of plain); and the
  same with publisher, broker and subscriber running at once, so that the relay's own
  cost is in the figure: the compiled core's relay (what a site runs; target >= 0.7x of
  libzmq's proxy) and the Python relay it falls back to.

Run: ``python benchmarks/bench_bus.py [--quick]`` or ``vpp bench bus``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import zmq  # noqa: E402
import zmq.asyncio  # noqa: E402

from vpp.bench import percentile, row  # noqa: E402
from vpp.orchestrator.bus import schema as s  # noqa: E402
from vpp.orchestrator.bus.auth import Authorizer, Policy, RateLimiter, SecuritySection  # noqa: E402
from vpp.orchestrator.bus.broker import Broker  # noqa: E402
from vpp.orchestrator.bus.commands import AuditRecord, audit_event  # noqa: E402
from vpp.orchestrator.bus.curve import ClientCurve, ServerCurve  # noqa: E402
from vpp.orchestrator.bus.keys import create_keypair, site_keys  # noqa: E402
from vpp.orchestrator.bus.pubsub import Client, Publisher, Server, Subscriber  # noqa: E402

Row = dict[str, Any]
TARGET_DECODE = 50_000.0


def _telemetry(i: int) -> s.Message:
    body = s.Telemetry(
        unit=f"bess{i % 64}",
        p_kw=125.0 + i % 7,
        q_kvar=-12.5,
        soc_pct=55.5,
        soh_pct=97.0,
        temp_c=28.25,
        limits=s.Limits(p_min_kw=-500.0, p_max_kw=500.0, q_max_kvar=250.0),
        safety="none",
        location=f"campus1/site{i % 4}/bess{i % 64}",
    )
    return s.make(body, f"field{i % 4}")


def _rate(fn: Callable[[], object], n: int, repeats: int) -> float:
    """Best-of-``repeats`` calls per second of ``fn`` (n calls per repeat)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, time.perf_counter() - t0)
    return n / best


def _codec(n: int, repeats: int) -> list[Row]:
    msg = _telemetry(1)
    data = s.encode(msg)
    enc = _rate(lambda: s.encode(msg), n, repeats)
    dec = _rate(lambda: s.decode(data), n, repeats)
    ref = _rate(lambda: json.loads(data), n, repeats)
    target = f">= {TARGET_DECODE:.0f}/s"
    return [
        row("telemetry encode", enc, "msg/s", target="-"),
        row(
            "telemetry decode (validated)",
            dec,
            "msg/s",
            reference="json.loads",
            ratio=dec / ref,
            target=target,
            ok=dec >= TARGET_DECODE,
        ),
        row("json.loads same bytes (reference)", ref, "msg/s"),
        row("telemetry message size", float(len(data)), "bytes"),
    ]


# The field controllers' side: another process publishing pre-encoded telemetry as fast
# as it can, so that the figure is what one subscriber process ingests.
_SENDER = """
import sys, time, zmq, zmq.auth
endpoint, n, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
topic, payload = open(path, "rb").read().split(b"\\n", 1)
ctx = zmq.Context()
pub = ctx.socket(zmq.XPUB)  # XPUB: to see the subscription arrive before sending
pub.sndhwm = n + 10
if len(sys.argv) > 5:  # a Curve client of the broker: its secret file, the broker's key
    pub.curve_publickey, pub.curve_secretkey = zmq.auth.load_certificate(sys.argv[4])
    pub.curve_serverkey = zmq.auth.load_certificate(sys.argv[5])[0]
pub.connect(endpoint)
pub.recv()
for _ in range(n):
    pub.send_multipart((topic, payload))
pub.close(linger=10000)
ctx.term()
"""


def _start_sender(
    endpoint: str, n: int, tmp: Path, keys: tuple[Path, Path] | None = None
) -> subprocess.Popen[bytes]:
    msg = _telemetry(1)
    path = tmp / "payload"
    path.write_bytes(msg.topic + b"\n" + s.encode(msg))
    extra = [str(k) for k in keys] if keys else []
    return subprocess.Popen([sys.executable, "-c", _SENDER, endpoint, str(n), str(path),
                             *extra])  # fmt: skip


async def _ingest(endpoint: str, n: int, tmp: Path, how: str) -> tuple[float, int]:
    """Messages/s one subscriber received, and how many.

    ``how``: ``recv`` (one validated message per call), ``batch`` (recv_batch) or ``raw``
    (an awaited recv_multipart, no decoding).
    """
    sub = Subscriber(endpoint, ("telemetry/",), bind=True, hwm=n + 10)
    # All messages are queued in the subscriber before the clock starts: the figure is
    # the receiving side alone, not a race with the sender for the shared CPUs.
    proc = _start_sender(sub.endpoint, n, tmp)
    while proc.poll() is None:
        # libzmq attaches a new connection to a socket only when its own thread calls
        # into it: touch the socket while waiting, or the subscription is never sent.
        sub.sock.getsockopt(zmq.EVENTS)
        await asyncio.sleep(0.01)
    got, t0 = 0, 0.0

    async def consume() -> None:
        nonlocal got, t0
        if how == "batch":
            got = len(await sub.recv_batch())
            t0 = time.perf_counter()
            while got < n:
                got += len(await sub.recv_batch())
            return
        recv = sub.sock.recv_multipart if how == "raw" else sub.recv
        await recv()
        t0 = time.perf_counter()
        got = 1
        while got < n:
            await recv()
            got += 1

    try:
        # One timeout around the loop: a wait_for per message would cost more than a recv.
        await asyncio.wait_for(consume(), 10 + n / 5000)
    except asyncio.TimeoutError:
        pass  # messages dropped: the count says how many arrived
    finally:
        elapsed = time.perf_counter() - t0
        sub.close()
    return (got - 1) / elapsed, got


async def _brokered_ingest(tmp: Path, n: int, curve: bool, i: int) -> tuple[float, int]:
    """Messages/s one subscriber took from the broker (plain, or Curve and stamped)."""
    keys = tmp / "bkeys"
    site_keys(keys, ["broker", "field1", "campus"])
    ein, eout = f"ipc://{tmp}/bin{i}", f"ipc://{tmp}/bout{i}"
    # Every message the sender publishes is relayed sender -> broker -> subscriber and
    # queued there before the clock starts: what is timed is the subscriber's side.
    server = ServerCurve(keys / "broker.key_secret", keys) if curve else None
    policy = Policy.build(SecuritySection(), ["field1"])
    broker = Broker(ein, eout, hwm=n + 10, curve=server, policy=policy)
    broker.start()
    sub = Subscriber(eout, ("telemetry/",), hwm=n + 10, authenticated=curve,
                     curve=ClientCurve(keys / "campus.key_secret", keys / "broker.key")
                     if curve else None)  # fmt: skip
    sender_keys = (keys / "field1.key_secret", keys / "broker.key") if curve else None
    got, t0 = 0, 0.0
    try:
        await asyncio.sleep(0.2)  # the subscription reaches the broker
        proc = _start_sender(ein, n, tmp, sender_keys)
        while proc.poll() is None:
            sub.sock.getsockopt(zmq.EVENTS)  # see _ingest
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.5)  # the broker's last relays

        async def consume() -> None:
            nonlocal got, t0
            got = len(await sub.recv_batch())
            t0 = time.perf_counter()
            while got < n:
                got += len(await sub.recv_batch())

        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(consume(), 10 + n / 5000)
        elapsed = time.perf_counter() - t0
    finally:
        sub.close()
        broker.stop()
    return (got - 1) / elapsed, got


async def _through_broker(tmp: Path, n: int, relay: str, i: int) -> float:
    """Messages/s from a publisher process through the broker to a subscriber taking them
    as they come (all three at once: the relay's cost is in the figure). ``relay``:
    ``libzmq`` (no keys), ``core`` or ``python`` (Curve, stamped)."""
    keys = tmp / "bkeys"
    site_keys(keys, ["broker", "field1", "campus"])
    ein, eout = f"ipc://{tmp}/tin{i}", f"ipc://{tmp}/tout{i}"
    curve = relay != "libzmq"
    server = ServerCurve(keys / "broker.key_secret", keys) if curve else None
    broker = Broker(ein, eout, hwm=n + 10, curve=server, native=relay == "core",
                    policy=Policy.build(SecuritySection(), ["field1"]))  # fmt: skip
    broker.start()
    assert broker.relay == relay, broker.relay
    sub = Subscriber(eout, ("telemetry/",), hwm=n + 10, authenticated=curve,
                     curve=ClientCurve(keys / "campus.key_secret", keys / "broker.key")
                     if curve else None)  # fmt: skip
    sender_keys = (keys / "field1.key_secret", keys / "broker.key") if curve else None
    got, t0, t1 = 0, 0.0, 0.0
    try:
        await asyncio.sleep(0.2)
        proc = _start_sender(ein, n, tmp, sender_keys)

        async def consume() -> None:
            nonlocal got, t0, t1
            got = len(await sub.recv_batch())
            t0 = time.perf_counter()
            while got < n:
                got += len(await sub.recv_batch())
            t1 = time.perf_counter()

        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(consume(), 10 + n / 5000)
        t1 = t1 or time.perf_counter()
        proc.wait(10)
    finally:
        sub.close()
        broker.stop()
    return (got - 1) / (t1 - t0)


async def _echo(msg: s.CommandMsg) -> Any:
    return msg.body.params.get("x")


async def _round_trips(
    endpoint: str, n: int, curve: tuple[ServerCurve, ClientCurve] | None, site: bool = False
) -> list[float]:
    authz = audit = None
    pub: Publisher | None = None
    if site:
        # As a site's field controller: roles decided, rate counted, every command
        # published as an audit event (to a socket nobody reads: the send is the cost).
        pol = Policy.build(SecuritySection(), ["server"])
        pol.identities["client"] = ("operator",)
        authz = Authorizer(pol, "field", "server", RateLimiter(1e9, 10**9))
        pub = Publisher(f"{endpoint}-audit")
        sink = pub

        def audit(rec: AuditRecord) -> None:
            sink.send_now(s.make(audit_event(rec, "server"), "server"))

    srv = Server(endpoint, {"echo": _echo}, curve=curve[0] if curve else None,
                 authorizer=authz, audit=audit)  # fmt: skip
    async with srv:
        cli = Client(srv.endpoint, curve=curve[1] if curve else None, timeout=5.0, retries=0)
        async with cli:
            await cli.request("echo", {"x": 0})  # connect and handshake outside the timing
            out = []
            for i in range(n):
                t0 = time.perf_counter()
                await cli.request("echo", {"x": i})
                out.append(time.perf_counter() - t0)
    if pub is not None:
        pub.close()
    return out


async def _raw_round_trips(endpoint: str, n: int) -> list[float]:
    ctx = zmq.asyncio.Context.instance()
    router, dealer = ctx.socket(zmq.ROUTER), ctx.socket(zmq.DEALER)
    payload = s.encode(s.make(s.Command(name="echo", params={"x": 1}), "bench"))
    try:
        router.bind(endpoint)
        dealer.connect(endpoint)

        async def serve() -> None:
            while True:
                peer, data = await router.recv_multipart()
                await router.send_multipart((peer, data))

        task = asyncio.create_task(serve())
        await dealer.send(payload)
        await dealer.recv()
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            await dealer.send(payload)
            await dealer.recv()
            out.append(time.perf_counter() - t0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return out
    finally:
        dealer.close(linger=0)
        router.close(linger=0)


async def _bus(tmp: Path, n_pub: int, n_rtt: int) -> list[Row]:
    rows: list[Row] = []
    bus_runs = [await _ingest(f"ipc://{tmp}/ps{i}", n_pub, tmp, "recv") for i in range(3)]
    batch_runs = [await _ingest(f"ipc://{tmp}/pb{i}", n_pub, tmp, "batch") for i in range(3)]
    raw_runs = [await _ingest(f"ipc://{tmp}/raw{i}", n_pub, tmp, "raw") for i in range(3)]
    bus = statistics.median(r for r, _ in bus_runs)
    batch = statistics.median(r for r, _ in batch_runs)
    raw = statistics.median(r for r, _ in raw_runs)
    lost = sum(n_pub - got for _, got in bus_runs + batch_runs)
    rows.append(row("PUB->SUB ipc ingest, Subscriber.recv (validated)", bus, "msg/s",
                    reference="raw zmq.asyncio recv", ratio=bus / raw, target=">= 50000/s",
                    ok=bus >= TARGET_DECODE and lost == 0))  # fmt: skip
    rows.append(row("PUB->SUB ipc ingest, Subscriber.recv_batch (validated)", batch, "msg/s",
                    reference="raw zmq.asyncio recv", ratio=batch / raw, target=">= 50000/s",
                    ok=batch >= TARGET_DECODE and lost == 0))  # fmt: skip
    rows.append(row("PUB->SUB ipc ingest, raw zmq.asyncio recv (reference)", raw, "msg/s"))
    rows.append(row("PUB->SUB messages lost (3 runs)", float(lost), "msg", target="0",
                    ok=lost == 0))  # fmt: skip

    keys = tmp / "keys"
    for name in ("server", "client"):
        create_keypair(keys, name)
    (keys / "authorized").mkdir()
    shutil.copy(keys / "client.key", keys / "authorized")
    curve = (
        ServerCurve(keys / "server.key_secret", keys / "authorized"),
        ClientCurve(keys / "client.key_secret", keys / "server.key"),
    )
    raw_rtt = await _raw_round_trips(f"ipc://{tmp}/rawcmd", n_rtt)
    raw_p50 = percentile(raw_rtt, 0.5)
    for label, endpoint, cv in [
        ("ipc", f"ipc://{tmp}/cmd", None),
        ("Curve tcp", "tcp://127.0.0.1:0", curve),
    ]:
        rtt = await _round_trips(endpoint, n_rtt, cv)
        p50, p99 = percentile(rtt, 0.5), percentile(rtt, 0.99)
        rows.append(row(f"command round trip {label} p50", p50 * 1e6, "us",
                        reference="raw DEALER/ROUTER ipc p50", ratio=raw_p50 / p50))  # fmt: skip
        rows.append(row(f"command round trip {label} p99", p99 * 1e6, "us"))
    # Interleaved rounds, medians: the shared machine's noise hits both alike.
    plain, sited = [], []
    keys2 = tmp / "skeys"
    site_keys(keys2, ["server", "client"])
    for k in range(3):
        plain.append(percentile(await _round_trips(f"ipc://{tmp}/pl{k}", n_rtt, None), 0.5))
        cv = (ServerCurve(keys2 / "server.key_secret", keys2),
              ClientCurve(keys2 / "client.key_secret", keys2 / "server.key"))  # fmt: skip
        sited.append(percentile(await _round_trips(f"ipc://{tmp}/st{k}", n_rtt, cv, True), 0.5))
    p_plain, p_site = statistics.median(plain), statistics.median(sited)
    rows.append(row("command round trip as a site's server (Curve ipc, roles, audit) p50",
                    p_site * 1e6, "us", reference="plain ipc server p50 (same run)",
                    ratio=p_site / p_plain, target="<= 1.5x",
                    ok=p_site <= 1.5 * p_plain))  # fmt: skip
    rows.append(row("plain ipc server p50 (reference, same run)", p_plain * 1e6, "us"))
    plain_in = [await _brokered_ingest(tmp, n_pub, False, k) for k in range(3)]
    curve_in = [await _brokered_ingest(tmp, n_pub, True, 10 + k) for k in range(3)]
    r_plain = statistics.median(r for r, _ in plain_in)
    r_curve = statistics.median(r for r, _ in curve_in)
    lost = sum(n_pub - got for _, got in plain_in + curve_in)
    rows.append(row("ingest via the broker, Curve + stamped publisher (recv_batch)", r_curve,
                    "msg/s", reference="plain broker, no identities (same run)",
                    ratio=r_curve / r_plain, target=">= 0.7x",
                    ok=r_curve >= 0.7 * r_plain))  # fmt: skip
    rows.append(row("ingest via the broker, plain (reference)", r_plain, "msg/s"))
    rows.append(row("broker messages lost (6 runs)", float(lost), "msg", target="0",
                    ok=lost == 0))  # fmt: skip
    # Interleaved rounds, medians, as above.
    e2e: dict[str, list[float]] = {"libzmq": [], "core": [], "python": []}
    for k in range(3):
        for j, relay in enumerate(e2e):
            e2e[relay].append(await _through_broker(tmp, n_pub, relay, 10 * j + k))
    e2e_plain, e2e_core, e2e_py = (statistics.median(e2e[r]) for r in e2e)
    rows.append(row("publisher -> broker -> subscriber at once, Curve + core relay",
                    e2e_core, "msg/s", reference="libzmq proxy, no identities (same run)",
                    ratio=e2e_core / e2e_plain, target=">= 0.7x",
                    ok=e2e_core >= 0.7 * e2e_plain))  # fmt: skip
    rows.append(row("publisher -> broker -> subscriber at once, Curve + Python relay",
                    e2e_py, "msg/s", reference="libzmq proxy, no identities (same run)",
                    ratio=e2e_py / e2e_plain))  # fmt: skip
    rows.append(row("publisher -> broker -> subscriber at once, plain (reference)", e2e_plain,
                    "msg/s"))  # fmt: skip
    rows.append(row("raw DEALER/ROUTER echo ipc p50 (reference)", raw_p50 * 1e6, "us"))
    rows.append(row("raw DEALER/ROUTER echo ipc p99 (reference)", percentile(raw_rtt, 0.99) * 1e6,
                    "us"))  # fmt: skip
    return rows


def run(quick: bool = False) -> list[Row]:
    """Benchmark rows (see vpp.bench)."""
    n_codec, repeats = (5_000, 3) if quick else (50_000, 5)
    n_pub, n_rtt = (5_000, 300) if quick else (50_000, 3_000)
    rows = _codec(n_codec, repeats)
    tmp = Path(tempfile.mkdtemp(prefix="vppbench-", dir="/tmp"))
    try:
        rows += asyncio.run(_bus(tmp, n_pub, n_rtt))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        zmq.asyncio.Context.instance().term()
    return rows


if __name__ == "__main__":
    from vpp.bench import print_table

    print_table([{"bench": "bus", **r} for r in run(quick="--quick" in sys.argv)])
