"""The HTTP API with the default site running: status latency, live dashboard clients,
and what they cost the frame-to-setpoint path.

The default simulated site runs in a process tree of its own (``vpp run`` with the API
on a free port and a token user). Beside it, the end-to-end rig of ``bench_e2e`` (a PMU
at 50 frames/s and a Modbus BESS simulator in this process, a field controller in a
process of its own) measures PMU frame sent -> setpoint written, in three phases:

- A: no dashboard client;
- B: 50 live dashboard clients, each reading ``/api/stream`` (server-sent events,
  every 0.2 s), in a process of their own;
- C: no client again.

The noise of the run is the difference between A and C; B's p99 should be within it.
In A and in B the API's ``/api/status`` is asked 300 times in a row over one keep-alive
connection (p50, p99; target p99 <= 20 ms), and B counts the updates each client got
per second (target >= 5).

Run: ``python benchmarks/bench_api.py [--quick]`` or ``vpp bench api``.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_e2e  # noqa: E402
import yaml  # noqa: E402

from vpp.bench import percentile, row  # noqa: E402
from vpp.config.loader import default_text  # noqa: E402
from vpp.orchestrator.api.credentials import hash_secret  # noqa: E402

Row = dict[str, Any]
TOKEN = "bench-token-0123456789abcdef"
CLIENTS = 50

# The dashboard clients: one process, one asyncio connection each, counting updates.
_CLIENTS = """
import asyncio, json, sys, time
host, port, token = sys.argv[1], int(sys.argv[2]), sys.argv[3]
n, seconds = int(sys.argv[4]), float(sys.argv[5])
async def client(counts, spans, i):
    r, w = await asyncio.open_connection(host, port)
    head = f"GET /api/stream HTTP/1.1\\r\\nHost: {host}\\r\\n"
    w.write(f"{head}Authorization: Bearer {token}\\r\\n\\r\\n".encode())
    await w.drain()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        line = await asyncio.wait_for(r.readline(), 5)
        if line.startswith(b"data: "):
            counts[i] += 1
            now = time.monotonic()
            spans[i] = [spans[i][0] or now, now]
    w.close()
async def main():
    counts, spans = [0] * n, [[0.0, 0.0] for _ in range(n)]
    await asyncio.gather(*(client(counts, spans, i) for i in range(n)))
    # Updates per second between each client's first and last update.
    rates = [(c - 1) / (b - a) if b > a else 0.0 for c, (a, b) in zip(counts, spans)]
    print(json.dumps({"rates": rates}))
asyncio.run(main())
"""


def _site_config(tmp: Path) -> Path:
    site = yaml.safe_load(default_text())
    site["api"] = {"port": 0, "users": {"bench": {"identity": "viewer",
                                                  "token_hash": hash_secret(TOKEN)}}}
    site["history"] = {"path": str(tmp / "h.db")}
    path = tmp / "site.yaml"
    path.write_text(yaml.safe_dump(site))
    return path


def _start_site(tmp: Path) -> tuple[subprocess.Popen[str], str, int]:
    env = {**os.environ, "VPP_RUN_DIR": str(tmp / "run")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "vpp", "run", "--config", str(_site_config(tmp)), "--json"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp,
    )  # fmt: skip
    assert proc.stderr is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        m = re.search(r"dashboard at https?://([^/:]+):(\d+)/", line)
        if m:
            return proc, m.group(1), int(m.group(2))
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError("the site did not print its dashboard address")


def _status_times(host: str, port: int, n: int) -> list[float]:
    conn = http.client.HTTPConnection(host, port, timeout=10)
    times: list[float] = []
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            conn.request("GET", "/api/status", headers={"Authorization": f"Bearer {TOKEN}"})
            resp = conn.getresponse()
            body = resp.read()
            times.append((time.perf_counter() - t0) * 1e3)
            assert resp.status == 200, body[:200]
    finally:
        conn.close()
    return times


def _wait_units(host: str, port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, AssertionError, http.client.HTTPException):
            conn = http.client.HTTPConnection(host, port, timeout=5)
            conn.request("GET", "/api/status", headers={"Authorization": f"Bearer {TOKEN}"})
            snap = json.loads(conn.getresponse().read())
            conn.close()
            if snap["fleet"]["units_online"] == 3:
                return
        time.sleep(0.5)
    raise RuntimeError("the site's units did not come online")


def _phase(seconds: float) -> tuple[list[float], dict[str, Any]]:
    return asyncio.run(bench_e2e._plant(seconds))


def run(quick: bool = False) -> list[Row]:
    """Benchmark rows (see vpp.bench)."""
    seconds = 10.0 if quick else 30.0
    n_status = 100 if quick else 300
    tmp = Path(tempfile.mkdtemp(prefix="vppbapi-", dir="/tmp"))
    site, host, port = _start_site(tmp)
    try:
        _wait_units(host, port)
        status_a = _status_times(host, port, n_status)
        lat_a, _ = _phase(seconds)
        clients = subprocess.Popen(
            [sys.executable, "-c", _CLIENTS, host, str(port), TOKEN, str(CLIENTS),
             str(seconds + 8)], stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(2.0)  # every client connected and streaming
        status_b = _status_times(host, port, n_status)
        lat_b, _ = _phase(seconds)
        out, _ = clients.communicate(timeout=seconds + 60)
        streamed = json.loads(out.strip().splitlines()[-1])
        lat_c, _ = _phase(seconds)
    finally:
        site.terminate()
        try:
            site.wait(30)
        except subprocess.TimeoutExpired:
            site.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    p99 = {k: percentile(v, 0.99) for k, v in (("A", lat_a), ("B", lat_b), ("C", lat_c))}
    noise = abs(p99["A"] - p99["C"])
    rates = streamed["rates"]
    s99a, s99b = percentile(status_a, 0.99), percentile(status_b, 0.99)
    return [
        row("GET /api/status p50, default site running", statistics.median(status_a), "ms"),
        row("GET /api/status p99, default site running", s99a, "ms", target="<= 20 ms",
            ok=s99a <= 20.0),
        row(f"GET /api/status p99 with {CLIENTS} live dashboard clients", s99b, "ms",
            reference=f"p50 {statistics.median(status_b):.3g} ms", target="<= 20 ms",
            ok=s99b <= 20.0),
        row(f"dashboard updates per client per second ({CLIENTS} clients), lowest",
            min(rates), "updates/s", reference=f"median {statistics.median(rates):.3g}",
            target=">= 5", ok=min(rates) >= 5.0),
        row("frame -> setpoint p99, A: no dashboard client", p99["A"], "ms",
            reference=f"p50 {percentile(lat_a, 0.5):.3g} ms"),
        row(f"frame -> setpoint p99, B: {CLIENTS} dashboard clients", p99["B"], "ms",
            reference=f"A and C: {p99['A']:.3g} / {p99['C']:.3g} ms (noise {noise:.3g} ms)",
            ratio=p99["B"] / ((p99["A"] + p99["C"]) / 2),
            target="within the noise of A and C",
            ok=p99["B"] <= max(p99["A"], p99["C"]) + noise),
        row("frame -> setpoint p99, C: no dashboard client again", p99["C"], "ms",
            reference=f"p50 {percentile(lat_c, 0.5):.3g} ms"),
    ]  # fmt: skip


if __name__ == "__main__":
    from vpp.bench import print_table

    print_table([{"bench": "api", **r} for r in run(quick="--quick" in sys.argv)])
