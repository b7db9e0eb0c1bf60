"""Supervised processes: exit codes, the backoff sequence and its reset, kill."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from multiprocessing import resource_tracker

import pytest

from vpp.orchestrator.processes import Managed


@pytest.fixture(autouse=True)
def _stop_resource_tracker() -> Iterator[None]:
    # Spawning starts multiprocessing's resource tracker: end it with the test.
    yield
    resource_tracker._resource_tracker._stop()  # type: ignore[attr-defined]


def wait_dead(m: Managed) -> float:
    deadline = time.monotonic() + 30
    while True:
        delay = m.reap()
        if delay is not None:
            return delay
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_quick_deaths_double_the_backoff_up_to_the_cap() -> None:
    m = Managed("x", "x", sys.exit, lambda: (3,), backoff_s=0.1, max_backoff_s=0.3)
    delays = []
    for _ in range(4):
        m.start()
        delays.append(wait_dead(m))
        assert m.last_exit == 3 and not m.alive and m.pid is None
        assert m.restart_at is not None
    assert delays == pytest.approx([0.1, 0.2, 0.3, 0.3])
    assert m.deaths == 4
    # A run that lasted stable_s brings the backoff back to the first step.
    m.stable_s = 0.0
    m.start()
    assert wait_dead(m) == pytest.approx(0.1)


def test_kill_ends_a_process_that_would_run_on() -> None:
    m = Managed("sleeper", "x", time.sleep, lambda: (60.0,))
    m.start()
    assert m.alive and m.pid is not None
    assert m.reap() is None  # alive: nothing to reap
    m.kill()
    assert not m.alive and m.last_exit == -9 and m.proc is None
