"""The DNP3 point map: the bundled default for N units, and one-line errors for bad maps."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from vpp.errors import ConfigError
from vpp.orchestrator.scada.dnp3_map import Dnp3Config, Dnp3PointMap
from vpp.orchestrator.scada.points import COMMAND_POINTS, PLANT_POINTS, UNIT_POINTS


@pytest.mark.parametrize("n", [0, 1, 100])
def test_the_default_map_serves_every_point_for_n_units(n: int) -> None:
    units = [f"bess-{i:03d}" for i in range(n)]
    pm = Dnp3PointMap.load(None, units)
    served = {p.name for p in pm.analog_inputs} | {p.name for p in pm.binary_inputs}
    expected = set(PLANT_POINTS) | {f"unit.{u}.{p}" for u in units for p in UNIT_POINTS}
    assert served == expected
    assert {p.name for p in pm.analog_outputs} | {p.name for p in pm.binary_outputs} == set(
        COMMAND_POINTS
    )
    kinds = {**PLANT_POINTS, **{f"unit.{u}.{p}": k for u in units for p, k in UNIT_POINTS.items()}}
    assert all(kinds[p.name][0] == "float" for p in pm.analog_inputs)
    assert all(kinds[p.name][0] == "bool" for p in pm.binary_inputs)
    for points in (pm.analog_inputs, pm.binary_inputs, pm.analog_outputs, pm.binary_outputs):
        indexes = [p.index for p in points]
        assert len(indexes) == len(set(indexes))


def test_unit_points_follow_the_template_in_unit_order() -> None:
    pm = Dnp3PointMap.load(None, ["b", "a"])
    ai = {p.name: p.index for p in pm.analog_inputs}
    bi = {p.name: p.index for p in pm.binary_inputs}
    assert (ai["unit.b.p_mw"], ai["unit.b.soc_pct"], ai["unit.a.p_mw"]) == (10000, 10002, 10014)
    assert (bi["unit.b.online"], bi["unit.a.alarm"]) == (10000, 10005)
    assert pm.analog_output(146) is not None and pm.analog_output(146).name == "agc.setpoint_mw"
    assert pm.binary_output(2) is not None and pm.binary_output(2).off
    assert pm.binary_output(3) is None


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "map.yaml"
    path.write_text("name: test\n" + text)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "analog_inputs:\n"
            "  - {point: plant.p_mw, index: 5, class: 1}\n"
            "  - {point: plant.q_mvar, index: 5, class: 1}\n",
            "analog_inputs: index 5 is used by 'plant.p_mw' and 'plant.q_mvar'",
        ),
        (
            "units:\n  binary_inputs:\n    base: 0\n    stride: 2\n"
            "    points: [{point: online, offset: 0, class: 1}]\n"
            "binary_inputs:\n  - {point: plant.alarm, index: 0, class: 1}\n",
            "binary_inputs: index 0 is used by 'plant.alarm' and 'unit.u1.online'",
        ),
        (
            "analog_inputs:\n  - {point: plant.power, index: 1, class: 1}\n",
            "analog_inputs.0: unknown plant point 'plant.power'",
        ),
        (
            "analog_outputs:\n  - {point: plant.p_mw, index: 1, min: 0, max: 1}\n",
            "analog_outputs.0: unknown command point 'plant.p_mw'",
        ),
        (
            "analog_inputs:\n  - {point: plant.alarm, index: 1, class: 1}\n",
            "analog_inputs.0: 'plant.alarm' is a bool point: it belongs in binary",
        ),
        (
            "binary_outputs:\n  - {point: agc.setpoint_mw, index: 1, on_codes: [LATCH_ON]}\n",
            "binary_outputs.0: 'agc.setpoint_mw' is a float point: it belongs in analog",
        ),
        (
            "units:\n  analog_inputs:\n    base: 0\n    stride: 4\n"
            "    points: [{point: alarm, offset: 0, class: 1}]\n",
            "units.analog_inputs.points.0: 'alarm' is a bool point",
        ),
        (
            "binary_outputs:\n  - {point: plant.enable, index: 1, on_codes: [LATCH_ON, SWITCH]}\n",
            "binary_outputs.0 (plant.enable): unknown control codes ['SWITCH']",
        ),
        (
            "analog_outputs:\n  - {point: plant.target_mw, index: 1, min: 10, max: -10}\n",
            "analog_outputs.0 (plant.target_mw): min 10.0 is above max -10.0",
        ),
        (
            "analog_inputs:\n  - {point: plant.p_mw, index: 1, class: 4}\n",
            "analog_inputs.0 (plant.p_mw) field 'class'",
        ),
        ("colour: blue\n", "field 'colour': Extra inputs are not permitted"),
    ],
)
def test_a_bad_map_is_one_line_naming_the_file_and_the_entry(
    tmp_path: Path, text: str, message: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        Dnp3PointMap.load(path, ["u1"])
    text_of = str(info.value)
    assert "\n" not in text_of
    assert text_of.startswith(f"{path}: ")
    assert message in text_of


def test_an_unreadable_or_broken_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the DNP3 point map"):
        Dnp3PointMap.load(tmp_path / "missing.yaml", [])
    with pytest.raises(ConfigError, match="not valid YAML"):
        Dnp3PointMap.load(_write(tmp_path, "analog_inputs: [\n"), [])


def test_the_config_refuses_unknown_keys_and_bad_addresses() -> None:
    assert Dnp3Config().port == 20000 and Dnp3Config().point_map is None
    with pytest.raises(ValidationError):
        Dnp3Config(masters=["utility-host"])
    with pytest.raises(ValidationError):
        Dnp3Config.model_validate({"prot": 20000})
    with pytest.raises(ValidationError):
        Dnp3Config(outstation_address=65520)
    assert all(f.description for f in Dnp3Config.model_fields.values())
