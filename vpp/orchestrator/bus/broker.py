"""The events broker: an XSUB/XPUB proxy between ``topo.events_in`` and ``topo.events_out``.

Publishers connect their PUB sockets to ``events_in`` (the XSUB side), subscribers their
SUB sockets to ``events_out`` (the XPUB side); subscriptions travel upstream, messages
downstream. The proxy is libzmq's own (``zmq.proxy_steerable``) running in a thread of
its own, so it forwards at C speed and does not depend on any event loop; a PAIR
control socket over inproc tells it to terminate.

    async with Broker(topo.events_in, topo.events_out):
        ...

or ``await run_broker(events_in, events_out, stop)`` until ``stop`` is set.
"""

from __future__ import annotations

import asyncio
import threading
import uuid

import zmq

__all__ = ["Broker", "run_broker"]


class Broker:
    """The XSUB/XPUB proxy (see the module docstring); :meth:`start` binds both ends."""

    def __init__(self, events_in: str, events_out: str) -> None:
        self.events_in = events_in
        self.events_out = events_out
        # A context of its own: its I/O thread ends with the broker, whoever else uses zmq.
        self._ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self._control = f"inproc://broker-{uuid.uuid4().hex}"
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._ctl: zmq.Socket[bytes] | None = None

    def start(self) -> None:
        """Bind both endpoints in the proxy thread; raises what binding raised."""
        if self._thread is not None:
            raise RuntimeError("broker already started")
        # The control PAIR binds here before the thread connects: inproc needs the bind first.
        self._ctl = self._ctx.socket(zmq.PAIR)
        self._ctl.linger = 0
        self._ctl.bind(self._control)
        self._thread = threading.Thread(target=self._run, name="events-broker", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            err, self._error = self._error, None
            self._thread.join()
            self._thread = None
            self._ctl.close()
            self._ctl = None
            self._ctx.term()
            raise err

    def _run(self) -> None:
        xsub = self._ctx.socket(zmq.XSUB)
        xpub = self._ctx.socket(zmq.XPUB)
        ctl = self._ctx.socket(zmq.PAIR)
        for sock in (xsub, xpub, ctl):
            sock.linger = 0
        try:
            try:
                xsub.bind(self.events_in)
                xpub.bind(self.events_out)
                ctl.connect(self._control)
            except zmq.ZMQError as exc:
                self._error = exc
                return
            finally:
                self._ready.set()
            zmq.proxy_steerable(xsub, xpub, None, ctl)
        except zmq.ContextTerminated:
            pass
        finally:
            for sock in (xsub, xpub, ctl):
                sock.close(linger=0)

    def stop(self) -> None:
        """Terminate the proxy, wait for its thread and close every socket (blocking)."""
        thread, self._thread = self._thread, None
        ctl, self._ctl = self._ctl, None
        if thread is not None and ctl is not None:
            ctl.send(b"TERMINATE")
            thread.join()
        if ctl is not None:
            ctl.close(linger=0)
            self._ctx.term()

    async def __aenter__(self) -> Broker:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)


async def run_broker(events_in: str, events_out: str, stop: asyncio.Event) -> None:
    """Run the events proxy until ``stop`` is set, then close it."""
    async with Broker(events_in, events_out):
        await stop.wait()
