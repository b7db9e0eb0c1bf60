"""The ``vpp`` command line, run as a user runs it (a subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vpp import c37118

ROOT = Path(__file__).resolve().parent.parent


def vpp(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vpp", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        check=False,
    )


def test_demo_prints_decisions_that_follow_the_frequency_event() -> None:
    r = vpp("demo", "--duration", "12", "--fast", "--json", "--every", "25")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(lines) >= 20
    for d in lines:
        assert d["min_kw"] <= d["setpoint_kw"] <= d["max_kw"]
    # Before the event the frequency is nominal and the battery idles; after it the
    # frequency falls below 49.90 Hz and the battery discharges (positive power).
    assert lines[0]["band"] == "normal" and lines[0]["setpoint_kw"] == 0.0
    low = [d for d in lines if d["freq"] < 49.85]
    assert low, "the event should take the frequency below 49.85 Hz"
    assert all(d["band"] == "low" and d["setpoint_kw"] > 0 for d in low)
    assert max(d["setpoint_kw"] for d in lines) > 0.25


def test_demo_human_output_and_summary() -> None:
    r = vpp("demo", "--duration", "3", "--rate", "10", "--fast")
    assert r.returncode == 0, r.stderr
    assert "band=normal" in r.stdout
    assert "done: 30 decisions, 0 frame errors" in r.stdout


def test_pmu_decode_prints_one_json_object_per_frame_and_goes_on_after_corruption(
    tmp_path: Path,
) -> None:
    pmu = c37118.PmuConfig("PMU A", 9, 0b1111, ["VA", "VB"], [0, 0], fnom=50.0)
    cfg = c37118.ConfigFrame("cfg2", 9, [pmu], data_rate=25, soc=1_700_000_000)
    frames = [c37118.encode(cfg)]
    for k in range(3):
        df = c37118.DataFrame(
            cfg,
            [c37118.PmuData([(230.0, 0.1), (231.0, -2.0)], 49.95 + 0.01 * k, -0.25)],
            soc=1_700_000_000,
            fracsec=k * 40_000,
        )
        frames.append(c37118.encode(df))
    bad = bytearray(frames[2])
    bad[-1] ^= 0x01
    frames[2] = bytes(bad)
    path = tmp_path / "capture.bin"
    path.write_bytes(b"".join(frames))

    r = vpp("pmu", "decode", str(path))
    assert r.returncode == 0, r.stderr
    objs = [json.loads(line) for line in r.stdout.splitlines()]
    assert [o["type"] for o in objs] == ["cfg2", "data", "error", "data"]
    c = objs[0]
    assert c["idcode"] == 9 and c["data_rate"] == 25 and c["time_base"] == 1_000_000
    assert c["pmus"][0]["station"] == "PMU A" and c["pmus"][0]["fnom"] == 50.0
    assert c["pmus"][0]["phasor_names"] == ["VA", "VB"]
    d = objs[1]
    for key in ("version", "idcode", "soc", "fracsec", "time", "time_quality", "pmus"):
        assert key in d
    p = d["pmus"][0]
    assert abs(p["freq"] - 49.95) < 1e-4 and abs(p["rocof"] + 0.25) < 1e-6
    assert abs(p["phasors"][0]["magnitude"] - 230.0) < 1e-3
    assert abs(p["phasors"][0]["angle"] - 0.1) < 1e-6
    e = objs[2]
    # The offset is that of the failing field in the stream: CHK, the frame's last 2 bytes.
    assert e["offset"] == len(frames[0]) + len(frames[1]) + len(frames[2]) - 2
    assert e["field"] == "CHK" and "reason" in e
    assert abs(objs[3]["time"] - (1_700_000_000 + 0.08)) < 1e-9
    assert "1 corrupt frame" in r.stderr


def test_pmu_decode_keeps_a_capture_behind_garbage_that_looks_like_a_frame(
    tmp_path: Path,
) -> None:
    # A few bytes that look like a data frame's SYNC claiming 65535 bytes, then a valid
    # capture that ends before those 65535 bytes do: the decoder used to wait for the
    # rest of the false frame and, at the end of the file, drop everything with one
    # truncated-frame error.
    pmu = c37118.PmuConfig("PMU A", 9, 0b1111, ["VA"], [0], fnom=50.0)
    cfg = c37118.ConfigFrame("cfg2", 9, [pmu], data_rate=50, soc=1_700_000_000)
    frames = [c37118.encode(cfg)]
    for k in range(50):
        pd = c37118.PmuData([(230.0, 0.0)], 50.0 + 0.001 * k)
        frames.append(c37118.encode(c37118.DataFrame(cfg, [pd], 1_700_000_000, 20_000 * k)))
    false_start = b"\xaa\x02\xff\xff"
    cases = [
        # Found behind the false start as the capture is read.
        (b"\x00" + false_start + b"\x07", b"", "sync", 0),
        # ... with a false start at the end too (one more error, nothing lost).
        (b"\x00" + false_start + b"\x07", false_start, "sync", 0),
        # Two in a row: the frames come out when the end of the file is reached.
        (false_start * 2, b"", "truncated", 2),
    ]
    for garbage, tail, kind, offset in cases:
        path = tmp_path / "capture.bin"
        path.write_bytes(garbage + b"".join(frames) + tail)
        r = vpp("pmu", "decode", str(path))
        assert r.returncode == 0, r.stderr
        objs = [json.loads(line) for line in r.stdout.splitlines()]
        assert [o["type"] for o in objs][:3] == ["error", "cfg2", "data"]
        # One error for the garbage run, then every frame.
        assert (objs[0]["error"], objs[0]["offset"]) == (kind, offset)
        assert [o["pmus"][0]["freq"] for o in objs if o["type"] == "data"] == [
            pytest.approx(50.0 + 0.001 * k) for k in range(50)
        ]
        errors = [o for o in objs if o["type"] == "error"]
        assert len(errors) == (2 if tail else 1)
        assert f"{len(errors)} corrupt frame" in r.stderr


def test_bench_lists_its_benchmarks_and_rejects_unknown_names() -> None:
    r = vpp("bench", "no_such_benchmark")
    assert r.returncode != 0
    assert "unknown benchmark" in r.stderr


def test_pmu_serve_and_listen_on_an_ephemeral_port() -> None:
    serve = subprocess.Popen(
        [sys.executable, "-m", "vpp", "pmu", "serve", "--port", "0", "--idcode", "77",
         "--rate", "25", "--profile", "step", "--magnitude", "-0.2", "--start", "0",
         "--noise", "0", "--duration", "60"],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, cwd=ROOT,
    )  # fmt: skip
    try:
        assert serve.stderr is not None
        line = serve.stderr.readline()  # "vpp pmu serve: listening on 127.0.0.1:PORT ..."
        port = int(line.split("listening on ")[1].split()[0].rsplit(":", 1)[1])
        r = vpp("pmu", "listen", f"127.0.0.1:{port}", "--count", "5", timeout=30)
    finally:
        serve.terminate()
        code = serve.wait(timeout=10)
        serve.stderr.close()  # type: ignore[union-attr]
    assert code == 0  # SIGTERM stops the server cleanly
    assert r.returncode == 0, r.stderr
    objs = [json.loads(line) for line in r.stdout.splitlines()]
    assert [o["type"] for o in objs] == ["cfg2"] + ["data"] * 5
    assert objs[0]["idcode"] == 77 and objs[0]["data_rate"] == 25
    keys = ("version", "idcode", "soc", "fracsec", "time", "time_quality", "pmus")
    for d in objs[1:]:
        assert all(k in d for k in keys)
        assert d["fracsec"] % 40_000 == 0
        assert abs(d["pmus"][0]["freq"] - 49.8) < 1e-4


def test_pmu_listen_rejects_a_bad_address() -> None:
    r = vpp("pmu", "listen", "nowhere", timeout=30)
    assert r.returncode == 2 and "HOST:PORT" in r.stderr


def test_audit_verify_passes_on_a_history_and_fails_on_one_deleted_row(tmp_path: Path) -> None:
    from tests.orchestrator.audit_tampering import delete_middle, make_history

    db = tmp_path / "site.db"
    make_history(db, 5)
    ok = vpp("audit", "verify", "--history", str(db))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == f"vpp audit verify: {db}: OK: 5 commands, chain intact through seq 5, " \
        "anchor at seq 5\n"  # fmt: skip
    delete_middle(db)
    bad = vpp("audit", "verify", "--history", str(db))
    assert bad.returncode == 1 and bad.stdout == ""
    assert bad.stderr == f"vpp audit verify: {db}: seq 2: deleted: seq 2 is missing (row " \
        "deleted)\n"  # fmt: skip
    # With the key elsewhere, as a site file's history.audit_key says.
    key = tmp_path / "audit.key"
    key.write_text("cd" * 32)
    wrong = vpp("audit", "verify", "--history", str(db), "--key", str(key))
    assert wrong.returncode == 1 and "seq 1: wrong key:" in wrong.stderr
    # Nothing to verify: one line, no traceback.
    missing = vpp("audit", "verify", "--history", str(tmp_path / "none.db"))
    assert missing.returncode == 2
    assert missing.stderr.splitlines() == [
        f"vpp audit: ConfigError: no history {tmp_path / 'none.db'}"]  # fmt: skip


def one_line_error(r: subprocess.CompletedProcess[str], prefix: str) -> str:
    """The single line ``r`` wrote on standard error, checked to start with ``prefix``."""
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(prefix), lines[0]
    return lines[0]


def test_version() -> None:
    from vpp import __version__

    r = vpp("--version")
    assert r.returncode == 0
    assert r.stdout.strip() == f"vpp {__version__}"


def test_an_unknown_benchmark_is_one_line_and_exit_2() -> None:
    line = one_line_error(vpp("bench", "nosuch"), "vpp bench: ConfigError: ")
    assert "unknown benchmark(s) nosuch; known: " in line and "pipeline" in line


def test_a_missing_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    one_line_error(vpp("pmu", "decode", str(tmp_path / "nope.bin")), "vpp pmu: FileNotFoundError")
    one_line_error(vpp("run", "--config", str(tmp_path / "nope.yaml")), "vpp run: ConfigError")
    line = one_line_error(
        vpp("--log-file", str(tmp_path / "no" / "dir.log"), "run", "--duration", "1"),
        "vpp run: ConfigError: --log-file: cannot open",
    )
    assert "dir.log" in line


def test_a_port_in_use_is_one_line_naming_the_address_and_exit_2() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = one_line_error(
            vpp("pmu", "serve", "--port", str(port), "--duration", "5"), "vpp pmu: BindError: "
        )
    assert f"127.0.0.1:{port}" in line and "in use" in line


def test_a_site_whose_process_cannot_bind_stops_at_once_with_one_line(tmp_path: Path) -> None:
    import socket

    from vpp.config.loader import default_text

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        site = tmp_path / "site.yaml"
        pinned = f"pmu: {{rate: 50, port: {port}}}"
        site.write_text(default_text().replace("pmu: {rate: 50}", pinned))
        log = tmp_path / "vpp.log"
        # No duration: only the failure can end the run (the test's timeout guards it).
        r = vpp("--log-level", "info", "--log-file", str(log), "run", "--config", str(site),
                "--history", str(tmp_path / "h.db"), timeout=60)  # fmt: skip
    line = one_line_error(r, "vpp run: BindError: process plant: PMU simulator cannot listen")
    assert f"127.0.0.1:{port}" in line
    text = log.read_text()
    # Told once, from the plant itself; never restarted.
    assert text.count("stopped: BindError") == 1 and "restarted" not in text


def test_a_typo_in_a_device_config_fails_at_load_naming_file_and_key(tmp_path: Path) -> None:
    from vpp.config.loader import default_text

    site = tmp_path / "site.yaml"
    site.write_text(default_text().replace("port: 0, timeout: 1.0}", "port: 0, tiemout: 1.0}", 1))
    line = one_line_error(vpp("run", "--config", str(site)), "vpp run: ConfigError: ")
    assert f"{site}: field.0.units.0.inverter.config.tiemout: " in line


def test_the_log_file_receives_the_logs_of_every_process(tmp_path: Path) -> None:
    import signal
    import time

    log = tmp_path / "vpp.log"
    # The default layout: the services (campus, grid, market, api, scada) share one.
    names = ("launcher", "plant", "field-a", "field-b", "services")
    proc = subprocess.Popen(
        [sys.executable, "-m", "vpp", "--log-level", "debug", "--log-file", str(log), "run",
         "--json", "--history", str(tmp_path / "h.db")],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        # Each process logs at its start (asyncio's "Using selector" at debug level, if
        # nothing else): wait until every one of them has, each line naming its process.
        deadline = time.monotonic() + 90
        while not all(f" {n}[" in (log.read_text() if log.exists() else "") for n in names):
            assert proc.poll() is None, "vpp run ended early"
            assert time.monotonic() < deadline, "a process never logged to the file"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()  # a failed wait above would leave the pipe open
    assert proc.returncode == 0
    # Every log line went to the file, none to the terminal; what `vpp run` tells its
    # user (where the dashboard is) is not a log line.
    assert [ln for ln in err.splitlines() if not ln.startswith("vpp run: ")] == [], err
    assert "plant ready" in log.read_text()
