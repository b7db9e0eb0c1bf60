"""Internals of the DNP3 outstation (:mod:`vpp.orchestrator.scada.dnp3`).

- :class:`TimedOutstation`: dnp3py's outstation, with events sent with their time
  (g2v2, g32v3: dnp3py's own are without time).
- :class:`CommandBridge`: dnp3py's synchronous command handler, run in a worker thread,
  checking a command against the point map and awaiting the async command sink on the
  event loop (with a timeout).
- :class:`LinkReader`: the data link framing of a TCP stream, each malformed frame
  returned as a :class:`~vpp.errors.ScadaError` to count (dnp3py's parser drops them
  silently).
- object and status counting for the statistics, and a throttled logger.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dnp3.application.fragment import ObjectBlock
from dnp3.application.qualifiers import ObjectHeader
from dnp3.core.crc import compute_crc
from dnp3.core.enums import CommandStatus, ControlCode, OperationType, TripCloseCode
from dnp3.core.timestamp import DNP3Timestamp
from dnp3.database import AnalogEvent, BinaryEvent
from dnp3.datalink.frame import DataLinkFrame, DataLinkHeader
from dnp3.outstation import CommandResult, Outstation

from vpp.errors import ScadaError
from vpp.orchestrator.scada.dnp3_map import Dnp3PointMap
from vpp.orchestrator.scada.points import CommandOutcome

__all__ = [
    "CommandBridge",
    "LinkReader",
    "LogThrottle",
    "Note",
    "TimedOutstation",
    "code_name",
    "control_statuses",
    "object_count",
]

log = logging.getLogger("vpp.scada.dnp3")

_INT32 = (-(2**31), 2**31 - 1)
_QUAL_2BYTE_INDEX = 0x28  # 2-octet count, 2-octet index prefix (IEEE 1815-2012 Table 4-3)
_OVER_RANGE = 0x20  # analog quality flag OVER_RANGE


def _int32(value: float, quality: int) -> tuple[int, int]:
    # A value beyond the 32-bit range goes out as the limit with OVER_RANGE set, as dnp3py
    # does for the static values (IEEE 1815-2012 11.6.1.1).
    if not math.isfinite(value) or value > _INT32[1] or value < _INT32[0]:
        limit = _INT32[1] if value > 0 else _INT32[0]
        return limit, quality | _OVER_RANGE
    return round(value), quality


class TimedOutstation(Outstation):
    """dnp3py's outstation sending binary input events as g2v2 and analog input events as
    g32v3 (with their absolute time); always with 2-octet indexes."""

    def _event_blocks(self, group: int, variation: int, items: list[bytes]) -> list[ObjectBlock]:
        # dnp3py sizes its chunks for the shorter variations without time: split again
        # so that one block always fits in a fragment.
        size = max(len(b) for b in items)
        room = max(1, (self.config.max_fragment_size - 4 - 5) // size)
        blocks = []
        for start in range(0, len(items), room):
            chunk = items[start : start + room]
            header = ObjectHeader(group=group, variation=variation, qualifier=_QUAL_2BYTE_INDEX)
            data = len(chunk).to_bytes(2, "little") + b"".join(chunk)
            blocks.append(ObjectBlock(header=header, data=data))
        return blocks

    def _build_binary_event_blocks(self, events: list[Any]) -> list[ObjectBlock]:
        items = []
        for e in events:
            assert isinstance(e, BinaryEvent)
            flags = (int(e.quality) & 0x7F) | (0x80 if e.value else 0)
            stamp = e.timestamp or DNP3Timestamp.now()
            items.append(e.index.to_bytes(2, "little") + bytes([flags]) + stamp.to_bytes())
        return self._event_blocks(2, 2, items) if items else []

    def _build_analog_event_blocks(self, events: list[Any]) -> list[ObjectBlock]:
        items = []
        for e in events:
            assert isinstance(e, AnalogEvent)
            value, quality = _int32(e.value, int(e.quality))
            stamp = e.timestamp or DNP3Timestamp.now()
            items.append(
                e.index.to_bytes(2, "little") + bytes([quality])
                + value.to_bytes(4, "little", signed=True) + stamp.to_bytes()
            )  # fmt: skip
        return self._event_blocks(32, 3, items) if items else []

    def give_up_unsolicited(self) -> None:
        """Forget the unsolicited response that was never confirmed, so that the next
        events can go. (dnp3py has no public call for it: it keeps waiting otherwise.)"""
        self._state.unsolicited.pending_confirm = False
        self._state.unsolicited.confirm_sequence = -1


# --- commands -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Note:
    """What the bridge did with one control object: ``kind`` "" = carried out or selected,
    else the error kind it was refused under."""

    kind: str
    message: str


def code_name(code: ControlCode) -> str | None:
    """The map's name of a CROB control code, or None for one a map cannot name."""
    if code.clear or code.queue:
        return None
    op, tcc = code.op_type, code.tcc
    if tcc == TripCloseCode.NUL:
        return None if op == OperationType.NUL else op.name
    if op == OperationType.PULSE_ON and tcc in (TripCloseCode.CLOSE, TripCloseCode.TRIP):
        return tcc.name
    return None


