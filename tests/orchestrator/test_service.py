"""What the services share (vpp/orchestrator/service.py): their loops are supervised."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Awaitable, Callable
from pathlib import Path

from tests.orchestrator.service_peers import Broker, site, topology, until
from tests.support.aio import run
from vpp.orchestrator.bus import schema as s
from vpp.orchestrator.bus.pubsub import Publisher, Subscriber
from vpp.orchestrator.bus.topology import Topology
from vpp.orchestrator.service import Service


class Echo(Service):
    """A service whose receive loop hits a bug on the first event of kind ``boom``, and
    whose own loop fails on its first run: both must be restarted and counted."""

    topics = ("event/",)
    loop_restart_s = 0.05

    def __init__(self, topo: Topology, name: str) -> None:
        super().__init__(topo, name)
        self.seen: list[str] = []
        self.ticks = 0
        self.boomed = False

    def loops(self) -> list[Callable[[], Awaitable[None]]]:
        return [self._tick]

    async def _tick(self) -> None:
        self.ticks += 1
        if self.ticks == 1:
            raise RuntimeError("a bug on the first run")
        await asyncio.Event().wait()

    async def on_message(self, batch: list[s.Message]) -> None:
        for msg in batch:
            if isinstance(msg.body, s.Event):
                if msg.body.kind == "boom" and not self.boomed:
                    self.boomed = True
                    raise RuntimeError("a bug in the handling")
                self.seen.append(msg.body.kind)


def test_a_failing_loop_is_restarted_and_counted_as_internal(ipc_dir: Path) -> None:
    cfg = site()
    topo = topology(cfg, ipc_dir)

    async def go() -> Echo:
        with Broker(topo):
            pub = Publisher(topo.events_in, bind=False)
            try:
                async with Echo(topo, "campus") as svc:
                    # The PUB drops what it sends before the subscription is through.
                    while "hello" not in svc.seen:
                        await pub.publish(s.make(s.Event(kind="hello"), "test"))
                        await asyncio.sleep(0.05)
                    await pub.publish(s.make(s.Event(kind="boom"), "test"))
                    await until(lambda: svc.boomed)
                    await pub.publish(s.make(s.Event(kind="after"), "test"))
                    await until(lambda: "after" in svc.seen)
                    await until(lambda: svc.ticks == 2)
                    return svc
            finally:
                pub.close()

    svc = run(go())
    assert svc.errors["internal"] == 2  # the receive loop once, the tick loop once


def test_an_event_the_schema_refuses_is_counted_not_raised_nor_sent(ipc_dir: Path) -> None:
    # A NaN in an event's data used to go out as null without a word (pydantic's encoder);
    # the schema refuses it now (issue 8), and the publishing loop must not die of it.
    cfg = site()
    topo = topology(cfg, ipc_dir)

    async def go() -> tuple[Echo, list[str]]:
        with Broker(topo):
            sub = Subscriber(topo.events_out, ("event/",))
            try:
                async with Echo(topo, "grid") as svc:
                    while True:  # until the subscription is through
                        await svc.publish_event("hello", {})
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(sub.recv(), 0.05)
                            break
                    await svc.publish_event("compliance", {"gain_ratio": math.nan})
                    await svc.publish_event("after", {"x": 1.0})
                    kinds: list[str] = []
                    while "after" not in kinds:
                        msg = await asyncio.wait_for(sub.recv(), 5)
                        assert isinstance(msg.body, s.Event)
                        kinds.append(msg.body.kind)
                    return svc, kinds
            finally:
                sub.close()

    svc, kinds = run(go())
    assert "compliance" not in kinds
    assert svc.errors["publish"] == 1
