"""The site's history in an embedded SQLite database.

Telemetry, control decisions, commands (with who sent them and how they ended), events,
market bids and their results are appended as rows. Rows are buffered in memory and
written in one transaction per :meth:`History.flush`, because a commit per row would
cost a disk sync per PMU frame; the database runs in WAL mode so that a reader (the
``vpp history`` command, a test) never blocks the writer. All times are UNIX seconds.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["TABLES", "History"]

#: Columns of every table, in order (``t`` is always first).
TABLES: dict[str, tuple[str, ...]] = {
    "telemetry": (
        "t", "unit", "power_kw", "reactive_kvar", "soc_pct", "temp_c", "safety", "online"
    ),
    "decisions": (
        "t", "unit", "freq_hz", "rocof_hz_s", "band", "response_kw", "base_kw", "setpoint_kw",
        "action",
    ),
    "commands": ("t", "target", "command", "params", "issued_by", "ok", "detail"),
    "events": ("t", "source", "kind", "severity", "text"),
    "bids": ("t", "bid_id", "product", "delivery", "block", "side", "volume_mw", "price"),
    "results": ("t", "bid_id", "block", "accepted_mw", "clearing_price"),
}

_TYPES = {
    "t": "REAL NOT NULL",
    "online": "INTEGER",
    "ok": "INTEGER",
    "block": "INTEGER",
}
_TEXT = {
    "unit", "safety", "band", "action", "target", "command", "params", "issued_by", "detail",
    "source", "kind", "severity", "text", "bid_id", "product", "delivery", "side",
}


def _ddl(table: str, columns: Sequence[str]) -> str:
    cols = ", ".join(
        f"{c} {_TYPES.get(c, 'TEXT' if c in _TEXT else 'REAL')}" for c in columns
    )
    return f"CREATE TABLE IF NOT EXISTS {table} (id INTEGER PRIMARY KEY, {cols})"


class History:
    """An append-mostly store of what happened at the site (see the module docstring).

    ``path`` may be ``":memory:"``. Thread-safe: the recorder may flush from a worker
    thread while the event loop keeps appending.
    """

    def __init__(self, path: str | Path, *, max_buffer: int = 100_000) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        # Two locks: appending only waits for the buffer swap, never for a disk write.
        self._lock = threading.Lock()
        self._buf_lock = threading.Lock()
        self._pending: dict[str, list[tuple[Any, ...]]] = {t: [] for t in TABLES}
        self._max_buffer = max_buffer
        self._buffered = 0
        #: Rows dropped because the buffer was full (the disk cannot keep up).
        self.dropped = 0
        self.written = 0
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            for table, columns in TABLES.items():
                self._db.execute(_ddl(table, columns))
                self._db.execute(f"CREATE INDEX IF NOT EXISTS {table}_t ON {table}(t)")

    def add(self, table: str, row: Mapping[str, Any]) -> None:
        """Buffer one row; missing columns are NULL, ``t`` defaults to now. A full buffer
        drops the row and counts it rather than growing without bound."""
        columns = TABLES[table]
        values = tuple(_cell(row.get(c)) for c in columns)
        if values[0] is None:
            values = (time.time(), *values[1:])
        with self._buf_lock:
            if self._buffered >= self._max_buffer:
                self.dropped += 1
                return
            self._buffered += 1
            self._pending[table].append(values)

    def flush(self) -> int:
        """Write every buffered row in one transaction; returns how many."""
        with self._lock:
            with self._buf_lock:
                pending, self._pending = self._pending, {t: [] for t in TABLES}
                self._buffered = 0
            n = 0
            self._db.execute("BEGIN")
            try:
                for table, rows in pending.items():
                    if rows:
                        cols = TABLES[table]
                        marks = ", ".join("?" * len(cols))
                        self._db.executemany(
                            f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({marks})", rows
                        )
                        n += len(rows)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self.written += n
            return n

    def rows(
        self,
        table: str,
        *,
        since: float | None = None,
        where: Mapping[str, Any] | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Rows of ``table`` (oldest first) as dicts, optionally from time ``since`` and
        with columns equal to the values in ``where``."""
        columns = TABLES[table]
        clauses, args = [], []
        if since is not None:
            clauses.append("t >= ?")
            args.append(since)
        for key, value in (where or {}).items():
            if key not in columns:
                raise KeyError(f"table {table!r} has no column {key!r}")
            clauses.append(f"{key} = ?")
            args.append(_cell(value))
        sql = f"SELECT {', '.join(columns)} FROM {table}"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY id"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self._lock:
            cur = self._db.execute(sql, args)
            return [dict(zip(columns, r, strict=True)) for r in cur.fetchall()]

    def count(self, table: str) -> int:
        """Rows written to ``table`` so far."""
        with self._lock:
            (n,) = self._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()
        return int(n)

    def close(self) -> None:
        """Flush what is buffered and close the database."""
        self.flush()
        with self._lock:
            self._db.close()

    @contextmanager
    def session(self) -> Iterator[History]:
        """``with history.session():`` closes (and flushes) at the end."""
        try:
            yield self
        finally:
            self.close()


def _cell(value: Any) -> Any:
    """A value SQLite stores as is; mappings and lists become JSON text."""
    if value is None or isinstance(value, str | int | float):
        return value
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)
