"""The events broker: XSUB/XPUB proxy between real PUB and SUB sockets over ipc."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
import zmq

from tests.support.devices import run
from vpp.orchestrator.bus import schema as s
from vpp.orchestrator.bus.broker import Broker, run_broker
from vpp.orchestrator.bus.pubsub import Publisher, Subscriber


def test_run_broker_forwards_by_topic_until_stopped(ipc_dir: Path) -> None:
    async def main() -> None:
        ein, eout = f"ipc://{ipc_dir}/in", f"ipc://{ipc_dir}/out"
        stop = asyncio.Event()
        task = asyncio.create_task(run_broker(ein, eout, stop))
        await asyncio.sleep(0.05)
        pub = Publisher(ein, bind=False)
        sub = Subscriber(eout, ("event/",))
        try:
            got: list[s.Message] = []
            for i in range(200):
                # The frequency message is filtered out by topic upstream of the subscriber.
                await pub.publish(s.make(s.Frequency(hz=50.0, band="normal", t=float(i)), "a"))
                await pub.publish(s.make(s.Event(kind="band", text=str(i)), "a"))
                with contextlib.suppress(asyncio.TimeoutError):
                    got.append(await asyncio.wait_for(sub.recv(), 0.02))
                if len(got) >= 3:
                    break
            assert len(got) >= 3 and all(isinstance(m, s.EventMsg) for m in got)
            texts = [int(m.body.text) for m in got if isinstance(m, s.EventMsg)]
            assert texts == sorted(texts)
        finally:
            pub.close()
            sub.close()
        stop.set()
        await asyncio.wait_for(task, 5)

    run(main)


def test_broker_bind_error_is_raised(ipc_dir: Path) -> None:
    async def main() -> None:
        ein, eout = f"ipc://{ipc_dir}/in", f"ipc://{ipc_dir}/out"
        async with Broker(ein, eout):
            # tcp to a host that is not an address of this machine cannot be bound.
            with pytest.raises(zmq.ZMQError):
                Broker("tcp://192.0.2.1:1", f"ipc://{ipc_dir}/out2").start()

    run(main)
