"""The campus aggregator process with 10,000 nodes over ZeroMQ: telemetry ingest and
one dispatch computation.

- Ingest: another process publishes over ipc first one heartbeat per node (registered,
  untimed), then telemetry cycling over the 10,000 nodes (one pre-encoded message per
  node, 330-350 bytes). All of it is queued in the campus subscriber before the clock
  starts, so the figure is the campus side alone: ``Subscriber.recv_batch`` (receive and
  validate into typed messages) and ``Campus.ingest`` (update the Fleet). Reference: the
  same socket draining the same bytes with plain non-blocking pyzmq ``recv_multipart``
  (no decoding, no fleet), in the same run. The process's garbage collector is tuned
  as ``campus.serve`` tunes it (``tune_gc``: at CPython's default threshold the same
  ingest runs at about half the rate).
  A second reference decodes and ingests the same bytes in process, with no socket.
- Dispatch: ``Dispatcher.dispatch`` over the 10,000 online units plus the grouping of
  the setpoints by field controller that each campus round does before sending; the
  default strategy of the site (balanced) and the others; median and p99 of 30.

Run ``python benchmarks/bench_campus_bus.py [--quick]`` or ``vpp bench campus_bus``.
"""

from __future__ import annotations

import os

# NumPy's OpenBLAS starts worker threads that compete with the measured code for cores.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import zmq  # noqa: E402

from vpp.bench import row  # noqa: E402
from vpp.config.models import SiteConfig  # noqa: E402
from vpp.orchestrator.bus import schema as s  # noqa: E402
from vpp.orchestrator.bus.pubsub import Subscriber  # noqa: E402
from vpp.orchestrator.bus.topology import Topology  # noqa: E402
from vpp.orchestrator.campus.config import STRATEGIES  # noqa: E402
from vpp.orchestrator.campus.service import Campus  # noqa: E402
from vpp.orchestrator.service import tune_gc  # noqa: E402

Row = dict[str, Any]
NODES = 10_000
FIELDS = 100
TARGET_INGEST = 50_000.0
TARGET_DISPATCH_MS = 10.0

# The field controllers' side: pre-encoded messages, sent as fast as possible.
_SENDER = """
import sys, zmq
endpoint, n, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
lines = open(path, "rb").read().split(b"\\n")
msgs = [(lines[i], lines[i + 1]) for i in range(0, len(lines) - 1, 2)]
ctx = zmq.Context()
pub = ctx.socket(zmq.XPUB)  # XPUB: to see the subscription arrive before sending
pub.sndhwm = n + 10
pub.connect(endpoint)
pub.recv()
k = len(msgs)
for i in range(n):
    pub.send_multipart(msgs[i % k])
pub.close(linger=20000)
ctx.term()
"""


def _location(i: int) -> str:
    b = i // 25
    return f"IN/S{b % 4}/C{b % 12}/K{b % 40}/B{b}/n{i}"


def _messages(kind: str) -> list[s.Message]:
    out: list[s.Message] = []
    for i in range(NODES):
        field = f"field-{i % FIELDS}"
        rated = (50.0, 100.0, 250.0)[i % 3]
        if kind == "heartbeat":
            caps = s.Capabilities(rated_kw=rated, rated_kwh=2 * rated, services=("fcr",))
            hb = s.Heartbeat(role="unit", id=f"u{i}", owner=field, location=_location(i),
                             capabilities=caps)  # fmt: skip
            out.append(s.make(hb, field))
        else:
            tel = s.Telemetry(
                unit=f"u{i}", p_kw=rated * 0.1 * (i % 7 - 3), q_kvar=0.0,
                soc_pct=5.0 + (i * 7919) % 90, temp_c=25.0 + i % 10,
                limits=s.Limits(p_min_kw=-rated * (0.5 + (i % 5) / 10), p_max_kw=rated),
                location=_location(i),
            )  # fmt: skip
            out.append(s.make(tel, field))
    return out


def _send(endpoint: str, msgs: list[s.Message], n: int, tmp: Path) -> subprocess.Popen[bytes]:
    path = tmp / "payload"
    path.write_bytes(b"".join(m.topic + b"\n" + s.encode(m) + b"\n" for m in msgs))
    return subprocess.Popen([sys.executable, "-c", _SENDER, endpoint, str(n), str(path)])


async def _queue(sub: Subscriber, proc: subprocess.Popen[bytes]) -> None:
    while proc.poll() is None:
        # libzmq attaches a new connection only when its own thread calls into the
        # socket: touch it while waiting, or the subscription is never sent.
        sub.sock.getsockopt(zmq.EVENTS)
        await asyncio.sleep(0.01)


async def _ingest(campus: Campus, sub: Subscriber, n: int) -> float:
    got = 0
    first = await sub.recv_batch(4096)
    campus.ingest(first, time.time())
    t0 = time.perf_counter()
    while got < n - len(first):
        batch = await sub.recv_batch(4096)
        campus.ingest(batch, time.time())
        got += len(batch)
    return got / (time.perf_counter() - t0)


def _raw(sub: Subscriber, n: int) -> float:
    sock = sub._sync
    while True:  # the first message, untimed, as for the ingest
        try:
            sock.recv_multipart(zmq.NOBLOCK)
            break
        except zmq.Again:
            time.sleep(0.001)
    got, t0 = 0, time.perf_counter()
    while got < n - 1:
        try:
            sock.recv_multipart(zmq.NOBLOCK)
            got += 1
        except zmq.Again:
            continue
    return got / (time.perf_counter() - t0)


