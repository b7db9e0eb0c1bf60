"""Every example in config/ loads: models and each device's protocol config."""

from __future__ import annotations

from pathlib import Path

import pytest

from vpp.config import load, load_text
from vpp.errors import ConfigError

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "config").glob("*.yaml"))


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
