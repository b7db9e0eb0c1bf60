"""The suite's leak guard (tests/conftest.py) catches each kind of leak, and only those.

The guard is run on small inner tests with pytester, in this process; what the inner
tests leak on purpose is kept in ``tests.support.leak_junk.JUNK`` and cleaned up here,
so that the outer guard sees nothing but the one task the inner run's asyncio cancels.
"""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import pytest

from tests.support.leak_junk import JUNK

pytest_plugins = ["pytester"]

INNER = '''
import asyncio, socket, subprocess, sys, threading
import pytest
from tests.support.leak_junk import JUNK

def test_clean():
    asyncio.run(asyncio.sleep(0))

def test_thread():
    stop = threading.Event()
    JUNK["stop"] = stop
    threading.Thread(target=stop.wait, name="leaky-thread").start()

def test_socket():
    JUNK["socket"] = socket.socket()

def test_task():
    async def main():
        asyncio.get_running_loop().create_task(asyncio.sleep(60), name="leaky-task")
    asyncio.run(main())

def test_process():
    JUNK["process"] = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])

@pytest.mark.allow_leaks("sockets", reason="testing the exemption")
def test_allowed():
    JUNK["allowed"] = socket.socket()
'''


@pytest.mark.allow_leaks(
    "tasks", reason="the inner run leaks a task on purpose; its asyncio.run cancels it"
)
def test_guard_reports_each_kind_of_leak(pytester: pytest.Pytester) -> None:
    root = Path(__file__).resolve().parent
    pytester.makeconftest((root / "conftest.py").read_text(encoding="utf-8"))
    pytester.makepyfile(test_inner=INNER)
    try:
        result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-q")
    finally:
        if "stop" in JUNK:
            JUNK["stop"].set()
        for key in ("socket", "allowed"):
            if key in JUNK:
                JUNK[key].close()
        proc = JUNK.get("process")
        if isinstance(proc, subprocess.Popen):
            proc.kill()
            proc.wait()
        for t in threading.enumerate():
            if t.name == "leaky-thread":
                t.join(5)
        JUNK.clear()
    result.assert_outcomes(passed=6, errors=4)
    out = result.stdout.str()
    assert "threads: <Thread(leaky-thread" in out
    assert "tasks: <Task" in out and "leaky-task" in out
    assert "sockets: " in out
    assert "processes: " in out and "time.sleep(60)" in out
    assert "test_clean ERROR" not in out and "test_allowed ERROR" not in out
