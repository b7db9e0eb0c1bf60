"""One admitted master's TCP connection to the DNP3 outstation.

Two tasks: the reader cuts the stream into link frames (:class:`LinkReader`), answers
the link layer, reassembles transport segments, and queues each application request
(an application CONFIRM is handled at once: a response waiting for it may be holding
the processor); the processor answers the requests one at a time with dnp3py's
outstation, control requests in the outstation's worker thread (their handler awaits
the command sink).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from functools import partial
from typing import TYPE_CHECKING

from dnp3.application.builder import build_null_response
from dnp3.application.fragment import ResponseFragment
from dnp3.core.enums import FunctionCode, LinkFunctionCode
from dnp3.core.flags import IIN
from dnp3.datalink.builder import build_ack, build_link_status, build_unconfirmed_user_data
from dnp3.datalink.frame import DataLinkFrame
from dnp3.outstation import PeerId
from dnp3.transport.reassembler import Reassembler, ReassemblyError
from dnp3.transport.segment import TransportSegment
from dnp3.transport.segmenter import Segmenter

from vpp.errors import ScadaError
from vpp.orchestrator.scada._dnp3_engine import LinkReader, control_statuses, object_count

if TYPE_CHECKING:
    from vpp.orchestrator.scada.dnp3 import Dnp3Outstation

__all__ = ["Connection"]

_CONTROL = frozenset({
    FunctionCode.SELECT, FunctionCode.OPERATE,
    FunctionCode.DIRECT_OPERATE, FunctionCode.DIRECT_OPERATE_NO_ACK,
})  # fmt: skip
_EXECUTE = frozenset({FunctionCode.OPERATE, FunctionCode.DIRECT_OPERATE})
_IIN_ERRORS = (
    (IIN.NO_FUNC_CODE_SUPPORT, "function", "function not supported"),
    (IIN.OBJECT_UNKNOWN, "object", "object unknown"),
    (IIN.PARAMETER_ERROR, "apdu", "malformed request (parameter error)"),
)
#: Malformed frames in a row after which the connection is closed: not a master talking.
MAX_BAD_FRAMES = 8
_QUEUE = 16


class Connection:
    """A master's connection: ``label`` is ``dnp3 <ip>:<port>``."""

    def __init__(
        self,
        server: Dnp3Outstation,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        label: str,
        conn_id: int,
    ) -> None:
        self.server = server
        self.label = label
        self._reader = reader
        self._writer = writer
        self._peer_conn = conn_id
        cfg = server.config
        self._link = LinkReader(label)
        self._reassembler = Reassembler(max_fragment_size=cfg.max_fragment_size)
        self._segmenter = Segmenter()
        self._write_lock = asyncio.Lock()
        self._requests: asyncio.Queue[tuple[bytes, int]] = asyncio.Queue(_QUEUE)
        self._waiters: dict[tuple[bool, int], asyncio.Future[None]] = {}
        self._loop = asyncio.get_running_loop()
        self.last_rx = self._loop.time()
        self.lost = False
        self._bad = 0

    # --- lifetime ---------------------------------------------------------------------

    async def run(self) -> None:
        """Serve until the master goes, the stream turns to garbage, or cancellation."""
        tasks = [
            asyncio.create_task(self._read_loop(), name=f"{self.label} read"),
            asyncio.create_task(self._process_loop(), name=f"{self.label} process"),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            # The processor lets a command in the worker thread finish first (below).
            for result in await asyncio.gather(*tasks, return_exceptions=True):
                if isinstance(result, Exception) and not isinstance(result, OSError):
                    # A bug costs this connection, never the server.
                    self.server.count_error(ScadaError(
                        f"connection failed: {result!r}", kind="internal", where=self.label
                    ))  # fmt: skip
            for fut in self._waiters.values():
                fut.cancel()
            async with self.server.engine_lock():
                self.server.engine.release_connection(self._peer_conn)
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()

    # --- receiving --------------------------------------------------------------------

    async def _read_loop(self) -> None:
        while True:
            try:
                data = await self._reader.read(4096)
            except (ConnectionError, OSError):
                return
            if not data:
                return
            self.last_rx = self._loop.time()
            if self.lost:
                self.lost = False
                self.server.log(logging.INFO, f"{self.label}: master back")
            for item in self._link.feed(data):
                if isinstance(item, ScadaError):
                    self.server.count_error(item)
                    self._bad += 1
                    if self._bad >= MAX_BAD_FRAMES:
                        self.server.count_error(ScadaError(
                            f"{self._bad} malformed frames in a row: connection closed",
                            kind="closed", where=self.label,
                        ))  # fmt: skip
                        return
                    continue
                self._bad = 0
                await self._on_frame(item)

    async def _on_frame(self, frame: DataLinkFrame) -> None:
        cfg, h = self.server.config, frame.header
        if h.destination != cfg.outstation_address:
            self.server.count_error(ScadaError(
                f"frame for link address {h.destination} ignored", kind="address", where=self.label
            ))  # fmt: skip
            return
        if h.source != cfg.master_address:
            self.server.count_error(ScadaError(
                f"frame from link address {h.source} ignored", kind="address", where=self.label
            ))  # fmt: skip
            return
        self.server.stats_add("frames_in")
        if not h.control.prm:
            return  # a secondary frame: we send nothing that asks for one
        fc = h.control.function_code
        if fc in (LinkFunctionCode.PRI_RESET_LINK_STATE, LinkFunctionCode.PRI_TEST_LINK_STATE):
            await self._write_frames([build_ack(cfg.master_address, cfg.outstation_address, False)])
            return
        if fc == LinkFunctionCode.PRI_REQUEST_LINK_STATUS:
            status = build_link_status(cfg.master_address, cfg.outstation_address, False)
            await self._write_frames([status])
            return
        if fc == LinkFunctionCode.PRI_CONFIRMED_USER_DATA:
            await self._write_frames([build_ack(cfg.master_address, cfg.outstation_address, False)])
        elif fc != LinkFunctionCode.PRI_UNCONFIRMED_USER_DATA:
            self.server.count_error(ScadaError(
                f"link function {int(fc)} not supported", kind="link", where=self.label
            ))  # fmt: skip
            return
        if not frame.user_data:
            self.server.count_error(ScadaError("user data frame without data", kind="transport",
                                               where=self.label))  # fmt: skip
            return
        try:
            fragment = self._reassembler.add(TransportSegment.from_bytes(frame.user_data))
        except (ReassemblyError, ValueError) as exc:
            self.server.count_error(ScadaError(str(exc), kind="transport", where=self.label))
            return
        if fragment is None:
            return
        data = fragment.data
        if len(data) < 2:
            self.server.count_error(ScadaError("application fragment shorter than 2 octets",
                                               kind="apdu", where=self.label))  # fmt: skip
            return
        if data[1] == FunctionCode.CONFIRM:
            await self._on_confirm(data, h.source)
            return
        try:
            self._requests.put_nowait((data, h.source))
        except asyncio.QueueFull:
            self.server.count_error(ScadaError(
                "requests arrive faster than they are answered: one dropped",
                kind="overflow", where=self.label,
            ))  # fmt: skip

    async def _on_confirm(self, data: bytes, source: int) -> None:
        seq, unsolicited = data[0] & 0x0F, bool(data[0] & 0x10)
        # dnp3py clears its own unsolicited "waiting for confirm" on it.
        async with self.server.engine_lock():
            self.server.engine.process_request(data, peer=PeerId(source, self._peer_conn))
        waiter = self._waiters.get((unsolicited, seq))
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # --- answering --------------------------------------------------------------------

    async def _process_loop(self) -> None:
        while True:
            data, source = await self._requests.get()
            await self._answer(data, PeerId(source, self._peer_conn))

    async def _answer(self, data: bytes, peer: PeerId) -> None:
        server, cfg = self.server, self.server.config
        seq, fc = data[0] & 0x0F, data[1]
        if fc == FunctionCode.ENABLE_UNSOLICITED and not cfg.unsolicited:
            iin = server.engine.iin | IIN.NO_FUNC_CODE_SUPPORT
            await self.send_fragments([build_null_response(iin=iin, seq=seq)])
            return
        if fc in _CONTROL:
            responses = await self._run_control(data, peer)
        else:
            async with server.engine_lock():
                responses = server.engine.process_request(data, peer=peer)
        if fc == FunctionCode.READ:
            server.stats_add("polls")
            sent = sum(object_count(b) for r in responses for b in r.objects)
            server.stats_add("points_sent", sent)
        for r in responses:
            for flag, kind, text in _IIN_ERRORS:
                if r.header.iin & flag:
                    server.count_error(ScadaError(f"{text}: function {fc}", kind=kind,
                                                  where=self.label))  # fmt: skip
        if fc == FunctionCode.ENABLE_UNSOLICITED and responses:
            server.unsolicited_enabled(self)
        await self.send_fragments(responses)

    async def _run_control(self, data: bytes, peer: PeerId) -> list[ResponseFragment]:
        server = self.server
        bridge = server.bridge
        async with server.engine_lock():
            bridge.master = self.label
            bridge.notes.clear()
            job = self._loop.run_in_executor(
                server.executor, partial(server.engine.process_request, data, peer=peer)
            )
            try:
                responses = await asyncio.shield(job)
            except asyncio.CancelledError:
                # Keep the engine locked until the worker is done with it.
                await asyncio.wait([job])
                raise
            notes = list(bridge.notes)
        fc = data[1]
        statuses = [s for r in responses for s in control_statuses(r.objects)]
        if fc == FunctionCode.DIRECT_OPERATE_NO_ACK:
            statuses = [0 if not n.kind else 1 for n in notes]
        refused = sum(1 for s in statuses if s != 0)
        if fc in _EXECUTE or fc == FunctionCode.DIRECT_OPERATE_NO_ACK:
            server.stats_add("commands", len(statuses))
            server.stats_add("commands_refused", refused)
        elif fc == FunctionCode.SELECT and refused:
            # A refused SELECT ends that command: counted as one, refused.
            server.stats_add("commands", refused)
            server.stats_add("commands_refused", refused)
        for n in notes:
            if n.kind:
                server.count_error(ScadaError(n.message, kind=n.kind, where=self.label))
            else:
                server.log(logging.INFO, f"{self.label}: {n.message}")
        if refused > len([n for n in notes if n.kind]):
            # dnp3py refused some itself (NO_SELECT without SELECT, another master's
            # selection, a malformed object) before they reached the bridge.
            server.count_error(ScadaError(f"control refused by the protocol (function {fc})",
                                          kind="not_allowed", where=self.label))  # fmt: skip
        return responses

    async def send_fragments(self, responses: list[ResponseFragment]) -> None:
        """Send a (possibly multi-fragment) solicited response, each non-final fragment
        asking for, and waiting for, the master's confirm."""
        for i, response in enumerate(responses):
            payload = response.to_bytes()
            last = i == len(responses) - 1
            if last:
                await self.send_fragment(payload)
                return
            payload = bytes([payload[0] | 0x20]) + payload[1:]  # CON
            if not await self._send_confirmed(payload, False, response.sequence):
                self.server.count_error(ScadaError(
                    f"no confirm of fragment {i + 1} of {len(responses)}: response cut",
                    kind="confirm", where=self.label,
                ))  # fmt: skip
                return

    async def send_unsolicited(self, fragment: ResponseFragment, retries: int) -> bool:
        """Send an unsolicited response until confirmed (``retries`` resends)."""
        payload = fragment.to_bytes()
        for _ in range(retries + 1):
            if await self._send_confirmed(payload, True, fragment.sequence):
                return True
        return False

    async def _send_confirmed(self, payload: bytes, unsolicited: bool, seq: int) -> bool:
        key = (unsolicited, seq)
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._waiters[key] = waiter
        try:
            await self.send_fragment(payload)
            await asyncio.wait_for(asyncio.shield(waiter), self.server.config.confirm_timeout_s)
            return True
        except (TimeoutError, asyncio.CancelledError) as exc:
            if isinstance(exc, asyncio.CancelledError) and not waiter.cancelled():
                raise
            return False
        finally:
            if self._waiters.get(key) is waiter:
                del self._waiters[key]

    async def send_fragment(self, payload: bytes) -> None:
        """One application fragment, in transport segments and link frames."""
        cfg = self.server.config
        async with self._write_lock:
            frames = [
                build_unconfirmed_user_data(
                    destination=cfg.master_address, source=cfg.outstation_address,
                    dir_from_master=False, user_data=seg.to_bytes(),
                )
                for seg in self._segmenter.segment(payload)
            ]  # fmt: skip
            await self._write_frames(frames, locked=True)

    async def _write_frames(self, frames: list[DataLinkFrame], *, locked: bool = False) -> None:
        async with contextlib.AsyncExitStack() as stack:
            if not locked:
                await stack.enter_async_context(self._write_lock)
            for f in frames:
                self._writer.write(f.to_bytes())
            self.server.stats_add("frames_out", len(frames))
            await self._writer.drain()
