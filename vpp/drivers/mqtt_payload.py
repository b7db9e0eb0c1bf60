"""The MQTT device messages: topic names and the JSON payloads, shared by the driver
(:mod:`vpp.drivers.mqtt`) and the simulated device (:mod:`vpp.sim.mqtt_device`).

Topics, under a configurable prefix (``vpp`` by default):

- ``<prefix>/<device>/telemetry``: a JSON object of named values (numbers or booleans,
  vpp units and sign), with ``ts`` the device's UNIX time of the sample;
- ``<prefix>/<device>/command``: ``{"id": str, "command": str, "params": {...}}``;
- ``<prefix>/<device>/ack``: ``{"id": <the command's id>, "ok": bool, "detail": str}``
  with ``"error": str`` when ``ok`` is false.

Decoding raises :class:`PayloadError` whose ``category`` is ``protocol`` when the bytes
are not a JSON object and ``validation`` when the object has the wrong fields.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
from collections.abc import Mapping
from typing import Any

__all__ = [
    "AckMessage",
    "CommandMessage",
    "PayloadError",
    "Topics",
    "decode_ack",
    "decode_command",
    "decode_telemetry",
    "encode",
]


_SCALARS = frozenset({int, float, bool})


class PayloadError(ValueError):
    """A payload that cannot be used; ``category`` is its health category."""

    def __init__(self, message: str, category: str) -> None:
        super().__init__(message)
        self.category = category


@dataclasses.dataclass(frozen=True)
class Topics:
    """The three topics of one device."""

    telemetry: str
    command: str
    ack: str

    @classmethod
    def of(cls, prefix: str, device: str) -> Topics:
        """The topics of ``device`` under ``prefix``."""
        base = f"{prefix}/{device}"
        return cls(f"{base}/telemetry", f"{base}/command", f"{base}/ack")


@dataclasses.dataclass(frozen=True)
class CommandMessage:
    """A decoded command."""

    id: str
    command: str
    params: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class AckMessage:
    """A decoded acknowledgement."""

    id: str
    ok: bool
    detail: str
    error: str


def encode(obj: Mapping[str, Any]) -> bytes:
    """A message as compact UTF-8 JSON."""
    return json.dumps(obj, separators=(",", ":")).encode()


def _object(payload: bytes | bytearray, what: str) -> dict[str, Any]:
    try:
        obj = json.loads(payload.decode())
    except (ValueError, UnicodeDecodeError) as exc:
        raise PayloadError(f"{what} is not JSON: {exc}", "protocol") from None
    if not isinstance(obj, dict):
        raise PayloadError(f"{what} is JSON {type(obj).__name__}, not an object", "protocol")
    return obj


def decode_telemetry(payload: bytes | bytearray) -> dict[str, float | bool | str]:
    """The named values of a telemetry payload (``ts`` included when present): JSON
    numbers as int or float, booleans as bool."""
    obj = _object(payload, "telemetry")
    values = obj.values()
    # Fast path for the common case: all numbers, and a finite sum of magnitudes means
    # all are finite (an int too large for a float overflows the check).
    if all(type(v) in _SCALARS for v in values):
        with contextlib.suppress(OverflowError):
            if math.isfinite(sum(map(abs, values))):
                return obj
    out: dict[str, float | bool | str] = {}
    for key, value in obj.items():
        # bool is an int: booleans pass here, and are always finite.
        if isinstance(value, (int, float)) and _finite(value):
            out[key] = value
        else:
            raise PayloadError(
                f"telemetry field {key!r} is {value!r:.40}, not a finite number or boolean",
                "validation",
            )
    return out


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def _text(obj: Mapping[str, Any], key: str, what: str, *, required: bool = True) -> str:
    value = obj.get(key, None if required else "")
    if not isinstance(value, str) or (required and not value):
        kind = "a non-empty string" if required else "a string"
        raise PayloadError(f"{what} field {key!r} is {value!r}, not {kind}", "validation")
    return value


def decode_ack(payload: bytes | bytearray) -> AckMessage:
    """The acknowledgement in ``payload``."""
    obj = _object(payload, "ack")
    ok = obj.get("ok")
    if not isinstance(ok, bool):
        raise PayloadError(f"ack field 'ok' is {ok!r}, not a boolean", "validation")
    return AckMessage(
        id=_text(obj, "id", "ack"),
        ok=ok,
        detail=_text(obj, "detail", "ack", required=False),
        error=_text(obj, "error", "ack", required=False),
    )


def decode_command(payload: bytes | bytearray) -> CommandMessage:
    """The command in ``payload``."""
    obj = _object(payload, "command")
    params = obj.get("params", {})
    if not isinstance(params, dict):
        raise PayloadError(f"command field 'params' is {params!r}, not an object", "validation")
    return CommandMessage(
        id=_text(obj, "id", "command"), command=_text(obj, "command", "command"), params=params
    )
