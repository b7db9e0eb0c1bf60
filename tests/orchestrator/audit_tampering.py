"""Histories with a chain of commands, and the ways someone with the database could
tamper with them (for tests/orchestrator/test_audit.py and tests/test_cli.py)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from vpp.orchestrator import audit
from vpp.orchestrator.history import History

#: What one tampering does to a history of commands with seq 1..N (N >= 4), and what
#: verify must report: the problem's kind and seq.
Tampering = Callable[[Path], tuple[str, int]]


def command(i: int) -> dict[str, Any]:
    """The i-th command row of a test history."""
    return {
        "t": 1000.0 + i, "server": "field-a", "target": f"bess-{i % 3 + 1}",
        "command": "set_base", "params": {"kw": 10.0 * i}, "identity": "campus",
        "role": "campus", "ok": i % 4 != 3, "refused": "invalid" if i % 4 == 3 else None,
        "detail": "",
    }  # fmt: skip


def make_history(path: Path, n: int = 6, rows: Mapping[int, Mapping[str, Any]] | None = None,
                 per_flush: int = 2) -> None:  # fmt: skip
    """A history at ``path`` with ``n`` commands (``rows`` overrides some), flushed
    ``per_flush`` at a time."""
    h = History(path)
    for i in range(1, n + 1):
        h.add("commands", (rows or {}).get(i, command(i)))
        if i % per_flush == 0:
            h.flush()
    h.close()


@contextmanager
def opened(path: Path) -> Iterator[sqlite3.Connection]:
    """The history as a tamperer opens it: plain SQLite, autocommit."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        yield db
    finally:
        db.close()


def count(path: Path) -> int:
    with opened(path) as db:
        (n,) = db.execute("SELECT COUNT(*) FROM commands").fetchone()
    return int(n)


def edit_params(path: Path) -> tuple[str, int]:
    with opened(path) as db:
        db.execute("""UPDATE commands SET params = '{"kw": 9999.0}' WHERE seq = 3""")
    return "edited", 3


def delete_middle(path: Path) -> tuple[str, int]:
    with opened(path) as db:
        db.execute("DELETE FROM commands WHERE seq = 2")
    return "deleted", 2


def delete_last(path: Path) -> tuple[str, int]:
    n = count(path)
    with opened(path) as db:
        db.execute("DELETE FROM commands WHERE seq = ?", (n,))
    return "missing_tail", n


def insert_row(path: Path) -> tuple[str, int]:
    # A forged row that takes the next seq, with a MAC made up without the key.
    n = count(path)
    with opened(path) as db:
        db.execute(
            "INSERT INTO commands (t, server, target, command, params, identity, role, ok, "
            "detail, seq, mac) VALUES (2000.0, 'field-a', 'bess-1', 'control', "
            "'{\"action\": \"emergency_stop\"}', 'operator', 'operator', 1, '', ?, ?)",
            (n + 1, "00" * 32),
        )
    return "inserted", n + 1


def swap_rows(path: Path) -> tuple[str, int]:
    # Rows 2 and 4 trade places, each with its own seq and MAC.
    cols = ", ".join(f"{c} = (SELECT {c} FROM commands WHERE id = :other)"
                     for c in (*audit.COLUMNS, "seq", "mac"))  # fmt: skip
    with opened(path) as db:
        (a,) = db.execute("SELECT id FROM commands WHERE seq = 2").fetchone()
        (b,) = db.execute("SELECT id FROM commands WHERE seq = 4").fetchone()
        db.execute("BEGIN")
        db.execute("CREATE TEMP TABLE keep AS SELECT * FROM commands WHERE id = ?", (a,))
        db.execute(f"UPDATE commands SET {cols} WHERE id = :this", {"this": a, "other": b})
        db.execute(f"UPDATE commands SET {cols.replace('commands WHERE', 'keep WHERE')} "
                   "WHERE id = :this", {"this": b, "other": a})  # fmt: skip
        db.execute("COMMIT")
    return "reordered", 2


def wrong_key(path: Path) -> tuple[str, int]:
    audit.default_key_path(path).write_text("ab" * 32 + "\n")
    return "wrong_key", 1


#: Each tampering of the brief, by name.
TAMPERINGS: dict[str, Tampering] = {
    "edit_params": edit_params,
    "delete_middle": delete_middle,
    "delete_last": delete_last,
    "insert_row": insert_row,
    "swap_rows": swap_rows,
    "wrong_key": wrong_key,
}
