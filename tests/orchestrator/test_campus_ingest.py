"""The campus's fast telemetry path (vpp/orchestrator/campus/ingest.py) against the model
path it stands in for: for generated messages, well-formed, malformed, forged and out of
the receipt window, it accepts and refuses exactly what the models and the roster do,
and leaves the campus in the same state with the same counters."""

from __future__ import annotations

import asyncio
import json
import math
import random
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
import zmq
import zmq.asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.aio import run
from vpp.config.models import SiteConfig
from vpp.errors import MessageError
from vpp.orchestrator.bus import schema as s
from vpp.orchestrator.bus import sockets
from vpp.orchestrator.bus.pubsub import Subscriber
from vpp.orchestrator.bus.topology import Topology
from vpp.orchestrator.campus import ingest
from vpp.orchestrator.campus.fleet import LEVELS, SAFETY_STATES
from vpp.orchestrator.campus.service import Campus

UNITS = {"u0": "field-a", "u1": "field-a", "u2": "field-b"}
NOW = time.time()

_num = st.one_of(
    st.floats(-1e3, 1e3, allow_nan=False),
    st.integers(-(10**20), 10**20),
    st.sampled_from([0, -0.0, 100, 100.0001, -5, 1e308, "NaN", "inf", "1.5", True, None, [1],
                     10**400, 2**64 + 1, -(2**63) - 1, 5e-324, 1.7976931348623157e308]),
)
#: Values of a field the schema does not have: deep, long, non-finite, plain.
_UNKNOWN = ["[" * 300 + "]" * 300, '{"a":' * 150 + "1" + "}" * 150, "1" + "0" * 5000,
            "NaN", '{"a": [1, "x", null]}', "1e999", '"\\ud800"']  # fmt: skip


@st.composite
def _telemetry(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "unit": draw(st.sampled_from([*UNITS, "ghost", 7])),
        "p_kw": draw(_num), "q_kvar": draw(_num), "soc_pct": draw(_num),
        "soh_pct": draw(st.one_of(_num, st.just(100.0))), "temp_c": draw(_num),
        "limits": draw(st.one_of(
            st.fixed_dictionaries({"p_min_kw": _num, "p_max_kw": _num}),
            st.fixed_dictionaries({"p_min_kw": st.floats(-500, 10),
                                   "p_max_kw": st.floats(-10, 500), "q_max_kvar": _num}),
            st.just("x"))),
        "safety": draw(st.sampled_from(["none", "log", "reduce", "stop", "emergency_shutdown",
                                        "bad", 3])),
        "enabled": draw(st.sampled_from([True, False, "yes", 2, None])),
        "location": draw(st.sampled_from(["a/b", 5, ""])),
    }  # fmt: skip


@st.composite
def _heartbeat(draw: st.DrawFn) -> dict[str, Any]:
    body: dict[str, Any] = {
        "role": draw(st.sampled_from(["unit", "field", "campus", 1])),
        "id": draw(st.sampled_from([*UNITS, "field-a", "field-b", "field-z", "ghost"])),
    }
    if draw(st.booleans()):
        services = draw(st.sampled_from([["fcr"], "fcr", [1], []]))
        body["capabilities"] = {"rated_kw": draw(_num), "rated_kwh": draw(_num),
                                "services": services}  # fmt: skip
    if draw(st.booleans()):
        body["owner"] = draw(st.sampled_from(["field-a", 3]))
    return body


