"""The communication watchdog of the simulated BESS.

Over real Modbus TCP (pymodbus client, the simulator's server on loopback), with the
watchdog timed by a fake clock the test advances (the model still steps on the real
clock), and once on the real clock; then a property test over generated sequences of
writes and time steps, on the simulator's write handlers with an injected clock.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymodbus.client import AsyncModbusTcpClient

from tests.support.bess_client import bess as started_bess
from tests.support.bess_client import settle as settle_on
from tests.support.bess_client import start_power, write_point
from tests.support.devices import run
from vpp.drivers.register_map import PointType, Table, decode, encode, load_register_map
from vpp.sim.bess import BessSimulator

TIMEOUT_S = 30.0
MAP = load_register_map()
WATCHED = (
    "active_power",
    "reactive_power",
    "active_power_setpoint",
    "watchdog",
    "watchdog_timeout",
    "watchdog_expired",
)


@dataclass
class FakeClock:
    """Monotonic seconds that move only when the test says."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, dt: float) -> None:
        self.now += dt


def bess(
    clock: FakeClock | None = None, **options: Any
) -> AbstractAsyncContextManager[tuple[BessSimulator, AsyncModbusTcpClient]]:
    """A started simulator (watchdog on ``clock`` if given) and a connected client."""
    if clock is not None:
        options["clock"] = clock
    return started_bess(**options)


async def read(sim: BessSimulator, client: AsyncModbusTcpClient, *names: str) -> dict[str, float]:
    """The points ``names`` (all of the watchdog's and the powers' if none), one request each."""
    out: dict[str, float] = {}
    for name in names or WATCHED:
        p = sim.map.point(name)
        dev = sim.device_id
        if p.type is PointType.BOOL:
            rr = await client.read_discrete_inputs(p.address, count=1, device_id=dev)
            assert not rr.isError(), rr
            out[name] = float(rr.bits[0])
            continue
        words = p.type.words
        if p.table is Table.HOLDING:
            rr = await client.read_holding_registers(p.address, count=words, device_id=dev)
        else:
            rr = await client.read_input_registers(p.address, count=words, device_id=dev)
        assert not rr.isError(), rr
        out[name] = decode(p, rr.registers)
    return out


async def settle(
    sim: BessSimulator, client: AsyncModbusTcpClient, name: str, value: float, within_s: float
) -> dict[str, float]:
    """Poll the watched points until ``name`` reads ``value`` (see bess_client.settle)."""
    return await settle_on(sim, client, name, value, within_s, read=read)


async def steps(sim: BessSimulator, n: int = 3) -> None:
    """Wait until the model has stepped ``n`` more times."""
    target = sim.steps + n
    while sim.steps < target:
        await asyncio.sleep(sim.step_s / 2)


async def hold(
    sim: BessSimulator, client: AsyncModbusTcpClient, name: str, value: float, for_s: float
) -> None:
    """Point ``name`` reads ``value`` throughout ``for_s`` seconds."""
    deadline = time.monotonic() + for_s
    while time.monotonic() < deadline:
        assert (await read(sim, client))[name] == pytest.approx(value, abs=0.05)
        await asyncio.sleep(0.05)


def test_the_map_has_the_watchdog_points() -> None:
    # The controller's real-time loop writes these addresses: they must not move.
    counter, timeout = MAP.point("watchdog"), MAP.point("watchdog_timeout")
    expired = MAP.point("watchdog_expired")
    assert (counter.table, counter.address, counter.type, counter.access) == (
        Table.HOLDING,
        12,
        PointType.U16,
        "rw",
    )
    assert (timeout.table, timeout.address, timeout.type, timeout.access) == (
        Table.HOLDING,
        13,
        PointType.U16,
        "rw",
    )
    assert (timeout.scale, timeout.unit) == (0.1, "s")
    assert (expired.table, expired.address, expired.type, expired.access) == (
        Table.DISCRETE,
        3,
        PointType.BOOL,
        "r",
    )


def test_the_watchdog_is_off_by_default() -> None:
    clock = FakeClock()

    async def body() -> None:
        async with bess(clock, ramp_kw_s=1000) as (sim, client):
            first = await read(sim, client)
            assert first["watchdog"] == 0 and first["watchdog_timeout"] == 0
            assert first["watchdog_expired"] == 0
            await start_power(sim, client, 50.0)
            await settle(sim, client, "active_power", 50.0, within_s=2)
            # No watchdog write at all: a day of silence changes nothing.
            clock.advance(86400)
            await steps(sim)
            await hold(sim, client, "active_power", 50.0, for_s=0.3)
            # The counter written but the timeout 0: still off.
            await write_point(sim, client, "watchdog", 7)
            clock.advance(86400)
            await steps(sim)
            # A timeout without a counter write is not armed either.
            async with bess(clock, ramp_kw_s=1000) as (other, other_client):
                await start_power(other, other_client, 20.0)
                await write_point(other, other_client, "watchdog_timeout", 0.5)
                clock.advance(86400)
                await settle(other, other_client, "active_power", 20.0, within_s=2)
                await hold(other, other_client, "active_power", 20.0, for_s=0.3)
                assert other.watchdog_expiries == 0
            pts = await read(sim, client)
            assert pts["active_power"] == pytest.approx(50.0, abs=0.05)
            assert pts["watchdog_expired"] == 0 and sim.watchdog_expiries == 0

    run(body, TIMEOUT_S)