Sink = Callable[[str, str, "float | bool"], Awaitable[CommandOutcome]]


class CommandBridge:
    """dnp3py's command handler for the plant's outputs.

    Runs in the outstation's worker thread (never on the event loop: it blocks on the
    sink's answer). A SELECT is checked against the map only; an OPERATE or DIRECT_OPERATE
    is checked, then handed to the sink on ``loop`` and its outcome awaited for at most
    ``timeout`` s. ``master`` names the connection whose request is being processed (the
    worker processes one request at a time). Every refusal is noted in ``notes``, for the
    event loop to count and log once the request is done.
    """

    def __init__(
        self,
        point_map: Dnp3PointMap,
        sink: Sink,
        loop: asyncio.AbstractEventLoop,
        timeout: float,
    ) -> None:
        self._map = point_map
        self._sink = sink
        self._loop = loop
        self._timeout = timeout
        self._aos = {o.index: o for o in point_map.analog_outputs}
        self._bos = {o.index: o for o in point_map.binary_outputs}
        self._loop_thread = threading.get_ident()  # built on the loop's thread
        self.master = ""
        self.notes: list[Note] = []

    def _refuse(self, status: CommandStatus, kind: str, message: str) -> CommandResult:
        self.notes.append(Note(kind, message))
        return CommandResult(status=status, message=message)

    def _analog(self, index: int, value: float, *, execute: bool, direct: bool) -> CommandResult:
        ao = self._aos.get(index)
        if ao is None:
            return self._refuse(CommandStatus.NOT_SUPPORTED, "address", f"no analog output {index}")
        if direct and ao.sbo:
            return self._refuse(
                CommandStatus.NO_SELECT, "not_allowed",
                f"{ao.name} (AO {index}) needs SELECT before OPERATE",
            )  # fmt: skip
        logical = value / ao.scale if math.isfinite(value) else math.nan
        if not ao.minimum <= logical <= ao.maximum:  # NaN fails too
            return self._refuse(
                CommandStatus.OUT_OF_RANGE, "value",
                f"{ao.name} (AO {index}): {logical} is outside [{ao.minimum}, {ao.maximum}]",
            )  # fmt: skip
        if not execute:
            self.notes.append(Note("", f"{ao.name} selected"))
            return CommandResult.success()
        return self._carry_out(ao.name, logical, f"AO {index}")

    def _binary(
        self, index: int, code: ControlCode, *, execute: bool, direct: bool
    ) -> CommandResult:
        bo = self._bos.get(index)
        if bo is None:
            return self._refuse(CommandStatus.NOT_SUPPORTED, "address", f"no binary output {index}")
        if direct and bo.sbo:
            return self._refuse(
                CommandStatus.NO_SELECT, "not_allowed",
                f"{bo.name} (BO {index}) needs SELECT before OPERATE",
            )  # fmt: skip
        name = code_name(code)
        if name is not None and name in bo.on:
            value = True
        elif name is not None and name in bo.off:
            value = False
        else:
            return self._refuse(
                CommandStatus.NOT_SUPPORTED, "not_allowed",
                f"{bo.name} (BO {index}): control code 0x{int(code):02X} is not supported",
            )  # fmt: skip
        if not execute:
            self.notes.append(Note("", f"{bo.name} selected"))
            return CommandResult.success()
        return self._carry_out(bo.name, value, f"BO {index}")

    def _carry_out(self, point: str, value: float | bool, where: str) -> CommandResult:
        if threading.get_ident() == self._loop_thread:
            # Waiting here on the loop's own thread would deadlock it; never expected.
            return self._refuse(CommandStatus.HARDWARE_ERROR, "internal", "command on the loop")
        future = asyncio.run_coroutine_threadsafe(
            _ask(self._sink, self.master, point, value), self._loop
        )
        try:
            outcome = future.result(self._timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            return self._refuse(
                CommandStatus.TIMEOUT, "timeout",
                f"{point} ({where}): no answer from the command sink in {self._timeout:g} s",
            )  # fmt: skip
        except Exception as exc:  # the sink must not raise; a bug there costs one command
            return self._refuse(
                CommandStatus.HARDWARE_ERROR, "sink", f"{point} ({where}): the sink raised {exc!r}"
            )
        if not isinstance(outcome, CommandOutcome):
            return self._refuse(
                CommandStatus.HARDWARE_ERROR, "sink",
                f"{point} ({where}): the sink answered {outcome!r}",
            )  # fmt: skip
        if not outcome.ok:
            return self._refuse(
                CommandStatus.BLOCKED, "refused", f"{point} ({where}): {outcome.reason}"
            )
        self.notes.append(Note("", f"{point} := {value}"))
        return CommandResult.success()

    # dnp3py's CommandHandler protocol ----------------------------------------------------

    def select_binary_output(
        self, index: int, code: ControlCode, count: int, on_time: int, off_time: int
    ) -> CommandResult:
        """SELECT of a CROB: checked only."""
        return self._binary(index, code, execute=False, direct=False)

    def operate_binary_output(
        self, index: int, code: ControlCode, count: int, on_time: int, off_time: int,
        select_sequence: int,
    ) -> CommandResult:  # fmt: skip
        """OPERATE of a selected CROB."""
        return self._binary(index, code, execute=True, direct=False)

    def direct_operate_binary_output(
        self, index: int, code: ControlCode, count: int, on_time: int, off_time: int
    ) -> CommandResult:
        """DIRECT_OPERATE of a CROB: refused for a select-before-operate output."""
        return self._binary(index, code, execute=True, direct=True)

    def select_analog_output(self, index: int, value: float) -> CommandResult:
        """SELECT of an analog output: checked only."""
        return self._analog(index, value, execute=False, direct=False)

    def operate_analog_output(
        self, index: int, value: float, select_sequence: int
    ) -> CommandResult:
        """OPERATE of a selected analog output."""
        return self._analog(index, value, execute=True, direct=False)

    def direct_operate_analog_output(self, index: int, value: float) -> CommandResult:
        """DIRECT_OPERATE of an analog output: refused for a select-before-operate one."""
        return self._analog(index, value, execute=True, direct=True)

    def cold_restart(self) -> int | None:
        """Not supported: a master cannot restart the plant's gateway."""
        return None

    def warm_restart(self) -> int | None:
        """Not supported."""
        return None

    def freeze_counters(self, start: int, stop: int, clear: bool) -> CommandResult:
        """Not supported (no counters)."""
        return CommandResult.not_supported("no counters")


async def _ask(sink: Sink, master: str, point: str, value: float | bool) -> CommandOutcome:
    return await sink(master, point, value)


# --- link layer ---------------------------------------------------------------------------

_START = b"\x05\x64"
_HEADER = 10


def _frame_size(length: int) -> int:
    user = length - 5
    return _HEADER + user + 2 * ((user + 15) // 16)


class LinkReader:
    """Cuts a TCP byte stream into DNP3 link frames (IEEE 1815-2012 9.2).

    :meth:`feed` returns the complete frames, and for each malformed piece a ScadaError
    (kinds ``sync``: octets that are not a frame, counted once per run; ``crc``: a header
    or data block CRC that does not match; ``length``: a LENGTH below 5). It resyncs on
    the next start octets; a frame whose header was sound but whose data failed is
    skipped whole.
    """

    def __init__(self, where: str) -> None:
        self._buf = bytearray()
        self._where = where
        self._in_garbage = False

    def _error(self, kind: str, message: str) -> ScadaError:
        return ScadaError(message, kind=kind, where=self._where)

    def feed(self, data: bytes) -> list[DataLinkFrame | ScadaError]:
        """The frames (and errors) completed by ``data``."""
        buf = self._buf
        buf.extend(data)
        out: list[DataLinkFrame | ScadaError] = []
        while buf:
            start = buf.find(_START)
            if start != 0:
                end = len(buf) - (1 if buf.endswith(b"\x05") else 0) if start < 0 else start
                if end > 0:
                    if not self._in_garbage:
                        out.append(self._error("sync", "octets outside a frame"))
                        self._in_garbage = True
                    del buf[:end]
                if start < 0:
                    break
                continue
            if len(buf) < _HEADER:
                break
            head = bytes(buf[:_HEADER])
            if compute_crc(head[:8]) != int.from_bytes(head[8:10], "little"):
                out.append(self._error("crc", "link header CRC does not match"))
                self._in_garbage = True  # what follows is the rest of that frame
                del buf[:2]
                continue
            self._in_garbage = False
            if head[2] < 5:
                out.append(self._error("length", f"link LENGTH {head[2]} is below 5"))
                del buf[:_HEADER]
                continue
            size = _frame_size(head[2])
            if len(buf) < size:
                break
            user = bytearray()
            pos, left, good = _HEADER, head[2] - 5, True
            while left > 0:
                n = min(16, left)
                block = bytes(buf[pos : pos + n])
                if compute_crc(block) != int.from_bytes(buf[pos + n : pos + n + 2], "little"):
                    good = False
                    break
                user.extend(block)
                pos, left = pos + n + 2, left - n
            del buf[:size]
            if not good:
                out.append(self._error("crc", "link data block CRC does not match"))
                continue
            header = DataLinkHeader.from_bytes(head[:8])
            out.append(DataLinkFrame(header=header, user_data=bytes(user)))
        return out


# --- counting -----------------------------------------------------------------------------

_CONTROL_SIZES = {(12, 1): 11, (41, 1): 5, (41, 2): 3, (41, 3): 5, (41, 4): 9}


def _range(block: ObjectBlock) -> tuple[int, int] | None:
    """(objects, octets of the range field) of a block, or None for no range."""
    code, d = block.header.qualifier & 0x0F, block.data
    if code == 0 and len(d) >= 2:
        return d[1] - d[0] + 1, 2
    if code == 1 and len(d) >= 4:
        return int.from_bytes(d[2:4], "little") - int.from_bytes(d[0:2], "little") + 1, 4
    if code == 7 and d:
        return d[0], 1
    if code == 8 and len(d) >= 2:
        return int.from_bytes(d[0:2], "little"), 2
    return None


def object_count(block: ObjectBlock) -> int:
    """How many objects (points, events) a response block carries."""
    r = _range(block)
    return max(0, r[0]) if r else 0


def control_statuses(blocks: Sequence[ObjectBlock]) -> list[int]:
    """The status octet of every control object (g12v1, g41) echoed in a response."""
    out: list[int] = []
    for block in blocks:
        size = _CONTROL_SIZES.get((block.header.group, block.header.variation))
        r = _range(block)
        if size is None or r is None:
            continue
        prefix = {0: 0, 1: 1, 2: 2}.get((block.header.qualifier >> 4) & 0x07, 0)
        count, pos = r
        for _ in range(count):
            end = pos + prefix + size
            if end > len(block.data):
                break
            out.append(block.data[end - 1] & 0x7F)
            pos = end
    return out


class LogThrottle:
    """At most one log record per key every ``period`` s; the next one says how many
    were suppressed in between."""

    def __init__(self, period: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._period = period
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def log(self, level: int, key: str, message: str) -> None:
        """Log ``message`` unless ``key`` was logged less than a period ago."""
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self._period:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        self._last[key] = now
        n = self._suppressed.pop(key, 0)
        log.log(level, "%s%s", message, f" ({n} more suppressed)" if n else "")
