"""MqttProtocol against a real mosquitto broker and the simulated MQTT BESS (no mocks)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from tests.support.devices import run, wait_until
from tests.support.mosquitto import Mosquitto
from vpp.drivers.errors import DeviceOfflineError, DeviceTimeoutError, ProtocolError
from vpp.drivers.factory import ProtocolFactory
from vpp.drivers.mqtt import MqttProtocol, StaleTelemetryError
from vpp.drivers.mqtt_payload import PayloadError, decode_ack, decode_telemetry
from vpp.errors import ConfigError
from vpp.sim.bess_model import BessModel
from vpp.sim.mqtt_device import MqttBessDevice

PERIOD_S = 0.05


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """An anonymous mosquitto on a free loopback port."""
    with Mosquitto(tmp_path) as b:
        yield b


def driver(port: int, **extra: Any) -> MqttProtocol:
    """An MQTT driver of device ``bess1`` made by the factory."""
    cfg: dict[str, Any] = {"port": port, "device": "bess1", "retries": 0, "timeout": 2.0}
    cfg.update(extra)
    proto = ProtocolFactory().create("mqtt", cfg, label="bess1")
    assert isinstance(proto, MqttProtocol)
    return proto


@asynccontextmanager
async def site(port: int, **extra: Any) -> AsyncIterator[tuple[MqttBessDevice, MqttProtocol]]:
    """A running simulated device and a connected driver that has had telemetry."""
    model = BessModel(capacity_kwh=1000.0, p_max_kw=500.0, soc_pct=63.5, ramp_kw_s=5000.0)
    dev = MqttBessDevice("bess1", port=port, model=model, period_s=PERIOD_S)
    proto = driver(port, **extra)
    await proto.connect()
    try:
        async with dev:
            await wait_until(lambda: proto.latest is not None)
            yield dev, proto
    finally:
        await proto.close()


@asynccontextmanager
async def raw_client(port: int) -> AsyncIterator[aiomqtt.Client]:
    """A plain aiomqtt client, to publish what a device would (or should not)."""
    async with aiomqtt.Client("127.0.0.1", port) as client:
        yield client


def test_telemetry_flows_and_is_decoded(broker: Mosquitto) -> None:
    async def main() -> None:
        async with site(broker.port) as (dev, proto):
            seen: list[dict[str, float | bool]] = []
            proto.subscribe(seen.append)
            await wait_until(lambda: len(seen) >= 3)
            status = await proto.read_status()
            assert status["soc"] == 63.5  # standby: no energy moves
            assert status["dc_voltage"] == pytest.approx(dev.model.dc_voltage_v())
            assert status["running"] is False
            assert 0 <= status["age_s"] < 1.0
            assert all(s["max_discharge_power"] == 500.0 for s in seen)
            assert proto.health.telemetry >= 3
            assert proto.health.snapshot()["errors"]["protocol"] == 0

    run(main)


def test_command_reaches_device_changes_model_and_is_acked(broker: Mosquitto) -> None:
    async def main() -> None:
        async with site(broker.port) as (dev, proto):
            assert (await proto.send_command("enable")).detail == "enable=True"
            await proto.send_command("set_mode", {"mode": "power_control"})
            ack = await proto.send_command("set_power", {"kw": 200.0})
            assert ack.ok and ack.detail == "p_kw=200"
            assert dev.command.p_kw == 200.0 and dev.command.enable and dev.command.mode == 1
            assert dev.commands_done == 3
            await wait_until(lambda: proto.latest is not None and
                             proto.latest[1]["active_power"] == 200.0)  # fmt: skip
            await asyncio.sleep(3 * PERIOD_S)
            status = await proto.read_status()
            assert status["state"] == 1.0 and status["p_setpoint"] == 200.0
            assert status["soc"] < 63.5  # discharging drains the model
            await proto.send_command("emergency_stop")
            assert dev.command.p_kw == 0.0 and not dev.command.enable

    run(main)


def test_refused_command_is_a_protocol_error(broker: Mosquitto) -> None:
    async def main() -> None:
        async with site(broker.port) as (dev, proto):
            with pytest.raises(ProtocolError, match="unknown mode 'boost'"):
                await proto.send_command("set_mode", {"mode": "boost"})
            assert dev.commands_refused == 1 and dev.command.mode == 0
            assert proto.health.errors["protocol"] == 1

    run(main)


def test_ack_timeout_when_the_device_is_gone(broker: Mosquitto) -> None:
    async def main() -> None:
        async with site(broker.port, timeout=0.3) as (dev, proto):
            assert (await proto.send_command("set_power", {"kw": 10.0})).ok
            await dev.stop()
            with pytest.raises(DeviceTimeoutError, match=r"no answer within 0\.3 s"):
                await proto.send_command("set_power", {"kw": 20.0})
            assert dev.command.p_kw == 10.0
            assert proto.health.errors["timeout"] == 1
            assert proto.state.value == "connected"  # the broker session stays up
            assert proto.health.connects == 1

    run(main)


def test_disconnect_ends_the_session_and_a_call_starts_another(broker: Mosquitto) -> None:
    async def main() -> None:
        async with site(broker.port) as (dev, proto):
            await proto.disconnect()
            assert proto.state.value == "disconnected"
            assert (await proto.send_command("set_power", {"kw": -30.0})).ok
            assert dev.command.p_kw == -30.0
            assert proto.health.connects == 2 and proto.health.reconnects == 0

    run(main)


def test_stale_telemetry_is_a_clear_error(broker: Mosquitto) -> None:
    async def main() -> None:
        async with site(broker.port, stale_after_s=0.3) as (dev, proto):
            await proto.read_status()
            await dev.stop()
            await asyncio.sleep(0.5)
            with pytest.raises(StaleTelemetryError, match=r"s old \(stale_after_s 0.3\)"):
                await proto.read_status()

    run(main)


@pytest.mark.parametrize("qos", [1, 2])
def test_qos_delivers_every_message_in_order(broker: Mosquitto, qos: int) -> None:
    n = 300

    async def main() -> None:
        proto = driver(broker.port, qos=qos)
        seqs: list[float | bool] = []
        proto.subscribe(lambda s: seqs.append(s["seq"]))
        try:
            await proto.connect()
            async with raw_client(broker.port) as pub:
                for i in range(n):
                    body = json.dumps({"seq": i, "soc": 50.0})
                    await pub.publish("vpp/bess1/telemetry", body, qos=qos)
            await wait_until(lambda: len(seqs) >= n)
            await asyncio.sleep(0.1)
            assert seqs == list(range(n))
            assert proto.health.telemetry == n
        finally:
            await proto.close()

    run(main)


def test_commands_at_qos_2(broker: Mosquitto) -> None:
    async def main() -> None:
        async with site(broker.port, qos=2) as (dev, proto):
            for kw in (-50.0, 75.5, 0.0, 120.0):
                await proto.send_command("set_power", {"kw": kw})
            assert dev.command.p_kw == 120.0 and dev.commands_done == 4

    run(main)


def test_username_and_password(tmp_path: Path) -> None:
    async def main(b: Mosquitto) -> None:
        dev = MqttBessDevice("bess1", port=b.port, period_s=PERIOD_S,
                             username="gw", password="gw-pass")  # fmt: skip
        good = driver(b.port, username="vpp", password="s3cret")
        bad = driver(b.port, username="vpp", password="wrong", retries=2)
        try:
            async with dev:
                await good.connect()
                await wait_until(lambda: good.latest is not None)
                assert (await good.read_status())["soc"] == 50.0
                with pytest.raises(ProtocolError, match="check username and password") as info:
                    await bad.connect()
                assert info.value.code == 0x87  # paho 2 reports MQTT 5 reason codes
                assert bad.health.errors["protocol"] == 1  # a refusal is not retried
                assert bad.health.calls == 1
        finally:
            await good.close()
            await bad.close()

    with Mosquitto(tmp_path, users={"vpp": "s3cret", "gw": "gw-pass"}) as b:
        run(lambda: main(b))


def test_tls(tmp_path: Path) -> None:
    async def main(b: Mosquitto) -> None:
        assert b.ca_file is not None
        good = driver(b.port, ca_file=str(b.ca_file))
        untrusted = driver(b.port, tls=True, timeout=0.5)
        try:
            await good.connect()
            async with raw_client_tls(b.port, b.ca_file) as pub:
                await pub.publish("vpp/bess1/telemetry", '{"soc": 42.25}', qos=1)
            await wait_until(lambda: good.latest is not None)
            assert (await good.read_status())["soc"] == 42.25
            with pytest.raises(DeviceOfflineError, match="CERTIFICATE_VERIFY_FAILED"):
                await untrusted.connect()
        finally:
            await good.close()
            await untrusted.close()

    with Mosquitto(tmp_path, tls=True) as b:
        run(lambda: main(b))


@asynccontextmanager
async def raw_client_tls(port: int, ca_file: Path) -> AsyncIterator[aiomqtt.Client]:
    """A plain aiomqtt client over TLS."""
    params = aiomqtt.TLSParameters(ca_certs=str(ca_file))
    async with aiomqtt.Client("127.0.0.1", port, tls_params=params) as client:
        yield client


def test_broker_restart_reconnects_and_resubscribes(broker: Mosquitto) -> None:
    async def main() -> None:
        async with site(broker.port, backoff_initial=0.05, backoff_max=0.2) as (dev, proto):
            await wait_until(lambda: proto.health.telemetry >= 3)
            await asyncio.to_thread(broker.stop)
            await wait_until(lambda: proto.state.value in ("backoff", "connecting"))
            before = proto.health.telemetry
            await asyncio.sleep(0.3)
            assert proto.health.telemetry == before
            await asyncio.to_thread(broker.start)  # the same port
            await wait_until(lambda: proto.health.telemetry >= before + 5, timeout=10.0)
            snap = proto.health.snapshot()
            assert snap["reconnects"] == 1 and snap["state"] == "connected"
            assert snap["errors"]["connection"] >= 1
            assert (await proto.read_status())["age_s"] < 1.0
            # Commands work again too: the ack subscription came back.
            assert (await proto.send_command("set_power", {"kw": 5.0})).ok
            assert dev.command.p_kw == 5.0

    run(main)


def test_malformed_payloads_are_counted_not_fatal(broker: Mosquitto) -> None:
    async def main() -> None:
        proto = driver(broker.port)
        try:
            await proto.connect()
            async with raw_client(broker.port) as pub:
                for body in (b"not json", b"[1, 2]", b'{"soc": "high"}', b'{"soc": 1e999}'):
                    await pub.publish("vpp/bess1/telemetry", body, qos=1)
                await pub.publish("vpp/bess1/ack", b'{"id": "x"}', qos=1)
                await pub.publish("vpp/bess1/ack", b"\xff\xfe", qos=1)
                await pub.publish("vpp/bess1/ack", b'{"id": "nobody", "ok": true}', qos=1)
                await pub.publish("vpp/bess1/telemetry", b'{"soc": 71.0}', qos=1)
            await wait_until(lambda: proto.latest is not None)
            errors = proto.health.snapshot()["errors"]
            # not an object / not JSON: protocol; wrong field types: validation
            assert errors["protocol"] == 3 and errors["validation"] == 3
            assert (await proto.read_status())["soc"] == 71.0
            assert proto.health.telemetry == 1
            assert proto.health.late_acks == 1  # well-formed, but no command waits for it
        finally:
            await proto.close()

    run(main)


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"device": "a/b"}, "device"),
        ({"qos": 3}, "qos"),
        ({"password": "x"}, "config"),
        ({"tls_insecure": True}, "config"),
    ],
)
def test_invalid_config_names_the_field(extra: dict[str, Any], field: str) -> None:
    cfg = {"device": "bess1", **extra}
    with pytest.raises(ConfigError) as info:
        ProtocolFactory().create("mqtt", cfg)
    assert info.value.field == field


@pytest.mark.parametrize(
    ("payload", "category"),
    [
        (b"{", "protocol"),
        (b"\xff", "protocol"),
        (b'"text"', "protocol"),
        (b'{"soc": NaN}', "validation"),
        (b'{"soc": 1e999}', "validation"),
        (b'{"a": 1' + b"0" * 400 + b', "b": -1' + b"0" * 400 + b"}", "validation"),
        (b'{"soc": [1]}', "validation"),
        (b'{"soc": null}', "validation"),
    ],
)
def test_decode_telemetry_rejects(payload: bytes, category: str) -> None:
    with pytest.raises(PayloadError) as info:
        decode_telemetry(payload)
    assert info.value.category == category


def test_decode_telemetry_keeps_types() -> None:
    out = decode_telemetry(b'{"soc": 55.5, "state": 1, "running": true, "p": -1e308}')
    assert out == {"soc": 55.5, "state": 1, "running": True, "p": -1e308}
    assert out["running"] is True


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b'{"ok": true}', "ack field 'id' is None"),
        (b'{"id": "a", "ok": "yes"}', "ack field 'ok' is 'yes'"),
        (b'{"id": "a", "ok": false, "error": 3}', "ack field 'error' is 3, not a string"),
    ],
)
def test_decode_ack_rejects(payload: bytes, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        decode_ack(payload)


def test_missing_ca_file_is_a_clear_connection_error(broker: Mosquitto, tmp_path: Path) -> None:
    async def main() -> None:
        proto = driver(broker.port, ca_file=str(tmp_path / "absent.pem"), timeout=0.5)
        try:
            msg = r"TLS files unusable \(.*absent\.pem\): .*No such file"
            with pytest.raises(DeviceOfflineError, match=msg):
                await proto.connect()
        finally:
            await proto.close()
        assert proto.state.value == "closed"

    run(main)


def test_a_failing_subscriber_does_not_stop_telemetry(broker: Mosquitto) -> None:
    async def main() -> None:
        async with site(broker.port) as (_dev, proto):
            good: list[float | bool] = []

            def bad(_status: dict[str, float | bool]) -> None:
                raise RuntimeError("subscriber bug")

            proto.subscribe(bad)
            proto.subscribe(lambda s: good.append(s["soc"]))
            await wait_until(lambda: len(good) >= 3)
            assert set(good) == {63.5}

    run(main)