@st.composite
def _payload(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["telemetry", "telemetry", "heartbeat", "event", "nonsense"]))
    body = draw(_telemetry() if kind != "heartbeat" else _heartbeat())
    # Drop one body field now and then (required or not).
    if draw(st.booleans()) and isinstance(body, dict):
        body.pop(draw(st.sampled_from(sorted(body))))
    env: dict[str, Any] = {
        "v": draw(st.sampled_from([2, 2, 2, 1, "2", 2.0])),
        "type": kind, "sender": draw(st.sampled_from(["field-a", "field-b", "mallory", 4])),
        "id": draw(st.sampled_from(["abc", 12])),
        "ts": draw(st.sampled_from([0.0, -1.0, 4.0, 6.0, -29.0, -31.0]).map(lambda x: NOW + x)
                   | st.sampled_from(["1e999", str(NOW), None])),
        "corr": draw(st.sampled_from([None, "x", 1])), "body": body,
    }  # fmt: skip
    if draw(st.booleans()):
        env.pop(draw(st.sampled_from(["v", "corr", "id", "ts", "sender"])))
    text = json.dumps(env)
    # Raw-text damage: NaN literal, a repeated key, cut short, not UTF-8, an unknown field,
    # an escaped key, a second type, a number in exponent form, white space.
    damage = draw(st.sampled_from(["", "", "", "nan", "dup", "cut", "bytes", "unknown",
                                   "escape", "utf8", "type", "exp", "space"]))  # fmt: skip
    if damage == "nan":
        text = text.replace("-1.0", "NaN", 1)
    elif damage == "dup":
        text = text[:-1] + ', "sender": "field-b"}'
    elif damage == "cut":
        text = text[: draw(st.integers(0, len(text)))]
    elif damage == "unknown":
        value = draw(st.sampled_from(_UNKNOWN))
        where = draw(st.sampled_from(['"body": {', "{"]))
        text = text.replace(where, f'{where}"x": {value}, ', 1)
    elif damage == "escape":
        text = text.replace('"sender"', '"\\u0073ender"', 1)
    elif damage == "type":
        text = text[:-1] + f', "type": "{draw(st.sampled_from(["telemetry", "heartbeat"]))}"}}'
    elif damage == "exp":
        # The first decimal number written as 17 significant digits and an exponent.
        text = re.sub(r"(?<=: )-?\d+\.\d+(e[-+]?\d+)?", lambda m: f"{float(m[0]):.16e}", text,
                      count=1)  # fmt: skip
    elif damage == "space":
        text = " \n" + text.replace(": ", ":\t", 3) + "\r\n "
    data = text.encode()
    if damage == "utf8":
        # Not UTF-8, a surrogate in UTF-8, and two characters that are.
        bad = draw(st.sampled_from([b"\xc3\x28", b"\xed\xa0\x80", b"\xc3\xa9",
                                    b"\xf0\x9f\x94\x8b"]))  # fmt: skip
        data = data.replace(b'"abc"', b'"ab' + bad + b'"', 1)
    return b"\xff" + data if damage == "bytes" else data


_finite = st.floats(allow_nan=False, allow_infinity=False)
_text = st.text(max_size=12)


@st.composite
def _valid_payload(draw: st.DrawFn) -> bytes:
    """A message as a field controller's encoder writes it (the schema's every field),
    from senders that may or may not own what they speak for, at times in and out of the
    receipt window: all of it well formed, so the fast path must take it."""
    unit = draw(st.sampled_from([*UNITS, "ghost", "field-a"]))
    body: s.Telemetry | s.Heartbeat
    if draw(st.booleans()):
        lo = draw(st.floats(-500, 10) | _finite)
        body = s.Telemetry(
            unit=unit, p_kw=draw(_finite), q_kvar=draw(_finite),
            soc_pct=draw(st.floats(0.0, 100.0)), soh_pct=draw(st.floats(0.0, 100.0)),
            temp_c=draw(_finite), limits=s.Limits(p_min_kw=lo, p_max_kw=draw(_finite),
                                                  q_max_kvar=draw(_finite)),
            safety=draw(st.sampled_from(SAFETY_STATES)), enabled=draw(st.booleans()),
            location=draw(_text))  # fmt: skip
    else:
        caps = s.Capabilities(rated_kw=draw(st.floats(0.0, 1e300)),
                              rated_kwh=draw(st.floats(0.0, 1e300)),
                              services=tuple(draw(st.lists(_text, max_size=3))))  # fmt: skip
        body = s.Heartbeat(role=draw(st.sampled_from(["unit", "unit", "field", "campus", ""])),
                           id=unit, location=draw(_text), capabilities=caps,
                           owner=draw(_text), endpoint=draw(_text))  # fmt: skip
    # Mostly the owner (a field controller speaks for itself).
    owner = UNITS.get(unit, unit)
    sender = draw(st.sampled_from([owner, owner, owner, "field-b", "mallory"]))
    msg = s.make(body, sender, corr=draw(st.none() | _text))
    ts = NOW + draw(st.sampled_from([0.0, -1.0, 4.0, 6.0, -29.0, -31.0]))
    data = s.encode(msg.model_copy(update={"ts": ts}))
    if draw(st.integers(0, 3)):
        return data
    # A number at or just past a bound of the schema.
    env = json.loads(data)
    b = env["body"]
    if "limits" in b:
        where, key = draw(st.sampled_from([(b, "soc_pct"), (b, "soh_pct"), (b, "p_kw"),
                                           (b["limits"], "p_min_kw"), (env, "ts")]))
    else:
        where, key = draw(st.sampled_from([(b["capabilities"], "rated_kw"),
                                           (b["capabilities"], "rated_kwh"), (env, "ts")]))
    where[key] = draw(st.sampled_from([100.0, 100.00000000000001, 0.0, -0.0, -5e-324,
                                       -1e-300, 5e-324, 1e308, -1e308, 101, -1]))
    return json.dumps(env).encode()


