"""systemd's service notification protocol, without a dependency: one datagram per
notification to the socket systemd names in ``NOTIFY_SOCKET`` (sd_notify(3)).

``vpp run`` under ``Type=notify`` says ``READY=1`` once its processes are started,
``WATCHDOG=1`` while the field controllers it runs keep deciding (so systemd restarts
the service when a controller's loop stalls, ``WatchdogSec=``), ``STATUS=`` lines, and
``STOPPING=1``. Outside systemd (no ``NOTIFY_SOCKET``) every call does nothing.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import MutableMapping

__all__ = ["Notifier"]

log = logging.getLogger(__name__)


class Notifier:
    """Notifications to systemd, read from (and removed from) ``environ``: the site's
    child processes must not speak for the service."""

    def __init__(self, environ: MutableMapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = env.pop("NOTIFY_SOCKET", None)
        usec = env.pop("WATCHDOG_USEC", None)
        pid = env.pop("WATCHDOG_PID", None)
        self.watchdog_s: float | None = None
        """systemd's watchdog timeout (s), when it expects ``WATCHDOG=1`` from us."""
        if usec is not None and (pid is None or pid == str(os.getpid())):
            try:
                self.watchdog_s = int(usec) / 1e6 or None
            except ValueError:
                log.warning("systemd: WATCHDOG_USEC=%r is not a number; no watchdog", usec)
        self.sent = 0
        self.failed = 0

    @property
    def enabled(self) -> bool:
        """Whether systemd listens."""
        return self.address is not None

    def notify(self, *lines: str) -> bool:
        """Send ``lines`` (``READY=1``, ``WATCHDOG=1``, ``STATUS=...``) as one
        notification; whether it was sent. A failure is counted and logged, never raised:
        the site must not stop because systemd's socket is gone."""
        if self.address is None:
            return False
        addr = self.address
        if addr.startswith("@"):
            addr = "\0" + addr[1:]  # an abstract socket
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto("\n".join(lines).encode(), addr)
        except OSError as e:
            self.failed += 1
            if self.failed == 1:
                log.warning("systemd: notification to %s failed: %s", self.address, e)
            return False
        self.sent += 1
        return True