def test_an_armed_refreshed_watchdog_lets_the_setpoints_act() -> None:
    clock = FakeClock()

    async def body() -> None:
        async with bess(clock, ramp_kw_s=1000) as (sim, client):
            await write_point(sim, client, "watchdog_timeout", 1.0)
            await write_point(sim, client, "watchdog", 1)
            await start_power(sim, client, 80.0)
            for counter in range(2, 12):
                # 0.6 s between changes: well inside the 1 s timeout, 6 s in all.
                clock.advance(0.6)
                await write_point(sim, client, "watchdog", counter)
                await steps(sim, 1)
            pts = await read(sim, client)
            assert pts["active_power"] == pytest.approx(80.0, abs=0.05)
            assert pts["watchdog"] == 11 and pts["watchdog_timeout"] == pytest.approx(1.0)
            assert pts["watchdog_expired"] == 0
            await write_point(sim, client, "active_power_setpoint", -40.0)
            clock.advance(0.6)
            await write_point(sim, client, "watchdog", 12)
            pts = await settle(sim, client, "active_power", -40.0, within_s=2)
            assert pts["active_power"] == pytest.approx(-40.0, abs=0.05)
            assert sim.watchdog_expiries == 0

    run(body, TIMEOUT_S)


def test_a_stalled_counter_ramps_the_output_to_zero_and_holds_it() -> None:
    clock = FakeClock()
    ramp, target = 100.0, 80.0

    async def body() -> None:
        async with bess(clock, ramp_kw_s=ramp, step_hz=50) as (sim, client):
            await write_point(sim, client, "watchdog_timeout", 2.0)
            await write_point(sim, client, "watchdog", 41)
            await start_power(sim, client, target)
            await write_point(sim, client, "reactive_power_setpoint", 30.0)
            await settle(sim, client, "active_power", target, within_s=3)
            # The controller stalls: it rewrites the same value, which refreshes nothing.
            clock.advance(1.5)
            await write_point(sim, client, "watchdog", 41)
            await steps(sim)
            assert (await read(sim, client))["watchdog_expired"] == 0
            clock.advance(0.6)  # 2.1 s since the last change
            t0 = time.monotonic()
            samples: list[tuple[float, float]] = []
            while True:
                pts = await read(sim, client)
                samples.append((time.monotonic() - t0, pts["active_power"]))
                if pts["active_power"] == 0.0 or time.monotonic() - t0 > target / ramp + 2:
                    break
                await asyncio.sleep(0.02)
            assert pts["active_power"] == 0.0 and pts["reactive_power"] == 0.0
            assert pts["watchdog_expired"] == 1
            # Down by the model's ramp: within target/ramp (+ slack for the steps), no jump.
            assert samples[-1][0] <= target / ramp + 1.0
            assert any(0 < p < target - 5 for _, p in samples)
            assert sim.watchdog_expiries == 1
            assert (sim.command.p_kw, sim.command.q_kvar) == (0.0, 0.0)

            # Expired: a setpoint is accepted on the wire (it reads back) but not followed.
            await write_point(sim, client, "active_power_setpoint", 60.0)
            assert (await read(sim, client))["active_power_setpoint"] == pytest.approx(60)
            await hold(sim, client, "active_power", 0.0, for_s=0.4)
            assert sim.command.p_kw == 0.0

            # The counter changes: the expiry clears, the setpoint of before stays out...
            clock.advance(0.1)
            await write_point(sim, client, "watchdog", 42)
            assert (await read(sim, client))["watchdog_expired"] == 0
            await hold(sim, client, "active_power", 0.0, for_s=0.4)
            # ...and the next one acts.
            await write_point(sim, client, "active_power_setpoint", 30.0)
            pts = await settle(sim, client, "active_power", 30.0, within_s=2)
            assert pts["active_power"] == pytest.approx(30.0, abs=0.05)
            assert pts["watchdog_expired"] == 0 and sim.watchdog_expiries == 1

            # It is armed again: another stall expires it again.
            clock.advance(2.5)
            await settle(sim, client, "active_power", 0.0, within_s=3)
            assert sim.watchdog_expiries == 2

    run(body, TIMEOUT_S)


