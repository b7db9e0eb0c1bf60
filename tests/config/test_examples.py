"""Every example in config/ loads: models and each device's protocol config."""

from __future__ import annotations

from pathlib import Path

import pytest

from vpp.config import load, load_text
from vpp.errors import ConfigError

DIR = Path(__file__).resolve().parents[2] / "config"
EXAMPLES = sorted(DIR.glob("*.yaml"))


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 2


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_loads(path: Path) -> None:
    site = load(path, env={"MQTT_PASSWORD": "x"})
    assert site.units()


def test_a_bad_device_config_names_its_key() -> None:
    unit = "{id: u, rated_power_kw: 1, capacity_kwh: 1, inverter: %s}"
    bad_port = unit % "{protocol: modbus_tcp, config: {host: h, port: 99999}}"
    with pytest.raises(ConfigError, match="less than or equal to 65535") as info:
        load_text(f"field: [{{id: f, units: [{bad_port}]}}]", "s.yaml", env={})
    assert info.value.field == "field.0.units.0.inverter.config.port"
    no_proto = unit % "{protocol: carrier-pigeon}"
    with pytest.raises(ConfigError, match="carrier-pigeon") as info:
        load_text(f"field: [{{id: f, units: [{no_proto}]}}]", "s.yaml", env={})
    assert info.value.field == "field.0.units.0.inverter.protocol"


def test_the_examples_roles_grant_what_their_comments_say() -> None:
    from vpp.orchestrator.bus.auth import Policy

    rtu = load(DIR / "rtu-site.yaml")
    pol = Policy.build(rtu.security, [f.id for f in rtu.field])
    assert pol.decide("engineer-ravi", "control", "field:rtu-3", "bess-31").ok
    assert not pol.decide("engineer-ravi", "set_target", "campus:campus", None).ok
    assert not pol.decide("sldc-display", "control", "field:rtu-3", "bess-31").ok
    assert pol.decide("sldc-display", "status", "field:rtu-3", None).ok
    assert not pol.may_publish("engineer-ravi")
    mqtt = load(DIR / "mqtt-units.yaml", env={"MQTT_PASSWORD": "x"})
    pol = Policy.build(mqtt.security, [f.id for f in mqtt.field])
    assert pol.decide("owner-app", "status", "field:field-mqtt", None).ok
    assert not pol.decide("owner-app", "set_power", "field:field-mqtt", "home-battery-1").ok
