"""The versioned message schema of the orchestrator bus.

Every message is one JSON object, an envelope: ``v`` (schema version), ``type``,
``sender``, ``id``, ``ts`` (UNIX s), ``corr`` (the id of the message it answers, or
null) and ``body``, whose model is chosen by ``type``. :func:`decode` validates bytes in
one pass of pydantic-core over a union discriminated by ``type`` (no intermediate dict),
and turns every failure into a :class:`vpp.errors.MessageError` whose ``kind`` is the
counter it belongs to.

Version rule: ``v`` is bumped when a field is removed, renamed or changes meaning; adding
an optional field keeps the version (unknown fields are ignored by receivers). A receiver
refuses any other version than :data:`SCHEMA_VERSION`. Version 2 removed the command's
``issued_by`` (who sent a command is the authenticated identity, not a name it carries).

No NaN or infinity anywhere: JSON has none, yet Python's json writes them as the literals
``NaN`` / ``Infinity``, pydantic-core's parser reads those (and ``1e999`` as an
infinity, and the strings "NaN" or "inf" into a float field), and pydantic's encoder
writes a NaN as ``null`` without a word. Every model refuses non-finite floats
(``allow_inf_nan=False``, the envelope's ``ts`` included) and the free-form fields
(:attr:`Command.params`, :attr:`Event.data`, :attr:`Ack.result`) are walked for them,
so a receiver gets a :class:`MessageError` of kind ``field`` naming the number's path
(``body.params.kw``); a body refuses them when built, and :func:`make` checks again for
what skipped validation (``model_copy``, ``model_construct``, free-form data changed
after). Where a value may honestly be missing (a decision's frequency when the PMU sent
none), the field is optional and None says so.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from typing import Annotated, Any, Literal, TypeAlias, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from vpp.errors import MessageError

__all__ = [
    "SCHEMA_VERSION",
    "Ack",
    "AckMsg",
    "Capabilities",
    "Command",
    "CommandMsg",
    "Decision",
    "DecisionMsg",
    "Dispatch",
    "DispatchMsg",
    "Event",
    "EventMsg",
    "Frequency",
    "FrequencyMsg",
    "Heartbeat",
    "HeartbeatMsg",
    "Limits",
    "Message",
    "Schedule",
    "ScheduleMsg",
    "Telemetry",
    "TelemetryMsg",
    "decode",
    "encode",
    "make",
]

SCHEMA_VERSION = 2

SafetyState = Literal["none", "log", "reduce", "stop", "emergency_shutdown"]
Severity = Literal["info", "warning", "alarm", "critical"]


_Path: TypeAlias = tuple[str | int, ...]

#: Values the fast check walks before it suspects a cycle and lets the slow walk decide.
_FAST_LIMIT = 100_000


def _non_finite(value: Any) -> tuple[_Path, float] | None:
    """The path and value of the first non-finite float in ``value`` (walking models'
    and dataclasses' fields, mappings, lists, tuples and sets: what the encoder writes as
    JSON), or None when there is none."""
    # Every message sent goes through here (make), most with nothing to find: a fast walk
    # first, without paths; the paths only once something was found.
    stack: list[Any] = [value]
    pop, extend = stack.pop, stack.extend
    for _ in range(_FAST_LIMIT):
        if not stack:
            return None
        v = pop()
        t = type(v)
        if t is float:
            if v - v != 0.0:  # NaN and the infinities give NaN
                break
        elif t is str or t is int or t is bool or v is None:
            continue
        elif t is dict:
            extend(v.values())
        elif t is list or t is tuple:
            extend(v)
        elif isinstance(v, BaseModel):
            extend(v.__dict__.values())
        elif isinstance(v, float | Mapping | list | tuple | set | frozenset) or is_dataclass(v):
            break  # a subclass (numpy's float64), a set, a dataclass: the slow walk knows
    return _find_non_finite(value)


def _find_non_finite(value: Any) -> tuple[_Path, float] | None:
    stack: list[tuple[_Path, Any]] = [((), value)]
    seen: set[int] = set()  # containers already walked: a cycle must not loop forever
    while stack:
        path, v = stack.pop()
        if isinstance(v, float):
            if not math.isfinite(v):
                return path, v
            continue
        if isinstance(v, BaseModel):
            items: Any = v.__dict__.items()
        elif isinstance(v, Mapping):
            items = v.items()
        elif isinstance(v, list | tuple | set | frozenset):
            items = enumerate(v)
        elif is_dataclass(v) and not isinstance(v, type):
            items = ((f.name, getattr(v, f.name)) for f in fields(v))
        else:
            continue
        if id(v) in seen:
            continue
        seen.add(id(v))
        # Reversed onto the stack, so the first offender in document order is reported.
        stack.extend(reversed([((*path, k), x) for k, x in items]))
    return None


def _finite_json(value: Any) -> Any:
    """Validator of a free-form field: refuse a non-finite number at any depth."""
    bad = _non_finite(value)
    if bad is not None:
        path, x = bad
        # A ValidationError raised in a validator is merged into the outer one with its
        # location appended to the field's, so the error names ``body.params.kw``.
        raise ValidationError.from_exception_data(
            "non-finite number", [{"type": "finite_number", "loc": path, "input": x}]
        )
    return value


#: Free-form JSON of a command's params, an event's data: no NaN or infinity inside.
_FreeForm: TypeAlias = Annotated[dict[str, Any], AfterValidator(_finite_json)]


class _Body(BaseModel):
    # Frozen: a decoded message may be handed to several consumers. No NaN or infinity
    # (see the module docstring).
    model_config = ConfigDict(frozen=True, extra="ignore", allow_inf_nan=False)


class Limits(_Body):
    """Power limits of a unit now: charge (negative) to discharge (positive) kW, kvar."""

    p_min_kw: float
    p_max_kw: float
    q_max_kvar: float = 0.0


class Telemetry(_Body):
    """One unit's state. Power positive = discharge."""

    unit: str
    p_kw: float
    q_kvar: float = 0.0
    soc_pct: float = Field(ge=0.0, le=100.0)
    soh_pct: float = Field(default=100.0, ge=0.0, le=100.0)
    temp_c: float
    limits: Limits
    safety: SafetyState = "none"
    enabled: bool = True
    """The controller lets its setpoints through (not disabled by a ``control`` command)."""
    location: str = ""
    """Where the unit sits, as a path: ``campus/site/unit``."""


