"""The site configuration loader: the embedded default, errors naming file/key/reason,
secrets from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from vpp.config import load, load_text
from vpp.errors import ConfigError

UNIT = (
    "{id: u1, rated_power_kw: 100, capacity_kwh: 200, "
    "inverter: {protocol: modbus_tcp, config: {host: 10.0.0.1}}}"
)


def test_the_embedded_default_is_a_simulated_site() -> None:
    site = load(env={})
    assert site.simulation.enabled
    units = {u.id for u in site.units()}
    assert units == {b.unit for b in site.simulation.bess}
    assert len(units) >= 3
    assert all(u.rated_power_kw > 0 for u in site.units())


def test_an_invalid_value_names_file_key_and_reason(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(f"field:\n  - id: f1\n    units: [{UNIT.replace('100', '-5')}]\n")
    with pytest.raises(ConfigError) as info:
        load(path, env={})
    assert info.value.field == "field.0.units.0.rated_power_kw"
    assert str(path) in str(info.value) and "greater than 0" in str(info.value)


def test_unknown_keys_bad_yaml_and_missing_files_are_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"field\.0\.colour.*[Ee]xtra"):
        load_text(f"field: [{{id: f, colour: red, units: [{UNIT}]}}]", env={})
    with pytest.raises(ConfigError, match="line 1, column"):
        load_text("field: [}", env={})
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path / "nope.yaml", env={})
    with pytest.raises(ConfigError, match="unit ids repeat"):
        load_text(f"field: [{{id: a, units: [{UNIT}]}}, {{id: b, units: [{UNIT}]}}]", env={})


def test_secrets_come_from_the_environment() -> None:
    text = (
        "field: [{id: f, units: [{id: u1, rated_power_kw: 1, capacity_kwh: 1, "
        "inverter: {protocol: mqtt, config: {device: d1, username: u, password: '${MQTT_PW}'}}}]}]"
    )
    site = load_text(text, env={"MQTT_PW": "s3cret"})
    assert site.field[0].units[0].inverter.config["password"] == "s3cret"
    with pytest.raises(ConfigError, match="MQTT_PW is not set") as info:
        load_text(text, env={})
    assert info.value.field == "field.0.units.0.inverter.config.password"


def test_environment_overrides_any_key_with_its_type() -> None:
    env = {
        "VPP__FIELD__0__UNITS__0__CAPACITY_KWH": "750.5",
        "VPP__CAMPUS__DISPATCH_INTERVAL_S": "3",
        "VPP__HISTORY__ENABLED": "false",
    }
    site = load_text(f"field: [{{id: f, units: [{UNIT}]}}]", env=env)
    assert site.field[0].units[0].capacity_kwh == 750.5
    assert site.campus.dispatch_interval_s == 3.0
    assert site.history.enabled is False
    with pytest.raises(ConfigError, match="no list item 3"):
        load_text(f"field: [{{id: f, units: [{UNIT}]}}]", env={"VPP__FIELD__3__ID": "x"})


def default_with(old: str, new: str, tmp_path: Path) -> Path:
    """The embedded default site with its first ``old`` replaced by ``new``, as a file."""
    from vpp.config.loader import default_text

    text = default_text()
    assert old in text
    path = tmp_path / "site.yaml"
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize(
    ("old", "new", "key", "reason"),
    [
        # A simulated unit's inverter: its address comes from the simulator at start, every
        # other key is checked at load all the same.
        ("port: 0, timeout: 1.0}", "port: 0, tiemout: 1.0}", "inverter.config.tiemout",
         "unknown option; modbus_tcp takes .*timeout"),
        ("port: 0, timeout: 1.0}", "port: 0, timeout: 1.0, map: nosuch.yaml}",
         "inverter.config.map", "no such register map"),
        ("channel: 239.74.163.2,", "channel: 239.74.163.2, dbc: /nonexistent/bms.dbc,",
         "bms.config.dbc", "cannot load '/nonexistent/bms.dbc'"),
        ("channel: 239.74.163.2,", "channel: 239.74.163.2, stale_after_s: {Nope: 1},",
         "bms.config.stale_after_s", r"unknown messages \['Nope'\]"),
        ("bus_options: {port: 0}", "bus_options: {port: 0, ttl: 3}", "bms.config.bus_options",
         "takes no options"),
    ],
)  # fmt: skip
def test_every_device_option_is_checked_at_load(
    old: str, new: str, key: str, reason: str, tmp_path: Path
) -> None:
    path = default_with(old, new, tmp_path)
    with pytest.raises(ConfigError, match=reason) as info:
        load(path, env={})
    assert info.value.field == f"field.0.units.0.{key}"
    assert str(info.value).startswith(f"{path}: field.0.units.0.{key}: ")
    assert "\n" not in str(info.value)
