"""Totals of a :class:`~vpp.orchestrator.campus.fleet.Fleet` at every level of the location tree.

Every figure is a masked per-unit weight: a unit counts where it should (registered,
online, reporting telemetry, or eligible for dispatch; see :class:`Aggregate`). The
weights are summed once into the finest level asked for with one ``np.bincount`` (the
row offset trick sums all eleven figures in one call), then rolled up group by group
through each group's parent, so a coarser level costs a bincount over groups, not units.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from vpp.orchestrator.campus.fleet import ELIGIBLE, LEVELS, Fleet

__all__ = ["Aggregate", "LevelTotals", "aggregates", "level_totals"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]


@dataclasses.dataclass(frozen=True)
class Aggregate:
    """Totals of one location group.

    Counts cover every registered unit. Ratings and ``energy_kwh`` are installed
    figures (all registered units). ``power_kw``, ``stored_kwh`` and ``soc_pct`` (energy
    weighted; NaN when no unit reports) cover online units that have sent telemetry.
    ``available_*_kw`` are the safety-envelope limits (capped at the rating) summed over
    the units dispatch may use, so they are the group's headroom each way.
    """

    level: str
    path: str
    units: int
    online: int
    offline: int
    dispatchable: int
    power_kw: float
    rated_charge_kw: float
    rated_discharge_kw: float
    available_charge_kw: float
    available_discharge_kw: float
    energy_kwh: float
    stored_kwh: float
    soc_pct: float


@dataclasses.dataclass(frozen=True)
class LevelTotals:
    """The :class:`Aggregate` figures of every group of one level, as arrays indexed
    like ``paths`` (counts as floats; ``offline = units - online``)."""

    level: str
    paths: list[str]
    units: FloatArray
    online: FloatArray
    dispatchable: FloatArray
    power_kw: FloatArray
    rated_charge_kw: FloatArray
    rated_discharge_kw: FloatArray
    available_charge_kw: FloatArray
    available_discharge_kw: FloatArray
    energy_kwh: FloatArray
    stored_kwh: FloatArray
    soc_pct: FloatArray


def level_totals(
    fleet: Fleet, now: float, levels: Sequence[str] = LEVELS
) -> dict[str, LevelTotals]:
    """Columnar totals of every group of each of ``levels`` (vectorised; the per-unit
    masks are computed once for all levels). Groups left without units read as 0."""
    unknown = [lv for lv in levels if lv not in LEVELS]
    if unknown:
        raise ValueError(f"unknown level(s) {unknown}; levels: {LEVELS}")
    if not levels:
        return {}
    n = fleet.size
    reg = fleet.registered[:n]
    on = fleet.online(now)
    reporting = on & (fleet.telemetry_time[:n] > -math.inf)
    usable = fleet.eligibility(now) == ELIGIBLE
    charge, discharge = fleet.available()
    energy = fleet.energy[:n]
    # One weight row per column; masked rows are zero where the unit does not count.
    weights = np.stack(
        [
            reg,
            on,
            usable,
            np.where(reporting, fleet.power[:n], 0.0),
            np.where(reg, fleet.rated_charge[:n], 0.0),
            np.where(reg, fleet.rated_discharge[:n], 0.0),
            np.where(usable, charge, 0.0),
            np.where(usable, discharge, 0.0),
            np.where(reg, energy, 0.0),
            np.where(reporting, energy * fleet.soc[:n] / 100.0, 0.0),
            np.where(reporting, energy, 0.0),
        ]
    ).astype(np.float64)
    wanted = sorted(LEVELS.index(level) for level in levels)
    rows = len(weights)

    def group_sums(index: IntArray, values: FloatArray, ng: int) -> FloatArray:
        # Offsetting each row's group numbers lets one bincount sum every row.
        offset = index + (np.arange(rows) * ng)[:, None]
        sums = np.bincount(offset.ravel(), weights=values.ravel(), minlength=ng * rows)
        return sums.reshape(rows, ng).astype(np.float64, copy=False)

    # Sum units into the finest level wanted, then roll groups up level by level.
    lv = wanted[-1]
    by_level = {lv: group_sums(fleet.group[lv, :n], weights, len(fleet.paths(lv)))}
    while lv > wanted[0]:
        by_level[lv - 1] = group_sums(fleet.parents(lv), by_level[lv], len(fleet.paths(lv - 1)))
        lv -= 1
    out: dict[str, LevelTotals] = {}
    for lv in wanted:
        level, cols = LEVELS[lv], by_level[lv]
        with np.errstate(invalid="ignore", divide="ignore"):
            soc = np.where(cols[10] > 0, 100.0 * cols[9] / cols[10], np.nan)
        out[level] = LevelTotals(
            level=level,
            paths=fleet.paths(lv),
            units=cols[0],
            online=cols[1],
            dispatchable=cols[2],
            power_kw=cols[3],
            rated_charge_kw=cols[4],
            rated_discharge_kw=cols[5],
            available_charge_kw=cols[6],
            available_discharge_kw=cols[7],
            energy_kwh=cols[8],
            stored_kwh=cols[9],
            soc_pct=soc,
        )
    return out

def aggregates(fleet: Fleet, level: str, now: float) -> dict[str, Aggregate]:
    """Totals of every group of ``level`` (one of :data:`LEVELS`) that has units."""
    t = level_totals(fleet, now, (level,))[level]
    keep = np.flatnonzero(t.units > 0)
    names = [f.name for f in dataclasses.fields(LevelTotals)][2:]
    cols = {name: getattr(t, name)[keep].tolist() for name in names}
    paths = [t.paths[g] for g in keep.tolist()]
    out: dict[str, Aggregate] = {}
    for i, path in enumerate(paths):
        units, online = int(cols["units"][i]), int(cols["online"][i])
        out[path] = Aggregate(
            level=level,
            path=path,
            units=units,
            online=online,
            offline=units - online,
            dispatchable=int(cols["dispatchable"][i]),
            **{name: cols[name][i] for name in names[3:]},
        )
    return out