class Frequency(_Body):
    """A grid frequency measurement (PMU time ``t``, not arrival time)."""

    hz: float = Field(gt=0.0)
    rocof: float = 0.0
    band: str
    t: float


class Event(_Body):
    """Something that happened (a band change, a trip, a fault)."""

    kind: str
    severity: Severity = "info"
    text: str = ""
    unit: str = ""
    data: _FreeForm = {}
    """Structured detail (a command's target, params, issuer and outcome; a bid)."""


class Capabilities(_Body):
    """What a peer offers; zero when it has no energy of its own (an aggregator)."""

    rated_kw: float = Field(default=0.0, ge=0.0)
    rated_kwh: float = Field(default=0.0, ge=0.0)
    services: tuple[str, ...] = ()


class Heartbeat(_Body):
    """I am alive: who (``role``, ``id``), where, and what I can do."""

    role: str
    id: str
    location: str = ""
    capabilities: Capabilities = Capabilities()
    owner: str = ""
    """For a battery unit: the field controller that commands it."""
    endpoint: str = ""
    """Where this peer takes commands (its ROUTER endpoint), if it does."""


class Decision(_Body):
    """One per-frame control decision of a unit's core pipeline (published decimated)."""

    unit: str
    t: float
    hz: float | None
    """The measured frequency; None when the PMU sent none (a NaN in its frame)."""
    rocof: float | None = None
    band: str = ""
    response_kw: float
    base_kw: float
    setpoint_kw: float
    action: str = ""


class Command(_Body):
    """A request to act; answered by one :class:`Ack` with ``corr`` = the command's id.

    Who sent it is the identity the transport authenticated (its Curve key), never a
    name in the message: version 1's ``issued_by`` is gone (an old sender's is ignored).
    """

    name: str = Field(min_length=1, max_length=100)
    params: _FreeForm = {}


class Ack(_Body):
    """The answer to a command: ``ok`` with a ``result``, or not ok with an ``error``."""

    ok: bool
    error: str | None = None
    result: Annotated[Any, AfterValidator(_finite_json)] = None
    refused: str | None = None
    """Why a command did not run, as a counter name: ``not_authorised``, ``rate_limited``,
    ``invalid`` (bad parameters), ``unknown`` (no such command); None when it ran (a
    handler that raised is ``ok`` False with ``refused`` ``failed``)."""


class Schedule(_Body):
    """Base power per block (kW, positive = discharge) from ``start`` on."""

    unit: str
    start: float
    block_s: float = Field(default=900.0, gt=0.0)
    base_kw: tuple[float, ...]


class Dispatch(_Body):
    """A power target for one unit (or group) until ``until`` (UNIX s; 0 = no end)."""

    unit: str
    p_kw: float
    q_kvar: float = 0.0
    until: float = 0.0
    reason: str = ""