def test_a_zero_timeout_disarms_and_clears_the_expiry() -> None:
    clock = FakeClock()

    async def body() -> None:
        async with bess(clock, ramp_kw_s=1000) as (sim, client):
            await write_point(sim, client, "watchdog_timeout", 0.5)
            await write_point(sim, client, "watchdog", 1)
            await start_power(sim, client, 50.0)
            await settle(sim, client, "active_power", 50.0, within_s=2)
            clock.advance(0.6)
            await settle(sim, client, "active_power", 0.0, within_s=2)
            assert (await read(sim, client))["watchdog_expired"] == 1
            await write_point(sim, client, "watchdog_timeout", 0)
            pts = await read(sim, client)
            assert pts["watchdog_expired"] == 0 and pts["watchdog_timeout"] == 0
            # The counter never changed, yet the next setpoint acts and stays.
            await write_point(sim, client, "active_power_setpoint", 25.0)
            await settle(sim, client, "active_power", 25.0, within_s=2)
            clock.advance(3600)
            await steps(sim)
            await hold(sim, client, "active_power", 25.0, for_s=0.3)
            assert sim.watchdog_expiries == 1

    run(body, TIMEOUT_S)


def test_the_watchdog_on_the_real_clock() -> None:
    async def body() -> None:
        async with bess(ramp_kw_s=1000) as (sim, client):
            await write_point(sim, client, "watchdog_timeout", 1.0)
            await start_power(sim, client, 40.0)
            t0 = time.monotonic()
            counter, sent = 0, t0
            while time.monotonic() - t0 < 1.5:
                counter += 1
                sent = time.monotonic()  # the refresh is no earlier than this
                await write_point(sim, client, "watchdog", counter)
                await asyncio.sleep(0.1)
            pts = await read(sim, client)
            assert pts["active_power"] == pytest.approx(40.0, abs=0.05)
            assert pts["watchdog_expired"] == 0
            pts = await settle(sim, client, "watchdog_expired", 1.0, within_s=4)
            assert pts["watchdog_expired"] == 1
            assert time.monotonic() - sent > 1.0
            await settle(sim, client, "active_power", 0.0, within_s=2)

    run(body, TIMEOUT_S)


# --- property: an overdue armed watchdog always has the setpoints at 0 -------------------

_P = MAP.point("active_power_setpoint")
_Q = MAP.point("reactive_power_setpoint")
_COUNTER = MAP.point("watchdog")
_TIMEOUT = MAP.point("watchdog_timeout")

_ops = st.lists(
    st.one_of(
        st.tuples(st.just("counter_same"), st.just(0)),
        st.tuples(st.just("counter_new"), st.just(0)),
        st.tuples(st.just("p"), st.integers(-5000, 5000)),  # raw tenths of kW
        st.tuples(st.just("q"), st.integers(-5000, 5000)),
        # Raw tenths of s: 0 (off) often, so that arming a silent counter comes up.
        st.tuples(st.just("timeout"), st.sampled_from([0, 0, 1, 2, 5, 10, 20])),
        st.tuples(st.just("advance"), st.integers(0, 120)),  # hundredths of s
    ),
    max_size=40,
)


def _write(sim: BessSimulator, point: Any, value: float) -> None:
    words = encode(point, value)
    assert sim._write_registers(point.address, point.address, words, list(words)) is None


@settings(max_examples=500, deadline=None)
@given(ops=_ops)
def test_an_overdue_armed_watchdog_always_holds_the_setpoints_at_zero(
    ops: list[tuple[str, int]],
) -> None:
    clock = FakeClock()
    sim = BessSimulator(port=0, register_map=MAP, clock=clock, ramp_kw_s=1000)
    sim.command.enable, sim.command.mode = True, 1
    # The test's own record of the watchdog: what the device must act on.
    timeout, counter, refreshed = 0.0, -1, 0.0
    written = False
    # Whether an overdue armed watchdog was seen since the expiry last cleared.
    saw_overdue = False
    held = False  # expired since the last setpoint that acted: p must stay 0

    def overdue() -> bool:
        return timeout > 0 and written and clock() - refreshed > timeout

    for op, arg in ops:
        saw_overdue |= overdue()
        if op in ("counter_same", "counter_new"):
            value = counter if op == "counter_same" and written else (counter + 1) % 0x10000
            _write(sim, _COUNTER, value)
            if value != counter or not written:
                counter, refreshed, written, saw_overdue = value, clock(), True, False
        elif op in ("p", "q"):
            _write(sim, _P if op == "p" else _Q, arg / 10)
        elif op == "timeout":
            _write(sim, _TIMEOUT, arg / 10)
            timeout = decode(_TIMEOUT, [arg])
            if timeout == 0:
                saw_overdue = False
        else:
            clock.advance(arg / 100)
            sim.step(arg / 100)
        saw_overdue |= overdue()

        if overdue():
            assert sim.watchdog_expired
            assert sim.command.p_kw == 0.0 and sim.command.q_kvar == 0.0
        if sim.watchdog_expired:
            assert saw_overdue, "expired without an overdue armed watchdog"
            held = True
        elif op == "p":
            # Not expired after the write: the setpoint acts.
            assert sim.command.p_kw == pytest.approx(arg / 10)
            held = False
        if held:
            assert sim.command.p_kw == 0.0
