"""The campus's telemetry and heartbeat ingest: one row of plain values per message, and
each batch applied column-wise.

:func:`decode` validates each payload with one msgspec call into small structs, under a
schema that mirrors :class:`~vpp.orchestrator.bus.schema.TelemetryMsg` and
:class:`~vpp.orchestrator.bus.schema.HeartbeatMsg` field for field (same types, same
ranges, same defaults, no NaN or infinity), so what it accepts the models accept, with
the same values (tested against them with generated and malformed messages). It is
stricter than the models in three ways, each of which only sends a message to the
models instead: no unknown field (the encoder writes none, and msgspec would skip an
unknown value without the models' limits on nesting and on the digits of a number),
no coercion (``"1.5"`` or ``true`` for a number, ``"yes"`` for a flag, ``2.0`` for the
version), and no second ``type`` key that differs from the first. Anything it does not
take (another message type, a malformed or forged one, a sender that is not the
broker-stamped publisher) goes to the subscriber's model path, which validates, counts
and logs it as before; a telemetry or heartbeat message the models accept there joins
the batch in its place.

Of each message only its row is kept (:data:`Row`: time, sender, unit, power, SOC,
limits, safety state; a heartbeat's role and id): one C-level pass decodes a payload and
reads the row out of its structs, which are freed while still in the processor's cache.
Both bodies answer the same attributes for that (what a heartbeat lacks is a class
constant, and its ``id`` is read as ``unit``), so telemetry and heartbeats need no
separate pass.

:func:`apply` then runs the rules of :meth:`Campus.ingest
<vpp.orchestrator.campus.service.Campus.ingest>` over the batch at once: the roster's
(time within the receipt window, the sender owns the unit: by slot, the owner
:meth:`Campus.register <vpp.orchestrator.campus.service.Campus.register>` placed in the
outbox from the same configuration as the roster's) as array comparisons, the units'
slots looked up in one pass, the fleet's checks as masks, and the fleet's arrays written
once. Every message of a batch carries the same time of receipt, so the last telemetry
per unit wins, as it would one by one. What is neither telemetry nor a unit's heartbeat
for a registered unit and admitted (a refusal, which the roster counts and logs; a
unit's first message, which registers it; a field controller's heartbeat) is handled
one by one in the order received, so slots are given out and refusals logged as the
model path does.
"""

from __future__ import annotations

import sys
from itertools import repeat
from operator import attrgetter, eq, itemgetter
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, TypeAlias

import msgspec
import numpy as np
from msgspec import Meta, Struct

from vpp.errors import VppError
from vpp.orchestrator.bus import schema as s
from vpp.orchestrator.campus.fleet import SAFETY_STATES, Fleet

if TYPE_CHECKING:
    from vpp.orchestrator.bus.pubsub import Subscriber
    from vpp.orchestrator.campus.service import Campus

__all__ = [
    "BATCH",
    "CHUNK",
    "HEARTBEAT",
    "TELEMETRY",
    "Row",
    "apply",
    "decode",
    "decode_into",
    "store_latest",
]

#: A row's ``kind``.
TELEMETRY, HEARTBEAT = 0, 1

Row: TypeAlias = tuple[float, str, int, str, str, float, float, float, float, str]
"""What the campus uses of a message: ``ts``, ``sender``, kind (:data:`TELEMETRY` or
:data:`HEARTBEAT`), the unit (a heartbeat's ``id``), a heartbeat's ``role`` (telemetry:
""), ``p_kw``, ``soc_pct``, ``p_min_kw``, ``p_max_kw``, ``safety`` (a heartbeat: 0.0
and "none")."""

#: Messages received and decoded at once: their frames are decoded while still in the
#: processor's cache, and a malformed one costs its chunk a second pass, one by one.
CHUNK = 256
#: Messages applied at once (a chunk at a time received and decoded until then): the
#: rows of a larger batch no longer fit the cache, a smaller one pays the batch's fixed
#: cost over fewer messages.
BATCH = 1024