class _Envelope(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", allow_inf_nan=False)

    v: Literal[2] = 2
    type: str
    sender: str
    id: str
    ts: float
    corr: str | None = None
    body: _Body

    @property
    def topic(self) -> bytes:
        """The PUB/SUB topic: ``type/key`` where key is the unit (or the sender)."""
        key = getattr(self.body, "unit", "") or self.sender
        return f"{self.type}/{key}".encode()


class TelemetryMsg(_Envelope):
    """Envelope of a :class:`Telemetry` body."""

    type: Literal["telemetry"] = "telemetry"
    body: Telemetry


class FrequencyMsg(_Envelope):
    """Envelope of a :class:`Frequency` body."""

    type: Literal["frequency"] = "frequency"
    body: Frequency


class EventMsg(_Envelope):
    """Envelope of an :class:`Event` body."""

    type: Literal["event"] = "event"
    body: Event


class HeartbeatMsg(_Envelope):
    """Envelope of a :class:`Heartbeat` body."""

    type: Literal["heartbeat"] = "heartbeat"
    body: Heartbeat


class DecisionMsg(_Envelope):
    """Envelope of a :class:`Decision`."""

    type: Literal["decision"] = "decision"
    body: Decision


class CommandMsg(_Envelope):
    """Envelope of a :class:`Command` body."""

    type: Literal["command"] = "command"
    body: Command


class AckMsg(_Envelope):
    """Envelope of an :class:`Ack` body."""

    type: Literal["ack"] = "ack"
    body: Ack


class ScheduleMsg(_Envelope):
    """Envelope of a :class:`Schedule` body."""

    type: Literal["schedule"] = "schedule"
    body: Schedule


class DispatchMsg(_Envelope):
    """Envelope of a :class:`Dispatch` body."""

    type: Literal["dispatch"] = "dispatch"
    body: Dispatch


Message: TypeAlias = Annotated[
    TelemetryMsg
    | FrequencyMsg
    | EventMsg
    | HeartbeatMsg
    | DecisionMsg
    | CommandMsg
    | AckMsg
    | ScheduleMsg
    | DispatchMsg,
    Field(discriminator="type"),
]

_ADAPTER: TypeAdapter[Message] = TypeAdapter(Message)

# Derived from the union, so a new message type is added in one place.
_BODY_TO_MSG: dict[type[_Body], type[_Envelope]] = {
    cls.model_fields["body"].annotation: cls
    for cls in get_args(get_args(Message)[0])
}


def make(body: _Body, sender: str, *, corr: str | None = None, id: str | None = None) -> Message:
    """Wrap ``body`` in its envelope, with a fresh id and the current time.

    Raises :class:`MessageError` (kind ``field``) when the body holds a non-finite number:
    bodies refuse them when built, but ``model_copy``, ``model_construct`` or free-form
    data changed afterwards skip that check, and the encoder would send a NaN as null.
    """
    bad = _non_finite(body)
    if bad is not None:
        path, x = bad
        field = ".".join(map(str, ("body", *path)))
        raise MessageError(f"{field}: {x} is not a finite number", kind="field", field=field,
                           where=f"sender {sender}")  # fmt: skip
    cls = _BODY_TO_MSG[type(body)]
    msg: Message = cls(  # type: ignore[assignment,call-arg]  # class chosen by the body
        sender=sender, id=id or uuid.uuid4().hex, ts=time.time(), corr=corr, body=body
    )
    return msg


def encode(msg: Message) -> bytes:
    """The message as compact JSON bytes."""
    return _ADAPTER.dump_json(msg)


def decode(data: bytes | str, where: str = "") -> Message:
    """Validate bytes into a message, or raise :class:`MessageError` saying what and where.

    ``where`` names the endpoint the bytes came from; the sender is added when the
    envelope got far enough to have one.
    """
    try:
        return _ADAPTER.validate_json(data)
    except ValidationError as exc:
        raise _message_error(exc, data, where) from None


def _message_error(exc: ValidationError, data: bytes | str, where: str) -> MessageError:
    err = exc.errors(include_url=False, include_input=False)[0]
    etype = err["type"]
    loc = [str(p) for p in err["loc"]]
    if etype == "json_invalid":
        return MessageError(f"malformed JSON: {err['msg']}", kind="json", where=where)
    if etype in ("union_tag_invalid", "union_tag_not_found", "model_attributes_type"):
        return MessageError(f"unknown message type: {err['msg']}", kind="type", field="type",
                            where=where)  # fmt: skip
    if not loc:
        return MessageError(f"not a message object: {err['msg']}", kind="json", where=where)
    # loc[0] is the union tag (the message type); what follows is the field path.
    field = ".".join(loc[1:])
    sender = _peek_sender(data)
    where = ", ".join(w for w in (where, f"sender {sender}" if sender else "") if w)
    if field == "v":
        return MessageError(
            f"unsupported schema version (expected {SCHEMA_VERSION})",
            kind="version",
            field="v",
            where=where,
        )
    return MessageError(
        f"invalid {loc[0]} message: {field}: {err['msg']}", kind="field", field=field, where=where
    )


def _peek_sender(data: bytes | str) -> str:
    # Only on the error path: a second parse to name the culprit in the message.
    import json

    try:
        obj = json.loads(data)
    except ValueError:
        return ""
    sender = obj.get("sender") if isinstance(obj, dict) else None
    return sender if isinstance(sender, str) else ""
