"""Modbus RTU driver: :class:`ModbusRtuProtocol` (``modbus_rtu``), a serial line.

Everything but the transport (register map, grouped reads, commands, error mapping) is
:class:`vpp.drivers.modbus.ModbusProtocol`'s, the same as for Modbus TCP. On a serial
bus an addressed device that does not answer (wrong ``device_id``, powered off, line
cut) shows only as silence, so those all raise DeviceTimeoutError after ``timeout``;
the base class then closes the port and reopens it for the next attempt, which also
throws away any late reply still on the line.

When the field controller's real-time loop writes the unit's setpoints, the loop owns
the port: :meth:`ModbusRtuProtocol.use_loop` then has the driver talk through the loop
(:class:`vpp.drivers.modbus_loop.LoopClient`) instead of opening the port itself, until
it is called again with None (the loop ended and closed the port).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field
from pymodbus.client import AsyncModbusSerialClient, ModbusBaseClient

from vpp.drivers.base import ConnectionState, ProtocolConfig
from vpp.drivers.modbus import ModbusConfig, ModbusProtocol
from vpp.drivers.modbus_loop import LoopClient, Transact

__all__ = ["ModbusRtuConfig", "ModbusRtuProtocol"]


class ModbusRtuConfig(ModbusConfig):
    """Settings of a Modbus RTU device on a serial line."""

    port: str = Field(min_length=1, description="serial port, e.g. /dev/ttyUSB0")
    baudrate: int = Field(default=19200, ge=300, le=4_000_000, description="bits per second")
    parity: Literal["N", "E", "O"] = Field(default="E", description="N, E (Modbus default), O")
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8


class ModbusRtuProtocol(ModbusProtocol):
    """A Modbus RTU device (``modbus_rtu``)."""

    Config: ClassVar[type[ProtocolConfig]] = ModbusRtuConfig
    protocol: ClassVar[str] = "modbus_rtu"

    def __init__(self, config: ProtocolConfig, *, name: str = "") -> None:
        """See :class:`ModbusProtocol`; ``config`` must be a :class:`ModbusRtuConfig`."""
        if not isinstance(config, ModbusRtuConfig):
            raise TypeError("ModbusRtuProtocol needs a ModbusRtuConfig")
        super().__init__(config, name=name)
        self.cfg = config
        self._through: Transact | None = None

    @property
    def through_loop(self) -> bool:
        """Requests go through the real-time loop, which owns the port."""
        return self._through is not None

    def use_loop(self, transact: Transact | None) -> None:
        """Talk through ``transact`` (the loop's transaction with this device) from the
        next connection on, or again through a port of the driver's own with None. The
        client open now, if any, is closed at once (it belongs to the other owner of the
        port); a request still running on it fails and is retried on the new one."""
        self._through = transact
        client, self._client = self._client, None
        if client is not None:
            client.close()
        if self.health.state is ConnectionState.CONNECTED:
            self.health.state = ConnectionState.DISCONNECTED

    def _new_client(self) -> ModbusBaseClient | LoopClient:
        if self._through is not None:
            return LoopClient(self._through, self.cfg.timeout)
        return AsyncModbusSerialClient(
            self.cfg.port,
            baudrate=self.cfg.baudrate,
            parity=self.cfg.parity,
            stopbits=self.cfg.stopbits,
            bytesize=self.cfg.bytesize,
            timeout=self.cfg.timeout,
            retries=0,
            reconnect_delay=0,
        )

    def _where(self) -> str:
        c = self.cfg
        via = " through the real-time loop" if self._through is not None else ""
        return f"serial port {c.port} ({c.baudrate} {c.bytesize}{c.parity}{c.stopbits}){via}"
