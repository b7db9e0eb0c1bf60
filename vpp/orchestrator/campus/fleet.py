"""Fleet state of a campus aggregator: units, liveness, and aggregates by location.

Units register by heartbeat (id, location, ratings) and update by telemetry (power, SOC,
the charge and discharge limits their safety envelope allows now, safety state). Each
unit owns a slot; every per-unit quantity is a NumPy array indexed by slot, so an update
is a dictionary look-up and a few element writes (O(1)), and everything read across the
fleet (liveness, aggregates, dispatch inputs) is vectorised.

Locations are paths ``country/state/city/campus/building/node``. A unit belongs to one
group per level (the path prefix of that length); group numbers are assigned at
registration, so the totals of a level are ``np.bincount`` sums over those numbers
(:mod:`vpp.orchestrator.campus.totals`).
"""

from __future__ import annotations

import collections
import logging
import math
import types
from collections.abc import Mapping, Sequence
from itertools import repeat
from typing import TYPE_CHECKING, NoReturn

import numpy as np
import numpy.typing as npt

from vpp.errors import VppError
from vpp.orchestrator.campus.config import FleetConfig

if TYPE_CHECKING:
    from vpp.orchestrator.campus.totals import Aggregate, LevelTotals

__all__ = [
    "LEVELS",
    "SAFETY_STATES",
    "SAFETY_STOP",
    "Fleet",
    "FleetInputError",
    "UnknownUnitError",
]

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]

#: Location levels, outermost first.
LEVELS = ("country", "state", "city", "campus", "building", "node")
#: Safety states in increasing severity; they mirror ``vpp.core.Action`` (same order).
SAFETY_STATES = ("none", "log", "reduce", "stop", "emergency_shutdown")
#: Units at this safety state or above take no setpoint.
SAFETY_STOP = SAFETY_STATES.index("stop")
_SAFETY_CODE = {name: code for code, name in enumerate(SAFETY_STATES)}

#: Why a unit is left out of dispatch (codes of :meth:`Fleet.eligibility`).
REASONS = ("offline", "no telemetry", "safety stop", "safety emergency_shutdown")
ELIGIBLE = -1

# Per-slot arrays: name -> (value of a free slot, dtype).
_COLUMNS: dict[str, tuple[object, type]] = {
    "registered": (False, np.bool_),
    "rated_charge": (0.0, np.float64),
    "rated_discharge": (0.0, np.float64),
    "energy": (0.0, np.float64),
    "efficiency": (1.0, np.float64),
    "power": (0.0, np.float64),
    "soc": (0.0, np.float64),
    "charge_limit": (0.0, np.float64),
    "discharge_limit": (0.0, np.float64),
    "safety": (0, np.int8),
    "last_seen": (-math.inf, np.float64),
    "telemetry_time": (-math.inf, np.float64),
}


class FleetInputError(VppError, ValueError):
    """A heartbeat or telemetry update was refused: ``unit`` and ``field`` say what."""

    def __init__(self, message: str, *, unit: str, field: str) -> None:
        super().__init__(f"unit {unit!r}: field {field!r}: {message}")
        self.unit = unit
        self.field = field


class UnknownUnitError(FleetInputError, LookupError):
    """Telemetry for a unit that has not registered by heartbeat."""


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _parse_location(unit: str, location: str | Sequence[str]) -> tuple[str, ...]:
    parts = tuple(location.split("/")) if isinstance(location, str) else tuple(location)
    if len(parts) != len(LEVELS) or not all(isinstance(p, str) and p for p in parts):
        raise FleetInputError(
            f"location must be {'/'.join(LEVELS)} (6 non-empty parts), got {location!r}",
            unit=unit,
            field="location",
        )
    if any("/" in p for p in parts):
        raise FleetInputError(f"a location part holds '/': {parts!r}", unit=unit, field="location")
    return parts


