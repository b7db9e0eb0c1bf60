"""vpp.aio.cancel_and_wait: tasks that swallow a cancellation, and a caller cancelled
while it waits, leave nothing running."""

from __future__ import annotations

import asyncio

import pytest

from vpp.aio import cancel_and_wait, supervised


async def stubborn(swallow: int, ended: list[str]) -> None:
    """Ignores its first ``swallow`` cancellations (as wait_for on Python 3.11 can)."""
    while True:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            if swallow == 0:
                ended.append("stubborn")
                raise
            swallow -= 1


async def failing() -> None:
    raise ValueError("boom")


def test_cancels_again_until_the_task_ends_and_reports_failures() -> None:
    async def main() -> None:
        ended: list[str] = []
        t1 = asyncio.create_task(stubborn(2, ended))
        t2 = asyncio.create_task(failing())
        await asyncio.sleep(0)
        failed = await cancel_and_wait([t1, None, t2])
        assert t1.done() and ended == ["stubborn"]
        assert failed == [t2]

    asyncio.run(main())


def test_a_caller_cancelled_while_waiting_still_ends_the_tasks() -> None:
    async def main() -> None:
        ended: list[str] = []
        inner = asyncio.create_task(stubborn(3, ended))
        await asyncio.sleep(0)
        cleaner = asyncio.create_task(cancel_and_wait([inner]))
        try:
            await asyncio.sleep(0.01)
            cleaner.cancel()
            with pytest.raises(asyncio.CancelledError):
                await cleaner
            assert inner.done() and ended == ["stubborn"]
        finally:
            while not inner.done():  # a failed check must not hang the loop's shutdown
                inner.cancel()
                await asyncio.sleep(0)

    asyncio.run(main())


def test_supervised_restarts_a_failing_loop_and_counts_each_failure() -> None:
    runs: list[int] = []
    failures: list[str] = []

    async def loop() -> None:
        runs.append(len(runs))
        if len(runs) < 3:
            raise RuntimeError(f"bug {len(runs)}")

    async def main() -> None:
        sup = supervised(
            loop, "test", on_failure=lambda e: failures.append(str(e)), restart_after_s=0.01
        )
        await asyncio.wait_for(sup, 5.0)

    asyncio.run(main())
    assert runs == [0, 1, 2]
    assert failures == ["bug 1", "bug 2"]


def test_supervised_lets_cancellation_through() -> None:
    async def forever() -> None:
        await asyncio.sleep(10)

    async def main() -> bool:
        task = asyncio.create_task(supervised(forever, "test"))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return task.cancelled()

    assert asyncio.run(main())
