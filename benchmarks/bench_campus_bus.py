"""The campus aggregator process at 1,000, 10,000 and 100,000 units: telemetry ingest
over ZeroMQ, one dispatch, one whole round, memory per unit.

- Ingest: another process publishes over ipc telemetry cycling over the fleet's units
  (one pre-encoded message per unit, 330-350 bytes), all of it queued in the campus
  subscriber before the clock starts, so the figure is the campus side alone. The
  campus's path (``Campus.ingest_queued``: frames taken by the compiled core's
  ``FrameReceiver`` 256 at a time, each payload validated by msgspec into the row the
  campus uses, the roster's rules and the fleet's writes column-wise per 1,024) against,
  in the same run and interleaved: the previous fast path (kept below: frames taken by
  pyzmq, 4,096 at a time, validated by pydantic-core into dicts, the roster's rules per
  message), the model path (``Subscriber.recv_batch``: a pydantic model per message,
  then ``Campus.ingest``) and plain pyzmq ``recv_multipart`` of the same bytes (no
  decoding). Also a mixed stream, a unit heartbeat after each telemetry message (a field
  controller's default: both every second), through the campus's path and the previous
  one. The garbage collector is tuned as ``campus.serve`` tunes it.
- Dispatch: ``Dispatcher.dispatch`` over every unit (targets within +-90 % of the
  fleet's reach, alternating sign, so every setpoint changes), median of 30 per strategy.
- Round: the dispatch plus what ``Campus.dispatch_once`` computes before sending: the
  setpoints due (not acknowledged unchanged) grouped by field controller with their
  params (``Outbox.plan``); reference: the per-unit dict code it replaced, same run.
- Growth exponent: the slope of log(median time) against log(units) over the sizes.
- Memory per unit: bytes tracemalloc sees allocated by a Campus with every unit
  registered and one round planned, over the number of units (the site configuration
  validated beforehand, measured on its own).

Run ``python benchmarks/bench_campus_bus.py [--quick]`` or ``vpp bench campus_bus``
(``--quick``: 1,000 and 10,000 units, fewer messages).
"""

from __future__ import annotations

import os

# NumPy's OpenBLAS starts worker threads that compete with the measured code for cores.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import asyncio
import gc
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Annotated, Any, Literal

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import zmq  # noqa: E402
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError  # noqa: E402
from typing_extensions import NotRequired, TypedDict  # noqa: E402

from vpp.bench import row  # noqa: E402
from vpp.config.models import SiteConfig  # noqa: E402
from vpp.errors import VppError  # noqa: E402
from vpp.orchestrator.bus import schema as s  # noqa: E402
from vpp.orchestrator.bus.pubsub import Subscriber  # noqa: E402
from vpp.orchestrator.bus.sockets import recv_now, recv_queued  # noqa: E402
from vpp.orchestrator.bus.topology import Topology  # noqa: E402
from vpp.orchestrator.campus.config import STRATEGIES  # noqa: E402
from vpp.orchestrator.campus.dispatch import DispatchResult  # noqa: E402
from vpp.orchestrator.campus.fleet import SAFETY_STATES  # noqa: E402
from vpp.orchestrator.campus.ingest import store_latest  # noqa: E402
from vpp.orchestrator.campus.outbox import RESEND_ROUNDS, SAME_KW  # noqa: E402
from vpp.orchestrator.campus.service import Campus  # noqa: E402
from vpp.orchestrator.service import tune_gc  # noqa: E402

Row = dict[str, Any]
SIZES = (1_000, 10_000, 100_000)
UNITS_PER_FIELD = 100
TARGET_INGEST = 300_000.0
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