_MAX = sys.float_info.max
# JSON has no NaN or infinity, and msgspec refuses a number beyond the float range
# ("1e999") rather than reading it as infinity; the bounds say "finite" all the same.
_Finite = Annotated[float, Meta(ge=-_MAX, le=_MAX)]
_Pct = Annotated[float, Meta(ge=0.0, le=100.0)]
_NonNegative = Annotated[float, Meta(ge=0.0, le=_MAX)]


class _Strict(Struct, forbid_unknown_fields=True, gc=False):
    """No unknown field (see the module docstring); not tracked by the garbage collector
    (no cycles: numbers, strings and other structs)."""


class Limits(_Strict):
    p_min_kw: _Finite
    p_max_kw: _Finite
    q_max_kvar: _Finite = 0.0


class Telemetry(_Strict):
    unit: str
    p_kw: _Finite
    soc_pct: _Pct
    temp_c: _Finite
    limits: Limits
    q_kvar: _Finite = 0.0
    soh_pct: _Pct = 100.0
    safety: s.SafetyState = "none"
    enabled: bool = True
    location: str = ""
    # The row's columns a telemetry body has no field for.
    kind: ClassVar[int] = TELEMETRY
    role: ClassVar[str] = ""


class Capabilities(_Strict):
    rated_kw: _NonNegative = 0.0
    rated_kwh: _NonNegative = 0.0
    services: tuple[str, ...] = ()


_NO_LIMITS = Limits(p_min_kw=0.0, p_max_kw=0.0)


class Heartbeat(_Strict):
    role: str
    unit: str = msgspec.field(name="id")
    """The heartbeat's ``id``, read as the row's unit (a unit's id for role ``unit``)."""
    location: str = ""
    capabilities: Capabilities = msgspec.field(default_factory=Capabilities)
    owner: str = ""
    endpoint: str = ""
    # The row's columns a heartbeat has no field for.
    kind: ClassVar[int] = HEARTBEAT
    p_kw: ClassVar[float] = 0.0
    soc_pct: ClassVar[float] = 0.0
    limits: ClassVar[Limits] = _NO_LIMITS
    safety: ClassVar[str] = "none"


class TelemetryMsg(_Strict, tag_field="type", tag="telemetry"):
    sender: str
    id: str
    ts: _Finite
    body: Telemetry
    v: Literal[2] = 2
    corr: str | None = None


class HeartbeatMsg(_Strict, tag_field="type", tag="heartbeat"):
    sender: str
    id: str
    ts: _Finite
    body: Heartbeat
    v: Literal[2] = 2
    corr: str | None = None


_DECODE = msgspec.json.Decoder(TelemetryMsg | HeartbeatMsg).decode
_ROW = attrgetter("ts", "sender", "body.kind", "body.unit", "body.role", "body.p_kw",
                  "body.soc_pct", "body.limits.p_min_kw", "body.limits.p_max_kw",
                  "body.safety")  # fmt: skip
_SAFETY_CODE = {name: code for code, name in enumerate(SAFETY_STATES)}
_SENDER = itemgetter(1)


def decode(
    batch: list[list[bytes]], sub: Subscriber
) -> tuple[list[Row], list[bytes], list[s.Message]]:
    """The rows of the telemetry and heartbeats of ``batch`` (received frames) with their
    payloads (same order), and the other messages the subscriber's model path
    accepted."""
    n = sub.frame_count
    payloads: list[bytes] = []
    identities: list[bytes] = []
    others: list[list[bytes]] = []
    for frames in batch:
        if len(frames) != n:
            others.append(frames)
            continue
        payloads.append(frames[1])
        if n == 3:
            identities.append(frames[2])
    rows: list[Row] = []
    taken: list[bytes] = []
    slow: list[s.Message] = []
    decode_into(payloads, identities, others, sub, rows, taken, slow)
    return rows, taken, slow


