"""Configuration of the IEC 60870-5-104 outstation and its point map (a data file).

Depends on pydantic and the logical points alone, so the site configuration can use it
without importing the outstation. The map file's shape (``maps/iec104_default.yaml``
is the documented default)::

    common_address: 1
    monitor:   [{name: plant.p_mw, ioa: 1001, type: float, deadband: 0.1}, ...]
    units:     {ioa_base: 10000, stride: 100,
                monitor: [{name: p_mw, offset: 0, type: float, deadband: 0.1}, ...]}
    commands:  [{name: agc.setpoint_mw, ioa: 5001, type: setpoint_float,
                 select: false, min: -1000, max: 1000}, ...]

``units`` is expanded for each unit id in the order given: unit ``i`` (from 0) gets
``ioa_base + i * stride + offset``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from vpp.errors import ConfigError
from vpp.orchestrator.scada.listen_config import OutstationConfig
from vpp.orchestrator.scada.points import COMMAND_POINTS, PLANT_POINTS, UNIT_POINTS
from vpp.validation import config_error, first_error, load_yaml

__all__ = [
    "MAX_IOA",
    "CommandPoint",
    "CommandType",
    "Iec104Config",
    "Iec104PointMap",
    "MonitorPoint",
    "MonitorType",
]

#: Information object addresses are three octets; 0 is "irrelevant" (station-wide).
MAX_IOA = 0xFF_FFFF

#: ``float``: M_ME_NC_1 / M_ME_TF_1; ``single``: M_SP_NA_1 / M_SP_TB_1; ``double``:
#: M_DP_NA_1 / M_DP_TB_1 (off = 1, on = 2).
MonitorType = Literal["float", "single", "double"]
#: ``setpoint_float``: C_SE_NC_1 / C_SE_TC_1; ``single_command``: C_SC_NA_1 / C_SC_TA_1;
#: ``double_command``: C_DC_NA_1 / C_DC_TA_1.
CommandType = Literal["setpoint_float", "single_command", "double_command"]


class Iec104Config(OutstationConfig):
    """The IEC 60870-5-104 outstation: where it listens, whom it admits, its timers."""

    port: int = Field(default=2404, ge=0, le=65535, description="TCP port (0: any free port)")
    common_address: int | None = Field(
        default=None, ge=1, le=65534,
        description="common address (station address) of the ASDUs; None: the point map's",
    )  # fmt: skip
    k: int = Field(
        default=12, ge=1, le=32767,
        description="most I-frames sent and not yet acknowledged before sending stops",
    )  # fmt: skip
    w: int = Field(
        default=8, ge=1, le=32767,
        description="acknowledge at the latest after this many I-frames received",
    )  # fmt: skip
    t0_s: float = Field(
        default=30.0, gt=0, le=255,
        description="connection establishment timeout, s (a master's timer: kept for reference)",
    )  # fmt: skip
    t1_s: float = Field(
        default=15.0, gt=0, le=255,
        description="an I-frame or TESTFR act not acknowledged this long closes the connection, s",
    )  # fmt: skip
    t2_s: float = Field(
        default=10.0, gt=0, le=255,
        description="acknowledge received I-frames (S-frame) at the latest after this long, s",
    )  # fmt: skip
    t3_s: float = Field(
        default=20.0, gt=0, le=172800, description="send TESTFR act after this long idle, s"
    )
    cyclic_s: float = Field(
        default=10.0, ge=0, description="period of the cyclic float points (COT 1), s; 0: off"
    )
    command_max_age_s: float = Field(
        default=30.0, gt=0,
        description="commands with a time tag older (or further ahead) than this are refused, s",
    )  # fmt: skip
    time_zone_offset_h: float = Field(
        default=0.0, ge=-14, le=14,
        description="CP56Time2a time tags are this many hours ahead of UTC (0: UTC)",
    )  # fmt: skip

    @model_validator(mode="after")
    def _timers(self) -> Iec104Config:
        if self.t2_s >= self.t1_s:
            raise ValueError(f"t2_s ({self.t2_s}) must be less than t1_s ({self.t1_s})")
        if self.w > self.k:
            raise ValueError(f"w ({self.w}) must not exceed k ({self.k})")
        return self


@dataclass(frozen=True, slots=True)
class MonitorPoint:
    """A monitored point: the logical name, its address and type, and the deadband
    (floats: a change of more than this goes out spontaneously)."""

    name: str
    ioa: int
    type: MonitorType
    deadband: float = 0.0


@dataclass(frozen=True, slots=True)
class CommandPoint:
    """A command point: the logical name, its address and type, whether it needs
    select-before-execute, and the range of a set-point."""

    name: str
    ioa: int
    type: CommandType
    select: bool = False
    min: float = float("-inf")
    max: float = float("inf")


# -- the file's model ------------------------------------------------------------------


class _Monitor(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    ioa: int = Field(ge=1, le=MAX_IOA)
    type: MonitorType
    deadband: float = Field(default=0.0, ge=0, allow_inf_nan=False)


class _UnitMonitor(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    offset: int = Field(ge=0, le=MAX_IOA)
    type: MonitorType
    deadband: float = Field(default=0.0, ge=0, allow_inf_nan=False)


class _Units(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    ioa_base: int = Field(ge=1, le=MAX_IOA)
    stride: int = Field(ge=1, le=MAX_IOA)
    monitor: list[_UnitMonitor] = Field(default_factory=list)


class _Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    ioa: int = Field(ge=1, le=MAX_IOA)
    type: CommandType
    select: bool = False
    min: float | None = Field(default=None, allow_inf_nan=False)
    max: float | None = Field(default=None, allow_inf_nan=False)


class _MapFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    common_address: int = Field(default=1, ge=1, le=65534)
    monitor: list[_Monitor] = Field(default_factory=list)
    units: _Units | None = None
    commands: list[_Command] = Field(default_factory=list)


def _kind_fits(kind: str, type_: str) -> bool:
    return (kind == "float") == (type_ in ("float", "setpoint_float"))


@dataclass(frozen=True, slots=True)
class Iec104PointMap:
    """Where each logical point lives in IEC 104: common address, monitored points and
    command points, validated (unique addresses, known names, types matching the kind)."""

    common_address: int
    monitor: tuple[MonitorPoint, ...]
    commands: tuple[CommandPoint, ...]
    source: str = ""

    @classmethod
    def load(cls, path: str | Path | None, unit_ids: Sequence[str]) -> Iec104PointMap:
        """Load the map at ``path`` (None: the bundled default) for a plant with units
        ``unit_ids``; ConfigError (one line naming the file and the entry) when invalid."""
        if path is None:
            label = "vpp/orchestrator/scada/maps/iec104_default.yaml"
            res = resources.files("vpp.orchestrator.scada").joinpath("maps", "iec104_default.yaml")
            text = res.read_text(encoding="utf-8")
        else:
            label = str(path)
            try:
                text = Path(path).read_text(encoding="utf-8")
            except OSError as exc:
                raise config_error(
                    f"{label}: cannot read the point map: {exc}", "point_map"
                ) from exc
        try:
            raw = load_yaml(text)
        except yaml.YAMLError as exc:
            msg = str(exc).replace("\n", " ")
            raise config_error(f"{label}: not valid YAML: {msg}", "point_map") from exc
        return cls.from_data(raw, unit_ids, label)

    @classmethod
    def from_data(
        cls, raw: Any, unit_ids: Sequence[str], label: str = "point map"
    ) -> Iec104PointMap:
        """Build the map from already parsed data (the YAML document)."""
        try:
            doc = _MapFile.model_validate(raw if raw is not None else {})
        except ValidationError as exc:
            raise _entry_error(label, raw, exc) from exc
        monitor: list[MonitorPoint] = []
        for i, m in enumerate(doc.monitor):
            kind = PLANT_POINTS.get(m.name, (None,))[0]
            where = f"{label}: monitor entry {m.name!r} (#{i})"
            if kind is None:
                raise config_error(f"{where}: not a plant point", "monitor")
            if not _kind_fits(kind, m.type):
                raise config_error(f"{where}: a {kind} point cannot be type {m.type}", "monitor")
            monitor.append(MonitorPoint(m.name, m.ioa, m.type, m.deadband))
        if doc.units is not None:
            u = doc.units
            for i, e in enumerate(u.monitor):
                where = f"{label}: units.monitor entry {e.name!r} (#{i})"
                if e.name not in UNIT_POINTS:
                    raise config_error(f"{where}: not a unit point", "units")
                if not _kind_fits(UNIT_POINTS[e.name][0], e.type):
                    kind = UNIT_POINTS[e.name][0]
                    raise config_error(f"{where}: a {kind} point cannot be type {e.type}", "units")
                if e.offset >= u.stride:
                    raise config_error(f"{where}: offset {e.offset} >= stride {u.stride}", "units")
            for n, uid in enumerate(unit_ids):
                for e in u.monitor:
                    ioa = u.ioa_base + n * u.stride + e.offset
                    if ioa > MAX_IOA:
                        raise config_error(
                            f"{label}: unit {uid!r} point {e.name!r}: IOA {ioa} > {MAX_IOA}",
                            "units",
                        )
                    monitor.append(MonitorPoint(f"unit.{uid}.{e.name}", ioa, e.type, e.deadband))
        commands: list[CommandPoint] = []
        for i, c in enumerate(doc.commands):
            where = f"{label}: commands entry {c.name!r} (#{i})"
            if c.name not in COMMAND_POINTS:
                raise config_error(f"{where}: not a command point", "commands")
            kind = COMMAND_POINTS[c.name][0]
            if not _kind_fits(kind, c.type):
                raise config_error(f"{where}: a {kind} point cannot be type {c.type}", "commands")
            lo = c.min if c.min is not None else float("-inf")
            hi = c.max if c.max is not None else float("inf")
            if lo > hi:
                raise config_error(f"{where}: min {lo} > max {hi}", "commands")
            commands.append(CommandPoint(c.name, c.ioa, c.type, c.select, lo, hi))
        seen: dict[int, str] = {}
        points: list[MonitorPoint | CommandPoint] = [*monitor, *commands]
        for p in points:
            if p.ioa in seen:
                raise config_error(
                    f"{label}: IOA {p.ioa} used by both {seen[p.ioa]!r} and {p.name!r}", "ioa"
                )
            seen[p.ioa] = p.name
        names = [m.name for m in monitor]
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise config_error(f"{label}: monitored point {dup!r} mapped twice", "monitor")
        return cls(doc.common_address, tuple(monitor), tuple(commands), label)


def _entry_error(label: str, raw: Any, exc: ValidationError) -> ConfigError:
    field, msg = first_error(exc)
    loc = exc.errors(include_url=False)[0]["loc"]
    entry = ""
    node: Any = raw
    for part in loc[:-1]:
        # Walk to the entry to name it (its ``name`` key) in the message.
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and part < len(node)
        if not (in_dict or in_list):
            break
        node = node[part]
        if isinstance(node, dict) and "name" in node:
            entry = f" entry {node['name']!r}"
    return config_error(f"{label}:{entry} field {field!r}: {msg}", field or "point_map")
