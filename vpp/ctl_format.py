"""The human output of ``vpp ctl``: aligned tables and short values (``--json`` bypasses it)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = [
    "clock",
    "compliance_rows",
    "event_rows",
    "kw",
    "num",
    "table",
    "unit_rows",
]


def num(value: Any, digits: int = 1) -> str:
    """A number with ``digits`` decimals, ``-`` for None, yes/no for a bool."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        # No "-0.0" for a value that rounds to zero from below.
        return f"{value:.{digits}f}" if round(value, digits) != 0 else f"{0.0:.{digits}f}"
    return str(value)


def kw(value: Any) -> str:
    """A power in kW, one decimal."""
    return num(value, 1)


def clock(t: Any) -> str:
    """A UNIX time as local ``YYYY-MM-DD HH:MM:SS`` (``-`` for None)."""
    if not isinstance(t, int | float):
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def _numeric(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """``rows`` under ``headers``, columns aligned (numbers to the right)."""
    cells = [[str(c) for c in r] for r in rows]
    if not cells:
        return "(none)"
    width = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    right = [all(_numeric(r[i]) or r[i] == "-" for r in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        parts = [c.rjust(w) if rt else c.ljust(w) for c, w, rt in zip(row, width, right,
                                                                    strict=True)]  # fmt: skip
        return "  ".join(parts).rstrip()

    return "\n".join([line(list(headers)), *(line(r) for r in cells)])


UNIT_HEADERS = ("UNIT", "FIELD", "ONLINE", "ENABLED", "POWER_KW", "SETPOINT_KW", "BASE_KW",
                "SOC_%", "SAFETY", "LATCHED", "PARTICIPATION_KW")  # fmt: skip


def unit_rows(fields: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> list[list[str]]:
    """One row per unit of the field controllers' ``status`` answers (field -> unit -> state)."""
    rows = []
    for fid, units in fields.items():
        for uid, st in units.items():
            rows.append([uid, fid, num(st.get("online")), num(st.get("enabled")),
                         kw(st.get("power")), kw(st.get("setpoint")), kw(st.get("base")),
                         num(st.get("soc")), str(st.get("safety", "-")),
                         num(st.get("latched")), kw(st.get("participation"))])  # fmt: skip
    return rows


EVENT_HEADERS = ("#", "START", "DIRECTION", "EXTREME_HZ", "MAX_ROCOF_HZ_S", "DURATION_S",
                 "VERDICT")  # fmt: skip


def _verdict(report: Mapping[str, Any]) -> str:
    fleet = report.get("fleet")
    if not isinstance(fleet, Mapping):
        return f"not judged ({report.get('reason', '')})"
    return "pass" if fleet.get("passed") else "fail"


def event_rows(events: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    """One row per finished frequency event of the grid's ``events`` answer."""
    rows = []
    for i, item in enumerate(events, 1):
        ev = item.get("event", {})
        extreme = ev.get("nadir_hz") if ev.get("direction") == "under" else ev.get("zenith_hz")
        end, start = ev.get("end"), ev.get("start")
        timed = isinstance(end, int | float) and isinstance(start, int | float)
        dur = end - start if timed else None
        rows.append([str(i), clock(start), str(ev.get("direction", "-")), num(extreme, 3),
                     num(ev.get("max_rocof_hz_s"), 3), num(dur, 1),
                     _verdict(item.get("compliance", {}))])  # fmt: skip
    return rows


COMPLIANCE_HEADERS = ("#", "START", "UNIT", "SHARE_KW", "SOURCE", "VERDICT", "FAILURES")


def compliance_rows(events: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    """One row per event for the fleet and one per unit judged, with the failed criteria."""
    rows = []
    for i, item in enumerate(events, 1):
        rep = item.get("compliance", {})
        start = clock(item.get("event", {}).get("start"))
        fleet = rep.get("fleet")
        fails = ", ".join(map(str, fleet.get("failures", []))) if isinstance(fleet, Mapping) else ""
        rows.append([str(i), start, "(fleet)", kw(sum(rep.get("shares", {}).values())), "-",
                     _verdict(rep), fails or "-"])  # fmt: skip
        for uid, res in rep.get("units", {}).items():
            rows.append([str(i), start, uid, kw(res.get("share_kw")), str(res.get("source", "-")),
                         "pass" if res.get("passed") else "fail",
                         ", ".join(map(str, res.get("failures", []))) or "-"])  # fmt: skip
    return rows