def decode_into(
    payloads: list[bytes],
    identities: list[bytes],
    others: list[list[bytes]],
    sub: Subscriber,
    rows: list[Row],
    taken: list[bytes],
    slow: list[s.Message],
) -> None:
    """:func:`decode` of what :meth:`Subscriber.recv_parts
    <vpp.orchestrator.bus.pubsub.Subscriber.recv_parts>` gave, appending to ``rows``,
    ``taken`` (their payloads) and ``slow``. Messages of the wrong number of frames
    (``others``) go to the model path, which counts and logs them."""
    for frames in others:
        sub.take(frames)
    for start in range(0, len(payloads), CHUNK):
        chunk = payloads[start : start + CHUNK]
        ids = identities[start : start + CHUNK]
        # The common case: every message well formed, taken in one C-level pass.
        try:
            got: list[Row] = list(map(_ROW, map(_DECODE, chunk)))
        except msgspec.DecodeError:
            pass
        else:
            # Stamped by the broker: the envelope's sender must be the publisher.
            if not ids or all(map(eq, map(str.encode, map(_SENDER, got)), ids)):
                rows += got
                taken += chunk
                continue
        _decode_each(chunk, ids, sub, rows, taken, slow)


def _decode_each(
    chunk: list[bytes],
    ids: list[bytes],
    sub: Subscriber,
    rows: list[Row],
    taken: list[bytes],
    slow: list[s.Message],
) -> None:
    for k, payload in enumerate(chunk):
        try:
            row: Row = _ROW(_DECODE(payload))
        except msgspec.DecodeError:
            pass
        else:
            if not ids or row[1].encode() == ids[k]:
                rows.append(row)
                taken.append(payload)
                continue
        # The model path reads no topic: an empty one stands for it.
        msg = sub.take([b"", payload, ids[k]] if ids else [b"", payload])
        if isinstance(msg, s.TelemetryMsg | s.HeartbeatMsg):
            rows.append(_model_row(msg))
            taken.append(payload)
        elif msg is not None:
            slow.append(msg)


def _model_row(msg: s.TelemetryMsg | s.HeartbeatMsg) -> Row:
    """The row of a message the models accepted (and the fast path did not)."""
    b = msg.body
    if isinstance(b, s.Telemetry):
        lim = b.limits
        return (msg.ts, msg.sender, TELEMETRY, b.unit, "", b.p_kw, b.soc_pct, lim.p_min_kw,
                lim.p_max_kw, b.safety)  # fmt: skip
    return (msg.ts, msg.sender, HEARTBEAT, b.id, b.role, 0.0, 0.0, 0.0, 0.0, "none")


def apply(campus: Campus, rows: list[Row], payloads: list[bytes], now: float) -> None:
    """Apply decoded telemetry and heartbeats to the campus (see the module docstring)."""
    k = len(rows)
    if not k:
        return
    cols: list[tuple[Any, ...]] = list(zip(*rows, strict=True))
    roster, fleet, outbox = campus.roster, campus.fleet, campus.outbox
    received = roster.clock()
    ts = np.fromiter(cols[0], np.float64, k)
    timely = ~((ts - received > roster.max_future_s) | (received - ts > roster.max_age_s))
    telemetry = np.fromiter(cols[2], np.int8, k) == TELEMETRY
    unit_beat = np.fromiter(map(eq, cols[4], repeat("unit")), np.bool_, k)
    slots = fleet.slots_of(cols[3])
    known = slots >= 0
    owned = np.zeros(k, np.bool_)
    if known.any():
        owner = outbox.owner[np.where(known, slots, 0)]
        owned = known & (owner >= 0) & (owner == outbox.field_indices(cols[1]))
    plain = timely & owned & (telemetry | unit_beat)
    # Everything else one by one, in the order received.
    extra: list[tuple[int, int]] = []  # (row, slot) of telemetry that registered its unit
    for i in np.flatnonzero(~plain).tolist():
        slot = _one(campus, rows[i], payloads[i], received, now)
        if slot is not None:
            extra.append((i, slot))
    # A unit's heartbeat: alive (Campus.register of a registered unit).
    beats = slots[plain & ~telemetry]
    if len(beats):
        fleet.last_seen[beats] = np.maximum(fleet.last_seen[beats], now)
        campus.ingested += len(beats)
    at = np.flatnonzero(plain & telemetry)
    to = slots[at]
    if extra:
        # Telemetry of units registered in this batch joins the rest, in row order.
        more = np.array(extra, dtype=np.intp)
        at = np.concatenate([at, more[:, 0]])
        to = np.concatenate([to, more[:, 1]])
        order = np.argsort(at, kind="stable")
        at, to = at[order], to[order]
    if len(at):
        values = np.array(cols[5:9], dtype=np.float64)[:, at]
        safety = np.fromiter(map(_SAFETY_CODE.__getitem__, cols[9]), np.int8, k)[at]
        _telemetry(campus, to, values, safety, at, rows, now)


