"""This host's network seen without psutil: its non-loopback IPv4 address, the inet
sockets a process holds (from /proc), and a sender of CAN-over-UDP datagrams."""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

import can
from can.interfaces.udp_multicast.utils import pack_message

# SIOCGIFADDR (linux/sockios.h): the IPv4 address of an interface.
_SIOCGIFADDR = 0x8915
# /proc/net/tcp state of a listening socket.
_TCP_LISTEN = "0A"


def non_loopback_ipv4() -> str | None:
    """An IPv4 address of one of this host's interfaces outside 127.0.0.0/8, or None."""
    for _, name in socket.if_nameindex():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            try:
                req = struct.pack("256s", name.encode()[:15])
                raw = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, req)
            except OSError:
                continue  # no IPv4 address on it
        addr = socket.inet_ntoa(raw[20:24])
        if not ipaddress.ip_address(addr).is_loopback:
            return addr
    return None


@dataclass(frozen=True)
class InetSocket:
    """One TCP or UDP socket of a process: protocol, local address and port, listening."""

    proto: str
    host: str
    port: int
    listening: bool


def _address(hexaddr: str) -> tuple[str, int]:
    """A /proc/net address ("0100007F:1F90") as (host, port); the address words are in
    host byte order (little-endian here)."""
    hexip, hexport = hexaddr.split(":")
    raw = bytes.fromhex(hexip)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    family = socket.AF_INET if len(raw) == 4 else socket.AF_INET6
    return socket.inet_ntop(family, words), int(hexport, 16)


def inet_sockets(pid: int) -> list[InetSocket]:
    """The TCP and UDP sockets (IPv4 and IPv6) that process ``pid`` holds now."""
    inodes: set[str] = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    out: list[InetSocket] = []
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{proto}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[9] not in inodes:
                continue
            host, port = _address(fields[1])
            # A bound UDP socket receives whatever reaches its port: a listener.
            tcp = proto.startswith("tcp")
            listening = fields[3] == _TCP_LISTEN if tcp else port != 0
            out.append(InetSocket(proto, host, port, listening))
    return out


def send_can(
    frame: can.Message,
    to: tuple[str, int],
    *,
    source: str,
    via: str = "127.0.0.1",
    ttl: int = 0,
) -> bool:
    """Send ``frame`` as python-can's UDP buses encode it from address ``source`` to
    ``to`` (multicast goes out of the interface of address ``via``). False if the system
    would not send it (then that path cannot carry an attack either)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(via))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        try:
            sock.sendto(pack_message(frame), to)
        except OSError:
            return False
    return True


def free_udp_port() -> int:
    """A UDP port free on this host now (bound once on loopback, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
