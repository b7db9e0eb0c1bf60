"""The message schema: round trips, topics, and a typed error for every kind of bad input."""

from __future__ import annotations

import json
from typing import Any

import pytest

from vpp.errors import MessageError, VppError
from vpp.orchestrator.bus import schema as s


def telemetry(unit: str = "bess1", p_kw: float = 12.5, soc: float = 55.0) -> s.Telemetry:
    return s.Telemetry(
        unit=unit,
        p_kw=p_kw,
        q_kvar=-3.0,
        soc_pct=soc,
        soh_pct=97.5,
        temp_c=28.0,
        limits=s.Limits(p_min_kw=-100.0, p_max_kw=90.0, q_max_kvar=40.0),
        safety="reduce",
        location="campus1/site2/bess1",
    )


BODIES: list[Any] = [
    telemetry(),
    s.Frequency(hz=49.87, rocof=-0.12, band="low", t=1_700_000_000.02),
    s.Event(kind="band_change", severity="warning", text="normal -> low", unit="bess1"),
    s.Heartbeat(
        role="field",
        id="field1",
        location="campus1/site2",
        capabilities=s.Capabilities(rated_kw=500.0, rated_kwh=1000.0, services=("fcr", "afrr")),
    ),
    s.Command(name="set_base", params={"p_kw": -50.0, "units": ["a", "b"]}, issued_by="campus"),
    s.Ack(ok=False, error="out of range", result={"limit": 90.0}),
    s.Schedule(unit="bess1", start=1_700_000_000.0, base_kw=(10.0, -20.0, 0.0)),
    s.Dispatch(unit="bess1", p_kw=-75.0, q_kvar=5.0, until=1_700_000_900.0, reason="fcr"),
]


@pytest.mark.parametrize("body", BODIES, ids=lambda b: type(b).__name__)
def test_every_body_round_trips(body: Any) -> None:
    msg = s.make(body, "node7", corr="abc")
    data = s.encode(msg)
    back = s.decode(data)
    assert back == msg
    assert back.body == body and back.sender == "node7" and back.corr == "abc"
    assert json.loads(data)["v"] == s.SCHEMA_VERSION == 1


def test_envelope_fields_and_topic() -> None:
    msg = s.make(telemetry(unit="u9"), "field1")
    obj = json.loads(s.encode(msg))
    assert set(obj) == {"v", "type", "sender", "id", "ts", "corr", "body"}
    assert obj["type"] == "telemetry" and obj["body"]["p_kw"] == 12.5
    assert msg.topic == b"telemetry/u9"
    # A body without a unit is filed under its sender.
    assert s.make(s.Frequency(hz=50.0, band="normal", t=1.0), "grid").topic == b"frequency/grid"
    assert len({s.make(telemetry(), "x").id for _ in range(100)}) == 100


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    obj = json.loads(s.encode(s.make(telemetry(), "f")))
    obj["new_field"] = 1
    obj["body"]["cell_v_max"] = 3.41
    assert s.decode(json.dumps(obj)).body == telemetry()


def _bad(data: bytes | str, where: str = "ipc:///x") -> MessageError:
    with pytest.raises(MessageError) as info:
        s.decode(data, where)
    return info.value


def test_malformed_json() -> None:
    err = _bad(b'{"v":1,')
    assert err.kind == "json" and "ipc:///x" in str(err)
    assert isinstance(err, VppError) and isinstance(err, ValueError)
    assert _bad(b"[1, 2]").kind == "json"
    assert _bad(b"\xff\xfe").kind == "json"


def test_unknown_or_missing_type() -> None:
    obj = json.loads(s.encode(s.make(telemetry(), "f")))
    obj["type"] = "telemetry2"
    err = _bad(json.dumps(obj))
    assert (err.kind, err.field) == ("type", "type")
    assert "telemetry2" in str(err)
    del obj["type"]
    assert _bad(json.dumps(obj)).kind == "type"


def test_wrong_version_names_the_sender() -> None:
    obj = json.loads(s.encode(s.make(telemetry(), "field42")))
    obj["v"] = 2
    err = _bad(json.dumps(obj))
    assert (err.kind, err.field) == ("version", "v")
    assert "field42" in err.where and "expected 1" in str(err)


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (("body", "soc_pct"), 101.0, "body.soc_pct"),
        (("body", "p_kw"), "lots", "body.p_kw"),
        (("body", "limits", "p_max_kw"), None, "body.limits.p_max_kw"),
        (("body", "safety"), "melting", "body.safety"),
        (("ts",), "yesterday", "ts"),
    ],
)
def test_invalid_field_is_named(path: tuple[str, ...], value: object, field: str) -> None:
    obj = json.loads(s.encode(s.make(telemetry(), "field3")))
    target = obj
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    err = _bad(json.dumps(obj))
    assert (err.kind, err.field) == ("field", field)
    assert field in str(err) and "field3" in err.where


def test_missing_field_is_named() -> None:
    obj = json.loads(s.encode(s.make(s.Command(name="stop"), "campus")))
    del obj["body"]["name"]
    err = _bad(json.dumps(obj))
    assert (err.kind, err.field) == ("field", "body.name")
