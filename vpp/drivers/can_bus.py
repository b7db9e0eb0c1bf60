"""Opening a python-can bus by name, with the host-local ``udp_loopback`` interface.

python-can's ``udp_multicast`` bus carries CAN frames between processes as UDP multicast
datagrams, but it is built for a LAN: its socket binds every address of the host, joins
the group on the interface of the default route, and takes a datagram from anyone, so
a frame sent from another host, or unicast to the port, reaches the receiver (its
``hop_limit`` limits only what it sends). For the simulated BMS link that let a stranger
latch a unit into emergency shutdown.

:class:`UdpLoopbackBus` (interface ``udp_loopback``) speaks the same datagrams (python-can's
msgpack encoding) but keeps them on this host:

- the socket binds the group address, so unicast datagrams to the port are not delivered;
- it joins the group on the loopback interface only, with ``IP_MULTICAST_ALL`` off (Linux
  would otherwise deliver the group's datagrams of every interface to it), and sends
  through loopback with a TTL of 0;
- each datagram's source must be a loopback address (127.0.0.0/8); any other is refused
  with :class:`ForeignFrameError`, which the receiver counts. Linux drops a datagram with
  a loopback source arriving on another interface as a martian (unless
  ``route_localnet`` is set), so a remote sender cannot forge one.

:func:`open_bus` opens a bus by interface name: ``udp_loopback`` here, every other name
through :func:`can.Bus` (``socketcan`` for a real bus, ``udp_multicast`` for a simulated
bus that must cross hosts, ``virtual`` in one process).
"""

from __future__ import annotations

import ipaddress
import logging
import select
import socket
import sys
import time
from typing import Any

import can
from can.interfaces.udp_multicast.utils import pack_message, unpack_message

__all__ = [
    "LOOPBACK_INTERFACE",
    "LOOPBACK_OPTIONS",
    "UDP_INTERFACES",
    "ForeignFrameError",
    "UdpLoopbackBus",
    "is_loopback_source",
    "multicast_group",
    "open_bus",
]

log = logging.getLogger(__name__)

#: The interface name of :class:`UdpLoopbackBus`.
LOOPBACK_INTERFACE = "udp_loopback"
#: The ``bus_options`` it takes (python-can's ``udp_multicast`` also takes ``hop_limit``).
LOOPBACK_OPTIONS = frozenset({"port", "fd", "can_filters"})
#: Interfaces whose ``bus_options`` take a UDP ``port`` (a simulated bus across processes).
UDP_INTERFACES = frozenset({LOOPBACK_INTERFACE, "udp_multicast"})
#: python-can's ``udp_multicast`` default port, kept so that the two agree when none is set.
DEFAULT_PORT = 43113

# Linux's IP_MULTICAST_ALL (in.h); the socket module does not export it.
_IP_MULTICAST_ALL = 49
_LOOPBACK = "127.0.0.1"
# A msgpack CAN FD frame is under 150 bytes; a larger datagram is not one of ours.
_MAX_DATAGRAM = 4096


class ForeignFrameError(can.CanOperationError):
    """A datagram from a source that is not on this host was refused (not a frame).

    A :class:`can.CanOperationError`, which is what :meth:`can.BusABC.recv` may raise, so
    a receiver that does not know this class still treats it as a transient bus error.
    """

    def __init__(self, source: str, port: int) -> None:
        super().__init__(f"CAN frame from {source}:{port} refused: not a loopback address")
        #: The sender's address and port, as the socket reported them.
        self.source = source
        self.port = port


