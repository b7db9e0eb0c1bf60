"""DNP3 outstation settings and point map (pydantic only: importable without the server).

:class:`Dnp3Config` is the ``scada.dnp3`` section of the configuration. A
:class:`Dnp3PointMap` gives each logical point of :mod:`vpp.orchestrator.scada.points` its
DNP3 address: analog inputs (group 30/32), binary inputs (1/2), analog outputs (40/41) and
binary outputs (10/12, CROB). The map is a YAML data file; the default one ships in
``vpp/orchestrator/scada/maps/dnp3_mesa_default.yaml`` (MESA-DER style layout, see there).

Per-unit points come from a template: the ``k``-th unit (in the order the caller gives)
takes index ``base + k * stride + offset``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from vpp.errors import ConfigError
from vpp.orchestrator.scada.listen_config import OutstationConfig
from vpp.orchestrator.scada.points import COMMAND_POINTS, PLANT_POINTS, UNIT_POINTS
from vpp.validation import config_error, load_yaml

__all__ = [
    "CONTROL_CODES",
    "DEFAULT_MAP",
    "AnalogInput",
    "AnalogOutput",
    "BinaryInput",
    "BinaryOutput",
    "Dnp3Config",
    "Dnp3PointMap",
]

#: File name of the bundled default map (in ``vpp/orchestrator/scada/maps``).
DEFAULT_MAP = "dnp3_mesa_default.yaml"

#: CROB control codes a map may give a meaning: the Op Type with no Trip-Close code
#: (LATCH_ON, LATCH_OFF, PULSE_ON, PULSE_OFF), or PULSE_ON with the Trip-Close code
#: CLOSE or TRIP.
CONTROL_CODES = frozenset({"LATCH_ON", "LATCH_OFF", "PULSE_ON", "PULSE_OFF", "CLOSE", "TRIP"})

MAX_INDEX = 65535


class Dnp3Config(OutstationConfig):
    """The DNP3 outstation (IEEE 1815) serving the plant's points to the utility master."""

    port: int = Field(
        default=20000, ge=0, le=65535,
        description="TCP port to listen on (DNP3: 20000; 0 = any free port, for tests)",
    )  # fmt: skip
    outstation_address: int = Field(
        default=10, ge=0, le=65519, description="link address of this outstation"
    )
    master_address: int = Field(
        default=1, ge=0, le=65519,
        description="link address of the master; frames from any other source are ignored",
    )  # fmt: skip
    point_map: str | None = Field(
        default=None,
        description="point map file (YAML); none = the bundled dnp3_mesa_default.yaml",
    )
    unsolicited: bool = Field(
        default=True,
        description="send events unsolicited once the master enables them (FC 20)",
    )
    event_buffer: int = Field(
        default=1000, ge=10, le=100_000,
        description="events kept per class and type until a master reads them",
    )  # fmt: skip
    confirm_timeout_s: float = Field(
        default=5.0, gt=0, le=120,
        description="wait for the master's application confirm (unsolicited, multi-fragment), s",
    )  # fmt: skip
    unsolicited_retries: int = Field(
        default=3, ge=0, le=100, description="resends of an unconfirmed unsolicited response"
    )
    command_timeout_s: float = Field(
        default=5.0, gt=0, le=60,
        description="the command sink must answer within this, or the command fails (TIMEOUT)",
    )  # fmt: skip
    keepalive_s: float = Field(
        default=120.0,
        ge=0,
        le=86400,
        description="a master silent this long is logged as lost and its connection closed "
        "(the plant is left as it is); 0 = never",
    )
    max_fragment_size: int = Field(
        default=2048, ge=249, le=65535, description="largest application fragment sent, octets"
    )
    need_time: bool = Field(
        default=True,
        description="ask the master for time (IIN1.4); the offset is recorded, the clock "
        "is never set",
    )


# --- the map file -------------------------------------------------------------------------


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    point: str = Field(description="logical point name")