def _messages(kind: str, nodes: int) -> list[s.Message]:
    out: list[s.Message] = []
    fields = max(1, nodes // UNITS_PER_FIELD)
    for i in range(nodes):
        field = f"field-{i % fields}"
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


async def _ingest(campus: Campus, sub: Subscriber, n: int, how: str) -> float:
    """Messages per second through the campus's path (``new``), the previous fast path
    (``previous``) or the model path (``models``)."""
    got = 0
    if how == "new":
        first = await campus.ingest_queued(sub)
        t0 = time.perf_counter()
        while got < n - first:
            got += await campus.ingest_queued(sub)
    elif how == "models":
        batch = await sub.recv_batch(4096)
        campus.ingest(batch, time.time())
        first = len(batch)
        t0 = time.perf_counter()
        while got < n - first:
            batch = await sub.recv_batch(4096)
            campus.ingest(batch, time.time())
            got += len(batch)
    else:
        frames = await _previous_recv(sub, 4096)
        _previous_ingest(campus, frames, sub, time.time())
        first = len(frames)
        t0 = time.perf_counter()
        while got < n - first:
            frames = await _previous_recv(sub, 4096)
            _previous_ingest(campus, frames, sub, time.time())
            got += len(frames)
    return got / (time.perf_counter() - t0)


# ---- The previous fast path (vpp/orchestrator/campus/ingest.py before msgspec), kept as
# the reference: frames taken by pyzmq, each payload validated by pydantic-core into
# dicts, the roster's rules per message, the fleet's arrays written once per batch. ----

_CONFIG = ConfigDict(extra="ignore", allow_inf_nan=False)
_Pct = Annotated[float, Field(ge=0.0, le=100.0)]
_NonNegative = Annotated[float, Field(ge=0.0)]


class _Limits(TypedDict):
    __pydantic_config__ = _CONFIG  # type: ignore[misc]
    p_min_kw: float
    p_max_kw: float
    q_max_kvar: NotRequired[float]


class _Telemetry(TypedDict):
    __pydantic_config__ = _CONFIG  # type: ignore[misc]
    unit: str
    p_kw: float
    q_kvar: NotRequired[float]
    soc_pct: _Pct
    soh_pct: NotRequired[_Pct]
    temp_c: float
    limits: _Limits
    safety: NotRequired[s.SafetyState]
    enabled: NotRequired[bool]
    location: NotRequired[str]


class _Capabilities(TypedDict):
    __pydantic_config__ = _CONFIG  # type: ignore[misc]
    rated_kw: NotRequired[_NonNegative]
    rated_kwh: NotRequired[_NonNegative]
    services: NotRequired[tuple[str, ...]]


class _Heartbeat(TypedDict):
    __pydantic_config__ = _CONFIG  # type: ignore[misc]
    role: str
    id: str
    location: NotRequired[str]
    capabilities: NotRequired[_Capabilities]
    owner: NotRequired[str]
    endpoint: NotRequired[str]


class _TelemetryMsg(TypedDict):
    __pydantic_config__ = _CONFIG  # type: ignore[misc]
    v: NotRequired[Literal[2]]
    type: Literal["telemetry"]
    sender: str
    id: str
    ts: float
    corr: NotRequired[str | None]
    body: _Telemetry


class _HeartbeatMsg(TypedDict):
    __pydantic_config__ = _CONFIG  # type: ignore[misc]
    v: NotRequired[Literal[2]]
    type: Literal["heartbeat"]
    sender: str
    id: str
    ts: float
    corr: NotRequired[str | None]
    body: _Heartbeat


_ADAPTER: TypeAdapter[_TelemetryMsg | _HeartbeatMsg] = TypeAdapter(
    Annotated[_TelemetryMsg | _HeartbeatMsg, Field(discriminator="type")]
)
_SAFETY_CODE = {name: code for code, name in enumerate(SAFETY_STATES)}


async def _previous_recv(sub: Subscriber, limit: int) -> list[list[bytes]]:
    """``Subscriber.recv_frames`` as it was: each message taken by pyzmq."""
    while True:
        try:
            first = recv_now(sub._sync)
            break
        except zmq.Again:
            await sub.sock.poll()
    return [first, *recv_queued(sub._sync, limit - 1, native=False)]


def _previous_ingest(campus: Campus, batch: list[list[bytes]], sub: Subscriber,
                     now: float) -> None:  # fmt: skip
    fast: list[dict[str, Any]] = []
    payloads: list[bytes] = []
    slow: list[s.Message] = []
    validate = _ADAPTER.validator.validate_json
    n = sub.frame_count
    for frames in batch:
        if len(frames) == n:
            try:
                d: dict[str, Any] = validate(frames[1])
            except ValidationError:
                pass
            else:
                if n == 2 or d["sender"].encode() == frames[2]:
                    fast.append(d)
                    payloads.append(frames[1])
                    continue
        msg = sub.take(frames)
        if msg is not None:
            slow.append(msg)
    _previous_apply(campus, fast, payloads, now)
    if slow:
        campus.ingest(slow, now)


def _previous_apply(campus: Campus, batch: list[dict[str, Any]], payloads: list[bytes],
                    now: float) -> None:  # fmt: skip
    roster = campus.roster
    owners, fields = roster.owners, roster.fields
    received = roster.clock()
    future, age = roster.max_future_s, roster.max_age_s
    slot_of = campus.fleet.slot_map()
    slots: list[int] = []
    rows: list[tuple[float, float, float, float, int]] = []
    for i, d in enumerate(batch):
        ts = d["ts"]
        kind: str | None = None
        if ts - received > future:
            kind = "future"
        elif received - ts > age:
            kind = "stale"
        body = d["body"]
        sender = d["sender"]
        if d["type"] == "telemetry":
            unit = body["unit"]
            if kind is None:
                owner = owners.get(unit)
                kind = "unknown_unit" if owner is None else None if owner == sender else "not_owner"
            if kind is not None:
                roster.refuse(kind, s.decode(payloads[i]), received)
                continue
            slot = slot_of.get(unit)
            if slot is None:
                campus.register(unit, now)
                slot = slot_of[unit]
            lim = body["limits"]
            slots.append(slot)
            rows.append((body["p_kw"], body["soc_pct"], lim["p_min_kw"], lim["p_max_kw"],
                         _SAFETY_CODE[body.get("safety", "none")]))  # fmt: skip
            continue
        role, hid = body["role"], body["id"]
        if kind is None:
            if role == "unit":
                owner = owners.get(hid)
                kind = "unknown_unit" if owner is None else None if owner == sender else "not_owner"
            elif role == "field":
                kind = ("unknown_field" if hid not in fields
                        else None if sender == hid else "not_owner")  # fmt: skip
        if kind is not None:
            roster.refuse(kind, s.decode(payloads[i]), received)
            continue
        try:
            campus.heartbeat(role, hid, now)
            campus.ingested += 1
        except VppError as err:
            campus.bad_input("heartbeat", err)
    if not slots:
        return
    # (The benchmark's limits are all of the right sign: no refusal path here.)
    fleet = campus.fleet
    at_all = np.array(slots, dtype=np.intp)
    power, soc, p_min, p_max, safety = np.array(rows).T
    campus.ingested += len(at_all)
    fresh = now >= fleet.telemetry_time[at_all]
    fleet.out_of_order += int((~fresh).sum())
    store_latest(fleet, at_all, fresh, now, power, soc, p_min, p_max, safety)


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


def _site(nodes: int) -> SiteConfig:
    """``nodes`` units in the configuration, each owned by the field controller that
    publishes for it: the campus takes nothing else."""
    n_fields = max(1, nodes // UNITS_PER_FIELD)
    fields: list[dict[str, Any]] = [{"id": f"field-{k}", "units": []} for k in range(n_fields)]
    for i in range(nodes):
        rated = (50.0, 100.0, 250.0)[i % 3]
        loc = dict(zip(("country", "state", "city", "campus", "building", "node"),
                       _location(i).split("/"), strict=True))  # fmt: skip
        fields[i % n_fields]["units"].append({
            "id": f"u{i}", "rated_power_kw": rated, "capacity_kwh": 2 * rated, "location": loc,
            "inverter": {"protocol": "modbus_tcp", "config": {}}})  # fmt: skip
    return SiteConfig.model_validate({
        "field": fields,
        # The payloads are encoded once and sent again each round: a long run must not
        # see them refused as old.
        "campus": {"fleet": {"offline_timeout_s": 600.0, "initial_capacity": nodes,
                             "max_age_s": 86_400.0},
                   "dispatch": {"default_strategy": "balanced"}},
    })  # fmt: skip


def _campus(cfg: SiteConfig, tmp: Path) -> Campus:
    return Campus(cfg, Topology.build(cfg.bus, [f.id for f in cfg.field], tmp))


#: Ingest runs per round, interleaved: (name, stream, path); ``raw`` is plain pyzmq.
_KINDS = (("new", "telemetry", "new"), ("previous", "telemetry", "previous"),
          ("models", "telemetry", "models"), ("raw", "telemetry", "raw"),
          ("new_mixed", "mixed", "new"), ("previous_mixed", "mixed", "previous"))  # fmt: skip


async def _bus(nodes: int, n: int, rounds: int, tmp: Path) -> tuple[dict[str, list[float]], Campus]:
    cfg = _site(nodes)
    campus = _campus(cfg, tmp)
    telemetry = _messages("telemetry", nodes)
    heartbeats = _messages("heartbeat", nodes)
    streams = {
        "telemetry": telemetry,
        "mixed": [m for pair in zip(telemetry, heartbeats, strict=True) for m in pair],
    }
    out: dict[str, list[float]] = {name: [] for name, _, _ in _KINDS}
    sub = Subscriber(f"ipc://{tmp}/events-out", ("heartbeat/", "telemetry/"),
                     bind=True, hwm=n + nodes + 10)  # fmt: skip
    try:
        # Registered from heartbeats over the bus, untimed.
        proc = _send(sub.endpoint, heartbeats, nodes, tmp)
        await _queue(sub, proc)
        while len(campus.fleet) < nodes:
            await campus.ingest_queued(sub)
        for _ in range(rounds):
            # Interleaved, so that a change of machine load hits all alike.
            for name, stream, how in _KINDS:
                await _queue(sub, _send(sub.endpoint, streams[stream], n, tmp))
                if how == "raw":
                    out[name].append(_raw(sub, n))
                else:
                    out[name].append(await _ingest(campus, sub, n, how))
        if sub.errors:
            raise RuntimeError(f"subscriber errors: {dict(sub.errors)}")
    finally:
        sub.close()
    return out, campus


def _reference_round(
    campus: Campus, res: DispatchResult, acked: dict[str, tuple[float, int]], rounds: int
) -> dict[str, list[dict[str, Any]]]:
    """The round's grouping and filter as written before (dicts per unit)."""
    owner = campus.owner

    def due(unit: str, kw: float) -> bool:
        last = acked.get(unit)
        return last is None or abs(last[0] - kw) > SAME_KW or rounds - last[1] >= RESEND_ROUNDS

    sends: dict[str, list[tuple[str, float]]] = {}
    for unit, kw in res.setpoints.items():
        sends.setdefault(owner.get(unit, ""), []).append((unit, kw))
    for unit, why in res.excluded.items():
        if why != "offline":
            sends.setdefault(owner.get(unit, ""), []).append((unit, 0.0))
        else:
            acked.pop(unit, None)
    sends = {f: [(u, kw) for u, kw in items if due(u, kw)] for f, items in sends.items()}
    sends = {f: items for f, items in sends.items() if items}
    return {f: [{"unit": u, "kw": kw} for u, kw in items] for f, items in sends.items()}


def _dispatch(campus: Campus, repeats: int) -> dict[str, float]:
    """Median ms: dispatch per strategy, the round (new and reference)."""
    now = time.time()
    _charge, discharge = campus.fleet.available()
    reach = float(discharge.sum())
    out: dict[str, float] = {}
    targets = [reach * (0.1 + 0.8 * k / repeats) * (1 if k % 2 else -1) for k in range(repeats)]
    for strategy in STRATEGIES:
        times = []
        for target in targets:
            t0 = time.perf_counter()
            campus.dispatcher.dispatch(target, now, strategy)
            times.append((time.perf_counter() - t0) * 1000.0)
        out[strategy] = statistics.median(times)
    new, ref = [], []
    acked: dict[str, tuple[float, int]] = {}
    box = campus.outbox
    for k, target in enumerate(targets):
        # Interleaved; each acknowledges all it sent (untimed), as field controllers do.
        t0 = time.perf_counter()
        res = campus.dispatcher.dispatch(target, now)
        sends, _ = box.plan(res, k)
        new.append((time.perf_counter() - t0) * 1000.0)
        for x in sends.values():
            box.ack(x.slots, x.kw, k)
        t0 = time.perf_counter()
        res = campus.dispatcher.dispatch(target, now)
        params = _reference_round(campus, res, acked, k)
        ref.append((time.perf_counter() - t0) * 1000.0)
        acked.update({p["unit"]: (p["kw"], k) for ps in params.values() for p in ps})
        assert {f: len(ps) for f, ps in params.items()} == {f: len(x) for f, x in sends.items()}
    out["round"], out["round_ref"] = statistics.median(new), statistics.median(ref)
    return out


def _memory(nodes: int, tmp: Path) -> tuple[float, float]:
    """Bytes per unit: the campus's state, and the validated site configuration."""
    gc.collect()
    tracemalloc.start()
    cfg = _site(nodes)
    site = tracemalloc.get_traced_memory()[0]
    campus = _campus(cfg, tmp)
    now = time.time()
    msgs = _messages("telemetry", nodes)
    campus.ingest(msgs, now)  # registers every unit and fills its telemetry
    del msgs
    gc.collect()
    start = tracemalloc.get_traced_memory()[0]
    res = campus.dispatcher.dispatch(1000.0, now)
    campus.outbox.plan(res, 1)
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - site
    tracemalloc.stop()
    del start
    return used / nodes, site / nodes


def _slope(sizes: list[int], values: list[float]) -> float:
    """Growth exponent: slope of log(value) against log(size)."""
    return float(np.polyfit(np.log(sizes), np.log(values), 1)[0])


def run(quick: bool = False) -> list[Row]:
    """Benchmark rows (quick: 1,000 and 10,000 units, fewer messages and rounds)."""
    sizes = list(SIZES[:2] if quick else SIZES)
    n, rounds, repeats = (50_000, 1, 10) if quick else (100_000, 5, 30)
    tune_gc()  # as campus.serve does in the campus process
    rows: list[Row] = []
    per: dict[str, list[float]] = {}
    mem: dict[int, tuple[float, float]] = {}
    for nodes in sizes:
        tmp = Path(tempfile.mkdtemp(prefix="vppbench-", dir="/tmp"))
        try:
            ingest, campus = asyncio.run(_bus(nodes, n, rounds, tmp))
            if campus.errors or campus.fleet.errors:
                raise RuntimeError(
                    f"ingest errors: {dict(campus.errors)}, {dict(campus.fleet.errors)}"
                )
            times = _dispatch(campus, repeats)
            del campus
            mem[nodes] = _memory(nodes, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        med = {k: statistics.median(v) for k, v in ingest.items()}
        new, previous, models = med["new"], med["previous"], med["models"]
        for k, v in {**times, "ingest": new, "ingest_previous": previous}.items():
            per.setdefault(k, []).append(v)
        rows += [
            row(
                f"{nodes} units: telemetry ingest over ipc (Campus.ingest_queued)",
                new,
                "msg/s",
                reference=f"previous fast path {previous:,.0f}/s",
                ratio=new / previous,
                target=f">= {TARGET_INGEST:,.0f}/s",
                ok=new >= TARGET_INGEST,
            ),
            row(
                f"{nodes} units: telemetry ingest, model path (recv_batch + Campus.ingest)",
                models,
                "msg/s",
                reference=f"campus path {new:,.0f}/s",
                ratio=new / models,
            ),
            row(
                f"{nodes} units: telemetry + unit heartbeats 1:1 (Campus.ingest_queued)",
                med["new_mixed"],
                "msg/s",
                reference=f"previous fast path {med['previous_mixed']:,.0f}/s",
                ratio=med["new_mixed"] / med["previous_mixed"],
            ),
            row(
                f"{nodes} units: raw pyzmq recv_multipart, same bytes (reference)",
                med["raw"],
                "msg/s",
            ),
        ]
        for strategy in STRATEGIES:
            ms = times[strategy]
            rows.append(row(f"{nodes} units: dispatch {strategy}, median", ms, "ms",
                            target=f"<= {TARGET_DISPATCH_MS} ms",
                            ok=ms <= TARGET_DISPATCH_MS))  # fmt: skip
        rows.append(row(f"{nodes} units: round (dispatch + Outbox.plan), median", times["round"],
                        "ms", reference=f"per-unit dicts {times['round_ref']:.3g} ms",
                        ratio=times["round_ref"] / times["round"],
                        target=f"<= {TARGET_DISPATCH_MS} ms",
                        ok=times["round"] <= TARGET_DISPATCH_MS))  # fmt: skip
        rows.append(row(f"{nodes} units: memory per unit, campus state", mem[nodes][0], "bytes",
                        reference=f"site configuration {mem[nodes][1]:,.0f} B/unit"))  # fmt: skip
    for k, what in (("balanced", "dispatch balanced"), ("proportional", "dispatch proportional"),
                    ("priority", "dispatch priority"), ("round", "round"),
                    ("round_ref", "round, per-unit dicts (reference)"),
                    ("ingest", "ingest msg/s"),
                    ("ingest_previous", "ingest msg/s, previous fast path")):  # fmt: skip
        rows.append(row(f"growth exponent, {what}, {sizes[0]}-{sizes[-1]} units",
                        _slope(sizes, per[k]), "-"))  # fmt: skip
    rows.append(row("load average (1 min) at the end", os.getloadavg()[0], "-"))
    return rows


if __name__ == "__main__":
    from vpp.bench import print_table

    print_table(run("--quick" in sys.argv))
