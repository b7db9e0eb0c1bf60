"""The periodic ticker: absolute deadlines, GIL released while waiting, overruns, errors."""

from __future__ import annotations

import itertools
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType

import pytest

from vpp import core
from vpp.core import Ticker
from vpp.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_ticks_fall_on_start_plus_k_period_without_drift() -> None:
    period = 0.02
    ticker = Ticker(period_s=period)
    offsets: list[float] = []
    last_k = 0
    for i in range(30):
        # A loop body of varying length: a ticker that sleeps one period after the body
        # (or accumulates sleeps) drifts by ~2.5 ms a tick, ~75 ms over the run.
        time.sleep((i % 6) * 0.001)
        deadline = ticker.next_deadline
        k = round((deadline - ticker.start) / period)
        assert deadline == pytest.approx(ticker.start + k * period, abs=1e-6)
        assert k > last_k
        last_k = k
        lateness = ticker.wait()
        now = time.monotonic()
        assert now >= deadline, "tick returned before its deadline"
        assert lateness <= now - deadline + 1e-6
        offsets.append(now - deadline)
    # On a quiet machine every offset is well under 1 ms; the bounds leave room for a
    # noisy shared one but still catch drift (the 30th tick would be ~75 ms late).
    assert statistics.median(offsets) < 0.005, offsets
    assert max(offsets) < 0.05, offsets
    assert ticker.overruns <= 2
    assert last_k <= 30 + 2 * ticker.skipped + 2
    now = time.monotonic()
    assert now - (ticker.start + last_k * period) < 0.05


def test_gil_is_released_while_waiting() -> None:
    ticker = Ticker(period_s=0.3)
    stamps: list[float] = []
    stop = threading.Event()

    def other() -> None:
        while not stop.is_set():
            # Reading a property must not block on the waiting thread either.
            _ = ticker.count
            stamps.append(time.monotonic())

    th = threading.Thread(target=other)
    th.start()
    try:
        t0 = time.monotonic()
        ticker.wait()
        t1 = time.monotonic()
    finally:
        stop.set()
        th.join()
    inside = [t0, *(s for s in stamps if t0 <= s <= t1), t1]
    gaps = [b - a for a, b in itertools.pairwise(inside)]
    # Holding the GIL would leave one gap of ~0.3 s; released, the thread runs throughout.
    assert t1 - t0 > 0.2
    assert max(gaps) < 0.15, max(gaps)


def test_overruns_are_counted_and_missed_deadlines_skipped() -> None:
    period = 0.02
    ticker = Ticker(period_s=period)
    ticker.wait()
    time.sleep(2.5 * period)  # a loop body longer than two periods
    lateness = ticker.wait()
    # Noise on a loaded machine can only add overruns, never remove the forced ones.
    assert ticker.overruns >= 1
    assert ticker.skipped >= 1
    assert lateness >= period
    # No burst: the next tick waits for the next grid point still ahead.
    deadline = ticker.next_deadline
    assert deadline > time.monotonic()
    k = (deadline - ticker.start) / period
    assert k == pytest.approx(round(k), abs=1e-6)
    ticker.wait()
    for _ in range(3):
        time.sleep(1.5 * period)
        ticker.wait()
    assert ticker.overruns >= 4
    assert ticker.count == 6
    assert ticker.stats()["overruns"] == ticker.overruns


@pytest.mark.parametrize("period", [0.0, -0.1, math.nan, math.inf, 1e-6, 1e5])
def test_invalid_period_raises_config_error(period: float) -> None:
    with pytest.raises(ConfigError) as exc:
        Ticker(period_s=period)
    assert exc.value.field == "period_s"
    assert isinstance(exc.value, ValueError)


@pytest.mark.parametrize("spin_us", [-1, 10_000, 2_000_000])
def test_invalid_spin_raises_config_error(spin_us: int) -> None:
    with pytest.raises(ConfigError) as exc:
        Ticker(period_s=0.005, spin_us=spin_us)
    assert exc.value.field == "spin_us"


def test_invalid_priority_raises_config_error() -> None:
    with pytest.raises(ConfigError):
        Ticker(realtime=True, priority=0)


def test_iteration_stats_and_reset() -> None:
    ticker = Ticker(period_s=0.005)
    seen = list(itertools.islice(ticker, 5))
    assert len(seen) == 5 and all(x >= 0 for x in seen)
    s = ticker.stats()
    assert s["count"] == ticker.count == 5
    assert 0 <= s["p50"] <= s["p99"] <= s["p999"] <= s["max"] == ticker.max_lateness
    assert ticker.max_lateness == pytest.approx(max(seen), abs=1e-9)
    assert ticker.realtime_status["requested"] is False
    ticker.reset_stats()
    assert ticker.count == 0 and ticker.stats()["max"] == 0
    assert "Ticker" in core.__all__


def test_concurrent_wait_is_refused() -> None:
    ticker = Ticker(period_s=0.2)
    th = threading.Thread(target=ticker.wait)
    th.start()
    time.sleep(0.05)
    try:
        with pytest.raises(RuntimeError, match="already running"):
            ticker.wait()
    finally:
        th.join()
    assert ticker.count == 1


def test_signal_interrupts_wait_without_moving_the_schedule() -> None:
    class AlarmError(Exception):
        pass

    def on_alarm(signum: int, frame: FrameType | None) -> None:
        raise AlarmError

    ticker = Ticker(period_s=1.0)
    deadline = ticker.next_deadline
    old = signal.signal(signal.SIGALRM, on_alarm)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        t0 = time.monotonic()
        with pytest.raises(AlarmError):
            ticker.wait()
        assert time.monotonic() - t0 < 0.5
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert ticker.next_deadline == deadline
    assert ticker.count == 0


def test_realtime_request_reports_what_was_granted() -> None:
    # In a child process: SCHED_FIFO and mlockall must not leak into the test runner.
    code = (
        "import json; from vpp.core import Ticker\n"
        "t = Ticker(period_s=0.01, realtime=True, priority=1); t.wait()\n"
        "print(json.dumps(t.realtime_status))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-c", code]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=30, check=True)
    st = json.loads(out.stdout)
    assert st["requested"] is True and st["priority"] == 1
    for key in ("sched_fifo", "mlockall"):
        assert isinstance(st[key], bool)
        assert (st[f"{key}_error"] is None) == st[key]


def test_warmup_defaults_to_a_quarter_period_at_most_and_is_validated() -> None:
    assert Ticker(period_s=0.1).warmup_us == 10_000
    assert Ticker(period_s=0.02).warmup_us == 5_000
    assert Ticker(period_s=0.1, warmup_us=0, spin_us=100).warmup_us == 100
    for bad in (-1, 60_000):
        with pytest.raises(ConfigError) as err:
            Ticker(period_s=0.1, warmup_us=bad)
        assert err.value.field == "warmup_us"
    # With a warm-up the grid is unchanged and no tick returns before its deadline.
    t = Ticker(period_s=0.01, warmup_us=2_000)
    for k in range(1, 6):
        t.wait()
        assert time.monotonic() >= t.start + k * 0.01