def _in_process(campus: Campus, payloads: list[bytes], n: int) -> float:
    """The same decode and fleet update with no socket: what the bus adds to it."""
    decode, k = s.decode, len(payloads)
    t0 = time.perf_counter()
    for start in range(0, n, 4096):
        batch = [decode(payloads[i % k]) for i in range(start, min(n, start + 4096))]
        campus.ingest(batch, time.time())
    return n / (time.perf_counter() - t0)


def _site() -> SiteConfig:
    """The NODES units in the configuration, each owned by the field controller that
    publishes for it: the campus takes nothing else."""
    fields: list[dict[str, Any]] = [{"id": f"field-{k}", "units": []} for k in range(FIELDS)]
    for i in range(NODES):
        rated = (50.0, 100.0, 250.0)[i % 3]
        loc = dict(zip(("country", "state", "city", "campus", "building", "node"),
                       _location(i).split("/"), strict=True))  # fmt: skip
        fields[i % FIELDS]["units"].append({
            "id": f"u{i}", "rated_power_kw": rated, "capacity_kwh": 2 * rated, "location": loc,
            "inverter": {"protocol": "modbus_tcp", "config": {}}})  # fmt: skip
    return SiteConfig.model_validate({
        "field": fields,
        # The payloads are encoded once and sent again each round: a long run must not
        # see them refused as old.
        "campus": {"fleet": {"offline_timeout_s": 600.0, "initial_capacity": NODES,
                             "max_age_s": 86_400.0},
                   "dispatch": {"default_strategy": "balanced"}},
    })  # fmt: skip


async def _bus(
    n: int, rounds: int, tmp: Path
) -> tuple[list[float], list[float], list[float], Campus]:
    cfg = _site()
    tune_gc()  # as campus.serve does in the campus process
    campus = Campus(cfg, Topology.build(cfg.bus, [f.id for f in cfg.field], tmp))
    heartbeats, telemetry = _messages("heartbeat"), _messages("telemetry")
    ingest, raw, local = [], [], []
    payloads = [s.encode(m) for m in telemetry]
    sub = Subscriber(f"ipc://{tmp}/events-out", ("heartbeat/", "telemetry/"),
                     bind=True, hwm=n + NODES + 10)  # fmt: skip
    try:
        proc = _send(sub.endpoint, heartbeats, NODES, tmp)
        await _queue(sub, proc)
        while len(campus.fleet) < NODES:
            campus.ingest(await sub.recv_batch(4096), time.time())
        for _ in range(rounds):
            # Interleaved, so that a change of machine load hits both alike.
            await _queue(sub, _send(sub.endpoint, telemetry, n, tmp))
            ingest.append(await _ingest(campus, sub, n))
            await _queue(sub, _send(sub.endpoint, telemetry, n, tmp))
            raw.append(_raw(sub, n))
            local.append(_in_process(campus, payloads, n))
    finally:
        sub.close()
    return ingest, raw, local, campus


def _dispatch(campus: Campus, repeats: int) -> list[Row]:
    rows = []
    now = time.time()
    fleet = campus.fleet
    _charge, discharge = fleet.available()
    reach = float(discharge.sum())
    for strategy in STRATEGIES:
        times = []
        for k in range(repeats):
            target = reach * (0.1 + 0.8 * k / repeats) * (1 if k % 2 else -1)
            t0 = time.perf_counter()
            res = campus.dispatcher.dispatch(target, now, strategy)
            sends: dict[str, list[tuple[str, float]]] = {}
            owner = campus.owner
            for unit, kw in res.setpoints.items():
                sends.setdefault(owner[unit], []).append((unit, kw))
            times.append((time.perf_counter() - t0) * 1000.0)
            assert len(res.setpoints) == NODES
        times.sort()
        med, p99 = statistics.median(times), times[int(0.99 * (len(times) - 1))]
        rows.append(row(f"dispatch {NODES} nodes, {strategy}, median", med, "ms",
                        reference=f"target {TARGET_DISPATCH_MS} ms",
                        ratio=med / TARGET_DISPATCH_MS, target=f"<= {TARGET_DISPATCH_MS} ms",
                        ok=med <= TARGET_DISPATCH_MS))  # fmt: skip
        rows.append(row(f"dispatch {NODES} nodes, {strategy}, p99", p99, "ms"))
    return rows


def run(quick: bool = False) -> list[Row]:
    """Benchmark rows (quick: fewer messages and rounds)."""
    n, rounds = (50_000, 1) if quick else (100_000, 3)
    tmp = Path(tempfile.mkdtemp(prefix="vppbench-", dir="/tmp"))
    try:
        ingest, raw, local, campus = asyncio.run(_bus(n, rounds, tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    med, ref = statistics.median(ingest), statistics.median(raw)
    rows = [
        row(f"campus telemetry ingest over ipc, {NODES} nodes (recv_batch + Fleet)", med,
            "msg/s", reference="raw pyzmq recv_multipart", ratio=med / ref,
            target=f">= {TARGET_INGEST:.0f}/s", ok=med >= TARGET_INGEST),
        row("raw pyzmq recv_multipart, same bytes (reference)", ref, "msg/s"),
        row("decode + Campus.ingest in process, no socket (reference)",
            statistics.median(local), "msg/s"),
        row("load average (1 min) at the end", os.getloadavg()[0], "-"),
        row("telemetry ingest rounds (median of)", float(rounds), "rounds"),
    ]  # fmt: skip
    if campus.errors or (campus.subscriber and campus.subscriber.errors):
        raise RuntimeError(f"ingest errors: {dict(campus.errors)}")
    rows += _dispatch(campus, 10 if quick else 30)
    return rows


if __name__ == "__main__":
    from vpp.bench import print_table

    print_table(run("--quick" in sys.argv))
