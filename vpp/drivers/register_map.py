"""Modbus register maps as data: load and validate a YAML map, encode and decode values.

A map lists points (name, table, address, type, word order, scale, unit, sign
convention, access, and for coded points an ``enum`` of names). Values are in vpp units
and vpp's sign convention (positive = discharge); a point with ``sign: charge_positive``
is negated on the wire. Invalid maps and values that do not fit a point raise
:class:`vpp.errors.ConfigError` whose ``field`` names the point (and the field of the
map, for a map error).
"""

from __future__ import annotations

import functools
import itertools
import math
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from vpp.errors import ConfigError
from vpp.validation import config_error, load_yaml

__all__ = [
    "DEFAULT_MAP",
    "Access",
    "Point",
    "PointType",
    "ReadBlock",
    "RegisterMap",
    "Sign",
    "Table",
    "WordOrder",
    "decode",
    "decode_block",
    "decode_named",
    "encode",
    "load_register_map",
    "markdown_table",
    "read_blocks",
]

#: The map of the simulated BESS, shipped as package data.
DEFAULT_MAP = "bess_default.yaml"

#: Modbus limits per read request (FC 3/4: 125 registers; FC 1/2: 2000 bits).
MAX_READ_REGISTERS = 125
MAX_READ_BITS = 2000


class Table(str, Enum):
    """The four Modbus data tables."""

    COIL = "coil"
    DISCRETE = "discrete"
    HOLDING = "holding"
    INPUT = "input"

    @property
    def is_bits(self) -> bool:
        """Whether the table holds single bits (coils, discrete inputs)."""
        return self in (Table.COIL, Table.DISCRETE)


class PointType(str, Enum):
    """Value type of a point; ``bool`` only in the bit tables."""

    BOOL = "bool"
    U16 = "u16"
    I16 = "i16"
    U32 = "u32"
    I32 = "i32"
    F32 = "f32"

    @property
    def words(self) -> int:
        """Registers the type occupies (1 for bool: one bit address)."""
        return 2 if self in (PointType.U32, PointType.I32, PointType.F32) else 1


class WordOrder(str, Enum):
    """Order of the two registers of a 32-bit value; bytes in a register are big-endian."""

    BIG = "big"  # high word at the lower address
    LITTLE = "little"  # low word at the lower address


class Sign(str, Enum):
    """Which direction the device counts as positive."""

    DISCHARGE_POSITIVE = "discharge_positive"  # the same as vpp
    CHARGE_POSITIVE = "charge_positive"  # negated between vpp and the wire


Access = Literal["r", "rw"]

