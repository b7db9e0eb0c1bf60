"""MQTT telemetry throughput: publisher -> mosquitto -> subscriber, on loopback.

A publisher process (paho-mqtt, its network loop in a thread) sends ``N`` telemetry
messages (the simulated BESS's JSON, about 450 bytes) as fast as it can through a
real mosquitto started for the run. The subscriber is either the vpp MQTT driver
(``MqttProtocol``: aiomqtt on asyncio, JSON decoded and validated, the latest status
kept, a subscriber callback called per message) or, as the reference measured in the
same run, a plain paho-mqtt client with its loop in a thread that only runs
``json.loads`` per message. The figure is messages received per second, from the first
to the last one received; the median of the repeats is quoted. Delivery at QoS 0 may
drop messages when the subscriber falls behind (mosquitto does not queue QoS 0 for an
online client without limit), so the delivered fraction is reported too.

Run: ``python benchmarks/bench_mqtt.py [--quick]`` or ``vpp bench mqtt``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vpp.bench import row  # noqa: E402

Row = dict[str, Any]
TOPIC = "vpp/bench/telemetry"
TARGET = 10_000.0
# Time without a message after which the subscriber stops counting.
IDLE_S = 1.5


def _payload() -> bytes:
    from vpp.sim.mqtt_device import MqttBessDevice

    return json.dumps(MqttBessDevice("bench").telemetry()).encode()


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = n >> 7, n & 0x7F
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _packet(kind: int, body: bytes) -> bytes:
    return bytes([kind]) + _varint(len(body)) + body


def _utf8(text: str) -> bytes:
    return len(text).to_bytes(2, "big") + text.encode()


def _publish(port: int, n: int, qos: int) -> None:
    """The publisher process: MQTT 3.1.1 PUBLISH packets encoded up front and written in
    large chunks, so that the publisher is not what limits the rate (paho-mqtt's own
    publish loop manages about 12,000 msg/s at QoS 0 and 2,500 at QoS 1 on the bench
    machine)."""
    payload = _payload()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        # CONNECT: protocol "MQTT" level 4, clean session, keepalive 60 s.
        sock.sendall(_packet(0x10, _utf8("MQTT") + bytes([4, 0x02, 0, 60]) + _utf8("bench-pub")))
        assert sock.recv(4)[:1] == bytes([0x20]), "no CONNACK"
        topic = _utf8(TOPIC)
        acks = threading.Thread(target=_drain, args=(sock,), daemon=True)
        acks.start()
        chunk = []
        for i in range(n):
            mid = (i % 65535 + 1).to_bytes(2, "big") if qos else b""
            chunk.append(_packet(0x30 | qos << 1, topic + mid + payload))
            if len(chunk) == 1000:
                sock.sendall(b"".join(chunk))
                chunk = []
        sock.sendall(b"".join(chunk) + _packet(0xE0, b""))
        acks.join(30.0)


def _drain(sock: socket.socket) -> None:
    # PUBACKs and the close after DISCONNECT; unread acks would stall the broker.
    while sock.recv(1 << 16):
        pass


def _start_publisher(port: int, n: int, qos: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, __file__, "--publish", str(port), str(n), str(qos)], cwd=ROOT
    )


def _rate(times: list[float]) -> float:
    return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0


async def _driver_run(port: int, n: int, qos: int) -> tuple[float, int]:
    from vpp.drivers.factory import ProtocolFactory

    proto = ProtocolFactory().create("mqtt", {"port": port, "device": "bench", "qos": qos})
    times: list[float] = []
    proto.subscribe(lambda _s: times.append(time.perf_counter()))
    await proto.connect()
    try:
        pub = await asyncio.to_thread(_start_publisher, port, n, qos)
        try:
            while len(times) < n:
                seen = len(times)
                await asyncio.sleep(IDLE_S)
                if len(times) == seen and seen:
                    break
        finally:
            await asyncio.to_thread(pub.wait)
    finally:
        await proto.close()
    return _rate(times), len(times)


def _paho_run(port: int, n: int, qos: int) -> tuple[float, int]:
    import paho.mqtt.client as mqtt

    times: list[float] = []
    done = threading.Event()

    def on_message(_c: Any, _u: Any, msg: Any) -> None:
        json.loads(msg.payload)
        times.append(time.perf_counter())
        if len(times) >= n:
            done.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-sub")
    client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.subscribe(TOPIC, qos=qos)
    client.loop_start()
    try:
        time.sleep(0.3)  # the SUBACK
        pub = _start_publisher(port, n, qos)
        seen = -1
        while not done.wait(IDLE_S) and len(times) != seen:
            seen = len(times)
        pub.wait()
    finally:
        client.disconnect()
        client.loop_stop()
    return _rate(times), len(times)


def run(quick: bool = False) -> list[Row]:
    """Benchmark rows (see vpp.bench)."""
    from tests.support.mosquitto import Mosquitto

    n, repeats = (5_000, 1) if quick else (50_000, 3)
    figures: dict[str, list[tuple[float, int]]] = {"d0": [], "d1": [], "p0": [], "p1": []}
    with tempfile.TemporaryDirectory() as tmp, Mosquitto(Path(tmp)) as broker:
        # Warm-up, not counted: imports, the executor thread, the broker's first session.
        asyncio.run(_driver_run(broker.port, 2_000, 0))
        _paho_run(broker.port, 2_000, 0)
        for _ in range(repeats):
            for qos in (0, 1):
                figures[f"d{qos}"].append(asyncio.run(_driver_run(broker.port, n, qos)))
                figures[f"p{qos}"].append(_paho_run(broker.port, n, qos))
    decode_us = _decode_cost_us(20_000 if quick else 200_000)
    med = {k: statistics.median(r for r, _ in v) for k, v in figures.items()}
    got = {k: min(c for _, c in v) for k, v in figures.items()}
    ref = "paho-mqtt thread loop + json.loads, same run"
    rows = []
    for qos in (0, 1):
        d, p = med[f"d{qos}"], med[f"p{qos}"]
        rows += [
            row(f"MqttProtocol telemetry, QoS {qos} (median of {repeats} x {n})", d, "msg/s",
                reference=f"{ref}: {p:.0f} msg/s", ratio=d / p if p else None,
                target=f">= {TARGET:.0f} msg/s", ok=d >= TARGET),
            row(f"MqttProtocol delivered, QoS {qos} (min of runs)", got[f"d{qos}"], "msgs",
                reference=f"{n} sent", ratio=got[f"d{qos}"] / n, target="-"),
            row(f"paho-mqtt reference, QoS {qos}", p, "msg/s",
                reference=f"delivered min {got[f'p{qos}']} / {n}", target="reference"),
        ]  # fmt: skip
    rows.append(
        row("decode_telemetry alone (JSON + checks), per message", decode_us, "us",
            reference=f"ceiling {1e6 / decode_us:.0f} msg/s", target="-")
    )  # fmt: skip
    return rows


def _decode_cost_us(n: int) -> float:
    from vpp.drivers.mqtt_payload import decode_telemetry

    payload = _payload()
    start = time.perf_counter()
    for _ in range(n):
        decode_telemetry(payload)
    return (time.perf_counter() - start) / n * 1e6


if __name__ == "__main__":
    if sys.argv[1:2] == ["--publish"]:
        _publish(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
    else:
        for r in run(quick="--quick" in sys.argv):
            print(r)
