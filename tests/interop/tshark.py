"""Run Wireshark's C37.118 dissector (tshark) over frames this codec produced.

Frames are wrapped in Ethernet/IPv4/UDP packets to port 4713, where Wireshark's
``synphasor`` dissector listens by default, and written to a classic pcap file.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

SYNPHASOR_UDP_PORT = 4713


def _ip_checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _udp_packet(payload: bytes, sport: int = 40000, dport: int = SYNPHASOR_UDP_PORT) -> bytes:
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    src, dst = bytes([127, 0, 0, 1]), bytes([127, 0, 0, 2])
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", _ip_checksum(ip)) + ip[12:]
    eth = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00"
    return eth + ip + udp


def write_pcap(path: Path, frames: Sequence[bytes], sports: Sequence[int] | None = None) -> None:
    """Write each frame as one UDP datagram of a pcap file (linktype Ethernet).

    ``sports`` gives each frame's source port: Wireshark decodes a data frame with the
    last configuration frame of the same conversation, so separate streams need
    separate ports.
    """
    with path.open("wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i, frame in enumerate(frames):
            pkt = _udp_packet(frame, sport=sports[i] if sports else 40000)
            f.write(struct.pack("<IIII", 1_700_000_000 + i, 0, len(pkt), len(pkt)))
            f.write(pkt)


def dissect(path: Path) -> list[list[tuple[str, str, str]]]:
    """Every ``synphasor.*`` field of every packet as (name, show, showname), in order.

    PDML is used rather than JSON because only its ``showname`` carries the values
    Wireshark computed (scaled phasors, absolute frequency, analog values).
    """
    # A missing tshark fails the interop tests; it is not a reason to skip them.
    if shutil.which("tshark") is None:
        raise FileNotFoundError("tshark is not installed: run `bash scripts/setup test`")
    out = subprocess.run(
        ["tshark", "-r", str(path), "-T", "pdml"],
        check=True,
        capture_output=True,
        timeout=60,
    ).stdout
    root = ET.fromstring(out)
    packets: list[list[tuple[str, str, str]]] = []
    for packet in root.iter("packet"):
        fields = []
        for f in packet.iter("field"):
            name, show = f.get("name", ""), f.get("show", "")
            if name.startswith("synphasor"):
                fields.append((name, show, f.get("showname", "")))
            elif name == "" and (m := _STATION.match(show)):
                # CFG-1/2 station names are only the label of an unnamed subtree.
                fields.append(("station", m.group(1).rstrip(), show))
        packets.append(fields)
    return packets


def values(fields: list[tuple[str, str, str]], name: str) -> list[str]:
    """The ``show`` values of every field called ``name``."""
    return [show for n, show, _ in fields if n == name]


_STATION = re.compile(r'Station #\d+: "(.*)"$')
_PHASOR = re.compile(r"Phasor #\d+: \"[^\"]*\",\s*([-\d.]+)[VA]? ∠\s*([-\d.]+)°")
_FREQ = re.compile(r"(?:actual frequency: |Actual frequency value: )([-\d.]+)")
_ROCOF = re.compile(r"Rate of change of frequency: ([-\d.]+)")
_ANALOG = re.compile(r"Analog value #\d+: \"[^\"]*\",\s*([-\d.eE+]+)")


def phasors(fields: list[tuple[str, str, str]]) -> list[tuple[float, float]]:
    """(magnitude, angle in degrees) of every phasor Wireshark decoded."""
    found = []
    for name, _, showname in fields:
        if name == "synphasor.phasor":
            m = _PHASOR.search(showname)
            if m is None:
                raise ValueError(f"unexpected phasor label {showname!r}")
            found.append((float(m.group(1)), float(m.group(2))))
    return found


def frequency(fields: list[tuple[str, str, str]]) -> list[float]:
    """Absolute frequency (Hz) of each PMU block, as Wireshark computed it."""
    return [float(m.group(1)) for _, _, s in fields if (m := _FREQ.search(s))]


def rocof(fields: list[tuple[str, str, str]]) -> list[float]:
    """ROCOF (Hz/s) of each PMU block."""
    return [float(m.group(1)) for _, _, s in fields if (m := _ROCOF.search(s))]


def analogs(fields: list[tuple[str, str, str]]) -> list[float]:
    """Every analog value, scaled as Wireshark scales it."""
    return [float(m.group(1)) for _, _, s in fields if (m := _ANALOG.search(s))]