# Raw integer range and struct code of each integer type.
_INT_RANGES: dict[PointType, tuple[int, int, str]] = {
    PointType.U16: (0, 0xFFFF, ">H"),
    PointType.I16: (-0x8000, 0x7FFF, ">h"),
    PointType.U32: (0, 0xFFFF_FFFF, ">I"),
    PointType.I32: (-0x8000_0000, 0x7FFF_FFFF, ">i"),
}
_F32_MAX = 3.4028234663852886e38
_ENUM_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class Point(BaseModel):
    """One point of a register map."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, pattern=r"^[a-z][a-z0-9_]*$")
    table: Table
    address: int = Field(ge=0, le=0xFFFF)
    type: PointType
    word_order: WordOrder = WordOrder.BIG
    scale: float = Field(default=1.0, gt=0, allow_inf_nan=False)
    unit: str = ""
    sign: Sign | None = None
    access: Access = "r"
    description: str = Field(min_length=1)
    bits: dict[int, str] | None = None
    #: Names of the codes of a coded point (mode, state): read as the name, written by it.
    enum: dict[int, str] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Point:
        if self.table.is_bits != (self.type is PointType.BOOL):
            raise ValueError("type bool is for coil/discrete tables, and only bool is")
        if self.access == "rw" and self.table in (Table.INPUT, Table.DISCRETE):
            raise ValueError(f"access rw is impossible in the {self.table.value} table")
        if self.address + self.type.words > 0x10000:
            raise ValueError("the point runs past address 65535")
        if self.sign is Sign.CHARGE_POSITIVE and self.type in (
            PointType.BOOL,
            PointType.U16,
            PointType.U32,
        ):
            raise ValueError("sign charge_positive needs a signed type (i16, i32, f32)")
        if self.bits is not None and (
            self.type not in (PointType.U16, PointType.U32)
            or any(not 0 <= b < 16 * self.type.words for b in self.bits)
        ):
            raise ValueError("bits needs an unsigned type and bit numbers within it")
        if self.enum is not None:
            if self.type in (PointType.BOOL, PointType.F32) or self.scale != 1.0:
                raise ValueError("enum needs an integer type with scale 1")
            names = list(self.enum.values())
            if len(set(names)) != len(names) or not all(_ENUM_NAME.match(n) for n in names):
                raise ValueError("enum names must be distinct lower_case identifiers")
        return self

    def code(self, value: object) -> int:
        """The code of an enum point for ``value``: one of its names, or a code it has.

        ConfigError (``field`` = the point) for anything else, listing the names.
        """
        codes = self.enum or {}
        if isinstance(value, str):
            for code, label in codes.items():
                if label == value:
                    return code
        elif isinstance(value, int) and not isinstance(value, bool) and value in codes:
            return value
        raise config_error(
            f"point {self.name!r}: {value!r} is not one of {sorted(codes.values())}", self.name
        )

    @property
    def end(self) -> int:
        """One past the last address of the point."""
        return self.address + self.type.words


class RegisterMap(BaseModel):
    """A device's register map: a name, a description and its points."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    description: str = ""
    points: tuple[Point, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _no_clashes(self) -> RegisterMap:
        seen: set[str] = set()
        for p in self.points:
            if p.name in seen:
                raise ValueError(f"duplicate point name {p.name!r}")
            seen.add(p.name)
        for table in Table:
            pts = sorted((p for p in self.points if p.table is table), key=lambda p: p.address)
            for a, b in itertools.pairwise(pts):
                if b.address < a.end:
                    raise ValueError(
                        f"points {a.name!r} and {b.name!r} overlap in the {table.value} table"
                    )
        return self

    def point(self, name: str) -> Point:
        """The point called ``name``; ConfigError if there is none."""
        for p in self.points:
            if p.name == name:
                return p
        raise config_error(f"register map {self.name!r} has no point {name!r}", name)

    def table(self, table: Table) -> tuple[Point, ...]:
        """The points of one table, by address."""
        return tuple(sorted((p for p in self.points if p.table is table), key=lambda p: p.address))


def load_register_map(source: str | Path = DEFAULT_MAP) -> RegisterMap:
    """Load and validate a register map.

    ``source`` is a path to a YAML file, or the bare file name of a map shipped in
    ``vpp/drivers/maps`` (the default: the simulated BESS). Errors name the file, the
    point and the field.
    """
    path = Path(source)
    if not path.is_file() and path.parent == Path("."):
        packaged = resources.files("vpp.drivers").joinpath("maps", str(source))
        text = packaged.read_text(encoding="utf-8") if packaged.is_file() else None
        label = f"vpp/drivers/maps/{source}"
    else:
        text = path.read_text(encoding="utf-8") if path.is_file() else None
        label = str(path)
    if text is None:
        raise config_error(f"{label}: no such register map", "path")
    return _parse(label, text)


@functools.lru_cache(maxsize=64)
def _parse(label: str, text: str) -> RegisterMap:
    # Validation takes ~20 ms; a fleet of devices shares a handful of maps, and a
    # RegisterMap is frozen, so one parsed copy per file content serves them all.
    try:
        raw = load_yaml(text)
    except yaml.YAMLError as exc:
        raise config_error(f"{label}: not valid YAML: {exc}", "path") from exc
    try:
        return RegisterMap.model_validate(raw)
    except ValidationError as exc:
        raise _validation_error(label, raw, exc) from exc


def _validation_error(label: str, raw: Any, exc: ValidationError) -> ConfigError:
    first = exc.errors()[0]
    loc = first["loc"]
    where = ""
    field = ".".join(str(part) for part in loc) or "map"
    if len(loc) >= 2 and loc[0] == "points" and isinstance(loc[1], int):
        name = None
        points = raw.get("points") if isinstance(raw, dict) else None
        if isinstance(points, list) and loc[1] < len(points) and isinstance(points[loc[1]], dict):
            name = points[loc[1]].get("name")
        where = f" point {name!r} (#{loc[1]})" if name else f" point #{loc[1]}"
        field = ".".join(str(part) for part in loc[2:]) or "point"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return config_error(f"{label}:{where} field {field!r}: {first['msg']}{more}", field)


def _order(words: list[int], point: Point) -> list[int]:
    return words[::-1] if point.word_order is WordOrder.LITTLE else words


def encode(point: Point, value: float) -> list[int]:
    """Encode ``value`` (vpp units and sign) into the point's registers.

    ConfigError if the point is a bit or the scaled value does not fit its type.
    """
    if point.type is PointType.BOOL:
        raise config_error(f"point {point.name!r} is a bit, not a register", point.name)
    if point.sign is Sign.CHARGE_POSITIVE:
        value = -value
    scaled = value / point.scale
    if not math.isfinite(scaled):
        raise config_error(f"point {point.name!r}: {value!r} is not a finite number", point.name)
    if point.type is PointType.F32:
        if abs(scaled) > _F32_MAX:
            raise config_error(
                f"point {point.name!r}: {value!r} is out of the f32 range", point.name
            )
        data = struct.pack(">f", scaled)
    else:
        lo, hi, code = _INT_RANGES[point.type]
        raw = round(scaled)
        if not lo <= raw <= hi:
            raise config_error(
                f"point {point.name!r}: {value!r} {point.unit} -> raw {raw} is outside "
                f"{point.type.value} [{lo}, {hi}]",
                point.name,
            )
        data = struct.pack(code, raw)
    words = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    return _order(words, point)


def decode(point: Point, words: Sequence[int]) -> float:
    """Decode the point's registers into a value in vpp units and sign."""
    if point.type is PointType.BOOL:
        raise config_error(f"point {point.name!r} is a bit, not a register", point.name)
    if len(words) != point.type.words or any(not 0 <= w <= 0xFFFF for w in words):
        raise config_error(
            f"point {point.name!r} needs {point.type.words} register(s) of 0..65535, "
            f"got {list(words)}",
            point.name,
        )
    data = b"".join(w.to_bytes(2, "big") for w in _order(list(words), point))
    if point.type is PointType.F32:
        raw: float = struct.unpack(">f", data)[0]
    else:
        raw = struct.unpack(_INT_RANGES[point.type][2], data)[0]
    value = raw * point.scale
    # Integer points with scale 1 stay exact; negating 0.0 would give -0.0.
    if point.sign is Sign.CHARGE_POSITIVE and value != 0:
        value = -value
    return value


def decode_named(point: Point, words: Sequence[int]) -> float | str:
    """:func:`decode`, then an enum point's code as its name.

    A code the map does not name stays a number, so that nothing the device says is lost.
    """
    value = decode(point, words)
    if point.enum is not None:
        return point.enum.get(int(value), value)
    return value


def decode_block(
    points: Sequence[Point], start: int, words: Sequence[int]
) -> dict[str, float | str]:
    """Decode every register point lying wholly in ``words`` (read from ``start``);
    enum points give their names (:func:`decode_named`)."""
    out: dict[str, float | str] = {}
    for p in points:
        if p.type is not PointType.BOOL and start <= p.address and p.end <= start + len(words):
            out[p.name] = decode_named(p, words[p.address - start : p.end - start])
    return out


@dataclass(frozen=True)
class ReadBlock:
    """One read request: ``count`` addresses of ``table`` from ``start``, covering ``points``."""

    table: Table
    start: int
    count: int
    points: tuple[Point, ...]


def read_blocks(
    points: Sequence[Point],
    *,
    max_registers: int = MAX_READ_REGISTERS,
    max_bits: int = MAX_READ_BITS,
    max_gap: int = 0,
) -> list[ReadBlock]:
    """Group points into as few read requests as possible.

    Points of one table join a block while the block stays within the per-request limit
    and the hole before the next point is at most ``max_gap`` addresses (0 by default:
    many devices, the simulator included, reject reads of unmapped addresses). Greedy
    from the lowest address, which is optimal for this interval-cover problem.
    """
    if max_registers < 2 or max_bits < 1 or max_gap < 0:
        raise config_error(
            "read limits must allow a 32-bit point and gaps must be >= 0", "max_registers"
        )
    blocks: list[ReadBlock] = []
    for table in Table:
        limit = max_bits if table.is_bits else max_registers
        current: list[Point] = []
        for p in sorted((p for p in points if p.table is table), key=lambda p: p.address):
            if current:
                start, end = current[0].address, max(q.end for q in current)
                if p.address - end <= max_gap and max(end, p.end) - start <= limit:
                    current.append(p)
                    continue
                blocks.append(ReadBlock(table, start, end - start, tuple(current)))
            current = [p]
        if current:
            start, end = current[0].address, max(q.end for q in current)
            blocks.append(ReadBlock(table, start, end - start, tuple(current)))
    return blocks


def markdown_table(regmap: RegisterMap) -> str:
    """The map as a Markdown table (the body of docs/register_map.md)."""
    lines = [
        "| table | address | name | type | word order | scale | unit | sign | access "
        "| description |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for table in Table:
        for p in regmap.table(table):
            order = p.word_order.value if p.type.words == 2 else ""
            desc = p.description
            for label, codes in (("bits", p.bits), ("enum", p.enum)):
                if codes:
                    desc += f"; {label}: " + ", ".join(f"{k} {v}" for k, v in sorted(codes.items()))
            sign = p.sign.value if p.sign else ""
            scale = "" if p.type is PointType.BOOL else f"{p.scale:g}"
            lines.append(
                f"| {table.value} | {p.address} | {p.name} | {p.type.value} | {order} | "
                f"{scale} | {p.unit} | {sign} | {p.access} | {desc} |"
            )
    return "\n".join(lines) + "\n"
