"""ProtocolFactory (registry, entry points, config validation) and BaseProtocol's
retries, state machine and health, with a small in-memory protocol."""

from __future__ import annotations

import importlib.metadata
from typing import Any

import pytest

from tests.support.devices import run
from tests.support.echo import EchoConfig, EchoProtocol
from vpp.drivers import factory as factory_mod
from vpp.drivers.base import ConnectionState, Status
from vpp.drivers.errors import (
    DeviceOfflineError,
    DeviceTimeoutError,
    DriverError,
    ProtocolError,
    ProtocolUnavailableError,
    ValidationError,
)
from vpp.drivers.factory import ProtocolFactory
from vpp.drivers.modbus import ModbusTcpProtocol
from vpp.errors import ConfigError, VppError


def test_errors_are_in_the_hierarchy() -> None:
    assert issubclass(DriverError, VppError)
    assert issubclass(DeviceTimeoutError, TimeoutError)
    assert issubclass(DeviceOfflineError, ConnectionError)
    assert issubclass(ValidationError, ValueError)
    err = ProtocolError("bad reply", resource="bess1", point="soc", code=2)
    assert "bess1" in str(err) and err.point == "soc" and err.code == 2


def test_builtin_and_registered_protocols() -> None:
    f = ProtocolFactory()
    assert "modbus_tcp" in f.supported_protocols()
    assert f.protocol_class("modbus_tcp") is ModbusTcpProtocol
    f.register_protocol("echo", EchoProtocol)
    assert "echo" in f.supported_protocols()
    proto = f.create("echo", {"value": 2.5})
    assert isinstance(proto, EchoProtocol)
    with pytest.raises(TypeError):
        f.register_protocol("bad", object)  # type: ignore[arg-type]


def test_unknown_protocol() -> None:
    with pytest.raises(ProtocolUnavailableError, match="unknown protocol 'nope'"):
        ProtocolFactory().create("nope", {})


def test_entry_point_is_loaded_lazily(monkeypatch: pytest.MonkeyPatch) -> None:
    ep = importlib.metadata.EntryPoint(
        name="echo_plugin",
        value="tests.support.echo:EchoProtocol",
        group=factory_mod.ENTRY_POINT_GROUP,
    )
    broken = importlib.metadata.EntryPoint(
        name="broken", value="no_such_module_xyz:Thing", group=factory_mod.ENTRY_POINT_GROUP
    )
    calls: list[str] = []

    def entry_points(*, group: str) -> list[importlib.metadata.EntryPoint]:
        calls.append(group)
        return [ep, broken] if group == factory_mod.ENTRY_POINT_GROUP else []

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    f = ProtocolFactory()
    assert calls == []  # nothing read until asked
    assert {"echo_plugin", "broken", "modbus_tcp"} <= set(f.supported_protocols())
    assert calls == [factory_mod.ENTRY_POINT_GROUP]
    assert isinstance(f.create("echo_plugin", {}), EchoProtocol)
    with pytest.raises(ProtocolUnavailableError, match="'broken' cannot be loaded"):
        f.create("broken", {})


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"port": 502}, "host"),
        ({"host": "h", "port": 70000}, "port"),
        ({"host": "h", "device_id": 0}, "device_id"),
        ({"host": "h", "timeout": -1}, "timeout"),
        ({"host": "h", "colour": "red"}, "colour"),
        ({"host": "h", "map": "no_such_map.yaml"}, "map"),
    ],
)
def test_invalid_config_names_protocol_and_field(config: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        ProtocolFactory().create("modbus_tcp", config)
    assert info.value.field == field
    assert "modbus_tcp" in str(info.value) and field in str(info.value)


def test_retries_backoff_and_health() -> None:
    async def main() -> None:
        cfg = EchoConfig(retries=2, backoff_initial=0.001, backoff_max=0.01)
        proto = EchoProtocol(cfg, name="echo1")
        seen: list[Status] = []
        proto.subscribe(seen.append)
        # Two timeouts then success: retried within one call.
        EchoProtocol.outcomes[:] = [DeviceTimeoutError("slow"), DeviceOfflineError("gone")]
        assert await proto.read_status() == {"value": 1.0}
        assert seen == [{"value": 1.0}]
        assert proto.state is ConnectionState.CONNECTED
        # A protocol error is not retried.
        EchoProtocol.outcomes[:] = [ProtocolError("garbage")]
        with pytest.raises(ProtocolError):
            await proto.read_status()
        # Retries run out: the last error.
        EchoProtocol.outcomes[:] = [DeviceTimeoutError("slow")] * 3
        with pytest.raises(DeviceTimeoutError):
            await proto.read_status()
        with pytest.raises(ValidationError, match="unknown command 'jump'"):
            await proto.send_command("jump")
        ack = await proto.send_command("ping", {"x": 1})
        assert ack.ok and ack.latency >= 0
        h = proto.health.snapshot()
        assert h["errors"] == {
            "timeout": 4,
            "connection": 1,
            "protocol": 1,
            "validation": 1,
            "error": 0,
        }
        assert h["p50"] is not None and h["p99"] is not None and h["last_success"]
        assert 0 < h["error_rate"] < 1
        await proto.close()
        assert proto.state is ConnectionState.CLOSED
        with pytest.raises(DeviceOfflineError, match="closed"):
            await proto.read_status()

    run(main)
