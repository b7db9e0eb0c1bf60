"""The events broker of a site: an XSUB/XPUB proxy between ``events_in`` and ``events_out``.

Every process publishes by connecting to ``events_in`` and subscribes at ``events_out``
(see :mod:`vpp.orchestrator.topology`), so publishers and subscribers may start, die and
come back in any order. The proxy is libzmq's own (``zmq.proxy_steerable``) on a thread
of the launcher with its own context, so it forwards without the GIL or the event loop;
:meth:`Broker.stop` terminates it through the control socket and joins the thread.
"""

from __future__ import annotations

import contextlib
import threading
import uuid

import zmq

__all__ = ["Broker", "start_broker"]


class Broker:
    """A running proxy (see the module docstring); :meth:`stop` ends it."""

    def __init__(self, events_in: str, events_out: str) -> None:
        self.events_in = events_in
        self.events_out = events_out
        self._ctx = zmq.Context()
        self._control = f"inproc://broker-control-{uuid.uuid4().hex}"
        self._frontend = self._ctx.socket(zmq.XSUB)
        self._backend = self._ctx.socket(zmq.XPUB)
        self._ctrl_in = self._ctx.socket(zmq.PAIR)
        try:
            self._frontend.bind(events_in)
            self._backend.bind(events_out)
            self._ctrl_in.bind(self._control)
        except zmq.ZMQError:
            self._close_sockets()
            self._ctx.term()
            raise
        self._ctrl_out = self._ctx.socket(zmq.PAIR)
        self._ctrl_out.connect(self._control)
        self._thread = threading.Thread(target=self._run, name="vpp-broker", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        # ContextTerminated only if stop() was bypassed; the thread then just ends.
        with contextlib.suppress(zmq.ContextTerminated):
            zmq.proxy_steerable(self._frontend, self._backend, None, self._ctrl_in)

    def _close_sockets(self) -> None:
        for sock in (self._frontend, self._backend, self._ctrl_in):
            sock.close(linger=0)

    def stop(self) -> None:
        """Terminate the proxy, close its sockets and its context (idempotent)."""
        if not self._thread.is_alive() and self._ctx.closed:
            return
        self._ctrl_out.send(b"TERMINATE")
        self._thread.join()
        self._ctrl_out.close(linger=0)
        self._close_sockets()
        self._ctx.term()


def start_broker(events_in: str, events_out: str) -> Broker:
    """Bind the proxy's two sockets and start forwarding."""
    return Broker(events_in, events_out)