class _AiEntry(_Entry):
    index: int = Field(ge=0, le=MAX_INDEX)
    event_class: Literal[1, 2, 3] = Field(alias="class")
    deadband: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    scale: float = Field(default=1.0, allow_inf_nan=False)

    @field_validator("scale")
    @classmethod
    def _nonzero(cls, value: float) -> float:
        if value == 0:
            raise ValueError("scale must not be 0")
        return value


class _BiEntry(_Entry):
    index: int = Field(ge=0, le=MAX_INDEX)
    event_class: Literal[1, 2, 3] = Field(alias="class")


class _AoEntry(_Entry):
    index: int = Field(ge=0, le=MAX_INDEX)
    min: float = Field(allow_inf_nan=False)
    max: float = Field(allow_inf_nan=False)
    sbo: bool = Field(default=True, description="select-before-operate required")
    scale: float = Field(default=1.0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _bounds(self) -> _AoEntry:
        if self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        if self.scale == 0:
            raise ValueError("scale must not be 0")
        return self


class _BoEntry(_Entry):
    index: int = Field(ge=0, le=MAX_INDEX)
    # Not "on"/"off": YAML 1.1 reads those keys as booleans.
    on: list[str] = Field(default_factory=list, alias="on_codes")
    off: list[str] = Field(default_factory=list, alias="off_codes")
    sbo: bool = True
    status: str | None = None

    @model_validator(mode="after")
    def _codes(self) -> _BoEntry:
        unknown = sorted(set(self.on + self.off) - CONTROL_CODES)
        if unknown:
            raise ValueError(f"unknown control codes {unknown} (known: {sorted(CONTROL_CODES)})")
        both = sorted(set(self.on) & set(self.off))
        if both:
            raise ValueError(f"control codes {both} mean both on and off")
        if not self.on and not self.off:
            raise ValueError("no control code means on or off")
        return self


class _UnitBlock(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    base: int = Field(ge=0, le=MAX_INDEX)
    stride: int = Field(ge=1, le=MAX_INDEX)


class _UnitAiEntry(_AiEntry):
    index: int = Field(default=0, ge=0, le=MAX_INDEX, alias="offset")


class _UnitBiEntry(_BiEntry):
    index: int = Field(default=0, ge=0, le=MAX_INDEX, alias="offset")


class _UnitAi(_UnitBlock):
    points: list[_UnitAiEntry]


class _UnitBi(_UnitBlock):
    points: list[_UnitBiEntry]


class _UnitTemplate(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    analog_inputs: _UnitAi | None = None
    binary_inputs: _UnitBi | None = None


class _MapFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    analog_inputs: list[_AiEntry] = Field(default_factory=list)
    binary_inputs: list[_BiEntry] = Field(default_factory=list)
    analog_outputs: list[_AoEntry] = Field(default_factory=list)
    binary_outputs: list[_BoEntry] = Field(default_factory=list)
    units: _UnitTemplate = Field(default_factory=_UnitTemplate)


# --- the resolved map ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AnalogInput:
    """A float point served as analog input ``index``: wire value = round(value * scale)."""

    name: str
    index: int
    event_class: int
    deadband: float
    scale: float


@dataclass(frozen=True, slots=True)
class BinaryInput:
    """A bool point served as binary input ``index``."""

    name: str
    index: int
    event_class: int


@dataclass(frozen=True, slots=True)
class AnalogOutput:
    """A float command point at analog output ``index``: value = wire value / scale, in
    [minimum, maximum] (logical units); ``sbo``: select-before-operate required."""

    name: str
    index: int
    minimum: float
    maximum: float
    sbo: bool
    scale: float


@dataclass(frozen=True, slots=True)
class BinaryOutput:
    """A bool command point at binary output (CROB) ``index``: the codes of ``on`` set it
    True, those of ``off`` False; ``status`` is the monitored bool point shown as the
    output's status (group 10), if any."""

    name: str
    index: int
    on: frozenset[str]
    off: frozenset[str]
    sbo: bool
    status: str | None


@dataclass(frozen=True, slots=True)
class Dnp3PointMap:
    """Every served point by type, with the per-unit points expanded. ``source`` names the
    file it came from."""

    name: str
    source: str
    analog_inputs: tuple[AnalogInput, ...]
    binary_inputs: tuple[BinaryInput, ...]
    analog_outputs: tuple[AnalogOutput, ...]
    binary_outputs: tuple[BinaryOutput, ...]

    @classmethod
    def load(cls, path: str | Path | None, unit_ids: Sequence[str]) -> Dnp3PointMap:
        """Load and check a map for a plant whose units are ``unit_ids`` (in that order).

        ``path`` None is the bundled default. Raises ConfigError with one line naming the
        file and the entry (unreadable file, bad YAML, unknown point name, a kind that does
        not match the point type, an index used twice in one point type).
        """
        if path is None:
            packaged = resources.files("vpp.orchestrator.scada").joinpath("maps", DEFAULT_MAP)
            label = f"vpp/orchestrator/scada/maps/{DEFAULT_MAP}"
            text = packaged.read_text(encoding="utf-8")
        else:
            label = str(path)
            try:
                text = Path(path).read_text(encoding="utf-8")
            except OSError as exc:
                msg = f"{label}: cannot read the DNP3 point map: {exc}"
                raise config_error(msg, "path") from None
        return cls.parse(text, unit_ids, label=label)

    @classmethod
    def parse(cls, text: str, unit_ids: Sequence[str], *, label: str = "<map>") -> Dnp3PointMap:
        """Like :meth:`load`, from the text of a map file."""
        try:
            raw = load_yaml(text)
        except yaml.YAMLError as exc:
            msg = str(exc).replace("\n", " ")
            raise config_error(f"{label}: not valid YAML: {msg}", "path") from None
        try:
            spec = _MapFile.model_validate(raw)
        except ValidationError as exc:
            raise _validation_error(label, raw, exc) from None
        return _resolve(spec, list(unit_ids), label)

    def analog_output(self, index: int) -> AnalogOutput | None:
        """The analog output at ``index``, or None."""
        return _by_index(self.analog_outputs).get(index)

    def binary_output(self, index: int) -> BinaryOutput | None:
        """The binary output at ``index``, or None."""
        return _by_index(self.binary_outputs).get(index)

    @property
    def point_count(self) -> int:
        """Points served in an integrity poll (inputs and output statuses)."""
        return (
            len(self.analog_inputs) + len(self.binary_inputs)
            + len(self.analog_outputs) + len(self.binary_outputs)
        )  # fmt: skip


def _by_index(points: tuple[Any, ...]) -> dict[int, Any]:
    return {p.index: p for p in points}


def _validation_error(label: str, raw: Any, exc: ValidationError) -> ConfigError:
    first = exc.errors(include_url=False)[0]
    loc = [str(part) for part in first["loc"]]
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    msg = first["msg"].removeprefix("Value error, ")
    if len(first["loc"]) >= 2 and isinstance(first["loc"][1], int):
        entry = _entry_name(raw, first["loc"])
        where = ".".join(loc[:2]) + (f" ({entry})" if entry else "")
        field = ".".join(loc[2:])
    else:
        where, field = "", ".".join(loc)
    parts = [p for p in (where, f"field {field!r}" if field else "") if p]
    return config_error(f"{label}: {' '.join(parts) or 'map'}: {msg}{more}", field or where)


def _entry_name(raw: Any, loc: tuple[int | str, ...]) -> str | None:
    # The logical name of the entry an error is in, to name it in the message.
    node = raw
    for part in loc:
        if isinstance(node, dict) and isinstance(node.get("point"), str) and part != "point":
            return str(node["point"])
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and part < len(node)
        if not (in_dict or in_list):
            break
        node = node[part]
    if isinstance(node, dict) and isinstance(node.get("point"), str):
        return str(node["point"])
    return None


def _resolve(spec: _MapFile, unit_ids: list[str], label: str) -> Dnp3PointMap:
    def fail(where: str, message: str) -> ConfigError:
        return config_error(f"{label}: {where}: {message}", where)

    def check_kind(where: str, name: str, table: dict[str, Any], kind: str, what: str) -> None:
        if name not in table:
            raise fail(where, f"unknown {what} {name!r}")
        if table[name][0] != kind:
            want = "analog" if table[name][0] == "float" else "binary"
            raise fail(where, f"{name!r} is a {table[name][0]} point: it belongs in {want}")

    if len(set(unit_ids)) != len(unit_ids):
        raise config_error(f"{label}: unit ids are not unique: {unit_ids}", "units")

    ais: list[AnalogInput] = []
    for i, a in enumerate(spec.analog_inputs):
        check_kind(f"analog_inputs.{i}", a.point, PLANT_POINTS, "float", "plant point")
        ais.append(AnalogInput(a.point, a.index, a.event_class, a.deadband, a.scale))
    bis: list[BinaryInput] = []
    for i, b in enumerate(spec.binary_inputs):
        check_kind(f"binary_inputs.{i}", b.point, PLANT_POINTS, "bool", "plant point")
        bis.append(BinaryInput(b.point, b.index, b.event_class))
    aos: list[AnalogOutput] = []
    for i, o in enumerate(spec.analog_outputs):
        check_kind(f"analog_outputs.{i}", o.point, COMMAND_POINTS, "float", "command point")
        aos.append(AnalogOutput(o.point, o.index, o.min, o.max, o.sbo, o.scale))
    bos: list[BinaryOutput] = []
    for i, c in enumerate(spec.binary_outputs):
        check_kind(f"binary_outputs.{i}", c.point, COMMAND_POINTS, "bool", "command point")
        if c.status is not None:
            check_kind(f"binary_outputs.{i}.status", c.status, PLANT_POINTS, "bool", "plant point")
        bos.append(
            BinaryOutput(c.point, c.index, frozenset(c.on), frozenset(c.off), c.sbo, c.status)
        )

    tmpl = spec.units
    if tmpl.analog_inputs is not None:
        block = tmpl.analog_inputs
        for i, ua in enumerate(block.points):
            where = f"units.analog_inputs.points.{i}"
            check_kind(where, ua.point, UNIT_POINTS, "float", "unit point")
            if ua.index >= block.stride:
                raise fail(where, f"offset {ua.index} is not below the stride {block.stride}")
        for k, uid in enumerate(unit_ids):
            for ua in block.points:
                idx = block.base + k * block.stride + ua.index
                name = f"unit.{uid}.{ua.point}"
                ais.append(AnalogInput(name, idx, ua.event_class, ua.deadband, ua.scale))
    if tmpl.binary_inputs is not None:
        bblock = tmpl.binary_inputs
        for i, ub in enumerate(bblock.points):
            where = f"units.binary_inputs.points.{i}"
            check_kind(where, ub.point, UNIT_POINTS, "bool", "unit point")
            if ub.index >= bblock.stride:
                raise fail(where, f"offset {ub.index} is not below the stride {bblock.stride}")
        for k, uid in enumerate(unit_ids):
            for ub in bblock.points:
                idx = bblock.base + k * bblock.stride + ub.index
                bis.append(BinaryInput(f"unit.{uid}.{ub.point}", idx, ub.event_class))

    for what, points, names_unique in (
        ("analog_inputs", ais, True),
        ("binary_inputs", bis, True),
        ("analog_outputs", aos, True),
        ("binary_outputs", bos, False),  # one command may have a start and a stop output
    ):
        seen: dict[int, str] = {}
        names: set[str] = set()
        for p in points:
            if p.index > MAX_INDEX:
                raise fail(what, f"{p.name!r}: index {p.index} is above {MAX_INDEX}")
            if p.index in seen:
                raise fail(what, f"index {p.index} is used by {seen[p.index]!r} and {p.name!r}")
            seen[p.index] = p.name
            if names_unique and p.name in names:
                raise fail(what, f"{p.name!r} is mapped twice")
            names.add(p.name)
        points.sort(key=lambda p: p.index)
    return Dnp3PointMap(spec.name, label, tuple(ais), tuple(bis), tuple(aos), tuple(bos))
