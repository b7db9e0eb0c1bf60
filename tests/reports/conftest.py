"""One real history for every test of vpp.reports: ``vpp run`` of the default site.

The embedded default site tells the story of a frequency event within 45 s (a trip at
20 s; the event starts, is answered by the three simulated units, ends and is judged);
its HTTP API is turned off here. The run takes about 55 s, so it is made once per
session; tests read the file only.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.orchestrator.procs import vpp
from vpp.config.loader import default_text


@pytest.fixture(scope="session")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The history file of a 50 s run with one frequency event that ended."""
    d = tmp_path_factory.mktemp("history")
    path, site = d / "history.db", d / "site.yaml"
    text = yaml.safe_load(default_text())
    text["api"] = {"enabled": False}
    site.write_text(yaml.safe_dump(text))
    # 50 s: the event ends about 36 s after the start, later on a loaded machine.
    r = vpp("run", "--duration", "50", "--config", str(site), "--history", str(path),
            timeout=150)  # fmt: skip
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
