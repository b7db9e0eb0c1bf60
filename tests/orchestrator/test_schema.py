"""The message schema: round trips, topics, and a typed error for every kind of bad input."""

from __future__ import annotations

import dataclasses
import json
import math
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
    s.Command(name="set_base", params={"p_kw": -50.0, "units": ["a", "b"]}),
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
    assert json.loads(data)["v"] == s.SCHEMA_VERSION == 2


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
    obj["v"] = 1  # version 1 carried the command's issued_by: refused, not misread
    err = _bad(json.dumps(obj))
    assert (err.kind, err.field) == ("version", "v")
    assert "field42" in err.where and "expected 2" in str(err)


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


# ---- no NaN or infinity anywhere (issue 8) ----
#
# Python's json writes float("nan") and the infinities as the literals NaN, Infinity and
# -Infinity, pydantic-core's JSON parser reads them (and 1e999 as an infinity, and the
# strings "NaN" and "inf" into a float field), and pydantic's encoder writes a NaN as null:
# every one of them must be refused, with the path of the number.

NON_FINITE = [math.nan, math.inf, -math.inf]
DECISION = s.Decision(unit="u", t=1.0, hz=50.0, rocof=0.1, response_kw=0.0, base_kw=0.0,
                      setpoint_kw=0.0)  # fmt: skip


def _with(body: Any, path: tuple[str | int, ...], value: object) -> str:
    """The JSON of ``body`` in an envelope, with the value at ``path`` replaced (Python's
    json writes a non-finite float as a NaN/Infinity literal, as a sender using it would)."""
    obj = json.loads(s.encode(s.make(body, "node7")))
    target = obj
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return json.dumps(obj)


WHERE: list[tuple[Any, tuple[str | int, ...]]] = [
    (telemetry(), ("ts",)),
    (telemetry(), ("body", "p_kw")),
    (telemetry(), ("body", "limits", "p_max_kw")),
    (s.Frequency(hz=50.0, band="normal", t=1.0), ("body", "rocof")),
    (DECISION, ("body", "rocof")),
    (s.Heartbeat(role="field", id="f"), ("body", "capabilities", "rated_kw")),
    (s.Schedule(unit="u", start=0.0, base_kw=(1.0, 2.0)), ("body", "base_kw", 1)),
    (s.Dispatch(unit="u", p_kw=1.0), ("body", "until")),
    (s.Command(name="set_base", params={"kw": 1.0}), ("body", "params", "kw")),
    (s.Command(name="set_schedule", params={"kw": [1.0, [2.0]]}), ("body", "params", "kw", 1, 0)),
    (s.Event(kind="band", data={"hz": 50.0}), ("body", "data", "hz")),
    (s.Ack(ok=True, result={"soc": [1.0]}), ("body", "result", "soc", 0)),
    (s.Ack(ok=True, result=1.0), ("body", "result")),
]


@pytest.mark.parametrize("value", NON_FINITE, ids=str)
@pytest.mark.parametrize(("body", "path"), WHERE, ids=lambda x: ".".join(map(str, x)) if
                         isinstance(x, tuple) else type(x).__name__)  # fmt: skip
def test_a_non_finite_number_anywhere_is_a_field_error(
    body: Any, path: tuple[str | int, ...], value: float
) -> None:
    err = _bad(_with(body, path, value))
    field = ".".join(map(str, path))
    assert (err.kind, err.field) == ("field", field)
    assert "finite" in str(err) and "node7" in err.where


@pytest.mark.parametrize("literal", [b"1e999", b"-1e999", b'"NaN"', b'"inf"', b'"-Infinity"'])
def test_a_float_field_refuses_an_overflowing_number_or_a_non_finite_string(
    literal: bytes,
) -> None:
    data = s.encode(s.make(telemetry(), "node7")).replace(b'"p_kw":12.5', b'"p_kw":' + literal)
    err = _bad(data)
    assert (err.kind, err.field) == ("field", "body.p_kw")


@pytest.mark.parametrize("literal", [b"1e999", b"-1e999"])
def test_free_form_data_refuses_an_overflowing_number(literal: bytes) -> None:
    good = s.encode(s.make(s.Event(kind="x", data={"v": 1.5}), "node7"))
    err = _bad(good.replace(b'"v":1.5', b'"v":' + literal))
    assert (err.kind, err.field) == ("field", "body.data.v")
    # A string stays a string there: only numbers are checked.
    back = s.decode(good.replace(b'"v":1.5', b'"v":"NaN"'))
    assert isinstance(back.body, s.Event) and back.body.data == {"v": "NaN"}


@pytest.mark.parametrize("value", NON_FINITE, ids=str)
def test_bodies_refuse_a_non_finite_number_when_built(value: float) -> None:
    # Built in a sender's process: refused there, before anything is sent.
    attempts = [
        lambda: s.Telemetry(unit="u", p_kw=value, soc_pct=1.0, temp_c=1.0, limits=LIM),
        lambda: s.Limits(p_min_kw=0.0, p_max_kw=value),
        lambda: s.Frequency(hz=50.0, rocof=value, band="", t=1.0),
        lambda: DECISION.model_validate({**DECISION.model_dump(), "t": value}),
        lambda: s.Schedule(unit="u", start=0.0, base_kw=(1.0, value)),
        lambda: s.Dispatch(unit="u", p_kw=value),
        lambda: s.Command(name="x", params={"a": {"b": [value]}}),
        lambda: s.Event(kind="x", data={"a": value}),
        lambda: s.Ack(ok=True, result=[value]),
        # What the encoder also writes as JSON: a dataclass (a handler's asdict forgotten)
        # and a set.
        lambda: s.Ack(ok=True, result={"agg": _Agg(soc_pct=value)}),
        lambda: s.Event(kind="x", data={"a": {value}}),
    ]
    for make_body in attempts:
        with pytest.raises(ValueError, match="finite"):
            make_body()


LIM = s.Limits(p_min_kw=-1.0, p_max_kw=1.0)


@dataclasses.dataclass
class _Agg:
    soc_pct: float


def test_make_refuses_a_body_that_holds_a_non_finite_number() -> None:
    # Bodies that skipped validation (model_copy, model_construct) or whose free-form
    # data was changed after it: make() is the last check before the bytes leave, and a
    # NaN would otherwise be sent as null without a word.
    with pytest.raises(MessageError) as info:
        s.make(DECISION.model_copy(update={"setpoint_kw": math.nan}), "field-a")
    assert (info.value.kind, info.value.field) == ("field", "body.setpoint_kw")
    assert "field-a" in info.value.where
    ev = s.Event(kind="x", data={"a": [1.0]})
    ev.data["a"].append(math.inf)
    with pytest.raises(MessageError) as info:
        s.make(ev, "grid")
    assert info.value.field == "body.data.a.1"
    tel = telemetry().model_copy(update={"limits": LIM.model_copy(update={"p_min_kw": -math.inf})})
    with pytest.raises(MessageError) as info:
        s.make(tel, "f")
    assert info.value.field == "body.limits.p_min_kw"
    cmd = s.Command.model_construct(name="x", params={"kw": math.nan})
    with pytest.raises(MessageError, match=r"body\.params\.kw"):
        s.make(cmd, "campus")


def test_a_decision_without_a_measured_frequency_has_hz_none() -> None:
    # A PMU frame can carry NaN for a missing frequency: None is the honest value.
    d = s.Decision(unit="u", t=1.0, hz=None, response_kw=0.0, base_kw=0.0, setpoint_kw=0.0)
    back = s.decode(s.encode(s.make(d, "field-a")))
    assert isinstance(back.body, s.Decision) and back.body.hz is None