def _site() -> SiteConfig:
    def unit(uid: str, k: int) -> dict[str, Any]:
        loc = dict(zip(LEVELS, ("IN", "KA", "B", "c1", f"b{k}", uid), strict=True))
        return {"id": uid, "rated_power_kw": 100, "capacity_kwh": 200, "location": loc,
                "inverter": {"protocol": "modbus_tcp", "config": {}}}  # fmt: skip

    fields: dict[str, list[dict[str, Any]]] = {}
    for k, (uid, f) in enumerate(UNITS.items()):
        fields.setdefault(f, []).append(unit(uid, k))
    return SiteConfig.model_validate(
        {"field": [{"id": f, "units": us} for f, us in fields.items()]}
    )


@pytest.fixture(scope="module")
def subs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Subscriber]]:
    d = tmp_path_factory.mktemp("subs")
    made = {f"{name}{auth}": Subscriber(f"ipc://{d}/{name}{auth}", bind=True, authenticated=auth)
            for name in ("model", "fast") for auth in (False, True)}  # fmt: skip
    yield made
    for sub in made.values():
        sub.close()


def _frames(payload: bytes, auth: bool, who: bytes) -> list[bytes]:
    return [b"telemetry/u0", payload, who] if auth else [b"telemetry/u0", payload]


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_payload() | _valid_payload(), st.booleans(), st.sampled_from([b"field-a", b"field-b"]),
       st.integers(1, 4))  # fmt: skip
def test_fast_decode_accepts_what_the_models_accept(
    subs: dict[str, Subscriber], payload: bytes, auth: bool, who: bytes, frames_n: int
) -> None:
    frames = _frames(payload, auth, who)
    if frames_n == 1:
        frames = frames[:1]  # a torn message
    model, fast = subs[f"model{auth}"], subs[f"fast{auth}"]
    before = dict(model.errors), dict(fast.errors)
    msg = model.take(list(frames))
    got, payloads, slow = ingest.decode([list(frames)], fast)
    if isinstance(msg, (s.TelemetryMsg, s.HeartbeatMsg)):
        # The row the campus uses, from the fast path or (what it does not take) the
        # models: the same either way.
        assert got == [ingest._model_row(msg)] and payloads == [payload] and not slow
    else:
        # What the fast path leaves goes through the models: the same message or refusal.
        assert not got and [m.model_dump() for m in slow] == ([msg.model_dump()] if msg else [])
    # The same refusals counted, by kind.
    grown = {k: fast.errors[k] - before[1].get(k, 0) for k in fast.errors}
    grown_model = {k: model.errors[k] - before[0].get(k, 0) for k in model.errors}
    assert {k: v for k, v in grown.items() if v} == {k: v for k, v in grown_model.items() if v}
    try:
        struct = ingest._DECODE(payload)
    except msgspec.DecodeError:
        return
    # What the fast schema takes, the models take too (s.decode raises if not), with
    # every value the same.
    assert json.loads(msgspec.json.encode(struct)) == s.decode(payload).model_dump(mode="json")

def _state(c: Campus) -> dict[str, Any]:
    f = c.fleet
    n = f.size
    cols = ("power", "soc", "charge_limit", "discharge_limit", "safety", "last_seen",
            "telemetry_time", "rated_charge", "energy")  # fmt: skip
    return {
        "ids": f.id_table(), "cols": {k: getattr(f, k)[:n].tolist() for k in cols},
        "errors": dict(c.errors), "fleet_errors": dict(f.errors), "ooo": f.out_of_order,
        "ingested": c.ingested, "fields": {k: (p.last_seen, p.online) for k, p in c.fields.items()},
        "owners": c.outbox.owner[:n].tolist(),
    }  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])  # fmt: skip
