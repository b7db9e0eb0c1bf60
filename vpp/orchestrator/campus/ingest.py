"""The campus's telemetry and heartbeat ingest without a model object per message.

:func:`decode` validates each payload with one pydantic-core call into plain dicts, under
a schema that mirrors :class:`~vpp.orchestrator.bus.schema.TelemetryMsg` and
:class:`~vpp.orchestrator.bus.schema.HeartbeatMsg` field for field (same types, same
ranges, same defaults' absence, no NaN or infinity, unknown fields ignored), so it
accepts exactly what they accept (tested against them with generated and malformed
messages). Anything it does not accept (another message type, a malformed or forged
one, a sender that is not the broker-stamped publisher) goes to the subscriber's model
path, which validates, counts and logs it as before.

:func:`apply` then runs the same rules as :meth:`Campus.ingest
<vpp.orchestrator.campus.service.Campus.ingest>`: the roster's (time within the receipt
window, the sender owns the unit; a refusal is counted and logged by the roster itself),
registration of a configured unit on its first message, and the fleet's checks, with
the fleet's arrays written once per batch rather than once per message. Every
message of a batch carries the same time of receipt, so the last one per unit wins, as
it would one by one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError
from typing_extensions import NotRequired, TypedDict

from vpp.errors import VppError
from vpp.orchestrator.bus import schema as s
from vpp.orchestrator.campus.fleet import SAFETY_STATES

if TYPE_CHECKING:
    from vpp.orchestrator.bus.pubsub import Subscriber
    from vpp.orchestrator.campus.service import Campus

__all__ = ["apply", "decode"]

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


def decode(
    batch: list[list[bytes]], sub: Subscriber
) -> tuple[list[dict[str, Any]], list[bytes], list[s.Message]]:
    """Telemetry and heartbeats of ``batch`` as dicts (with their payloads, same order),
    and the other messages the subscriber's model path accepted."""
    fast: list[dict[str, Any]] = []
    payloads: list[bytes] = []
    slow: list[s.Message] = []
    # The core validator itself: TypeAdapter's wrapper costs a sixth of the call.
    validate = _ADAPTER.validator.validate_json
    n = sub.frame_count
    for frames in batch:
        if len(frames) == n:
            try:
                d: dict[str, Any] = validate(frames[1])
            except ValidationError:
                pass
            else:
                # Stamped by the broker: the envelope's sender must be the publisher.
                if n == 2 or d["sender"].encode() == frames[2]:
                    fast.append(d)
                    payloads.append(frames[1])
                    continue
        msg = sub.take(frames)
        if msg is not None:
            slow.append(msg)
    return fast, payloads, slow


def apply(campus: Campus, batch: list[dict[str, Any]], payloads: list[bytes], now: float) -> None:
    """Apply decoded telemetry and heartbeats to the campus (see the module docstring)."""
    roster = campus.roster
    owners, fields = roster.owners, roster.fields
    received = roster.clock()
    future, age = roster.max_future_s, roster.max_age_s
    fleet = campus.fleet
    slot_of = fleet.slot_map()
    slots: list[int] = []
    rows: list[tuple[float, float, float, float, int]] = []
    where: list[int] = []
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
            where.append(i)
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
    if slots:
        _telemetry(campus, np.array(slots, dtype=np.intp), np.array(rows), where, batch, now)


def _telemetry(
    campus: Campus,
    slots: np.ndarray[Any, np.dtype[np.intp]],
    rows: np.ndarray[Any, np.dtype[np.float64]],
    where: list[int],
    batch: list[dict[str, Any]],
    now: float,
) -> None:
    fleet = campus.fleet
    power, soc, p_min, p_max, safety = rows.T
    # What the schema does not check and the fleet does: limits of the right sign
    # (finite and SOC range the schema checked). A refused one goes through the fleet's
    # own call, which counts and logs it as one by one.
    bad = (p_min > 0.0) | (p_max < 0.0)
    for k in np.flatnonzero(bad).tolist():
        b = batch[where[k]]["body"]
        lim = b["limits"]
        try:
            fleet.telemetry(b["unit"], b["p_kw"], b["soc_pct"], -lim["p_min_kw"],
                            lim["p_max_kw"], b.get("safety", "none"), now)  # fmt: skip
        except VppError as err:
            campus.bad_input("telemetry", err)
    good = ~bad
    campus.ingested += int(good.sum())
    fresh = good & (now >= fleet.telemetry_time[slots])
    fleet.out_of_order += int((good & ~fresh).sum())
    # The last message per unit wins: unique over the reversed order keeps the last.
    keep = np.flatnonzero(fresh)[::-1]
    _, first = np.unique(slots[keep], return_index=True)
    keep = keep[first]
    at = slots[keep]
    fleet.telemetry_time[at] = now
    fleet.last_seen[at] = np.maximum(fleet.last_seen[at], now)
    fleet.power[at] = power[keep]
    fleet.soc[at] = soc[keep]
    fleet.charge_limit[at] = -p_min[keep]
    fleet.discharge_limit[at] = p_max[keep]
    fleet.safety[at] = safety[keep]
