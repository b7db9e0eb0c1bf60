"""Errors of the device drivers, under :class:`vpp.errors.VppError`.

Each error says what went wrong and where: ``resource`` (the device or connection it
concerns), and for register-level errors ``point`` (the register map point) and
``code`` (the Modbus exception code). ``category`` is the health category it is counted
under (timeout, connection, protocol, validation).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vpp.errors import VppError

__all__ = [
    "DeviceOfflineError",
    "DeviceTimeoutError",
    "DriverError",
    "ProtocolError",
    "ProtocolUnavailableError",
    "ValidationError",
    "number_param",
]


class DriverError(VppError):
    """Base of the driver errors."""

    category = "error"

    def __init__(
        self,
        message: str,
        *,
        resource: str = "",
        point: str | None = None,
        code: int | None = None,
    ) -> None:
        where = f"{resource}: " if resource else ""
        super().__init__(where + message)
        self.resource = resource
        self.point = point
        self.code = code


class DeviceOfflineError(DriverError, ConnectionError):
    """The device cannot be reached (refused, dropped, or marked offline)."""

    category = "connection"


class DeviceTimeoutError(DriverError, TimeoutError):
    """The device did not answer within the timeout."""

    category = "timeout"


class ProtocolError(DriverError):
    """The device answered, but with an exception response or a malformed reply."""

    category = "protocol"


class ValidationError(DriverError, ValueError):
    """A command or value was refused before it reached the device."""

    category = "validation"


class ProtocolUnavailableError(DriverError, LookupError):
    """No protocol of that name is registered or installed."""

    category = "validation"


def number_param(command: str, params: Mapping[str, Any], key: str, resource: str) -> float:
    """``params[key]`` as a float, or a ValidationError naming the command and key (a
    bool is not a number here, although Python says it is an int)."""
    value = params.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(
            f"command {command!r} needs a number {key!r}, got {value!r}", resource=resource
        )
    return float(value)
