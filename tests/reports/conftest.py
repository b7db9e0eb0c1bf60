"""One real history for every test of vpp.reports: ``vpp run`` of a short-event site.

The site (short_event_site.yaml) is the embedded default with its grid event moved
earlier and mostly reversed, so that within the 30 s run a frequency event starts, is
answered by the three simulated units, ends, and is judged by the grid service. The
run takes about 35 s, so it is made once per session; tests read the file only.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.orchestrator.procs import vpp

SITE = Path(__file__).with_name("short_event_site.yaml")


@pytest.fixture(scope="session")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The history file of a 30 s run with one frequency event that ended."""
    path = tmp_path_factory.mktemp("history") / "history.db"
    r = vpp("run", "--duration", "30", "--config", str(SITE), "--history", str(path),
            timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    ends = [d for d in raw_events(path, "frequency_event") if d["phase"] == "end"]
    assert ends, "the run should hold a frequency event that ended"
    return path


def raw_events(path: Path, kind: str) -> list[dict[str, Any]]:
    """The data of the history's events of ``kind``, read with SQL and json alone (the
    grid's texts hold no brace before their data)."""
    rows = raw_rows(path, "SELECT text FROM events WHERE kind = ? ORDER BY id", (kind,))
    return [json.loads(r["text"][r["text"].index(" {") + 1 :]) for r in rows]


def raw_rows(path: Path, sql: str, args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    """Rows of an SQL query on the history, as dicts."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        cur = db.execute(sql, args)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    finally:
        db.close()