def is_loopback_source(host: str) -> bool:
    """Whether ``host`` (an address as a socket reports it) is on this host's loopback."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def multicast_group(channel: str) -> str:
    """``channel`` if it is an IPv4 multicast address, else ValueError."""
    try:
        addr = ipaddress.ip_address(channel)
    except ValueError:
        raise ValueError(f"udp_loopback channel must be an IPv4 multicast address, "
                         f"got {channel!r}") from None  # fmt: skip
    if not (addr.version == 4 and addr.is_multicast):
        # IPv6 would need ff01:: (interface-local) groups on lo; nothing here needs it.
        raise ValueError(f"udp_loopback channel must be an IPv4 multicast address "
                         f"(224.0.0.0/4), got {channel!r}")  # fmt: skip
    return str(addr)


class UdpLoopbackBus(can.BusABC):
    """CAN frames as UDP multicast datagrams confined to this host (module docstring).

    ``channel`` is the IPv4 multicast group (e.g. ``239.74.163.2``), ``port`` the UDP
    port; every bus of one group and port receives every frame sent on it, its own
    included (as python-can's ``udp_multicast`` does: the buses share one address).
    ``fd`` allows CAN FD frames. ``recv`` raises :class:`ForeignFrameError` for a datagram
    from a non-loopback source and :class:`can.CanOperationError` for one that is not a
    CAN frame; both consume the datagram, so the next call reads the next one.
    """

    def __init__(
        self,
        channel: str,
        port: int = DEFAULT_PORT,
        *,
        fd: bool = True,
        can_filters: can.typechecking.CanFilters | None = None,
    ) -> None:
        """Open, bind and join; ValueError for a bad channel or port,
        CanInitializationError if the socket cannot be set up. There is no ``hop_limit``:
        nothing leaves the host."""
        group = multicast_group(channel)
        if not 0 <= port <= 65535:
            raise ValueError(f"udp_loopback port must be 0..65535, got {port}")
        self._group = group
        self._sock = self._open(group, port)
        #: The bound port (the one the system chose for ``port=0``).
        self.port = int(self._sock.getsockname()[1])
        self.channel_info = f"udp_loopback {group}:{self.port}"
        self._can_protocol = can.CanProtocol.CAN_FD if fd else can.CanProtocol.CAN_20
        try:
            # Last, as python-can asks: it marks the bus open, and __del__ then shuts it.
            super().__init__(channel, can_filters=can_filters)
        except BaseException:
            self._sock.close()
            raise

    @staticmethod
    def _open(group: str, port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            # Several processes share the bus (the simulator and each unit's driver).
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if hasattr(socket, "SO_REUSEPORT"):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            # The group address, not "": unicast datagrams to the port do not match it.
            sock.bind((group, port))
            loopback = socket.inet_aton(_LOOPBACK)
            membership = socket.inet_aton(group) + loopback
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
            if sys.platform.startswith("linux"):
                # Otherwise Linux hands this socket the group's datagrams that arrive on
                # any interface some other socket joined it on.
                sock.setsockopt(socket.IPPROTO_IP, _IP_MULTICAST_ALL, 0)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, loopback)
            # Local delivery needs the loop; TTL 0 keeps a datagram from being forwarded.
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 0)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise can.CanInitializationError(
                f"cannot open udp_loopback {group}:{port}: {exc}"
            ) from exc
        return sock

    def _recv_internal(self, timeout: float | None) -> tuple[can.Message | None, bool]:
        if timeout != 0:
            # The driver polls with timeout 0 (straight to the non-blocking read below);
            # others wait here.
            ready, _, _ = select.select([self._sock], [], [], timeout)
            if not ready:
                return None, False
        try:
            data, (host, port) = self._sock.recvfrom(_MAX_DATAGRAM)
        except BlockingIOError:
            return None, False  # nothing queued, or taken by a racing reader
        except OSError as exc:
            raise can.CanOperationError(f"udp_loopback receive failed: {exc}") from exc
        if not is_loopback_source(host):
            raise ForeignFrameError(host, port)
        try:
            msg = unpack_message(data, replace={"timestamp": time.time()}, check=True)
        except Exception as exc:  # msgpack and can.Message raise several types
            raise can.CanOperationError(f"not a CAN frame from {host}:{port}") from exc
        if msg.is_fd and self._can_protocol is not can.CanProtocol.CAN_FD:
            return None, False
        return msg, False

    def send(self, msg: can.Message, timeout: float | None = None) -> None:
        """Send ``msg`` to every other bus of the group on this host."""
        if msg.is_fd and self._can_protocol is not can.CanProtocol.CAN_FD:
            raise can.CanOperationError("CAN FD frame on a bus opened with fd=False")
        data = pack_message(msg)
        try:
            sent = self._sock.sendto(data, (self._group, self.port))
        except BlockingIOError as exc:
            raise can.CanTimeoutError("udp_loopback send buffer full") from exc
        except OSError as exc:
            raise can.CanOperationError(f"udp_loopback send failed: {exc}") from exc
        if sent != len(data):
            raise can.CanOperationError("udp_loopback datagram truncated")

    def fileno(self) -> int:
        """The socket's descriptor (for can.Notifier and select)."""
        return self._sock.fileno()

    def shutdown(self) -> None:
        """Close the socket (idempotent)."""
        super().shutdown()
        self._sock.close()

def open_bus(interface: str, channel: str, options: dict[str, Any]) -> can.BusABC:
    """The bus ``interface``/``channel`` with ``options`` (``udp_loopback`` is ours, any
    other name is python-can's). Raises what the bus raises (can.CanError, OSError,
    ValueError, ImportError)."""
    if interface == LOOPBACK_INTERFACE:
        unknown = sorted(set(options) - LOOPBACK_OPTIONS)
        if unknown:
            raise ValueError(f"udp_loopback takes no options {unknown}; "
                             f"known: {sorted(LOOPBACK_OPTIONS)}")  # fmt: skip
        return UdpLoopbackBus(channel, **options)
    try:
        return can.Bus(interface=interface, channel=channel, **options)
    except NotImplementedError as exc:
        # An unknown interface name: a configuration error, reported like the others.
        raise ValueError(str(exc)) from exc
