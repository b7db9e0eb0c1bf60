"""Questions to a site's history (the SQLite file ``vpp run`` writes), answered as rows.

:class:`HistoryReader` opens the database read-only (``mode=ro``: a reader can never
change the history, and may run beside a writing ``vpp run``, the database being in WAL
mode) and answers with lists of plain dicts (float, int, str or None values, the keys
of the ``*_COLUMNS`` tuples), so that the command line, the HTML report and the HTTP API
share one implementation. Times are UNIX seconds throughout.

Frequency events are the grid service's ``frequency_event`` events (one at the start,
one at the end, paired by their ``start``), numbered 1, 2, ... in order of start; the
verdict is that of the ``compliance`` event with the same ``event_start``. The recorder
stores an event's data as JSON after its text (``text {json}``, see
:mod:`vpp.orchestrator.recorder`); :func:`event_data` reads it back.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from vpp.errors import HistoryError
from vpp.orchestrator.grid.verdict import fleet_verdict

__all__ = [
    "AGC_COLUMNS",
    "AWARD_COLUMNS",
    "COMMAND_COLUMNS",
    "EVENT_COLUMNS",
    "FLEET_COLUMNS",
    "UNIT_COLUMNS",
    "HistoryReader",
    "event_data",
    "parse_time",
]

Row = dict[str, Any]

#: Columns of :meth:`HistoryReader.events`.
EVENT_COLUMNS = (
    "number", "start", "end", "duration_s", "direction", "trigger", "extreme_hz", "nadir_hz",
    "zenith_hz", "max_rocof_hz_s", "verdict", "source",
)  # fmt: skip
#: Columns of :meth:`HistoryReader.unit_rows`: ``row`` says which table the row is from
#: ("decision" or "telemetry"); the other table's columns are None in it.
UNIT_COLUMNS = (
    "t", "row", "freq_hz", "rocof_hz_s", "band", "response_kw", "base_kw", "setpoint_kw",
    "action", "power_kw", "reactive_kvar", "soc_pct", "temp_c", "safety",
)  # fmt: skip
#: Columns of :meth:`HistoryReader.fleet_rows`.
FLEET_COLUMNS = ("t", "units", "power_kw", "response_kw", "setpoint_kw", "base_kw")
#: Columns of :meth:`HistoryReader.commands`.
COMMAND_COLUMNS = (
    "t", "seq", "server", "target", "command", "params", "identity", "role", "ok",
    "refused", "detail",
)  # fmt: skip

#: Columns of :meth:`HistoryReader.agc`.
AGC_COLUMNS = ("t", "offset_mw", "reserved_up_mw", "reserved_down_mw")
#: Columns of :meth:`HistoryReader.awards`.
AWARD_COLUMNS = (
    "t", "bid_id", "product", "delivery", "block", "side", "accepted_mw", "clearing_price"
)

_DECISION = ("freq_hz", "rocof_hz_s", "band", "response_kw", "base_kw", "setpoint_kw", "action")
_TELEMETRY = ("power_kw", "reactive_kvar", "soc_pct", "temp_c", "safety")
_REQUIRED = ("telemetry", "decisions", "commands", "events")


def parse_time(text: str) -> float:
    """UNIX seconds from ``text``: a number of UNIX seconds, or an ISO 8601 date and time
    (a time without an offset is taken as UTC, so the answer does not depend on the
    host's time zone)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise HistoryError(
            f"cannot read the time {text!r}: give ISO 8601 (2026-01-05T10:00:00Z) or UNIX seconds"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def event_data(text: str | None) -> dict[str, Any] | None:
    """The data of a recorded event: the JSON object that ends its ``text``, or None."""
    if not text:
        return None
    decoder = json.JSONDecoder()
    # The text before the JSON is free text, which may itself hold braces: the data is
    # the first object that starts a word and runs to the end.
    for i, ch in enumerate(text):
        if ch != "{" or (i and text[i - 1] != " "):
            continue
        try:
            obj, end = decoder.raw_decode(text, i)
        except ValueError:
            continue
        if end == len(text) and isinstance(obj, dict):
            return obj
    return None


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class HistoryReader:
    """Read-only questions to the history at ``path`` (see the module docstring).

    Raises :class:`~vpp.errors.HistoryError` when there is no file, when it is not a
    vpp history, or when it holds no rows at all.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        p = Path(path)
        if not p.is_file():
            raise HistoryError("no history file here", path=self.path)
        try:
            self._db = sqlite3.connect(p.resolve().as_uri() + "?mode=ro", uri=True)
            tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master")}
        except sqlite3.Error as exc:
            raise HistoryError(f"cannot read it as a history ({exc})", path=self.path) from None
        try:
            missing = [t for t in _REQUIRED if t not in tables]
            if missing:
                raise HistoryError(f"not a vpp history (no table {missing[0]})", path=self.path)
            if not any(self._scalar(f"SELECT EXISTS (SELECT 1 FROM {t})") for t in _REQUIRED):
                raise HistoryError("the history is empty", path=self.path)
        except BaseException:
            self._db.close()
            raise

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def __enter__(self) -> HistoryReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _scalar(self, sql: str, args: Sequence[Any] = ()) -> Any:
        row = self._db.execute(sql, args).fetchone()
        return None if row is None else row[0]

    def _select(
        self, table: str, columns: Sequence[str], where: str, args: Sequence[object]
    ) -> list[Row]:
        sql = f"SELECT {', '.join(columns)} FROM {table} WHERE {where} ORDER BY t, id"
        return [dict(zip(columns, r, strict=True)) for r in self._db.execute(sql, args)]

    # ---- events ----

    def _event_rows(self, kind: str) -> list[tuple[str, dict[str, Any]]]:
        rows = self._db.execute(
            "SELECT source, text FROM events WHERE kind = ? ORDER BY t, id", (kind,)
        )
        out = []
        for source, text in rows:
            data = event_data(text)
            if data is not None:
                out.append((str(source), data))
        return out

    def events(self) -> list[Row]:
        """Every frequency event (columns :data:`EVENT_COLUMNS`), numbered from 1 in order
        of start. ``end`` is None for an event still going on when the history ends;
        ``verdict`` is "pass" or "fail" (the fleet's), "not judged" (the grid gave a
        reason instead), "ongoing", or "no result" (ended, no compliance recorded)."""
        found: dict[tuple[str, float], dict[str, Any]] = {}
        for source, data in self._event_rows("frequency_event"):
            start = _num(data.get("start"))
            if start is None:
                continue
            record = found.setdefault((source, start), {})
            # The end's record is the complete one; a start only fills what is missing.
            if data.get("phase") == "end" or not record:
                record.update(data)
        verdicts: dict[tuple[str, float], str] = {}
        for source, data in self._event_rows("compliance"):
            start = _num(data.get("event_start"))
            if start is None:
                continue
            verdicts[(source, start)] = fleet_verdict(data)
        out: list[Row] = []
        for n, ((source, start), d) in enumerate(sorted(found.items(), key=lambda kv: kv[0][1])):
            end = _num(d.get("end"))
            direction = d.get("direction")
            nadir, zenith = _num(d.get("nadir_hz")), _num(d.get("zenith_hz"))
            verdict = "ongoing" if end is None else verdicts.get((source, start), "no result")
            out.append({
                "number": n + 1, "start": start, "end": end,
                "duration_s": None if end is None else end - start,
                "direction": direction, "trigger": d.get("trigger"),
                "extreme_hz": nadir if direction == "under" else zenith,
                "nadir_hz": nadir, "zenith_hz": zenith,
                "max_rocof_hz_s": _num(d.get("max_rocof_hz_s")),
                "verdict": verdict, "source": source,
            })  # fmt: skip
        return out

    def event(self, number: int) -> Row:
        """Event ``number`` (as numbered by :meth:`events`)."""
        events = self.events()
        if not events:
            raise HistoryError("no frequency events in the history", path=self.path)
        if not 1 <= number <= len(events):
            raise HistoryError(
                f"no event {number} (the history has events 1 to {len(events)})", path=self.path
            )
        return events[number - 1]

    def time_range(
        self, *, event: int | None = None, start: str | None = None, end: str | None = None,
        margin_s: float = 5.0, what: tuple[str, str, str] = ("an event", "a start", "an end"),
    ) -> tuple[float | None, float | None]:  # fmt: skip
        """The range asked for: event ``event``'s window (:meth:`event_window`), or
        ``start`` to ``end`` (ISO 8601 or UNIX seconds; None: open). ``what`` names the
        three as the asker calls them, for the errors."""
        t0 = None if start is None else parse_time(start)
        t1 = None if end is None else parse_time(end)
        if event is not None:
            if t0 is not None or t1 is not None:
                raise HistoryError(f"give {what[0]} or {what[1]}/{what[2]}, not both")
            return self.event_window(event, margin_s)
        if t0 is not None and t1 is not None and t1 < t0:
            raise HistoryError(f"{what[2]} ({end}) is before {what[1]} ({start})")
        return t0, t1

    def closed_range(self, **asked: Any) -> tuple[float, float]:
        """:meth:`time_range` with its open ends at the history's first and last times."""
        t0, t1 = self.time_range(**asked)
        first, last = self.span()
        return (first if t0 is None else t0, last if t1 is None else t1)

    def event_window(self, number: int, margin_s: float = 5.0) -> tuple[float, float]:
        """Event ``number``'s time span widened by ``margin_s`` on both sides; an event
        still going on runs to the last row of the history."""
        ev = self.event(number)
        end = ev["end"]
        if end is None:
            end = max(self._scalar(f"SELECT MAX(t) FROM {t}") or ev["start"] for t in _REQUIRED)
        return ev["start"] - margin_s, float(end) + margin_s

    def compliance(self, number: int) -> dict[str, Any] | None:
        """The compliance report the grid recorded for event ``number`` (its ``data``:
        event_start, shares, fleet, units, ...), or None when there is none."""
        ev = self.event(number)
        for source, data in self._event_rows("compliance"):
            if source == ev["source"] and _num(data.get("event_start")) == ev["start"]:
                return data
        return None

    # ---- units and the fleet ----

    def units(self) -> list[str]:
        """Every unit named in the telemetry or decisions, sorted."""
        rows = self._db.execute(
            "SELECT unit FROM telemetry UNION SELECT unit FROM decisions"
        ).fetchall()
        return sorted(str(r[0]) for r in rows if r[0] is not None)

    def _check_unit(self, unit: str) -> None:
        units = self.units()
        if unit not in units:
            raise HistoryError(
                f"no unit {unit!r} in the history (units: {', '.join(units) or 'none'})",
                path=self.path,
            )

    def decisions(self, start: float, end: float, unit: str | None = None) -> list[Row]:
        """Decision rows (t, unit and the decision columns) with start <= t <= end."""
        where, args = "t >= ? AND t <= ?", list[object]([start, end])
        if unit is not None:
            where, args = where + " AND unit = ?", [*args, unit]
        return self._select("decisions", ("t", "unit", *_DECISION), where, args)

    def telemetry(self, start: float, end: float, unit: str | None = None) -> list[Row]:
        """Telemetry rows (t, unit and the telemetry columns) with start <= t <= end."""
        where, args = "t >= ? AND t <= ?", list[object]([start, end])
        if unit is not None:
            where, args = where + " AND unit = ?", [*args, unit]
        return self._select("telemetry", ("t", "unit", *_TELEMETRY), where, args)

    def unit_rows(self, unit: str, start: float, end: float) -> list[Row]:
        """What ``unit`` did from ``start`` to ``end``: its decisions (frequency, ROCOF,
        response, setpoint) and its telemetry (measured power, SOC, safety) as one list
        in time order (columns :data:`UNIT_COLUMNS`); each row is one history row, so
        a decision row has no telemetry values and the other way round."""
        self._check_unit(unit)
        blank = dict.fromkeys(UNIT_COLUMNS)
        rows = [
            {**blank, **{k: r[k] for k in ("t", *_DECISION)}, "row": "decision"}
            for r in self.decisions(start, end, unit)
        ]
        rows += [
            {**blank, **{k: r[k] for k in ("t", *_TELEMETRY)}, "row": "telemetry"}
            for r in self.telemetry(start, end, unit)
        ]
        rows.sort(key=lambda r: (r["t"], r["row"]))
        return rows

    def _latest_before(self, table: str, columns: Sequence[str], t: float) -> list[Row]:
        """Each unit's last row of ``table`` before ``t``."""
        out = []
        for unit in self.units():
            sql = (
                f"SELECT t, unit, {', '.join(columns)} FROM {table} "
                "WHERE unit = ? AND t < ? ORDER BY t DESC, id DESC LIMIT 1"
            )
            row = self._db.execute(sql, (unit, t)).fetchone()
            if row is not None:
                out.append(dict(zip(("t", "unit", *columns), row, strict=True)))
        return out

    def fleet_rows(self, start: float, end: float) -> list[Row]:
        """Fleet totals (columns :data:`FLEET_COLUMNS`) at each time from ``start`` to
        ``end`` at which some unit reported: the sums over the units of each one's latest
        measured power (telemetry) and latest response, setpoint and base (decisions),
        as of that time (units report at different moments, so a sum of the rows of one
        instant would miss most units); ``units`` counts those with telemetry."""
        power: dict[str, float] = {}
        decided: dict[str, tuple[float, float, float]] = {}

        def take(row: Row, kind: str) -> None:
            unit = str(row["unit"])
            if kind == "telemetry":
                if row["power_kw"] is not None:
                    power[unit] = float(row["power_kw"])
            elif None not in (row["response_kw"], row["setpoint_kw"], row["base_kw"]):
                decided[unit] = (row["response_kw"], row["setpoint_kw"], row["base_kw"])

        for r in self._latest_before("telemetry", ("power_kw",), start):
            take(r, "telemetry")
        for r in self._latest_before("decisions", ("response_kw", "setpoint_kw", "base_kw"), start):
            take(r, "decision")
        merged = [(r["t"], "telemetry", r) for r in self.telemetry(start, end)]
        merged += [(r["t"], "decision", r) for r in self.decisions(start, end)]
        merged.sort(key=lambda x: (x[0], x[1]))
        out: list[Row] = []
        for t, kind, r in merged:
            take(r, kind)
            row = {
                "t": t, "units": len(power), "power_kw": sum(power.values()),
                "response_kw": sum(v[0] for v in decided.values()),
                "setpoint_kw": sum(v[1] for v in decided.values()),
                "base_kw": sum(v[2] for v in decided.values()),
            }  # fmt: skip
            if out and out[-1]["t"] == t:
                out[-1] = row  # one row per instant: the totals after all of its rows
            else:
                out.append(row)
        return out

    def participation(self, unit: str, before: float) -> float | None:
        """The last share (``p_max_kw``) a ``set_participation`` command gave ``unit``,
        accepted before ``before`` (None if none)."""
        rows = self._db.execute(
            "SELECT params FROM commands WHERE command = 'set_participation' AND ok = 1 "
            "AND target = ? AND t < ? ORDER BY t DESC, id DESC LIMIT 1",
            (unit, before),
        ).fetchall()
        for (params,) in rows:
            try:
                value = json.loads(params).get("p_max_kw")
            except (ValueError, AttributeError):
                return None
            return _num(value)
        return None

    # ---- commands ----

    def commands(self, start: float | None = None, end: float | None = None) -> list[Row]:
        """The audited commands (columns :data:`COMMAND_COLUMNS`) with start <= t <= end
        (either bound may be None), in the order they were recorded."""
        where, args = _range(start, end)
        sql = f"SELECT {', '.join(COMMAND_COLUMNS)} FROM commands WHERE {where} ORDER BY id"
        return [dict(zip(COMMAND_COLUMNS, r, strict=True)) for r in self._db.execute(sql, args)]

    # ---- the market ----

    def awards(self, delivery: str) -> list[Row]:
        """The exchange's results (columns :data:`AWARD_COLUMNS`) for the bids of the IST
        day ``delivery`` (ISO date), each with the product and side of its bid (the
        latest bid of that id recorded up to the result), in the order recorded. A
        history without market tables has none."""
        tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master")}
        if not {"bids", "results"} <= tables:
            return []
        sql = (
            "SELECT r.t, r.bid_id, b.product, b.delivery, r.block, b.side, r.accepted_mw, "
            "r.clearing_price FROM results r JOIN bids b ON b.id = (SELECT id FROM bids "
            "WHERE bid_id = r.bid_id AND t <= r.t ORDER BY t DESC, id DESC LIMIT 1) "
            "WHERE b.delivery = ? ORDER BY r.t, r.id"
        )
        rows = self._db.execute(sql, (delivery,))
        return [dict(zip(AWARD_COLUMNS, r, strict=True)) for r in rows]

    def agc(self, start: float, end: float) -> list[Row]:
        """The ``agc`` events (the campus's regulation each dispatch round) with
        start <= t <= end, in time order: columns :data:`AGC_COLUMNS` (None where an event
        lacks the figure)."""
        rows = self._db.execute(
            "SELECT t, text FROM events WHERE kind = 'agc' AND t >= ? AND t <= ? ORDER BY t, id",
            (start, end),
        )
        out: list[Row] = []
        for t, text in rows:
            data = event_data(text) or {}
            out.append({"t": t, **{k: _num(data.get(k)) for k in AGC_COLUMNS[1:]}})
        return out

    def span(self) -> tuple[float, float]:
        """The first and last time of any row."""
        firsts = [self._scalar(f"SELECT MIN(t) FROM {t}") for t in _REQUIRED]
        lasts = [self._scalar(f"SELECT MAX(t) FROM {t}") for t in _REQUIRED]
        return min(_present(firsts)), max(_present(lasts))


def _present(values: Iterable[Any]) -> list[float]:
    return [float(v) for v in values if v is not None]


def _range(start: float | None, end: float | None) -> tuple[str, list[float]]:
    clauses, args = ["1"], []
    if start is not None:
        clauses.append("t >= ?")
        args.append(start)
    if end is not None:
        clauses.append("t <= ?")
        args.append(end)
    return " AND ".join(clauses), args
