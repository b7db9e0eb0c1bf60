"""The device target's meters: how the harness reads a device's response back.

A :class:`Meter` polls the device every ``poll_s`` (absolute deadlines) until cancelled
and keeps ``readings``: (UNIX time of the reply, power kW in vpp's sign, positive =
discharge, SOC %), NaN for what failed or is not read. A failed poll is a NaN reading,
counted in ``errors``: the record shows the gap rather than a stale value.

- :class:`RegisterMeter` (``protocol: modbus``): points of a register map, decoded with
  the map's scale and sign.
- :class:`SunSpecMeter` (``protocol: sunspec``): the device's SunSpec models, through
  the field's own driver (:class:`~vpp.drivers.sunspec.SunSpecProtocol`): discovery of
  the ``SunS`` marker and the model chain, pysunspec2's layouts and scale factors.
  SunSpec's 701 ``W`` is positive for generation, which for a battery is discharge:
  vpp's sign, so the power passes unchanged (as in the driver).
"""

from __future__ import annotations

import abc
import asyncio
import math
import time
from pathlib import Path

import numpy as np
from pymodbus.client import AsyncModbusTcpClient

from vpp.drivers.register_map import Point, Table, decode
from vpp.drivers.sunspec import SunSpecConfig, SunSpecProtocol
from vpp.hil.plan import MeterSpec, meter_map

__all__ = ["Meter", "RegisterMeter", "SunSpecMeter", "make_meter"]


class Meter(abc.ABC):
    """Polls a device's power (and SOC); see the module docstring."""

    def __init__(self, spec: MeterSpec) -> None:
        """A meter of ``spec`` (nothing is opened before :meth:`run`)."""
        self.spec = spec
        #: (UNIX time of the reply, power kW, SOC %), NaN for what failed or is absent.
        self.readings: list[tuple[float, float, float]] = []
        self.errors = 0
        self.last_error = ""
        self._stopping = False

    @abc.abstractmethod
    async def _poll(self) -> tuple[float, float]:
        """One reading: (power kW, SOC % or NaN); (re)connects as needed, raises on
        any failure."""

    @abc.abstractmethod
    async def _reset(self) -> None:
        """Drop the connection after a failure (the next poll reconnects)."""

    def stop(self) -> None:
        """Make :meth:`run` return after the poll in progress. Besides cancelling: on
        Python 3.11 ``asyncio.wait_for`` (inside pymodbus's connect) can swallow a
        cancellation that comes as its inner call completes, and the poller must end
        all the same."""
        self._stopping = True

    async def run(self) -> None:
        """Poll until cancelled or stopped, reconnecting after a failure."""
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        try:
            while not self._stopping:
                power = soc = math.nan
                try:
                    power, soc = await self._poll()
                except Exception as exc:  # any failure is a gap in the record, counted
                    self.errors += 1
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    await self._reset()
                self.readings.append((time.time(), power, soc))
                # Absolute deadlines: a slow reply does not stretch the interval after it.
                next_at = max(next_at + self.spec.poll_s, loop.time())
                await asyncio.sleep(next_at - loop.time())
        finally:
            await self._reset()

    def window(self, t_from: float, t_to: float) -> tuple[np.ndarray, np.ndarray]:
        """The power and SOC readings with reply times in [t_from, t_to) (UNIX s)."""
        rows = [r for r in self.readings if t_from <= r[0] < t_to]
        return (np.array([r[1] for r in rows], dtype=np.float64),
                np.array([r[2] for r in rows], dtype=np.float64))  # fmt: skip


class RegisterMeter(Meter):
    """Points of a register map over Modbus TCP (holding or input registers)."""

    def __init__(self, spec: MeterSpec, power: Point, soc: Point | None) -> None:
        """``power`` and ``soc`` (None: not read): points of the meter's map."""
        super().__init__(spec)
        self.power, self.soc = power, soc
        self._client = AsyncModbusTcpClient(spec.host, port=spec.port,
                                            timeout=spec.timeout_s, retries=0)  # fmt: skip

    async def _read(self, p: Point) -> float:
        dev, client = self.spec.device_id, self._client
        if p.table is Table.HOLDING:
            reply = await client.read_holding_registers(p.address, count=p.type.words,
                                                        device_id=dev)  # fmt: skip
        elif p.table is Table.INPUT:
            reply = await client.read_input_registers(p.address, count=p.type.words,
                                                      device_id=dev)  # fmt: skip
        else:
            raise ValueError(f"point {p.name!r} is a bit, not a measurement")
        if reply.isError():
            raise ConnectionError(f"Modbus exception reading {p.name!r}: {reply}")
        return decode(p, list(reply.registers))

    async def _poll(self) -> tuple[float, float]:
        if not self._client.connected:
            await self._client.connect()
        power = await self._read(self.power)
        soc = await self._read(self.soc) if self.soc is not None else math.nan
        return power, soc

    async def _reset(self) -> None:
        self._client.close()


class _Discovered(SunSpecProtocol):
    """The SunSpec driver reading only the models the meter needs: discovery walks the
    whole chain, then every poll reads just those blocks (fewer registers per poll)."""

    def __init__(self, config: SunSpecConfig, keep: frozenset[int]) -> None:
        super().__init__(config, name="hil-meter")
        self.keep = keep

    async def _discover(self) -> None:
        await super()._discover()
        self.blocks = {m: b for m, b in self.blocks.items() if m in self.keep}


class SunSpecMeter(Meter):
    """The device's SunSpec models over Modbus TCP (see the module docstring)."""

    def __init__(self, spec: MeterSpec) -> None:
        """A meter reading ``spec.power_model`` and ``spec.soc_model``; a device without
        one of them fails every poll, naming the missing model."""
        super().__init__(spec)
        models = (spec.power_model,) + ((spec.soc_model,) if spec.soc_model else ())
        # No retries: a failed poll is a gap in the record, not a late reading.
        cfg = SunSpecConfig(host=spec.host, port=spec.port, device_id=spec.device_id,
                            timeout=spec.timeout_s, retries=0, required_models=models)  # fmt: skip
        self._driver = _Discovered(cfg, frozenset(models))

    async def _poll(self) -> tuple[float, float]:
        status = await self._driver.read_status()
        # status_of's keys: 701 W in kW ("power_kw"); SoC of 713, else of 802 (only the
        # configured one is loaded, so it is that one's).
        power = status.get("power_kw")
        if not isinstance(power, float):
            raise ValueError(f"model {self.spec.power_model}: W not implemented")
        soc = math.nan
        if self.spec.soc_model is not None:
            got = status.get("soc_pct")
            if not isinstance(got, float):
                raise ValueError(f"model {self.spec.soc_model}: SoC not implemented")
            soc = got
        return power, soc

    async def _reset(self) -> None:
        await self._driver.disconnect()


def make_meter(spec: MeterSpec, base: Path) -> Meter:
    """The meter of ``spec`` (a register map relative to ``base``, the plan's directory)."""
    if spec.protocol == "sunspec":
        return SunSpecMeter(spec)
    regmap = meter_map(spec, base)
    soc = regmap.point(spec.soc_point) if spec.soc_point else None
    return RegisterMeter(spec, regmap.point(spec.power_point), soc)
