"""The campus's fast telemetry path (vpp/orchestrator/campus/ingest.py) against the model
path it stands in for: for generated messages, well-formed, malformed, forged and out of
the receipt window, it accepts and refuses exactly what the models and the roster do,
and leaves the campus in the same state with the same counters."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vpp.config.models import SiteConfig
from vpp.orchestrator.bus import schema as s
from vpp.orchestrator.bus.pubsub import Subscriber
from vpp.orchestrator.bus.topology import Topology
from vpp.orchestrator.campus import ingest
from vpp.orchestrator.campus.fleet import LEVELS
from vpp.orchestrator.campus.service import Campus

UNITS = {"u0": "field-a", "u1": "field-a", "u2": "field-b"}
NOW = time.time()

_num = st.one_of(
    st.floats(-1e3, 1e3, allow_nan=False),
    st.sampled_from([0, -0.0, 100, 100.0001, -5, 1e308, "NaN", "inf", "1.5", True, None, [1]]),
)


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
    # Raw-text damage: NaN literal, a repeated key, cut short, not UTF-8.
    damage = draw(st.sampled_from(["", "", "", "nan", "dup", "cut", "bytes"]))
    if damage == "nan":
        text = text.replace("-1.0", "NaN", 1)
    elif damage == "dup":
        text = text[:-1] + ', "sender": "field-b"}'
    elif damage == "cut":
        text = text[: draw(st.integers(0, len(text)))]
    data = text.encode()
    return b"\xff" + data if damage == "bytes" else data


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
@given(_payload(), st.booleans(), st.sampled_from([b"field-a", b"field-b"]),
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
    wanted = isinstance(msg, (s.TelemetryMsg, s.HeartbeatMsg))
    assert bool(got) == wanted
    if wanted:
        assert msg is not None and payloads == [payload] and not slow
        d = got[0]
        assert (d["type"], d["sender"], d["ts"]) == (msg.type, msg.sender, msg.ts)
        body = msg.body
        if isinstance(body, s.Telemetry):
            b = d["body"]
            assert (b["unit"], b["p_kw"], b["soc_pct"], b.get("safety", "none")) == (
                body.unit, body.p_kw, body.soc_pct, body.safety)
            lim = b["limits"]
            assert (lim["p_min_kw"], lim["p_max_kw"]) == (body.limits.p_min_kw,
                                                          body.limits.p_max_kw)  # fmt: skip
        else:
            assert (d["body"]["role"], d["body"]["id"]) == (body.role, body.id)
    else:
        # What the fast path leaves goes through the models: the same message or refusal.
        assert [m.model_dump() for m in slow] == ([msg.model_dump()] if msg else [])
    # The same refusals counted, by kind.
    grown = {k: fast.errors[k] - before[1].get(k, 0) for k in fast.errors}
    grown_model = {k: model.errors[k] - before[0].get(k, 0) for k in model.errors}
    assert {k: v for k, v in grown.items() if v} == {k: v for k, v in grown_model.items() if v}


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
@given(st.lists(st.lists(_payload(), max_size=12), min_size=1, max_size=3),
       st.sampled_from([0.0, 10.0, -10.0]))  # fmt: skip
def test_campus_state_and_counters_match_the_model_path(
    tmp_path: Path, subs: dict[str, Subscriber], batches: list[list[bytes]], skew: float
) -> None:
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
