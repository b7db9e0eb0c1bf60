"""A BESS that speaks Modbus TCP or RTU: a pymodbus server backed by :class:`BessModel`.

The registers follow a register map (by default ``vpp/drivers/maps/bess_default.yaml``,
see docs/register_map.md). Writes to the command points (enable, alarm reset, mode,
setpoints, ramp rate) act on the model; the measurement points are refreshed from the
model, which steps at a fixed rate on the real clock. A communication watchdog (the
``watchdog`` counter and ``watchdog_timeout``, off by default) zeroes the setpoints when
the controller stops changing the counter::

    async with BessSimulator(port=0, capacity_kwh=1000, rated_power_kw=500) as sim:
        ...  # a Modbus client on ("127.0.0.1", sim.port), device id sim.device_id

    async with BessSimulator(rtu=SerialLine("/dev/ttyS1")) as sim:
        ...  # Modbus RTU on that serial port instead of TCP
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pymodbus.constants import ExcCodes
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusBaseServer, ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import SimDevice

from vpp.aio import Startable, cancel_and_wait
from vpp.drivers.register_map import (
    DEFAULT_MAP,
    Point,
    RegisterMap,
    Table,
    decode,
    load_register_map,
)
from vpp.sim.bess_model import BessCommand, BessModel
from vpp.sim.register_image import RegisterImage
from vpp.validation import config_error

__all__ = ["BessSimulator", "SerialLine"]

log = logging.getLogger(__name__)


# Modbus function codes by the table they touch.
_FC_TABLE = {1: Table.COIL, 5: Table.COIL, 15: Table.COIL, 2: Table.DISCRETE, 4: Table.INPUT}
_FC_TABLE.update({fc: Table.HOLDING for fc in (3, 6, 16, 22, 23)})
# The simulator cannot work without these; every other point is optional.
_REQUIRED = ("active_power_setpoint", "active_power", "soc")


@dataclass(frozen=True)
class SerialLine:
    """A serial port and its line settings, for serving Modbus RTU."""

    port: str
    baudrate: int = 19200
    parity: str = "E"  # the Modbus serial-line default
    stopbits: int = 1
    bytesize: int = 8


class BessSimulator(Startable):
    """A simulated battery behind a Modbus server (start/stop as an async context).

    TCP by default: ``port=0`` binds an ephemeral port; :attr:`port` reports the bound
    one; requests for another device id are answered with a Modbus exception (as a TCP
    gateway does). With ``rtu`` it serves Modbus RTU on that serial line instead and,
    like a device on a multi-drop bus, stays silent to requests for another device id.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 502,
        device_id: int = 1,
        capacity_kwh: float = 1000.0,
        rated_power_kw: float = 500.0,
        rated_kva: float | None = None,
        initial_soc_pct: float = 50.0,
        ramp_kw_s: float = 100.0,
        step_hz: float = 10.0,
        register_map: RegisterMap | str | Path = DEFAULT_MAP,
        model: BessModel | None = None,
        rtu: SerialLine | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Configure the simulator; ``model`` replaces the one built from the ratings.

        ``clock`` (monotonic seconds) times the communication watchdog; the model steps
        on the real clock whatever it is.
        """
        if not 1 <= device_id <= 247:
            raise config_error(f"device_id must be 1..247, got {device_id}", "device_id")
        if not 0 <= port <= 65535:
            raise config_error(f"port must be 0..65535, got {port}", "port")
        if not (math.isfinite(step_hz) and 0 < step_hz <= 1000):
            raise config_error(f"step_hz must be in (0, 1000], got {step_hz}", "step_hz")
        self.host = host
        self.rtu = rtu
        self.device_id = device_id
        self.step_s = 1.0 / step_hz
        self._port = port
        self.map = (
            register_map
            if isinstance(register_map, RegisterMap)
            else load_register_map(register_map)
        )
        for name in _REQUIRED:
            self.map.point(name)
        self.model = model or BessModel(
            capacity_kwh=capacity_kwh,
            p_max_kw=rated_power_kw,
            s_max_kva=rated_kva or rated_power_kw,
            soc_pct=initial_soc_pct,
            ramp_kw_s=ramp_kw_s,
        )
        self.command = BessCommand()
        self.steps = 0
        # The communication watchdog: armed once the timeout is > 0 and the counter has
        # been written; each change of the counter refreshes it.
        self.clock = clock
        self.watchdog_timeout_s = 0.0
        self.watchdog_expired = False
        #: Times the watchdog expired.
        self.watchdog_expiries = 0
        self._watchdog_counter: int | None = None  # the last value written; None: never
        self._watchdog_refreshed = 0.0
        # The model writes the image; the Modbus action copies it out.
        self.image = RegisterImage(self.map)
        self._server: ModbusBaseServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._init_image()

    # --- lifecycle ---------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The TCP port the server is bound to (the ephemeral one after ``port=0``)."""
        return self._port

    async def start(self) -> None:
        """Bind the server and start stepping the model."""
        if self._server is not None:
            raise RuntimeError("BessSimulator already started")
        server: ModbusBaseServer
        device = self._device()
        if self.rtu is None:
            server = ModbusTcpServer(device, address=(self.host, self._port))
            where, field = f"{self.host}:{self._port}", "port"
        else:
            line = self.rtu
            server = ModbusSerialServer(
                device,
                port=line.port,
                baudrate=line.baudrate,
                parity=line.parity,
                stopbits=line.stopbits,
                bytesize=line.bytesize,
                trace_pdu=self._addressed_to_me,  # type: ignore[arg-type]  # may drop a PDU
            )
            where, field = f"serial port {line.port}", "rtu"
        try:
            await server.serve_forever(background=True)
        except RuntimeError as exc:
            # pymodbus logs the OS error and raises a bare RuntimeError.
            await server.shutdown()  # type: ignore[no-untyped-call]  # untyped in pymodbus
            raise config_error(f"BESS simulator cannot listen on {where}", field) from exc
        self._server = server
        sockets = getattr(server.transport, "sockets", None)
        if sockets:
            self._port = int(sockets[0].getsockname()[1])
        label = self.rtu.port if self.rtu else str(self._port)
        self._task = asyncio.create_task(self._run(), name=f"bess-sim:{label}")

    def _addressed_to_me(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU | None:
        """RTU only: drop requests for other device ids, so that they get no answer.

        pymodbus's simulator answers every id (``ignore_missing_devices`` does not reach
        it), but a device on a serial bus must stay silent when not addressed. Returning
        None from the trace hook leaves the server without a request to handle.
        """
        if sending or pdu.dev_id == self.device_id:
            return pdu
        return None

    async def stop(self) -> None:
        """Stop stepping and close the server and its connections."""
        task, self._task = self._task, None
        for failed in await cancel_and_wait([task]):
            log.error("BESS simulator: the stepping loop failed", exc_info=failed.exception())
        server, self._server = self._server, None
        if server is not None:
            await server.shutdown()  # type: ignore[no-untyped-call]  # untyped in pymodbus
            # Let the transports run their close callbacks before the loop moves on.
            await asyncio.sleep(0)

    # --- model stepping ------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last = time.monotonic()
        deadline = loop.time()
        while True:
            # Absolute deadlines: a slow step does not shift every later one.
            deadline += self.step_s
            await asyncio.sleep(max(0.0, deadline - loop.time()))
            now = time.monotonic()
            # Integrate over the time that really passed, so SOC stays right under jitter.
            self.step(now - last)
            last = now

    def step(self, dt: float) -> None:
        """Advance the model by ``dt`` seconds and refresh the measurement registers."""
        self._check_watchdog()
        self.model.step(self.command, dt)
        self.steps += 1
        self._publish()

    def _measurements(self) -> dict[str, float | bool]:
        m = self.model
        return {
            **m.measurements(),
            "heartbeat": self.steps % 0x10000,
            "alarm_active": m.alarms != 0,
            "fault_active": m.faults != 0,
            "watchdog_expired": self.watchdog_expired,
        }

    def _publish(self) -> None:
        for name, value in self._measurements().items():
            self.image.put(name, value)

    def _init_image(self) -> None:
        m = self.model
        for name, value in (
            ("active_power_setpoint", 0.0),
            ("reactive_power_setpoint", 0.0),
            ("mode", 0),
            ("ramp_rate", m.ramp_kw_s),
            ("rated_power", m.p_max_kw),
            ("rated_apparent_power", m.s_max_kva),
            ("rated_energy", m.capacity_kwh),
            ("enable", False),
            ("alarm_reset", False),
            ("watchdog", 0),
            ("watchdog_timeout", 0.0),
        ):
            self.image.put(name, value)
        self._publish()

    # --- Modbus side -----------------------------------------------------------------------

    def _device(self) -> SimDevice:
        # A method so that a simulator with another layout (SunSpec) can serve its own.
        return self.image.sim_device(self.device_id, self._action)

    async def _action(
        self,
        func_code: int,
        start: int,
        address: int,
        count: int,
        registers: list[int],
        values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """pymodbus calls this before every access, with the table's live registers."""
        del count
        table = _FC_TABLE.get(func_code)
        if table is None:
            return ExcCodes.ILLEGAL_FUNCTION
        if values is None:
            self.image.copy_out(table, start, registers)
            return None
        if table is Table.COIL:
            return self._write_bits(address, [bool(v) for v in values])
        return self._write_registers(start, address, [int(v) for v in values], registers)

    def _write_bits(self, address: int, bits: list[bool]) -> ExcCodes | None:
        for p in self.map.table(Table.COIL):
            if address <= p.address < address + len(bits):
                bit = bits[p.address - address]
                if p.name == "enable":
                    self.command.enable = bit
                elif p.name == "alarm_reset":
                    if bit:
                        self.model.reset_alarms()
                        self._publish()  # the fault bits change now, not at the next step
                    # A pulse: the coil reads back off.
                    bit = False
                self.image.tables[Table.COIL][p.address] = bit
        return None

    def _write_registers(
        self, start: int, address: int, values: list[int], registers: list[int]
    ) -> ExcCodes | None:
        # Decode against the registers as they will be after the write, so a request
        # that writes only one word of a 32-bit point still yields the whole value.
        merged = list(registers)
        merged[address - start : address - start + len(values)] = values
        end = address + len(values)
        updates: list[tuple[Callable[[float], None], float]] = []
        for p in self.map.table(Table.HOLDING):
            if p.access != "rw" or p.end <= address or p.address >= end:
                continue
            value = decode(p, merged[p.address - start : p.end - start])
            apply = self._command_setter(p, value)
            if apply is None:
                return ExcCodes.ILLEGAL_VALUE
            updates.append((apply, value))
        # All or nothing: one rejected point rejects the whole request.
        for apply, value in updates:
            apply(value)
        for i, v in enumerate(values):
            self.image.tables[Table.HOLDING][address + i] = v
        return None

    def _command_setter(self, p: Point, value: float) -> Callable[[float], None] | None:
        """How a written value acts on the model; None if the device rejects it."""
        if p.enum is not None and int(value) not in p.enum:
            return None
        if p.name == "active_power_setpoint":
            return lambda v: self._set_setpoint("p_kw", v)
        if p.name == "reactive_power_setpoint":
            return lambda v: self._set_setpoint("q_kvar", v)
        if p.name == "mode":
            return lambda v: setattr(self.command, "mode", int(v))
        if p.name == "ramp_rate":
            if value <= 0:
                return None
            return lambda v: setattr(self.model, "ramp_kw_s", v)
        if p.name == "watchdog":
            return self._write_watchdog
        if p.name == "watchdog_timeout":
            return self._write_watchdog_timeout
        return lambda v: None

    # --- communication watchdog ------------------------------------------------------------

    def _set_setpoint(self, name: str, value: float) -> None:
        """A setpoint acts unless the watchdog has expired: then the device holds 0."""
        self._check_watchdog()
        if not self.watchdog_expired:
            setattr(self.command, name, value)

    def _write_watchdog(self, value: float) -> None:
        # A change that comes too late still counts as an expiry (checked first).
        self._check_watchdog()
        counter = int(value)
        if counter == self._watchdog_counter:
            return
        self._watchdog_counter = counter
        self._watchdog_refreshed = self.clock()
        if self.watchdog_expired:
            # The setpoints stay 0 until the next setpoint write.
            self.watchdog_expired = False
            log.info("BESS simulator: watchdog counter changes again; setpoints accepted")
            self._publish()

    def _write_watchdog_timeout(self, value: float) -> None:
        # Arming is no refresh: a counter already silent for longer expires at once.
        self._check_watchdog()  # under the old timeout
        self.watchdog_timeout_s = value
        if value <= 0 and self.watchdog_expired:
            self.watchdog_expired = False  # off: disarmed, and the expiry cleared
            self._publish()
        self._check_watchdog()  # under the new one

    def _check_watchdog(self) -> None:
        """Expire the watchdog if it is armed and the counter has not changed in time."""
        if self.watchdog_expired or self.watchdog_timeout_s <= 0 or self._watchdog_counter is None:
            return
        silent = self.clock() - self._watchdog_refreshed
        if silent <= self.watchdog_timeout_s:
            return
        self.watchdog_expired = True
        self.watchdog_expiries += 1
        self.command.p_kw = self.command.q_kvar = 0.0
        log.warning(
            "BESS simulator: communication watchdog expired (counter unchanged for %.1f s,"
            " timeout %.1f s); setpoints held at 0",
            silent,
            self.watchdog_timeout_s,
        )
        self._publish()
