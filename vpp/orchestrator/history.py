"""The site's history in an embedded SQLite database.

Telemetry, control decisions, commands (with who sent them and how they ended), events,
market bids and their results are appended as rows. Rows are buffered in memory and
written in one transaction per :meth:`History.flush`, because a commit per row would
cost a disk sync per PMU frame; the database runs in WAL mode so that a reader
(sqlite3, a test) never blocks the writer. All times are UNIX seconds.

One bad row never costs a batch (issue 8: a NaN timestamp failed ``t REAL NOT NULL``,
hence every flush of the run). :meth:`History.add` sanitises: a ``t`` that is not a
finite number becomes the time of recording (counted in ``fixed_times``), and a
non-finite number in any other column is stored as NULL (counted in ``null_values``):
SQLite itself turns NaN into NULL, and NULL is what every reader already takes for "no
value", where an infinity or a ``"nan"`` text would poison sums and comparisons. Should
a batched insert still fail on a row (an integer past 64 bits, a string that is not
valid Unicode), :meth:`History.flush` writes that table's rows one by one and skips only
those that fail, counted in ``bad_rows`` and logged once per table and kind of error. A failure
of the database itself (locked, disk full) is no bad row: the batch is kept for the next
flush and the error raised.
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from vpp.validation import finite_or_none

__all__ = ["TABLES", "History"]

log = logging.getLogger(__name__)

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


#: What a single row can make an INSERT raise (the row, not the database, is at fault):
#: a constraint, a value that cannot be bound (an int past 64 bits: OverflowError; a str
#: with a lone surrogate: UnicodeEncodeError, a ValueError; a blob too big: DataError).
#: OperationalError (locked, disk full, I/O) is the database's and is not among them.
_ROW_ERRORS: tuple[type[Exception], ...] = (
    sqlite3.IntegrityError,
    sqlite3.InterfaceError,
    sqlite3.DataError,
    OverflowError,
    ValueError,
)


def _ddl(table: str, columns: Sequence[str]) -> str:
    cols = ", ".join(
        f"{c} {_TYPES.get(c, 'TEXT' if c in _TEXT else 'REAL')}" for c in columns
    )
    return f"CREATE TABLE IF NOT EXISTS {table} (id INTEGER PRIMARY KEY, {cols})"


class History:
    """An append-mostly store of what happened at the site (see the module docstring).

    ``path`` may be ``":memory:"``. Thread-safe: the recorder may flush from a worker
    thread while the event loop keeps appending. ``busy_timeout_s`` is how long a write
    waits for another writer of the same file before failing with "database is locked".
    """

    def __init__(
        self, path: str | Path, *, max_buffer: int = 100_000, busy_timeout_s: float = 5.0
    ) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(
            self.path, check_same_thread=False, isolation_level=None, timeout=busy_timeout_s
        )
        # Two locks: appending only waits for the buffer swap, never for a disk write.
        self._lock = threading.Lock()
        self._buf_lock = threading.Lock()
        self._pending: dict[str, list[tuple[Any, ...]]] = {t: [] for t in TABLES}
        self._max_buffer = max_buffer
        self._buffered = 0
        #: Rows dropped because the buffer was full (the disk cannot keep up).
        self.dropped = 0
        self.written = 0
        #: Rows whose ``t`` was not a finite number, recorded at the time of recording.
        self.fixed_times = 0
        #: Non-finite numbers (NaN, infinities) of other columns stored as NULL.
        self.null_values = 0
        #: Rows the database refused (skipped at flush; the rest of the batch written).
        self.bad_rows = 0
        self._logged: set[tuple[str, str]] = set()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            for table, columns in TABLES.items():
                self._db.execute(_ddl(table, columns))
                self._db.execute(f"CREATE INDEX IF NOT EXISTS {table}_t ON {table}(t)")

    def add(self, table: str, row: Mapping[str, Any]) -> None:
        """Buffer one row; missing columns are NULL, ``t`` defaults to now. A ``t`` that
        is not a finite number is replaced by now, a non-finite number elsewhere by NULL
        (both counted). A full buffer drops the row and counts it rather than growing
        without bound."""
        columns = TABLES[table]
        t = row.get("t")
        if t is not None:
            t = finite_or_none(t)
            if t is None:
                self.fixed_times += 1
        values = (time.time() if t is None else t, *(self._cell(row.get(c)) for c in columns[1:]))
        with self._buf_lock:
            if self._buffered >= self._max_buffer:
                self.dropped += 1
                return
            self._buffered += 1
            self._pending[table].append(values)

    def _cell(self, value: Any) -> Any:
        """:func:`_json_cell`, with a non-finite float as NULL (counted)."""
        if isinstance(value, float) and not math.isfinite(value):
            self.null_values += 1
            return None
        return _json_cell(value)

    def flush(self) -> int:
        """Write every buffered row in one transaction; returns how many.

        A row the database refuses is skipped and counted (``bad_rows``), the rest of its
        batch written. When the database itself fails (locked, disk full), nothing is
        written, the rows are kept for the next flush (as far as the buffer bound allows)
        and the error is raised.
        """
        with self._lock:
            with self._buf_lock:
                pending, self._pending = self._pending, {t: [] for t in TABLES}
                self._buffered = 0
            n = bad = 0
            try:
                self._db.execute("BEGIN")
                for table, rows in pending.items():
                    if rows:
                        written = self._insert(table, rows)
                        n += written
                        bad += len(rows) - written
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                self._keep(pending)
                raise
            self.written += n
            self.bad_rows += bad
            return n

    def _insert(self, table: str, rows: list[tuple[Any, ...]]) -> int:
        """Insert ``rows`` into ``table`` (inside the flush's transaction); how many."""
        cols = TABLES[table]
        sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
        # A savepoint, because executemany leaves the rows before a failing one inserted.
        self._db.execute("SAVEPOINT batch")
        try:
            self._db.executemany(sql, rows)
        except _ROW_ERRORS:
            self._db.execute("ROLLBACK TO batch")
        else:
            self._db.execute("RELEASE batch")
            return len(rows)
        self._db.execute("RELEASE batch")
        # Some row cannot be stored: one by one, skipping only the rows that fail (a
        # single INSERT is atomic, so a failed one leaves nothing behind).
        n = 0
        for row in rows:
            try:
                self._db.execute(sql, row)
            except _ROW_ERRORS as exc:
                self._bad_row(table, exc)
            else:
                n += 1
        return n

    def _bad_row(self, table: str, exc: Exception) -> None:
        # Once per table and kind of error (its message may vary with the value): a sender
        # that keeps sending the same bad value must not flood the log; ``bad_rows``
        # keeps the count.
        key = (table, type(exc).__name__)
        if key not in self._logged:
            self._logged.add(key)
            log.warning("history: skipped a %s row the database refused (%s: %s); further "
                        "ones for the same reason are only counted", table,
                        type(exc).__name__, exc)  # fmt: skip

    def _keep(self, pending: dict[str, list[tuple[Any, ...]]]) -> None:
        """Put the rows of a failed flush back, before those added since, within the
        buffer bound (the excess is dropped and counted)."""
        with self._buf_lock:
            for table, rows in pending.items():
                room = max(0, self._max_buffer - self._buffered)
                if len(rows) > room:
                    self.dropped += len(rows) - room
                    rows = rows[:room]
                self._pending[table][:0] = rows
                self._buffered += len(rows)

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
            args.append(_json_cell(value))
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
        """Flush what is buffered and close the database (closed even when the flush
        fails, whose error is then raised)."""
        try:
            self.flush()
        finally:
            with self._lock:
                self._db.close()

    @contextmanager
    def session(self) -> Iterator[History]:
        """``with history.session():`` closes (and flushes) at the end."""
        try:
            yield self
        finally:
            self.close()


def _json_cell(value: Any) -> Any:
    """A value SQLite stores as is; mappings and lists become JSON text (in which Python's
    json writes a non-finite number as ``NaN`` / ``Infinity``: kept as text)."""
    if value is None or isinstance(value, str | int | float):
        return value
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)