@given(st.lists(st.lists(_payload() | _valid_payload(), max_size=12), min_size=1, max_size=3),
       st.sampled_from([0.0, 10.0, -10.0]), st.sampled_from([1, 3, ingest.CHUNK]))  # fmt: skip
def test_campus_state_and_counters_match_the_model_path(
    tmp_path: Path,
    subs: dict[str, Subscriber],
    monkeypatch: pytest.MonkeyPatch,
    batches: list[list[bytes]],
    skew: float,
    chunk: int,
) -> None:
    # Small chunks too: a malformed message sends only its chunk one by one.
    monkeypatch.setattr(ingest, "CHUNK", chunk)
    cfg = _site()
    topo = Topology.build(cfg.bus, [f.id for f in cfg.field], tmp_path)
    slow, fast = Campus(cfg, topo), Campus(cfg, topo)
    for campus in (slow, fast):
        campus.roster.clock = lambda: NOW
    for k, batch in enumerate(batches):
        now = NOW + 0.5 * k + (skew if k == len(batches) - 1 else 0.0)  # a clock step too
        msgs = [m for p in batch if (m := subs["modelFalse"].take([b"t", p])) is not None]
        slow.ingest(msgs, now)
        fast.ingest_frames([[b"t", p] for p in batch], subs["fastFalse"], now)
        assert _state(fast) == _state(slow)


def test_last_message_per_unit_wins_and_bad_limits_are_refused(
    tmp_path: Path, subs: dict[str, Subscriber]
) -> None:
    cfg = _site()
    campus = Campus(cfg, Topology.build(cfg.bus, [f.id for f in cfg.field], tmp_path))

    def tel(p_kw: float, p_min: float = -50.0) -> list[bytes]:
        body = s.Telemetry(unit="u0", p_kw=p_kw, soc_pct=50.0, temp_c=20.0,
                           limits=s.Limits(p_min_kw=p_min, p_max_kw=60.0))  # fmt: skip
        return [b"telemetry/u0", s.encode(s.make(body, "field-a"))]

    campus.ingest_frames([tel(1.0), tel(2.0), tel(3.0, p_min=5.0)], subs["fastFalse"], NOW)
    slot = campus.fleet.slot("u0")
    assert campus.fleet.power[slot] == 2.0 and campus.fleet.charge_limit[slot] == 50.0
    assert campus.errors["telemetry"] == 1 and campus.fleet.errors["charge_limit_kw"] == 1
    assert campus.ingested == 2 and not math.isnan(float(np.sum(campus.fleet.power)))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_valid_payload())
def test_well_formed_messages_take_the_fast_path(payload: bytes) -> None:
    # What the field controllers send is never left to the models (the fast path is
    # stricter than they are only for what no encoder of ours writes).
    try:
        msg = s.decode(payload)
    except MessageError:
        return  # a number past a bound: refused (the other tests say by both)
    struct = ingest._DECODE(payload)
    assert isinstance(msg, s.TelemetryMsg | s.HeartbeatMsg)
    assert ingest._ROW(struct) == ingest._model_row(msg)
    assert json.loads(msgspec.json.encode(struct)) == msg.model_dump(mode="json")


@pytest.mark.parametrize(("fast", "model"), [
    (ingest.TelemetryMsg, s.TelemetryMsg), (ingest.HeartbeatMsg, s.HeartbeatMsg),
    (ingest.Telemetry, s.Telemetry), (ingest.Heartbeat, s.Heartbeat),
    (ingest.Limits, s.Limits), (ingest.Capabilities, s.Capabilities),
])  # fmt: skip
def test_the_fast_schema_has_the_models_fields_and_defaults(fast: Any, model: Any) -> None:
    # A field added to a model must be added here too, or every message would go to the
    # models (no unknown field is taken); and a default must be the same.
    def plain(value: Any) -> Any:
        if isinstance(value, s.BaseModel):
            return value.model_dump(mode="json")
        return json.loads(msgspec.json.encode(value))

    info = msgspec.inspect.type_info(fast)
    assert isinstance(info, msgspec.inspect.StructType)
    mine: dict[str, Any] = {
        f.encode_name: "required" if f.required else plain(
            f.default if f.default is not msgspec.NODEFAULT else f.default_factory())
        for f in info.fields}  # fmt: skip
    if info.tag_field is not None:
        mine[info.tag_field] = info.tag
    theirs = {name: "required" if f.is_required() else plain(f.get_default(
        call_default_factory=True)) for name, f in model.model_fields.items()}  # fmt: skip
    assert mine == theirs


