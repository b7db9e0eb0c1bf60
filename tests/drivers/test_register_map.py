"""Register maps: loading and validation errors, encode/decode, read-block grouping."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from vpp.drivers.register_map import (
    Point,
    PointType,
    Table,
    decode,
    decode_block,
    encode,
    load_register_map,
    markdown_table,
    read_blocks,
)
from vpp.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def pt(**kw: Any) -> Point:
    base: dict[str, Any] = {
        "name": "p",
        "table": "holding",
        "address": 10,
        "type": "i16",
        "description": "test point",
    }
    base.update(kw)
    return Point.model_validate(base)


# --- the shipped map -----------------------------------------------------------------


def test_default_map_loads_with_every_bess_point() -> None:
    m = load_register_map()
    names = {p.name for p in m.points}
    for needed in (
        "active_power_setpoint",
        "reactive_power_setpoint",
        "mode",
        "enable",
        "alarm_reset",
        "active_power",
        "reactive_power",
        "soc",
        "soh",
        "dc_voltage",
        "dc_current",
        "max_charge_power",
        "max_discharge_power",
        "temperature_min",
        "temperature_max",
        "alarm_bits",
        "fault_bits",
        "heartbeat",
    ):
        assert needed in names
    assert m.point("active_power").sign is not None
    assert m.point("enable").table is Table.COIL


def test_docs_table_matches_the_map() -> None:
    doc = (ROOT / "docs" / "register_map.md").read_text(encoding="utf-8")
    assert markdown_table(load_register_map()) in doc


def test_unknown_point_name() -> None:
    with pytest.raises(ConfigError) as exc:
        load_register_map().point("nope")
    assert exc.value.field == "nope"


# --- validation errors name the file, the point and the field ---------------------------


def write_map(tmp_path: Path, points: list[dict[str, Any]]) -> Path:
    path = tmp_path / "dev.yaml"
    path.write_text(yaml.safe_dump({"name": "dev", "points": points}), encoding="utf-8")
    return path


GOOD = {"name": "a", "table": "holding", "address": 0, "type": "u16", "description": "d"}


@pytest.mark.parametrize(
    ("change", "field", "fragment"),
    [
        ({"type": "i64"}, "type", "type"),
        ({"address": 70000}, "address", "address"),
        ({"scale": 0}, "scale", "scale"),
        ({"table": "input", "access": "rw"}, "point", "rw"),
        ({"type": "bool"}, "point", "bool"),
        ({"sign": "charge_positive"}, "point", "signed"),
        ({"colour": "red"}, "colour", "colour"),
        ({"word_order": "middle"}, "word_order", "word_order"),
    ],
)
def test_bad_point_errors_name_file_point_and_field(
    tmp_path: Path, change: dict[str, Any], field: str, fragment: str
) -> None:
    path = write_map(tmp_path, [GOOD, {**GOOD, "name": "bad_one", "address": 5, **change}])
    with pytest.raises(ConfigError) as exc:
        load_register_map(path)
    msg = str(exc.value)
    assert str(path) in msg
    assert "'bad_one'" in msg
    assert fragment in msg
    assert exc.value.field == field


def test_overlap_and_duplicates_are_map_errors(tmp_path: Path) -> None:
    overlap = {**GOOD, "name": "b", "type": "u32", "address": 0}
    with pytest.raises(ConfigError, match="overlap"):
        load_register_map(write_map(tmp_path, [overlap, {**GOOD, "address": 1}]))
    with pytest.raises(ConfigError, match="duplicate"):
        load_register_map(write_map(tmp_path, [GOOD, {**GOOD, "address": 3}]))
    # The same address in different tables is no clash.
    other = {**GOOD, "name": "c", "table": "input"}
    assert len(load_register_map(write_map(tmp_path, [GOOD, other])).points) == 2


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such register map"):
        load_register_map(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("points: [unclosed", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad\.yaml"):
        load_register_map(bad)


# --- encode / decode -------------------------------------------------------------------


def test_twos_complement_for_negative_i16_and_i32() -> None:
    assert encode(pt(type="i16"), -1) == [0xFFFF]
    assert encode(pt(type="i16"), -32768) == [0x8000]
    assert encode(pt(type="i32"), -2) == [0xFFFF, 0xFFFE]
    assert decode(pt(type="i32"), [0xFFFF, 0xFFFE]) == -2
    assert decode(pt(type="i16"), [0x8000]) == -32768


def test_word_orders() -> None:
    big = pt(type="u32", word_order="big")
    little = pt(type="u32", word_order="little")
    assert encode(big, 0x12345678) == [0x1234, 0x5678]
    assert encode(little, 0x12345678) == [0x5678, 0x1234]
    assert decode(little, [0x5678, 0x1234]) == 0x12345678
    f_big = pt(type="f32", word_order="big")
    f_little = pt(type="f32", word_order="little")
    assert encode(f_big, 1.0) == [0x3F80, 0x0000]
    assert encode(f_little, 1.0) == [0x0000, 0x3F80]
    assert decode(f_little, [0x0000, 0xC000]) == -2.0


def test_scale_and_charge_positive_sign() -> None:
    p = pt(type="i32", scale=0.1, sign="charge_positive", unit="kW")
    # 250 kW of discharge in vpp's sign is -2500 on a charge-positive device.
    assert encode(p, 250.0) == [0xFFFF, 0xF63C]
    assert decode(p, [0xFFFF, 0xF63C]) == pytest.approx(250.0)
    assert decode(p, encode(p, -12.3)) == pytest.approx(-12.3)
    assert decode(p, [0, 0]) == 0 and math.copysign(1, decode(p, [0, 0])) == 1


@pytest.mark.parametrize(
    ("type_", "scale", "value"),
    [
        ("u16", 1.0, -1),
        ("u16", 1.0, 65536),
        ("i16", 0.1, 3276.8),
        ("i16", 1.0, -32769),
        ("u32", 1.0, 2**32),
        ("i32", 1.0, 2**31),
        ("f32", 1.0, 1e39),
        ("i16", 1.0, math.nan),
        ("f32", 1.0, math.inf),
    ],
)
def test_values_beyond_the_type_are_errors(type_: str, scale: float, value: float) -> None:
    with pytest.raises(ConfigError) as exc:
        encode(pt(type=type_, scale=scale, name="sp"), value)
    assert exc.value.field == "sp"


def test_limits_are_inclusive() -> None:
    assert encode(pt(type="u16"), 65535) == [0xFFFF]
    assert encode(pt(type="i16", scale=0.1), 3276.7) == [0x7FFF]
    assert encode(pt(type="i32"), -(2**31)) == [0x8000, 0x0000]


def test_decode_rejects_wrong_word_counts_and_bits() -> None:
    with pytest.raises(ConfigError):
        decode(pt(type="i32"), [1])
    with pytest.raises(ConfigError):
        decode(pt(type="u16"), [70000])
    with pytest.raises(ConfigError):
        encode(pt(type="bool", table="coil"), 1)


@given(
    st.sampled_from(["u16", "i16", "u32", "i32"]),
    st.sampled_from(["big", "little"]),
    st.sampled_from([1.0, 0.1, 0.01]),
    st.integers(-(2**31), 2**32 - 1),
)
def test_integer_round_trip(type_: str, order: str, scale: float, raw: int) -> None:
    p = pt(type=type_, word_order=order, scale=scale)
    lo, hi = {
        "u16": (0, 0xFFFF),
        "i16": (-0x8000, 0x7FFF),
        "u32": (0, 0xFFFF_FFFF),
        "i32": (-(2**31), 2**31 - 1),
    }[type_]
    value = raw * scale
    if lo <= raw <= hi:
        words = encode(p, value)
        assert len(words) == PointType(type_).words
        assert all(0 <= w <= 0xFFFF for w in words)
        assert decode(p, words) == pytest.approx(value, abs=scale / 2)
    else:
        with pytest.raises(ConfigError):
            encode(p, value)


@given(st.floats(-1e30, 1e30, allow_nan=False), st.sampled_from(["big", "little"]))
def test_f32_round_trip(value: float, order: str) -> None:
    p = pt(type="f32", word_order=order, sign="charge_positive")
    assert decode(p, encode(p, value)) == pytest.approx(value, rel=1e-6)


def test_decode_block_decodes_only_whole_points() -> None:
    m = load_register_map()
    inputs = m.table(Table.INPUT)
    words = [0] * 20
    soc = m.point("soc")
    words[soc.address] = encode(soc, 55.5)[0]
    got = decode_block(inputs, 0, words)
    assert got["soc"] == pytest.approx(55.5)
    assert set(got) == {p.name for p in inputs}
    # A block starting mid-way through a 32-bit point leaves that point out.
    assert "active_power" not in decode_block(inputs, 1, words[1:])


# --- read blocks ----------------------------------------------------------------------


def test_default_map_reads_in_one_request_per_table() -> None:
    blocks = read_blocks(load_register_map().points)
    assert [(b.table, b.start, b.count) for b in blocks] == [
        (Table.COIL, 0, 2),
        (Table.DISCRETE, 0, 4),
        (Table.HOLDING, 0, 14),
        (Table.INPUT, 0, 20),
    ]


def test_blocks_split_at_gaps_and_at_the_limit() -> None:
    points = [pt(name=f"p{i}", address=a, type="u32") for i, a in enumerate([0, 2, 10, 12, 200])]
    blocks = read_blocks(points)
    assert [(b.start, b.count) for b in blocks] == [(0, 4), (10, 4), (200, 2)]
    assert [(b.start, b.count) for b in read_blocks(points, max_gap=6)] == [(0, 14), (200, 2)]
    # 125 registers: a u32 at 124 would end at 126, so it starts a new block.
    edge = [pt(name="a", address=0), pt(name="b", address=123, type="u32", word_order="big")]
    assert [(b.start, b.count) for b in read_blocks(edge, max_gap=200)] == [(0, 125)]
    edge2 = [pt(name="a", address=0), pt(name="b", address=124, type="u32")]
    assert [(b.start, b.count) for b in read_blocks(edge2, max_gap=200)] == [(0, 1), (124, 2)]


def test_blocks_cover_every_point_once_within_limits() -> None:
    points = [pt(name=f"p{i}", address=i * 3, type="i32") for i in range(200)]
    blocks = read_blocks(points, max_gap=1)
    covered = [p.name for b in blocks for p in b.points]
    assert sorted(covered) == sorted(p.name for p in points)
    assert all(b.count <= 125 for b in blocks)
    # 600 addresses with single-register holes: ceil(599 / 125) blocks at best.
    assert len(blocks) == 5
    with pytest.raises(ConfigError):
        read_blocks(points, max_gap=-1)


# --- enums -----------------------------------------------------------------------------


def test_enum_points_read_as_names_and_write_by_name_or_code() -> None:
    mode = pt(name="mode", type="u16", enum={0: "standby", 1: "power_control", 7: "island"})
    assert decode_block([mode], 10, [7]) == {"mode": "island"}
    # A code the map does not name stays a number.
    assert decode_block([mode], 10, [3]) == {"mode": 3.0}
    assert mode.code("power_control") == 1 and mode.code(7) == 7
    for bad in ("turbo", 3, True, 1.0, None):
        with pytest.raises(ConfigError, match="is not one of") as info:
            mode.code(bad)
        assert info.value.field == "mode"
    shipped = load_register_map()
    assert shipped.point("mode").enum == {0: "standby", 1: "power_control"}
    assert shipped.point("state").enum == {0: "standby", 1: "running", 2: "fault"}


@pytest.mark.parametrize(
    ("kw", "reason"),
    [
        ({"type": "f32", "enum": {0: "a"}}, "integer type"),
        ({"type": "u16", "scale": 0.1, "enum": {0: "a"}}, "scale 1"),
        ({"type": "u16", "enum": {0: "a", 1: "a"}}, "distinct"),
        ({"type": "u16", "enum": {0: "Not OK"}}, "identifiers"),
    ],
)
def test_bad_enums_are_refused(kw: dict[str, Any], reason: str) -> None:
    with pytest.raises(Exception, match=reason):
        pt(**kw)
