"""A pymodbus-shaped client whose requests the core's real-time loop carries.

When the field controller's real-time loop writes a Modbus RTU unit's setpoints, the
loop owns that unit's serial port (docs/realtime-loop.md, "Serial lines"): a second
opener would interleave its bytes with the loop's on the line. The unit's driver then
talks through the loop instead: :class:`LoopClient` has the methods the driver calls on
a pymodbus client (every read and write of ``ModbusClientMixin``, ``connect``, ``close``,
``connected``), builds each request with pymodbus's own PDU classes, hands the request
PDU to the loop (``RtLoop.transact``, in a worker thread: it waits with the GIL
released) and decodes the reply PDU with pymodbus's decoder, so the driver's code and
its error mapping (:func:`vpp.drivers.modbus.request`) stay the same: no valid answer in
time raises ``ModbusIOException``, a line that is not open (or a loop that ended)
``ConnectionException``.

The loop sends such a request only when the line has no setpoint or watchdog write to
carry, so the driver's polls never delay a frame's setpoint by more than the one
transaction on the line.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from pymodbus.client.mixin import ModbusClientMixin
from pymodbus.exceptions import ConnectionException, ModbusIOException
from pymodbus.pdu import DecodePDU, ModbusPDU

__all__ = ["LoopClient", "Transact"]

#: One transaction with the unit's device: (request PDU, timeout s) -> reply PDU; raises
#: TimeoutError (no valid answer) or ConnectionError (line not open, loop ended). The
#: controller passes ``functools.partial(rt.transact, unit_index)``.
Transact = Callable[[bytes, float], bytes]


class LoopClient(ModbusClientMixin[Awaitable[ModbusPDU]]):
    """The driver's client for a device whose line the real-time loop owns (see the
    module docstring). ``timeout``: how long one transaction may wait, queueing included."""

    def __init__(self, transact: Transact, timeout: float) -> None:
        """Nothing is opened: the loop owns the port."""
        super().__init__()  # type: ignore[no-untyped-call]  # unannotated in pymodbus
        self._transact = transact
        self.timeout = timeout
        self._open = False
        self._decoder = DecodePDU(is_server=False)

    @property
    def connected(self) -> bool:
        """Between :meth:`connect` and :meth:`close`."""
        return self._open

    async def connect(self) -> bool:
        """Nothing to open (the loop reopens the line itself); always True."""
        self._open = True
        return True

    def close(self) -> None:
        """Later requests raise ConnectionException."""
        self._open = False

    def execute(self, no_response_expected: bool, request: ModbusPDU) -> Awaitable[ModbusPDU]:
        """Carry ``request`` through the loop (every ``read_*``/``write_*`` method ends
        here); a reply is always awaited (``no_response_expected`` is for broadcasts,
        which the driver never sends)."""
        del no_response_expected
        return self._execute(request)

    async def _execute(self, request: ModbusPDU) -> ModbusPDU:
        if not self._open:
            raise ConnectionException("not connected")
        pdu = bytes([request.function_code]) + request.encode()
        try:
            reply = await asyncio.to_thread(self._transact, pdu, self.timeout)
        except TimeoutError as exc:
            raise ModbusIOException(str(exc)) from exc
        except ConnectionError as exc:
            raise ConnectionException(str(exc)) from exc
        decoded = self._decoder.decode(reply)
        if decoded is None:
            # The loop checked the CRC, the device and the function; a body pymodbus
            # cannot parse (a short read reply) is a protocol fault of the device.
            raise ModbusIOException(f"reply {reply.hex()} to function {request.function_code}")
        decoded.dev_id = request.dev_id
        return decoded
