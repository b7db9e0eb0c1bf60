"""Rows of the history as a text table for a terminal, or as CSV, and CSV read back.

CSV (RFC 4180: CRLF line ends, a header line) keeps every figure exact: a float is
written as Python's shortest repr, which reads back to the same float, and times stay
UNIX seconds (``t``). A None is an empty cell,
and an empty cell reads back as None (so an empty text does too). The text table is
for reading: times in ISO 8601 UTC, figures rounded per column (:data:`FORMATS`).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "FORMATS", "INTEGER_COLUMNS", "MAX_TEXT", "TEXT_COLUMNS", "format_table", "from_csv",
    "iso", "to_csv",
]  # fmt: skip

#: Columns read back as text; every other column is a number.
TEXT_COLUMNS = frozenset({
    "row", "band", "action", "safety", "direction", "trigger", "verdict", "source", "server",
    "target", "command", "params", "identity", "role", "refused", "detail", "unit",
    "start_ist", "rate_source",
})  # fmt: skip
#: Number columns read back as int.
INTEGER_COLUMNS = frozenset({"number", "seq", "ok", "units", "block"})

#: How the text table shows a number column (default: 6 significant digits).
FORMATS: dict[str, str] = {
    "freq_hz": "{:.4f}", "extreme_hz": "{:.4f}", "nadir_hz": "{:.4f}", "zenith_hz": "{:.4f}",
    "rocof_hz_s": "{:+.3f}", "max_rocof_hz_s": "{:+.3f}", "duration_s": "{:.2f}",
    "soc_pct": "{:.1f}", "temp_c": "{:.1f}",
}  # fmt: skip
_KW = "{:+.1f}"
_TIMES = frozenset({"t", "start", "end"})


def iso(t: float) -> str:
    """UNIX seconds as ISO 8601 UTC to the millisecond (``2026-12-01T10:00:00.120Z``); a
    time no calendar date holds (the history takes any finite ``t``) as its number."""
    try:
        when = datetime.fromtimestamp(t, UTC)
    except (OverflowError, ValueError, OSError):
        return repr(t)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _cell(column: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if column in _TIMES and math.isfinite(value):
            return iso(value)
        fmt = FORMATS.get(column, _KW if column.endswith(("_kw", "_kvar")) else "{:.6g}")
        return fmt.format(value)
    return str(value)


#: Longest text a table cell shows (a schedule's parameters run to a thousand characters;
#: the CSV has them whole).
MAX_TEXT = 60


def _short(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 3] + "..."


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """``rows`` as an aligned text table with a header line (numbers right-aligned, texts
    cut at :data:`MAX_TEXT` characters)."""
    cells = [[_short(_cell(c, r.get(c))) for c in columns] for r in rows]
    widths = [max([len(c), *(len(line[i]) for line in cells)]) for i, c in enumerate(columns)]
    right = [c not in TEXT_COLUMNS for c in columns]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right, strict=True)
        ]
        return "  ".join(parts).rstrip()

    return "\n".join([line(columns), *(line(c) for c in cells)]) + "\n"


def to_csv(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """``rows`` as CSV with a header line; floats exact (repr), None as an empty cell."""
    out = io.StringIO()
    # CRLF line ends (RFC 4180): with "\n" alone, the writer leaves a text holding a lone
    # "\r" unquoted, and a reader takes that "\r" for the end of the row.
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for r in rows:
        writer.writerow(["" if r.get(c) is None else repr(r[c]) if isinstance(r[c], float)
                         else r[c] for c in columns])  # fmt: skip
    return out.getvalue()


def from_csv(text: str) -> list[dict[str, Any]]:
    """Rows of CSV written by :func:`to_csv`, typed again: text columns as str, integer
    columns as int, the others as float; an empty cell as None."""
    out = []
    for r in csv.DictReader(io.StringIO(text, newline="")):
        row: dict[str, Any] = {}
        for column, value in r.items():
            if value == "" or value is None:
                row[column] = None
            elif column in TEXT_COLUMNS:
                row[column] = value
            elif column in INTEGER_COLUMNS:
                row[column] = int(value)
            else:
                row[column] = float(value)
        out.append(row)
    return out