@pytest.mark.parametrize(("auth", "native"), [(False, True), (True, True), (True, False)])
def test_ingest_queued_over_a_socket_matches_the_model_path(
    tmp_path: Path, ipc_dir: Path, monkeypatch: pytest.MonkeyPatch, auth: bool, native: bool
) -> None:
    # The campus's receive loop end to end: messages (well formed, malformed, of the wrong
    # number of frames, forged; telemetry and heartbeats) published over ipc, taken a
    # chunk at a time by the compiled receiver (or, without it, by pyzmq), applied per
    # batch; the state and counters those of the model path given the same frames.
    if not native:
        monkeypatch.setattr(sockets, "_receiver", lambda: None)
    rnd = random.Random(4)
    frames_list: list[list[bytes]] = []
    for i in range(700):
        body = s.Telemetry(unit=f"u{i % 3}", p_kw=float(i), soc_pct=float(i % 100),
                           temp_c=20.0, limits=s.Limits(p_min_kw=-50.0, p_max_kw=60.0))
        if i % 5 == 4:
            hb = s.Heartbeat(role="unit", id=f"u{i % 3}")
            msg: s.Message = s.make(hb, UNITS[f"u{i % 3}"])
        else:
            msg = s.make(body, UNITS[f"u{i % 3}"] if i % 11 else "field-b")
        payload = s.encode(msg)
        if i % 97 == 0:
            payload = payload[:-3]  # torn JSON
        who = b"field-b" if i % 13 == 0 else msg.sender.encode()
        frames = [msg.topic, payload, who] if auth else [msg.topic, payload]
        if i % 89 == 0:
            frames = frames[:1]  # too few frames
        frames_list.append(frames)
    cfg = _site()
    topo = Topology.build(cfg.bus, [f.id for f in cfg.field], tmp_path)
    fast, slow = Campus(cfg, topo), Campus(cfg, topo)
    model = Subscriber(f"ipc://{ipc_dir}/model", authenticated=auth, bind=True)

    async def go() -> tuple[int, dict[str, int]]:
        ctx = zmq.asyncio.Context.instance()
        sub = Subscriber(f"ipc://{ipc_dir}/campus", ("",), authenticated=auth, bind=True)
        pub = ctx.socket(zmq.PUB)
        pub.connect(sub.endpoint)
        try:
            while True:  # until the subscription has arrived
                await pub.send_multipart([b"probe", b"{}"] + ([b"x"] if auth else []))
                if await sub.sock.poll(50):
                    break
            while await sub.sock.poll(50):
                sub._sync.recv_multipart()
            sub.errors.clear()
            for frames in frames_list:
                await pub.send_multipart(frames)
            taken = 0
            while taken < len(frames_list):
                taken += await asyncio.wait_for(fast.ingest_queued(sub, limit=rnd.choice(
                    [1, 100, ingest.BATCH])), 10)  # fmt: skip
            return taken, dict(sub.errors)
        finally:
            pub.close(linger=0)
            sub.close()

    now = time.time()  # the messages' own time
    for campus in (fast, slow):
        campus.clock = campus.roster.clock = lambda: now
    taken, errors = run(go())
    assert taken == len(frames_list)
    try:
        slow.ingest([m for f in frames_list if (m := model.take(f)) is not None], now)
    finally:
        model.close()
    # Applied per batch or at once, the last message per unit wins all the same.
    assert _state(fast) == _state(slow)
    assert errors == dict(model.errors) and errors["json"] > 0 and errors["frames"] > 0
    assert fast.ingested > 500 and fast.errors["not_owner"] > 0
    assert errors.get("spoofed", 0) > 0 if auth else "spoofed" not in errors
