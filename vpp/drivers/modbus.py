"""Modbus drivers driven by a register map file: :class:`ModbusProtocol`, the shared
base, and :class:`ModbusTcpProtocol` (``modbus_tcp``); the RTU transport
(``modbus_rtu``) is in :mod:`vpp.drivers.modbus_rtu`.

The base owns everything but the transport: the map, the grouped reads, the commands
and the error mapping. A transport only builds its pymodbus client.

:meth:`~vpp.drivers.base.BaseProtocol.read_status` reads every point of the map in as
few requests as :func:`~vpp.drivers.register_map.read_blocks` allows and decodes them
to engineering values in vpp's sign (positive = discharge; a ``charge_positive`` point
is negated by the map's codec).

Standard commands and the map points they write (a map without a point makes the
command fail with ValidationError naming the point):

=====================  ================================================================
command                writes
=====================  ================================================================
set_power              ``active_power_setpoint`` = params["kw"] (kW, + = discharge)
set_reactive_power     ``reactive_power_setpoint`` = params["kvar"] (kvar)
set_mode               ``mode`` = params["mode"] (a name from the point's ``enum``,
                       e.g. ``power_control``, or its number)
enable                 coil ``enable`` = on
disable                coil ``enable`` = off
reset_alarms           coil ``alarm_reset`` = on (the device clears the latched faults
                       whose cause has gone)
emergency_stop         coil ``enable`` = off, then both setpoints = 0, then ``mode`` =
                       ``standby``
=====================  ================================================================

Signed values are written as two's complement (via ``register_map.encode``). A Modbus
exception response raises ProtocolError with the exception code and the point; no
answer within the timeout raises DeviceTimeoutError; a reply of the wrong length
raises ProtocolError.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any, ClassVar

from pydantic import Field
from pymodbus.client import AsyncModbusTcpClient, ModbusBaseClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.pdu import ModbusPDU

from vpp.drivers.base import STANDARD_COMMANDS, BaseProtocol, ProtocolConfig, Status
from vpp.drivers.errors import (
    DeviceOfflineError,
    DeviceTimeoutError,
    ProtocolError,
    ValidationError,
    number_param,
)
from vpp.drivers.modbus_loop import LoopClient
from vpp.drivers.register_map import (
    DEFAULT_MAP,
    Point,
    PointType,
    ReadBlock,
    RegisterMap,
    Table,
    decode_block,
    encode,
    load_register_map,
    read_blocks,
)
from vpp.errors import ConfigError
from vpp.validation import config_error

__all__ = [
    "COMMANDS",
    "ModbusConfig",
    "ModbusProtocol",
    "ModbusTcpConfig",
    "ModbusTcpProtocol",
    "request",
]

COMMANDS = STANDARD_COMMANDS


class ModbusConfig(ProtocolConfig):
    """Settings every Modbus device has, whatever the transport."""

    device_id: int = Field(default=1, ge=1, le=247, description="Modbus unit id")
    map: str = Field(default=DEFAULT_MAP, min_length=1, description="register map file")


class ModbusTcpConfig(ModbusConfig):
    """Settings of a Modbus TCP device."""

    host: str = Field(min_length=1, description="device address")
    port: int = Field(default=502, ge=1, le=65535)


async def request(
    call: Callable[[], Awaitable[ModbusPDU]],
    what: str,
    *,
    resource: str,
    timeout: float,
    point: str | None = None,
) -> ModbusPDU:
    """Make one pymodbus request (``call``) and turn its failures into driver errors:
    a lost connection is DeviceOfflineError, no answer DeviceTimeoutError, anything else
    (a Modbus exception reply included) ProtocolError; ``what`` and ``point`` say where.
    Shared by the register-map and the SunSpec drivers."""
    label = f"{what} ({point})" if point else what
    try:
        # Called inside the try: pymodbus raises "not connected" on the call itself.
        reply = await call()
    except ConnectionException as exc:
        raise DeviceOfflineError(
            f"connection lost during {label}", resource=resource, point=point
        ) from exc
    except ModbusIOException as exc:
        raise DeviceTimeoutError(
            f"no answer to {label} within {timeout:g} s", resource=resource, point=point
        ) from exc
    except ModbusException as exc:
        raise ProtocolError(f"{label} failed: {exc}", resource=resource, point=point) from exc
    if reply.isError():
        code = int(getattr(reply, "exception_code", 0))
        raise ProtocolError(
            f"device answered {label} with Modbus exception code {code}",
            resource=resource,
            point=point,
            code=code,
        )
    return reply


class ModbusProtocol(BaseProtocol):
    """A Modbus device described by a register map (see the module docstring).

    A transport subclass sets ``Config`` and ``protocol`` and implements
    :meth:`_new_client` and :meth:`_where`.
    """

    Config: ClassVar[type[ProtocolConfig]] = ModbusConfig
    commands: ClassVar[frozenset[str]] = COMMANDS
    #: The factory name, for error messages.
    protocol: ClassVar[str] = "modbus"

    def __init__(self, config: ProtocolConfig, *, name: str = "") -> None:
        """Load the register map now, so a bad map fails at creation, not at first read."""
        if not isinstance(config, self.Config) or not isinstance(config, ModbusConfig):
            raise TypeError(f"{type(self).__name__} needs a {self.Config.__name__}")
        super().__init__(config, name=name)
        self.device_id = config.device_id
        self.map: RegisterMap = self._load_map(config)
        self.blocks: list[ReadBlock] = read_blocks(self.map.points)
        self._client: ModbusBaseClient | LoopClient | None = None

    @classmethod
    def _load_map(cls, config: ModbusConfig) -> RegisterMap:
        try:
            return load_register_map(config.map)
        except ConfigError as exc:
            raise config_error(f"protocol {cls.protocol!r}: field 'map': {exc}", "map") from exc

    @classmethod
    def check_config(cls, config: ProtocolConfig) -> None:
        """The register map file exists and is valid (parsed once per content)."""
        if isinstance(config, ModbusConfig):
            cls._load_map(config)

    # --- transport ---------------------------------------------------------------------------

    @abc.abstractmethod
    def _new_client(self) -> ModbusBaseClient | LoopClient:
        """A new, unconnected pymodbus client for this device (or, for a serial device
        whose line the real-time loop owns, a client that talks through the loop).

        Built with ``retries=0`` and ``reconnect_delay=0``: the base class owns retries
        and backoff, and pymodbus's own reconnect loop would fight it.
        """

    @abc.abstractmethod
    def _where(self) -> str:
        """Where the device is (for error messages): an address or a serial port."""

    async def _connect(self) -> None:
        # A fresh client per connection, so nothing of a failed one (half-read replies,
        # a reconnect timer) outlives it.
        client = self._new_client()
        self._client = client
        if not await client.connect():
            raise DeviceOfflineError(f"cannot connect to {self._where()}", resource=self.name)

    async def _disconnect(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()

    async def _request(
        self, what: str, point: str, call: Callable[[], Awaitable[ModbusPDU]]
    ) -> ModbusPDU:
        """:func:`request` for this device."""
        return await request(
            call, what, resource=self.name, timeout=self.config.timeout, point=point
        )

    def _live(self) -> ModbusBaseClient | LoopClient:
        if self._client is None:
            raise DeviceOfflineError("not connected", resource=self.name)
        return self._client

    async def _read(self) -> Status:
        client, dev = self._live(), self.device_id
        status: Status = {}
        for block in self.blocks:
            names = ",".join(p.name for p in block.points)
            what = f"read {block.table.value} {block.start}+{block.count}"
            if block.table is Table.COIL:
                read = client.read_coils
            elif block.table is Table.DISCRETE:
                read = client.read_discrete_inputs
            elif block.table is Table.HOLDING:
                read = client.read_holding_registers
            else:
                read = client.read_input_registers
            reply = await self._request(
                what, names, partial(read, block.start, count=block.count, device_id=dev)
            )
            if block.table.is_bits:
                # Bits come padded to whole bytes: fewer than asked is wrong, more is padding.
                bits = list(reply.bits)
                if len(bits) < block.count:
                    raise ProtocolError(
                        f"{what} ({names}): {len(bits)} bits in the reply",
                        resource=self.name,
                        point=names,
                    )
                for p in block.points:
                    status[p.name] = bool(bits[p.address - block.start])
            else:
                words = list(reply.registers)
                if len(words) != block.count:
                    raise ProtocolError(
                        f"{what} ({names}): {len(words)} registers in the reply",
                        resource=self.name,
                        point=names,
                    )
                status.update(decode_block(block.points, block.start, words))
        return status

    # --- commands ------------------------------------------------------------------------------

    def _point(self, name: str, command: str) -> Point:
        try:
            point = self.map.point(name)
        except ConfigError as exc:
            raise ValidationError(
                f"command {command!r} needs point {name!r}, which map {self.map.name!r} "
                "does not have",
                resource=self.name,
                point=name,
            ) from exc
        if point.access != "rw":
            raise ValidationError(
                f"command {command!r}: point {name!r} is read-only",
                resource=self.name,
                point=name,
            )
        return point

    async def _put(self, command: str, name: str, value: float | bool) -> str:
        point = self._point(name, command)
        client, dev = self._live(), self.device_id
        if point.type is PointType.BOOL:
            await self._request(
                f"write coil {point.address}",
                name,
                partial(client.write_coil, point.address, bool(value), device_id=dev),
            )
            return f"{name}={'on' if value else 'off'}"
        try:
            words = encode(point, float(value))
        except ConfigError as exc:
            raise ValidationError(
                f"command {command!r}: {exc}", resource=self.name, point=name
            ) from exc
        await self._request(
            f"write holding {point.address}+{len(words)}",
            name,
            partial(client.write_registers, point.address, words, device_id=dev),
        )
        return f"{name}={value:g}{point.unit}"

    def _mode_value(self, command: str, mode: object) -> int:
        try:
            return self._point("mode", command).code(mode)
        except ConfigError as exc:
            raise ValidationError(
                f"command {command!r}: {exc}", resource=self.name, point="mode"
            ) from exc

    async def _write(self, command: str, params: Mapping[str, Any]) -> str:
        if command == "set_power":
            return await self._put(
                command, "active_power_setpoint", number_param(command, params, "kw", self.name)
            )
        if command == "set_reactive_power":
            return await self._put(
                command, "reactive_power_setpoint", number_param(command, params, "kvar", self.name)
            )
        if command == "set_mode":
            return await self._put(command, "mode", self._mode_value(command, params.get("mode")))
        if command in ("enable", "disable"):
            return await self._put(command, "enable", command == "enable")
        if command == "reset_alarms":
            return await self._put(command, "alarm_reset", True)
        if command == "emergency_stop":
            # Output off first: it is the one write that stops the power on its own.
            done = [await self._put(command, "enable", False)]
            done.append(await self._put(command, "active_power_setpoint", 0.0))
            done.append(await self._put(command, "reactive_power_setpoint", 0.0))
            done.append(await self._put(command, "mode", self._mode_value(command, "standby")))
            return ", ".join(done)
        raise ValidationError(f"unknown command {command!r}", resource=self.name)


class ModbusTcpProtocol(ModbusProtocol):
    """A Modbus TCP device (``modbus_tcp``)."""

    Config: ClassVar[type[ProtocolConfig]] = ModbusTcpConfig
    protocol: ClassVar[str] = "modbus_tcp"

    def __init__(self, config: ProtocolConfig, *, name: str = "") -> None:
        """See :class:`ModbusProtocol`; ``config`` must be a :class:`ModbusTcpConfig`."""
        if not isinstance(config, ModbusTcpConfig):
            raise TypeError("ModbusTcpProtocol needs a ModbusTcpConfig")
        super().__init__(config, name=name)
        self.cfg = config

    def _new_client(self) -> ModbusBaseClient:
        return AsyncModbusTcpClient(
            self.cfg.host,
            port=self.cfg.port,
            timeout=self.cfg.timeout,
            retries=0,
            reconnect_delay=0,
        )

    def _where(self) -> str:
        return f"{self.cfg.host}:{self.cfg.port}"