class Fleet:
    """The units of one aggregator, their latest telemetry, and aggregates by location."""

    def __init__(self, config: FleetConfig | None = None) -> None:
        """An empty fleet (``config`` defaults to :class:`FleetConfig`)."""
        self.config = config or FleetConfig()
        self.timeout = self.config.offline_timeout_s
        #: Refused updates by field (counted before the error is raised).
        self.errors: collections.Counter[str] = collections.Counter()
        #: Telemetry older than the unit's latest one, dropped.
        self.out_of_order = 0
        self._slot: dict[str, int] = {}
        self._ids: list[str | None] = []
        self._free: list[int] = []
        self._high = 0
        self._keys: list[dict[str, int]] = [{} for _ in LEVELS]
        self._paths: list[list[str]] = [[] for _ in LEVELS]
        # Group number at the level above, per group (level 0: none); as arrays, cached.
        self._parent: list[list[int]] = [[] for _ in LEVELS]
        self._parent_array: list[IntArray] = [np.zeros(0, np.intp) for _ in LEVELS]
        # Per-slot columns (see _COLUMNS); declared for the type checker.
        self.registered: BoolArray
        self.rated_charge: FloatArray
        self.rated_discharge: FloatArray
        self.energy: FloatArray
        self.efficiency: FloatArray
        self.power: FloatArray
        self.soc: FloatArray
        self.charge_limit: FloatArray
        self.discharge_limit: FloatArray
        self.safety: npt.NDArray[np.int8]
        self.last_seen: FloatArray
        self.telemetry_time: FloatArray
        self.group: IntArray
        self._alloc(self.config.initial_capacity)

    def _alloc(self, n: int) -> None:
        """Allocate (or grow to) ``n`` slots, keeping what the old arrays hold."""
        old = self.__dict__.get("power")
        keep = 0 if old is None else len(old)
        for name, (fill, dtype) in _COLUMNS.items():
            new: npt.NDArray[np.generic] = np.full(n, fill, dtype=dtype)
            if keep:
                new[:keep] = getattr(self, name)
            setattr(self, name, new)
        group = np.zeros((len(LEVELS), n), dtype=np.intp)
        if keep:
            group[:, :keep] = self.group
        self.group = group
        self._ids.extend([None] * (n - len(self._ids)))

    def __len__(self) -> int:
        return len(self._slot)

    def __contains__(self, unit_id: object) -> bool:
        return unit_id in self._slot

    def slot(self, unit_id: str) -> int:
        """The slot of ``unit_id`` (UnknownUnitError when it never registered)."""
        slot = self._slot.get(unit_id)
        return self._unknown(unit_id) if slot is None else slot

    def _unknown(self, unit_id: str) -> NoReturn:
        self.errors["unit"] += 1
        # The caller decides how loud this is (it is normal right after a restart).
        log.debug("fleet: unit %r: not registered", unit_id)
        raise UnknownUnitError("not registered", unit=str(unit_id), field="unit")

    def unit_id(self, slot: int) -> str:
        """The unit id held in ``slot``."""
        uid = self._ids[slot]
        if uid is None:
            raise LookupError(f"slot {slot} is free")
        return uid

    def ids_of(self, slots: IntArray) -> list[str]:
        """The unit ids held in ``slots`` (slots of registered units)."""
        ids = self._ids
        return [ids[s] or "" for s in slots.tolist()]

    def slot_map(self) -> Mapping[str, int]:
        """Unit id -> slot, read-only (for a caller that looks up many at once)."""
        return types.MappingProxyType(self._slot)

    def slots_of(self, unit_ids: Sequence[str]) -> IntArray:
        """The slots of ``unit_ids`` in one pass, -1 for a unit not registered."""
        return np.fromiter(map(self._slot.get, unit_ids, repeat(-1)), np.intp, len(unit_ids))

    def id_table(self) -> list[str | None]:
        """A copy of the ids by slot up to :attr:`size` (None for a free slot)."""
        return self._ids[: self._high]

    @property
    def size(self) -> int:
        """Slots ever used (the per-slot arrays and reads are valid up to here)."""
        return self._high

    def _bad(self, unit: str, field: str, message: str) -> FleetInputError:
        self.errors[field] += 1
        log.warning("fleet: unit %r: refused %s: %s", unit, field, message)
        return FleetInputError(message, unit=unit, field=field)

    def heartbeat(
        self,
        unit_id: str,
        location: str | Sequence[str],
        *,
        rated_charge_kw: float,
        rated_discharge_kw: float,
        energy_kwh: float,
        efficiency: float = 1.0,
        timestamp: float,
    ) -> int:
        """Register or refresh a unit; returns its slot. Ratings are >= 0 kW (magnitudes),
        energy > 0 kWh, efficiency (one way, discharge and charge) in (0, 1]."""
        if not isinstance(unit_id, str) or not unit_id:
            raise self._bad(str(unit_id), "unit", "unit id must be a non-empty string")
        try:
            parts = _parse_location(unit_id, location)
        except FleetInputError:
            self.errors["location"] += 1
            raise
        for name, value, low, high in (
            ("rated_charge_kw", rated_charge_kw, 0.0, math.inf),
            ("rated_discharge_kw", rated_discharge_kw, 0.0, math.inf),
            ("energy_kwh", energy_kwh, math.ulp(0.0), math.inf),
            ("efficiency", efficiency, math.ulp(0.0), 1.0),
            ("timestamp", timestamp, -math.inf, math.inf),
        ):
            if not (_is_number(value) and math.isfinite(value) and low <= value <= high):
                raise self._bad(unit_id, name, f"must be in [{low:g}, {high:g}], got {value!r}")
        slot = self._slot.get(unit_id)
        if slot is None:
            slot = self._new_slot(unit_id)
        self._place(slot, parts)
        self.rated_charge[slot] = rated_charge_kw
        self.rated_discharge[slot] = rated_discharge_kw
        self.energy[slot] = energy_kwh
        self.efficiency[slot] = efficiency
        if timestamp > self.last_seen[slot]:
            self.last_seen[slot] = timestamp
        return slot

    def _new_slot(self, unit_id: str) -> int:
        if self._free:
            slot = self._free.pop()
        else:
            slot = self._high
            if slot >= len(self.power):
                self._alloc(2 * len(self.power))
            self._high += 1
        self._slot[unit_id] = slot
        self._ids[slot] = unit_id
        self.registered[slot] = True
        self.last_seen[slot] = -math.inf
        self.telemetry_time[slot] = -math.inf
        self.power[slot] = self.soc[slot] = 0.0
        self.charge_limit[slot] = self.discharge_limit[slot] = 0.0
        self.safety[slot] = 0
        return slot

    def _place(self, slot: int, parts: tuple[str, ...]) -> None:
        parent = -1
        for level in range(len(LEVELS)):
            path = "/".join(parts[: level + 1])
            keys = self._keys[level]
            gid = keys.get(path)
            if gid is None:
                gid = keys[path] = len(keys)
                self._paths[level].append(path)
                self._parent[level].append(parent)
            self.group[level, slot] = gid
            parent = gid

    def parents(self, level: int) -> IntArray:
        """Per group of ``level``: its group at ``level - 1``."""
        if len(self._parent_array[level]) != len(self._parent[level]):
            self._parent_array[level] = np.array(self._parent[level], dtype=np.intp)
        return self._parent_array[level]

    def remove(self, unit_id: str) -> None:
        """Forget a unit (its slot is reused by the next registration)."""
        slot = self.slot(unit_id)
        del self._slot[unit_id]
        self._ids[slot] = None
        self.registered[slot] = False
        self._free.append(slot)

    def telemetry(
        self,
        unit_id: str,
        power_kw: float,
        soc_pct: float,
        charge_limit_kw: float,
        discharge_limit_kw: float,
        safety: int | str,
        timestamp: float,
    ) -> bool:
        """Record one telemetry update (O(1)); False when it was older than the latest.

        ``charge_limit_kw`` and ``discharge_limit_kw`` are the magnitudes (>= 0) the
        unit's safety envelope allows now; ``safety`` is a :data:`SAFETY_STATES` name or
        its index. Telemetry older than the unit's latest is counted and dropped.
        """
        slot = self._slot.get(unit_id)
        if slot is None:
            return self._unknown(unit_id)
        try:
            if not (0.0 <= soc_pct <= 100.0):
                raise self._bad(unit_id, "soc_pct", f"must be 0..100 %, got {soc_pct!r}")
            if not (0.0 <= charge_limit_kw < math.inf):
                raise self._bad(
                    unit_id, "charge_limit_kw", f"must be >= 0, got {charge_limit_kw!r}"
                )
            if not (0.0 <= discharge_limit_kw < math.inf):
                raise self._bad(
                    unit_id, "discharge_limit_kw", f"must be >= 0, got {discharge_limit_kw!r}"
                )
            if not math.isfinite(power_kw):
                raise self._bad(unit_id, "power_kw", f"must be finite, got {power_kw!r}")
            if not math.isfinite(timestamp):
                raise self._bad(unit_id, "timestamp", f"must be finite, got {timestamp!r}")
            code = _SAFETY_CODE.get(safety) if isinstance(safety, str) else safety
            if code is None or not 0 <= code < len(SAFETY_STATES):
                raise self._bad(unit_id, "safety", f"unknown safety state {safety!r}")
        except TypeError:
            # Off the hot path: find which value is not a number.
            values: dict[str, object] = {
                "power_kw": power_kw,
                "soc_pct": soc_pct,
                "charge_limit_kw": charge_limit_kw,
                "discharge_limit_kw": discharge_limit_kw,
                "timestamp": timestamp,
            }
            field = next((k for k, v in values.items() if not _is_number(v)), "safety")
            value = values.get(field, safety)
            raise self._bad(unit_id, field, f"not a number: {value!r}") from None
        if timestamp < self.telemetry_time[slot]:
            self.out_of_order += 1
            return False
        self.telemetry_time[slot] = timestamp
        if timestamp > self.last_seen[slot]:
            self.last_seen[slot] = timestamp
        self.power[slot] = power_kw
        self.soc[slot] = soc_pct
        self.charge_limit[slot] = charge_limit_kw
        self.discharge_limit[slot] = discharge_limit_kw
        self.safety[slot] = code
        return True

    # ---- fleet-wide reads (vectorised) ----

    def online(self, now: float) -> BoolArray:
        """Per slot (up to :attr:`size`): registered and seen within the timeout."""
        n = self.size
        return self.registered[:n] & (now - self.last_seen[:n] <= self.timeout)

    def eligibility(self, now: float) -> IntArray:
        """Per slot: :data:`ELIGIBLE` (-1) or the index in :data:`REASONS` of why the
        unit takes no setpoint; free slots read as offline."""
        n = self.size
        reason = np.full(n, ELIGIBLE, dtype=np.intp)
        reason[self.safety[:n] >= SAFETY_STOP] = 2
        reason[self.safety[:n] > SAFETY_STOP] = 3
        reason[self.telemetry_time[:n] == -math.inf] = 1
        reason[~self.online(now)] = 0
        return reason

    def available(self) -> tuple[FloatArray, FloatArray]:
        """Per slot: (charge, discharge) magnitudes a unit may take now: the envelope
        limit capped at the rating."""
        n = self.size
        return (
            np.minimum(self.charge_limit[:n], self.rated_charge[:n]),
            np.minimum(self.discharge_limit[:n], self.rated_discharge[:n]),
        )

    def paths(self, level: int) -> list[str]:
        """The paths of the groups of level number ``level``, by group number."""
        return self._paths[level]

    def totals(self, now: float, levels: Sequence[str] = LEVELS) -> dict[str, LevelTotals]:
        """Columnar totals of every group of each of ``levels``
        (see :func:`vpp.orchestrator.campus.totals.level_totals`)."""
        from vpp.orchestrator.campus.totals import level_totals

        return level_totals(self, now, levels)

    def aggregates(self, level: str, now: float) -> dict[str, Aggregate]:
        """Totals of every group of ``level`` that has units, by path
        (see :func:`vpp.orchestrator.campus.totals.aggregates`)."""
        from vpp.orchestrator.campus.totals import aggregates

        return aggregates(self, level, now)