def _one(campus: Campus, row: Row, payload: bytes, received: float, now: float) -> int | None:
    """One message the batch's columns do not take: refused (counted and logged by the
    roster), a heartbeat, or a unit's first telemetry (then the slot it registered,
    for the batch to write)."""
    roster = campus.roster
    ts, sender, kind, key, role = row[:5]
    why: str | None = None
    if ts - received > roster.max_future_s:
        why = "future"
    elif received - ts > roster.max_age_s:
        why = "stale"
    if why is None and (kind == TELEMETRY or role == "unit"):
        owner = roster.owners.get(key)
        why = "unknown_unit" if owner is None else None if owner == sender else "not_owner"
    elif why is None and role == "field":
        why = "unknown_field" if key not in roster.fields else None if sender == key else (
            "not_owner")  # fmt: skip
    if why is not None:
        roster.refuse(why, s.decode(payload), received)
        return None
    if kind == TELEMETRY:
        # Telemetry from the owner registers its unit, as in Campus.ingest.
        if key not in campus.fleet:
            campus.register(key, now)
        return campus.fleet.slot(key)
    try:
        campus.heartbeat(role, key, now)
        campus.ingested += 1
    except VppError as err:
        campus.bad_input("heartbeat", err)
    return None


def _telemetry(
    campus: Campus,
    slots: np.ndarray[Any, np.dtype[np.intp]],
    values: np.ndarray[Any, np.dtype[np.float64]],
    safety: np.ndarray[Any, np.dtype[np.int8]],
    at: np.ndarray[Any, np.dtype[np.intp]],
    rows: list[Row],
    now: float,
) -> None:
    """Admitted telemetry of registered units (``at``: their rows, in order), written to
    the fleet's arrays at once."""
    fleet = campus.fleet
    power, soc, p_min, p_max = values
    # What the schema does not check and the fleet does: limits of the right sign
    # (finite and SOC range the schema checked). A refused one goes through the fleet's
    # own call, which counts and logs it as one by one.
    bad = (p_min > 0.0) | (p_max < 0.0)
    for j in np.flatnonzero(bad).tolist():
        _, _, _, unit, _, p_kw, soc_pct, lo, hi, state = rows[at[j]]
        try:
            fleet.telemetry(unit, p_kw, soc_pct, -lo, hi, state, now)
        except VppError as err:
            campus.bad_input("telemetry", err)
    good = ~bad
    campus.ingested += int(good.sum())
    fresh = good & (now >= fleet.telemetry_time[slots])
    fleet.out_of_order += int((good & ~fresh).sum())
    store_latest(fleet, slots, fresh, now, power, soc, p_min, p_max, safety)


def store_latest(
    fleet: Fleet,
    slots: np.ndarray[Any, np.dtype[np.intp]],
    fresh: np.ndarray[Any, np.dtype[np.bool_]],
    now: float,
    *columns: np.ndarray[Any, Any],
) -> None:
    """Write the ``fresh`` rows of a batch (``slots``: each row's unit; ``columns``:
    power, SOC, minimum and maximum power, safety code) into the fleet's arrays at
    ``now``; of a unit's rows the last wins, as one by one."""
    power, soc, p_min, p_max, safety = columns
    # Unique over the reversed order keeps each unit's last row.
    keep = np.flatnonzero(fresh)[::-1]
    _, first = np.unique(slots[keep], return_index=True)
    keep = keep[first]
    to = slots[keep]
    fleet.telemetry_time[to] = now
    fleet.last_seen[to] = np.maximum(fleet.last_seen[to], now)
    fleet.power[to] = power[keep]
    fleet.soc[to] = soc[keep]
    fleet.charge_limit[to] = -p_min[keep]
    fleet.discharge_limit[to] = p_max[keep]
    fleet.safety[to] = safety[keep]
