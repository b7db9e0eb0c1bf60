"""The HTTP API against a real site: the default simulated site run by the launcher (its
processes spawned, the API among them), asked over real HTTP on loopback.

One site serves the whole module (it runs in a thread of its own with its own event
loop); each test talks to it as an HTTP client would: with the operator's bearer token,
or logged in as a viewer with a password and a session cookie.
"""

from __future__ import annotations

import asyncio
import http.client
import io
import json
import shutil
import sqlite3
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing import resource_tracker
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from vpp.config import load_text
from vpp.config.loader import default_text
from vpp.orchestrator.api.credentials import hash_secret
from vpp.orchestrator.launcher import Launcher

TOKEN = "operator-token-for-the-tests-0123456789"
VIEWER_PASSWORD = "viewer password"


@dataclass
class Site:
    launcher: Launcher
    url: str
    history: Path


def _until(cond: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    d = Path(tempfile.mkdtemp(prefix="vppapi-", dir="/tmp"))
    text = yaml.safe_load(default_text())
    text["bus"] = {"transport": "ipc", "dir": str(d / "bus")}
    text["api"] = {"port": 0, "users": {
        "ops": {"identity": "operator", "token_hash": hash_secret(TOKEN)},
        "vera": {"identity": "viewer", "password_hash": hash_secret(VIEWER_PASSWORD)},
    }}  # fmt: skip
    history = d / "h.db"
    launcher = Launcher(load_text(yaml.safe_dump(text)), history_path=history,
                        out=io.StringIO(), status_interval_s=0.5)  # fmt: skip
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    result: list[int] = []

    def main() -> None:
        asyncio.set_event_loop(loop)
        result.append(loop.run_until_complete(launcher.run(None, stop)))

    thread = threading.Thread(target=main, name="site", daemon=True)
    thread.start()
    try:
        _until(launcher.ready.is_set, what="start")
        assert launcher.api_url is not None
        url = launcher.api_url
        _until(lambda: _units_online(url) == 3, what="units online through the API")
        yield Site(launcher, url, history)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(60)
        loop.close()
        resource_tracker._resource_tracker._stop()  # type: ignore[attr-defined]
        shutil.rmtree(d, ignore_errors=True)
    assert result == [0]


def _units_online(url: str) -> int:
    try:
        status, body = request(url, "GET", "/api/status", token=TOKEN)
    except OSError:
        return 0
    return int(body["fleet"]["units_online"]) if status == 200 else 0


def request(
    url: str, method: str, path: str, body: Any = None, *, token: str | None = None,
    headers: dict[str, str] | None = None, raw: bool = False,
) -> tuple[int, Any]:  # fmt: skip
    """One HTTP request; (status, decoded JSON or text when ``raw``)."""
    h = dict(headers or {})
    if token is not None:
        h["Authorization"] = f"Bearer {token}"
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        h["Content-Type"] = "application/json"
    req = urllib.request.Request(url.rstrip("/") + path, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            text = resp.read().decode()
            return resp.status, text if raw else json.loads(text)
    except urllib.error.HTTPError as err:
        text = err.read().decode()
        return err.code, text if raw else json.loads(text)


def commands_rows(site: Site, since: float) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(f"file:{site.history}?mode=ro", uri=True)
    try:
        return db.execute("SELECT identity, command, ok, refused, target FROM commands "
                          "WHERE t >= ? ORDER BY seq", (since,)).fetchall()  # fmt: skip
    finally:
        db.close()


def test_no_credential_no_answer(site: Site) -> None:
    for path in ("/api/status", "/api/units", "/api/me"):
        status, body = request(site.url, "GET", path)
        assert status == 401, (path, body)
        status, _ = request(site.url, "GET", path, token="not-the-token")
        assert status == 401
    status, _ = request(site.url, "POST", "/api/units/bess-1/control",
                        {"action": "emergency_stop"})  # fmt: skip
    assert status == 401


def test_status_and_reads(site: Site) -> None:
    status, snap = request(site.url, "GET", "/api/status", token=TOKEN)
    assert status == 200
    assert {u["unit"] for u in snap["units"]} == {"bess-1", "bess-2", "bess-3"}
    assert 45.0 < snap["grid"]["hz"] < 55.0
    assert snap["fleet"]["units"] == 3
    status, me = request(site.url, "GET", "/api/me", token=TOKEN)
    assert status == 200 and me["identity"] == "operator" and "control" in me["allowed"]["field"]
    status, unit = request(site.url, "GET", "/api/units/bess-1", token=TOKEN)
    assert status == 200 and unit["controller"]["online"] is True
    status, _ = request(site.url, "GET", "/api/units/bess-9", token=TOKEN)
    assert status == 404
    for path in ("/api/grid", "/api/events", "/api/market", "/api/campus/nodes",
                 "/api/campus/capacity", "/api/series?window_s=60", "/api/timeline",
                 "/api/units/bess-1/safety", "/api/market/bids"):  # fmt: skip
        status, body = request(site.url, "GET", path, token=TOKEN)
        assert status == 200, (path, body)
    status, series = request(site.url, "GET", "/api/series?window_s=60", token=TOKEN)
    assert series["frequency"] and all(len(p) == 3 for p in series["frequency"])


def test_an_operator_command_reaches_the_unit_and_is_audited_as_operator(site: Site) -> None:
    t0 = time.time() - 1
    status, body = request(site.url, "POST", "/api/units/bess-2/control",
                           {"action": "emergency_stop"}, token=TOKEN)  # fmt: skip
    assert status == 200, body
    _, unit = request(site.url, "GET", "/api/units/bess-2", token=TOKEN)
    assert unit["controller"]["enabled"] is False
    _until(lambda: ("operator", "control", 1, None, "bess-2") in commands_rows(site, t0),
           what="the audit row")  # fmt: skip
    status, body = request(site.url, "POST", "/api/units/bess-2/control",
                           {"action": "enable"}, token=TOKEN)  # fmt: skip
    assert status == 200, body
    # An invalid value is refused before the bus; a command the model refuses, by it.
    status, _ = request(site.url, "POST", "/api/units/bess-2/power", {"kw": "lots"},
                        token=TOKEN)  # fmt: skip
    assert status == 422
    status, body = request(site.url, "POST", "/api/units/bess-2/power", {"kw": 9000.0},
                           token=TOKEN)  # fmt: skip
    assert status == 422 and body["detail"]["refused"] == "invalid"


def test_a_viewer_reads_but_is_refused_commands_by_the_field_controller(site: Site) -> None:
    status, _ = request(site.url, "POST", "/api/login", {"user": "vera", "password": "wrong"})
    assert status == 401
    req = urllib.request.Request(site.url + "api/login", method="POST",
                                 data=json.dumps({"user": "vera",
                                                  "password": VIEWER_PASSWORD}).encode(),
                                 headers={"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(req, timeout=10) as resp:
        cookie = resp.headers["Set-Cookie"].split(";")[0]
        me = json.loads(resp.read())
    assert me["identity"] == "viewer" and me["allowed"]["field"] == ["safety_history", "status"]
    jar = {"Cookie": cookie}
    status, _ = request(site.url, "GET", "/api/status", headers=jar)
    assert status == 200
    action = {"action": "emergency_stop"}
    # Without the header a forged form could not send, the cookie does not count.
    status, body = request(site.url, "POST", "/api/units/bess-3/control", action, headers=jar)
    assert status == 403 and "X-VPP" in body["detail"]
    t0 = time.time() - 1
    status, body = request(site.url, "POST", "/api/units/bess-3/control", action,
                           headers={**jar, "X-VPP": "1"})  # fmt: skip
    assert status == 403 and body["detail"]["refused"] == "not_authorised", body
    _until(lambda: ("viewer", "control", 0, "not_authorised", "bess-3")
           in commands_rows(site, t0), what="the refusal's audit row")  # fmt: skip
    _, unit = request(site.url, "GET", "/api/units/bess-3", token=TOKEN)
    assert unit["controller"]["enabled"] is True
    status, _ = request(site.url, "POST", "/api/logout", headers={**jar, "X-VPP": "1"})
    assert status == 200
    status, _ = request(site.url, "GET", "/api/status", headers=jar)
    assert status == 401


def test_metrics_are_scraped_with_the_plant_in_them(site: Site) -> None:
    request(site.url, "GET", "/api/status", token=TOKEN)
    status, text = request(site.url, "GET", "/metrics", raw=True)
    assert status == 200
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    frames = {s.labels["unit"]: s.value for s in fams["vpp_frames"].samples
              if s.name == "vpp_frames_total"}  # fmt: skip
    assert set(frames) == {"bess-1", "bess-2", "bess-3"} and min(frames.values()) > 0
    hz = fams["vpp_grid_frequency_hz"].samples[0].value
    assert 45.0 < hz < 55.0
    assert fams["vpp_units_online"].samples[0].value == 3
    socs = {s.labels["unit"]: s.value for s in fams["vpp_unit_soc_pct"].samples}
    assert set(socs) == {"bess-1", "bess-2", "bess-3"}
    ages = [s for s in fams["vpp_decision_age_seconds"].samples if s.name.endswith("_count")]
    assert ages and ages[0].value > 0
    routes = {s.labels.get("route") for s in fams["vpp_api_request_seconds"].samples}
    assert "/api/status" in routes


def test_the_live_stream_sends_updates_and_new_timeline_entries(site: Site) -> None:
    host, port = site.url.split("//")[1].rstrip("/").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("GET", "/api/stream", headers={"Authorization": f"Bearer {TOKEN}"})
    resp = conn.getresponse()
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
    updates: list[dict[str, Any]] = []
    sent = False
    t0 = time.monotonic()
    try:
        while len(updates) < 40 and time.monotonic() - t0 < 20:
            line = resp.readline().decode()
            if not line.startswith("data: "):
                continue
            updates.append(json.loads(line[6:]))
            if len(updates) == 3 and not sent:
                status, _ = request(site.url, "POST", "/api/units/bess-1/control",
                                    {"action": "reset_alarms"}, token=TOKEN)  # fmt: skip
                assert status == 200
                sent = True
            if any(_is_reset(e) for u in updates for e in u["timeline"]):
                break
    finally:
        conn.close()
    elapsed = time.monotonic() - t0
    assert len(updates) >= 4
    assert all(len(u["units"]) == 3 for u in updates)
    found = [e for u in updates for e in u["timeline"] if _is_reset(e)]
    assert found and found[0]["data"]["identity"] == "operator", updates[-1]["timeline"]
    # 0.2 s apart by default: no update is lost or bunched beyond a few.
    assert len(updates) >= min(4, elapsed / 0.2 * 0.5)


def _is_reset(e: dict[str, Any]) -> bool:
    d = e["data"]
    return bool(e["kind"] == "command" and d.get("command") == "control"
                and d.get("params", {}).get("action") == "reset_alarms")  # fmt: skip


def test_the_openapi_document_lists_every_surface(site: Site) -> None:
    status, doc = request(site.url, "GET", "/openapi.json")
    assert status == 200
    paths = set(doc["paths"])
    for p in ("/api/status", "/api/units", "/api/units/{unit}", "/api/units/{unit}/control",
              "/api/units/{unit}/power", "/api/units/{unit}/safety", "/api/campus/nodes",
              "/api/campus/dispatch", "/api/campus/capacity", "/api/campus/target", "/api/grid",
              "/api/events", "/api/market", "/api/stream", "/api/login"):  # fmt: skip
        assert p in paths, p


def test_history_questions_over_http(site: Site) -> None:
    from vpp.reports.tables import from_csv

    status, rows = request(site.url, "GET", "/api/history/commands", token=TOKEN)
    assert status == 200 and rows
    assert {"identity", "command", "ok"} <= set(rows[0])
    status, text = request(site.url, "GET", "/api/history/commands?format=csv", token=TOKEN,
                           raw=True)  # fmt: skip
    assert status == 200 and len(from_csv(text)) >= len(rows)
    since = time.time() - 5
    status, rows = request(site.url, "GET", f"/api/history/units/bess-1?start={since}",
                           token=TOKEN)  # fmt: skip
    assert status == 200 and rows and all(r["t"] >= since - 1e-6 for r in rows)
    status, body = request(site.url, "GET", "/api/history/units/bess-1?start=yesterday-ish",
                           token=TOKEN)  # fmt: skip
    assert status == 400 and "cannot read the time" in body["detail"]
    status, _ = request(site.url, "GET", "/api/history/units/bess-9", token=TOKEN)
    assert status == 404
    status, _ = request(site.url, "GET", "/api/history/events")
    assert status == 401
    # The default site's frequency event (a trip at 11 s) ends about 26 s after the start:
    # then the history has it with its verdict, and its report.
    events: list[dict[str, Any]] = []

    def judged() -> bool:
        nonlocal events
        _, events = request(site.url, "GET", "/api/history/events", token=TOKEN)
        return any(e.get("verdict") not in (None, "") for e in events)

    _until(judged, timeout=90, what="a judged frequency event in the history")
    status, html = request(site.url, "GET", "/api/history/events/1/report", token=TOKEN,
                           raw=True)  # fmt: skip
    assert status == 200 and "<svg" in html and events[0]["verdict"].upper() in html.upper()
    status, _ = request(site.url, "GET", "/api/history/events/99/report", token=TOKEN,
                        raw=True)  # fmt: skip
    assert status == 404
