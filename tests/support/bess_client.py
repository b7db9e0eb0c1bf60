"""A simulated BESS on loopback and a pymodbus client talking to it by register map point
names: the helpers of the simulator's tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from pymodbus.client import AsyncModbusTcpClient

from vpp.drivers.register_map import PointType, Table, decode, encode, read_blocks
from vpp.sim.bess import BessSimulator

#: Reads points of a simulator into {name: value}.
Reader = Callable[[BessSimulator, AsyncModbusTcpClient], Awaitable[dict[str, float]]]


@asynccontextmanager
async def bess(**options: Any) -> AsyncIterator[tuple[BessSimulator, AsyncModbusTcpClient]]:
    """A started simulator on an ephemeral loopback port and a connected client."""
    async with BessSimulator(host="127.0.0.1", port=0, **options) as sim:
        client = AsyncModbusTcpClient("127.0.0.1", port=sim.port, timeout=2, retries=0)
        try:
            assert await client.connect()
            yield sim, client
        finally:
            client.close()


async def read_all(sim: BessSimulator, client: AsyncModbusTcpClient) -> dict[str, float]:
    """Every point of the map, in as few requests as the map allows."""
    out: dict[str, float] = {}
    dev = sim.device_id
    for block in read_blocks(sim.map.points):
        if block.table is Table.COIL:
            rr = await client.read_coils(block.start, count=block.count, device_id=dev)
        elif block.table is Table.DISCRETE:
            rr = await client.read_discrete_inputs(block.start, count=block.count, device_id=dev)
        elif block.table is Table.HOLDING:
            rr = await client.read_holding_registers(block.start, count=block.count, device_id=dev)
        else:
            rr = await client.read_input_registers(block.start, count=block.count, device_id=dev)
        assert not rr.isError(), rr
        for p in block.points:
            if p.type is PointType.BOOL:
                out[p.name] = float(rr.bits[p.address - block.start])
            else:
                out[p.name] = decode(p, rr.registers[p.address - block.start : p.end - block.start])
    return out


async def write_point(
    sim: BessSimulator, client: AsyncModbusTcpClient, name: str, value: float
) -> None:
    p = sim.map.point(name)
    if p.table is Table.COIL:
        rr = await client.write_coil(p.address, bool(value), device_id=sim.device_id)
    else:
        rr = await client.write_registers(p.address, encode(p, value), device_id=sim.device_id)
    assert not rr.isError(), rr


async def start_power(sim: BessSimulator, client: AsyncModbusTcpClient, kw: float) -> float:
    """Enable power control at ``kw``; the monotonic time the setpoint was acknowledged."""
    await write_point(sim, client, "enable", 1)
    await write_point(sim, client, "mode", 1)
    await write_point(sim, client, "active_power_setpoint", kw)
    return time.monotonic()


async def settle(
    sim: BessSimulator,
    client: AsyncModbusTcpClient,
    name: str,
    value: float,
    within_s: float,
    read: Reader = read_all,
) -> dict[str, float]:
    """Poll (with ``read``) until point ``name`` reads ``value``; the last reading,
    checked by the caller."""
    deadline = time.monotonic() + within_s
    while True:
        pts = await read(sim, client)
        if abs(pts[name] - value) < 0.05 or time.monotonic() > deadline:
            return pts
        await asyncio.sleep(0.02)
