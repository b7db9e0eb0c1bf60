"""The IEC 104 point map and configuration: the bundled default, and one-line errors
naming the file and the entry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from vpp.errors import ConfigError
from vpp.orchestrator.scada.iec104_map import Iec104Config, Iec104PointMap
from vpp.orchestrator.scada.points import COMMAND_POINTS, PLANT_POINTS, UNIT_POINTS


def test_default_map_serves_every_point() -> None:
    m = Iec104PointMap.load(None, ["a", "b", "c"])
    names = {p.name for p in m.monitor}
    want = set(PLANT_POINTS) | {f"unit.{u}.{n}" for u in "abc" for n in UNIT_POINTS}
    assert names == want
    assert {c.name for c in m.commands} == set(COMMAND_POINTS)
    enable = [c for c in m.commands if c.name == "plant.enable"]
    assert {c.type for c in enable} == {"single_command", "double_command"}
    assert all(c.select for c in enable)
    agc = next(c for c in m.commands if c.name == "agc.setpoint_mw")
    assert (agc.select, agc.min, agc.max) == (False, -1000.0, 1000.0)
    # Units in the order given: unit n at 10000 + 100 n.
    assert next(p.ioa for p in m.monitor if p.name == "unit.c.p_mw") == 10200


def _base() -> dict[str, Any]:
    return {
        "monitor": [{"name": "plant.p_mw", "ioa": 1, "type": "float", "deadband": 0.1}],
        "units": {"ioa_base": 100, "stride": 10,
                  "monitor": [{"name": "online", "offset": 0, "type": "single"}]},
        "commands": [{"name": "plant.enable", "ioa": 50, "type": "single_command"}],
    }  # fmt: skip


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["monitor"].append({"name": "plant.q_mvar", "ioa": 1, "type": "float"}),
         "IOA 1 used by both 'plant.p_mw' and 'plant.q_mvar'"),
        (lambda d: d["monitor"].append({"name": "plant.nope", "ioa": 2, "type": "float"}),
         "monitor entry 'plant.nope' (#1): not a plant point"),
        (lambda d: d["monitor"][0].update(type="double"),
         "monitor entry 'plant.p_mw' (#0): a float point cannot be type double"),
        (lambda d: d["commands"][0].update(type="setpoint_float"),
         "commands entry 'plant.enable' (#0): a bool point cannot be type setpoint_float"),
        (lambda d: d["monitor"][0].update(ioa=1 << 24), "entry 'plant.p_mw' field 'monitor.0.ioa'"),
        (lambda d: d["units"]["monitor"][0].update(offset=10), "offset 10 >= stride 10"),
        (lambda d: d["units"].update(ioa_base=1), "IOA 1 used by both"),
        (lambda d: d["commands"].append({"name": "plant.target_mw", "ioa": 51,
                                         "type": "setpoint_float", "min": 5, "max": 1}),
         "min 5.0 > max 1.0"),
        (lambda d: d.update(extra=1), "field 'extra'"),
    ],
)  # fmt: skip
def test_invalid_maps_name_file_and_entry(edit: Any, message: str, tmp_path: Path) -> None:
    doc = _base()
    edit(doc)
    path = tmp_path / "map.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError) as info:
        Iec104PointMap.load(path, ["u0", "u1"])
    text = str(info.value)
    assert text.startswith(str(path)) and message in text and "\n" not in text


def test_unreadable_and_invalid_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        Iec104PointMap.load(tmp_path / "missing.yaml", [])
    bad = tmp_path / "bad.yaml"
    bad.write_text("monitor: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        Iec104PointMap.load(bad, [])


def test_config_defaults_and_checks() -> None:
    c = Iec104Config()
    assert (c.port, c.k, c.w, c.t0_s, c.t1_s, c.t2_s, c.t3_s) == (2404, 12, 8, 30, 15, 10, 20)
    assert c.masters == ["127.0.0.1"] and c.max_connections == 2
    for bad in ({"masters": ["not-an-ip"]}, {"t2_s": 20}, {"w": 13}, {"k": 0}, {"nope": 1}):
        with pytest.raises(ValidationError):
            Iec104Config(**bad)
