"""Peers of the DNP3 outstation tests: a foreign master (opendnp3, through its yadnp3
bindings), a recording command sink, a raw TCP peer and frame builders.

opendnp3 runs its own threads and calls back from them; what it reports is kept under a
lock and the tests poll it with deadlines.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import opendnp3 as o
from dnp3.datalink.builder import build_unconfirmed_user_data

from vpp.orchestrator.scada.points import CommandOutcome

OUTSTATION = 10
MASTER = 1


@dataclass(frozen=True)
class Seen:
    """One value the master received."""

    gv: str  # "Group30Var1"
    index: int
    value: Any
    flags: int
    time_ms: int
    unsolicited: bool


class RecordingSink:
    """A CommandSink that records each call and answers ``answer`` (after ``delay`` s)."""

    def __init__(self, answer: CommandOutcome | None = None, delay: float = 0.0) -> None:
        self.calls: list[tuple[str, str, float | bool]] = []
        self.answer = answer or CommandOutcome(True)
        self.delay = delay

    async def __call__(self, master: str, point: str, value: float | bool) -> CommandOutcome:
        self.calls.append((master, point, value))
        if self.delay:
            await asyncio.sleep(self.delay)
        return self.answer


class _Soe(o.ISOEHandler):  # type: ignore[misc]
    def __init__(self, master: ForeignMaster) -> None:
        super().__init__()
        self._m = master
        self._unsol = False

    def BeginFragment(self, info: Any) -> None:  # noqa: N802 (opendnp3's names)
        self._unsol = bool(info.unsolicited)

    def EndFragment(self, info: Any) -> None:  # noqa: N802
        pass

    def Process(self, info: Any, values: Any) -> None:  # noqa: N802
        gv = str(info.gv).rsplit(".", 1)[-1]
        with self._m.lock:
            for v in values:
                m = v.value
                t = getattr(m, "time", None)
                self._m.seen.append(
                    Seen(
                        gv,
                        int(v.index),
                        m.value,
                        int(m.flags.value),
                        int(t.value) if t is not None else 0,
                        self._unsol,
                    )
                )


class _App(o.IMasterApplication):  # type: ignore[misc]
    def __init__(self, master: ForeignMaster) -> None:
        super().__init__()
        self._m = master

    def Now(self) -> Any:  # noqa: N802
        return o.UTCTimestamp(int(time.time() * 1000))

    def OnReceiveIIN(self, iin: Any) -> None:  # noqa: N802
        pass

    def OnTaskStart(self, type_: Any, id_: Any) -> None:  # noqa: N802
        pass

    def OnTaskComplete(self, info: Any) -> None:  # noqa: N802
        with self._m.lock:
            self._m.tasks.append((str(info.type).rsplit(".", 1)[-1], str(info.result)))

    def OnOpen(self) -> None:  # noqa: N802
        pass

    def OnClose(self) -> None:  # noqa: N802
        pass

    def AssignClassDuringStartup(self) -> bool:  # noqa: N802
        return False


class ForeignMaster:
    """opendnp3's master on a TCP client channel to ``127.0.0.1:port``."""

    def __init__(self, port: int, *, remote: int = OUTSTATION, time_sync: bool = False) -> None:
        self.lock = threading.Lock()
        self.seen: list[Seen] = []
        self.tasks: list[tuple[str, str]] = []
        self._manager = o.DNP3Manager(1)
        retry = o.ChannelRetry.Default()
        self._channel = self._manager.AddTCPClient(
            "vpp-test",
            o.LogLevels.none(),
            retry,
            [o.IPEndpoint("127.0.0.1", port)],
            "0.0.0.0",
            None,
        )
        cfg = o.MasterStackConfig()
        cfg.master.responseTimeout = o.TimeDuration.Seconds(2)
        cfg.master.timeSyncMode = (
            o.TimeSyncMode.LAN if time_sync else getattr(o.TimeSyncMode, "None")
        )
        cfg.link.LocalAddr = MASTER
        cfg.link.RemoteAddr = remote
        self._soe = _Soe(self)
        self._app = _App(self)
        self.master = self._channel.AddMaster("master", self._soe, self._app, cfg)
        self.master.Enable()

    def close(self) -> None:
        """Stop opendnp3 (joins its threads)."""
        self._manager.Shutdown()

    def __enter__(self) -> ForeignMaster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def values(self, gv: str) -> dict[int, Seen]:
        """The last value seen per index for one group/variation ("Group30Var1")."""
        with self.lock:
            return {s.index: s for s in self.seen if s.gv == gv}

    def events(self, gv: str, index: int) -> list[Seen]:
        """Every value seen for one point of one group/variation, in order."""
        with self.lock:
            return [s for s in self.seen if s.gv == gv and s.index == index]

    def done(self, task: str) -> bool:
        """Whether a task of this type (e.g. "ENABLE_UNSOLICITED") completed."""
        with self.lock:
            return any(t == task for t, _ in self.tasks)

    def clear(self) -> None:
        """Forget what was seen."""
        with self.lock:
            self.seen.clear()

    async def command(self, how: str, command: Any, index: int, timeout: float = 5.0) -> str:
        """SelectAndOperate or DirectOperate ``command`` at ``index``; the point's status
        ("SUCCESS", "NO_SELECT", ...) or the task's failure."""
        done = threading.Event()
        out: list[str] = []

        def callback(result: Any) -> None:
            points = result.to_list()
            out.append(points[0].status.name if points else str(result.summary))
            done.set()

        getattr(self.master, how)(command, index, callback)
        await until(done.is_set, timeout, f"{how} at {index} answered")
        return out[0]


async def until(cond: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    """Poll ``cond`` until it holds; AssertionError naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def frame(payload: bytes, *, dest: int = OUTSTATION, source: int = MASTER) -> bytes:
    """A master's unconfirmed user data frame carrying ``payload`` (transport header
    included in it)."""
    return build_unconfirmed_user_data(dest, source, True, payload).to_bytes()


def class0_read(seq: int = 0) -> bytes:
    """Transport + application octets of a class 0 READ (FIR|FIN, g60v1 all)."""
    return bytes([0xC0, 0xC0 | seq, 0x01, 60, 1, 0x06])


async def raw_connect(
    port: int, local: str = "127.0.0.1"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A raw TCP connection to the outstation from ``local``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((local, 0))
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return await asyncio.open_connection(sock=sock)


async def closed_by_peer(reader: asyncio.StreamReader, timeout: float = 3.0) -> bool:
    """Whether the peer closes the stream within ``timeout`` (reading what comes)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data = await asyncio.wait_for(reader.read(4096), deadline - time.monotonic())
        except TimeoutError:
            return False
        except ConnectionError:
            return True
        if not data:
            return True
    return False
