"""SunSpec driver: :class:`SunSpecProtocol` (``sunspec``), a BESS over Modbus TCP.

On connect the driver finds the ``SunS`` marker at the first of ``base_addresses``
(40000, 0, 50000) that has it, walks the model chain (``ID``, ``L``) to the end model
0xFFFF, and reads every model it uses once; point layouts, types, scale factors and
"not implemented" values come from pysunspec2's model definitions
(:mod:`vpp.drivers.sunspec_models`). A device without the marker raises
:class:`SunSpecNotFoundError`; one without a model of ``required_models`` raises
:class:`SunSpecModelMissingError` naming it.

Sign: SunSpec's 701 ``W`` is positive for generation and 704 ``WSet`` "may be negative
for charging", the same as vpp (positive = discharge), so power passes unchanged.
Reactive power keeps SunSpec's sign (positive = injected). The keys of
:meth:`read_status` and the points the commands write are listed in docs/protocols.md.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any, ClassVar

from pydantic import Field
from pymodbus.client import AsyncModbusTcpClient

from vpp.drivers.base import STANDARD_COMMANDS, BaseProtocol, ProtocolConfig, Status
from vpp.drivers.errors import (
    DeviceOfflineError,
    ProtocolError,
    number_param,
)
from vpp.drivers.errors import ValidationError as DriverValidationError
from vpp.drivers.modbus import request
from vpp.drivers.sunspec_models import (
    END_MODEL_ID,
    MODEL_NAMES,
    SUNS_MARKER,
    ModelBlock,
    SunSpecLayoutError,
)
from vpp.drivers.sunspec_status import MODES, status_of

__all__ = [
    "COMMANDS",
    "SunSpecConfig",
    "SunSpecModelMissingError",
    "SunSpecNotFoundError",
    "SunSpecProtocol",
    "SunSpecSetpoint",
]

COMMANDS = STANDARD_COMMANDS
# Registers per read request: the most Modbus allows.
_MAX_READ = 125
# A chain longer than this is a device bug (or not SunSpec): stop walking.
_MAX_MODELS = 100


#: SunSpec point types the core's real-time loop can write, as the register map's types.
_LOOP_TYPES = {"int32": "i32", "int16": "i16"}


@dataclass(frozen=True)
class SunSpecSetpoint:
    """Where a discovered device takes its active power setpoint, as the core's
    real-time loop writes it (docs/realtime-loop.md): 704 ``WSet``'s address, type and
    scale-factor exponent; ``prefix``, the registers of ``WSetEna`` = ENABLED and
    ``WSetMod`` = WATTS right before it, written in the same request as the driver's
    ``set_power`` writes them; ``verify``, the register runs that identify this layout
    (the ``SunS`` marker, 704's ID and L, the value of ``WSet_SF``), which the loop
    reads on each connect before it writes anything; where the device implements 704's
    reversion, ``reversion`` (the writes of ``WSetRvrt`` = 0 W and ``WSetEnaRvrt`` =
    ENABLED) and ``reversion_time``, the address of ``WSetRvrtTms`` (uint32 s)."""

    address: int
    type: str
    sf: int
    prefix: tuple[int, ...]
    verify: tuple[tuple[int, tuple[int, ...]], ...]
    reversion: tuple[tuple[int, tuple[int, ...]], ...] = ()
    reversion_time: int | None = None


def _reversion(
    block: ModelBlock,
) -> tuple[tuple[tuple[int, tuple[int, ...]], ...], int | None]:
    """704's reversion writes (``WSetRvrt`` = 0 W, ``WSetEnaRvrt`` = ENABLED) and the
    address of ``WSetRvrtTms``, if the device implements all three (read back as
    numbers, writable); else nothing."""
    names = ("WSetRvrt", "WSetEnaRvrt", "WSetRvrtTms")
    try:
        if not all(block.writable(n) and isinstance(block.raw(n), int) for n in names):
            return (), None
        if block.point_type("WSetRvrtTms") != "uint32":
            return (), None
        zero = block.encode("WSetRvrt", 0.0)
        ena = block.encode("WSetEnaRvrt", block.symbol_value("WSetEnaRvrt", "ENABLED"))
        tms = block.address_of("WSetRvrtTms")
    except SunSpecLayoutError:
        return (), None
    return ((zero[0], tuple(zero[1])), (ena[0], tuple(ena[1]))), tms


class SunSpecNotFoundError(ProtocolError):
    """No ``SunS`` marker at any of the base addresses tried."""


class SunSpecModelMissingError(ProtocolError):
    """The device lacks a required model (``model_id``)."""

    def __init__(self, message: str, *, resource: str, model_id: int) -> None:
        super().__init__(message, resource=resource, point=f"model {model_id}")
        self.model_id = model_id


Address = Annotated[int, Field(ge=0, le=0xFFFD)]
ModelId = Annotated[int, Field(ge=1, le=0xFFFE)]


class SunSpecConfig(ProtocolConfig):
    """Settings of a SunSpec device on Modbus TCP."""

    host: str = Field(min_length=1, description="device address")
    port: int = Field(default=502, ge=1, le=65535)
    device_id: int = Field(default=1, ge=1, le=247, description="Modbus unit id")
    base_addresses: tuple[Address, ...] = Field(
        default=(40000, 0, 50000), min_length=1, description="where to look for 'SunS'"
    )
    required_models: tuple[ModelId, ...] = Field(
        default=(1, 701, 702, 704, 713, 802), description="models the device must have"
    )


class SunSpecProtocol(BaseProtocol):
    """A SunSpec BESS (see the module docstring)."""

    Config: ClassVar[type[ProtocolConfig]] = SunSpecConfig
    commands: ClassVar[frozenset[str]] = COMMANDS

    def __init__(self, config: ProtocolConfig, *, name: str = "") -> None:
        """Keep the config; discovery happens on connect."""
        if not isinstance(config, SunSpecConfig):
            raise TypeError("SunSpecProtocol needs a SunSpecConfig")
        super().__init__(config, name=name)
        self.cfg = config
        self._client: AsyncModbusTcpClient | None = None
        #: Base address where 'SunS' was found (None before discovery).
        self.base_address: int | None = None
        #: Every model of the chain as (id, address of ID, L), in device order.
        self.chain: list[tuple[int, int, int]] = []
        #: The blocks of the models vpp uses, by id (first instance of each).
        self.blocks: dict[int, ModelBlock] = {}
        #: Symbol names of the enum points of the last status (state, mode, ...).
        self.names: dict[str, str] = {}
        #: The setpoint layout of the last discovery (None: none yet, or the device's
        #: 704 does not allow the real-time loop's write; see :class:`SunSpecSetpoint`).
        self.setpoint_layout: SunSpecSetpoint | None = None
        self._rediscover = False

    # --- transport ---------------------------------------------------------------------------

    async def _connect(self) -> None:
        client = AsyncModbusTcpClient(
            self.cfg.host,
            port=self.cfg.port,
            timeout=self.cfg.timeout,
            retries=0,
            reconnect_delay=0,  # the base class owns retries and backoff
        )
        self._client = client
        if not await client.connect():
            raise DeviceOfflineError(
                f"cannot connect to {self.cfg.host}:{self.cfg.port}", resource=self.name
            )
        await self._discover()

    async def _disconnect(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()

    def _live(self) -> AsyncModbusTcpClient:
        if self._client is None:
            raise DeviceOfflineError("not connected", resource=self.name)
        return self._client


    async def _read_words(self, address: int, count: int, what: str) -> list[int]:
        words: list[int] = []
        client = self._live()
        while len(words) < count:
            start, n = address + len(words), min(_MAX_READ, count - len(words))
            label = f"read {what} at {start}+{n}"
            read = partial(
                client.read_holding_registers, start, count=n, device_id=self.cfg.device_id
            )
            reply = await request(read, label, resource=self.name, timeout=self.cfg.timeout)
            got = list(reply.registers)
            if len(got) != n:
                raise ProtocolError(
                    f"{label}: {len(got)} registers in the reply", resource=self.name
                )
            words.extend(got)
        return words

    # --- discovery --------------------------------------------------------------------------

    async def _find_base(self) -> int:
        tried: list[str] = []
        for base in self.cfg.base_addresses:
            try:
                words = await self._read_words(base, 2, "SunS marker")
            except ProtocolError as exc:
                tried.append(f"{base}: exception {exc.code}")
                continue
            if tuple(words) == SUNS_MARKER:
                return base
            tried.append(f"{base}: {words[0]:04x} {words[1]:04x}")
        raise SunSpecNotFoundError(
            f"not a SunSpec device: no 'SunS' marker ({'; '.join(tried)})", resource=self.name
        )

    def rediscover(self) -> None:
        """Walk the model chain again before the next status read (the real-time loop
        found registers that no longer match the layout discovered)."""
        self._rediscover = True

    def _loop_layout(self) -> SunSpecSetpoint | None:
        block = self.blocks.get(704)
        if block is None or not block.loaded or self.base_address is None:
            return None
        try:
            kind = _LOOP_TYPES.get(block.point_type("WSet"))
            sf = block.scale_factor("WSet")
            sf_name = block.sf_point("WSet")
            ena = block.encode("WSetEna", block.symbol_value("WSetEna", "ENABLED"))
            mod = block.encode("WSetMod", block.symbol_value("WSetMod", "WATTS"))
            wset = block.address_of("WSet")
            writable = all(block.writable(p) for p in ("WSet", "WSetEna", "WSetMod"))
        except SunSpecLayoutError:
            return None
        adjacent = ena[0] + len(ena[1]) == mod[0] and mod[0] + len(mod[1]) == wset
        if kind is None or sf is None or not (adjacent and writable):
            return None
        verify: list[tuple[int, tuple[int, ...]]] = [
            (self.base_address, SUNS_MARKER),
            (block.address, (704, block.length)),
        ]
        if sf_name is not None:
            verify.append((block.address_of(sf_name), (sf & 0xFFFF,)))
        reversion, reversion_time = _reversion(block)
        return SunSpecSetpoint(wset, kind, sf, (*ena[1], *mod[1]), tuple(verify),
                               reversion, reversion_time)  # fmt: skip

    async def _discover(self) -> None:
        # The layout the controller gave the real-time loop stays while the chain is
        # walked (the loop checks it on each of its connects): it changes at the end, to
        # the new one, or to None if the walk fails.
        self._rediscover = False
        try:
            await self._walk()
        except BaseException:
            self.setpoint_layout = None
            raise
        self.setpoint_layout = self._loop_layout()

    async def _walk(self) -> None:
        self.blocks, self.chain = {}, []
        base = await self._find_base()
        address = base + 2
        for _ in range(_MAX_MODELS):
            # ID and L apart: some devices give no L after the end model.
            (model_id,) = await self._read_words(address, 1, "model id")
            if model_id == END_MODEL_ID:
                break
            (length,) = await self._read_words(address + 1, 1, f"model {model_id} length")
            self.chain.append((model_id, address, length))
            if model_id in MODEL_NAMES and model_id not in self.blocks:
                self.blocks[model_id] = ModelBlock(model_id, address, length)
            address += 2 + length
            if address > 0xFFFF:
                raise ProtocolError(
                    f"model chain runs past register 65535 (model {model_id})", resource=self.name
                )
        else:
            raise ProtocolError(
                f"no end model after {_MAX_MODELS} models from {base}", resource=self.name
            )
        found = [m for m, _, _ in self.chain]
        for model_id in self.cfg.required_models:
            if model_id not in found:
                name = MODEL_NAMES.get(model_id, "unknown")
                raise SunSpecModelMissingError(
                    f"required SunSpec model {model_id} ({name}) not found; "
                    f"the device has {found}",
                    resource=self.name,
                    model_id=model_id,
                )
        self.base_address = base
        for block in self.blocks.values():
            await self._load(block)

    async def _load(self, block: ModelBlock, words: list[int] | None = None) -> None:
        if words is None:
            what = f"model {block.model_id}"
            words = await self._read_words(block.address, block.length + 2, what)
        try:
            block.load(words)
        except SunSpecLayoutError as exc:
            raise ProtocolError(
                str(exc), resource=self.name, point=f"model {block.model_id}"
            ) from exc

    # --- status -------------------------------------------------------------------------------

    @property
    def common(self) -> dict[str, str]:
        """Manufacturer, model, version and serial number from model 1."""
        block = self.blocks.get(1)
        if block is None or not block.loaded:
            return {}
        out = {}
        for key, point in (("manufacturer", "Mn"), ("model", "Md"), ("version", "Vr")):
            value = block.raw(point)
            if isinstance(value, str):
                out[key] = value
        serial = block.raw("SN")
        if isinstance(serial, str):
            out["serial"] = serial
        return out

    def _spans(self) -> list[list[ModelBlock]]:
        """The blocks of a status read, adjacent ones grouped to share requests. Model 1
        is static: it is read at discovery only."""
        spans: list[list[ModelBlock]] = []
        for block in sorted(self.blocks.values(), key=lambda b: b.address):
            if block.model_id == 1:
                continue
            last = spans[-1][-1] if spans else None
            if last is not None and last.address + last.length + 2 == block.address:
                spans[-1].append(block)
            else:
                spans.append([block])
        return spans

    async def _read(self) -> Status:
        if self._rediscover:
            await self._discover()
        for span in self._spans():
            start = span[0].address
            count = span[-1].address + span[-1].length + 2 - start
            names = "+".join(str(b.model_id) for b in span)
            words = await self._read_words(start, count, f"models {names}")
            for block in span:
                offset = block.address - start
                await self._load(block, words[offset : offset + block.length + 2])
        status, self.names = status_of(self.blocks)
        return status

    # --- commands ------------------------------------------------------------------------------

    def _block(self, model_id: int, command: str) -> ModelBlock:
        block = self.blocks.get(model_id)
        if block is None or not block.loaded:
            raise DriverValidationError(
                f"command {command!r} needs model {model_id} ({MODEL_NAMES[model_id]}), "
                "which the device does not have",
                resource=self.name,
                point=f"model {model_id}",
            )
        return block

    async def _put(
        self, command: str, model_id: int, points: list[tuple[str, float | str]]
    ) -> str:
        """Write ``points`` (engineering values, or symbol names of enum points) of one
        model in the order given, adjacent registers sharing one request."""
        block = self._block(model_id, command)
        writes: list[tuple[int, list[int]]] = []
        for name, value in points:
            try:
                if not block.writable(name):
                    raise SunSpecLayoutError(f"point {name!r} is read-only")
                number = block.symbol_value(name, value) if isinstance(value, str) else value
                writes.append(block.encode(name, number))
            except SunSpecLayoutError as exc:
                raise DriverValidationError(
                    f"command {command!r}: model {model_id}: {exc}",
                    resource=self.name,
                    point=name,
                ) from exc
        # In the order given (a setpoint before its enable), merging a write into the
        # previous request when it starts where that one ends.
        merged: list[tuple[int, list[int]]] = []
        for address, words in writes:
            if merged and merged[-1][0] + len(merged[-1][1]) == address:
                merged[-1][1].extend(words)
            else:
                merged.append((address, list(words)))
        client = self._live()
        for address, words in merged:
            await request(
                partial(client.write_registers, address, words, device_id=self.cfg.device_id),
                f"write model {model_id} at {address}+{len(words)}",
                resource=self.name,
                timeout=self.cfg.timeout,
            )
        return ", ".join(f"{model_id}.{name}={value}" for name, value in points)

    async def _write(self, command: str, params: Mapping[str, Any]) -> str:
        if command == "set_power":
            watts = 1000.0 * number_param(command, params, "kw", self.name)
            # Setpoint and mode in one request, so the device never runs a stale WSet.
            return await self._put(
                command, 704, [("WSetEna", "ENABLED"), ("WSetMod", "WATTS"), ("WSet", watts)]
            )
        if command == "set_reactive_power":
            vars_ = 1000.0 * number_param(command, params, "kvar", self.name)
            # VarSetPri lies between the mode and the setpoint and is left alone.
            return await self._put(
                command, 704, [("VarSet", vars_), ("VarSetEna", "ENABLED"), ("VarSetMod", "VARS")]
            )
        if command == "set_mode":
            mode = params.get("mode")
            if mode not in MODES:
                raise DriverValidationError(
                    f"command 'set_mode': mode {mode!r} is not one of {sorted(MODES)}",
                    resource=self.name,
                )
            return await self._put(command, 704, [("WSetEna", MODES[str(mode)])])
        if command == "enable":
            return await self._put(
                command, 802, [("SetOp", "CONNECT"), ("SetInvState", "INVERTER_STARTED")]
            )
        if command == "disable":
            return await self._put(command, 802, [("SetInvState", "INVERTER_STOPPED")])
        if command == "reset_alarms":
            return await self._put(command, 802, [("AlmRst", 1)])
        if command == "emergency_stop":
            # Inverter off first: the one write that stops the power on its own.
            done = [await self._put(command, 802, [("SetInvState", "INVERTER_STOPPED")])]
            done.append(
                await self._put(
                    command,
                    704,
                    [
                        ("WSet", 0.0),
                        ("WSetEna", "DISABLED"),
                        ("VarSet", 0.0),
                        ("VarSetEna", "DISABLED"),
                    ],
                )
            )
            done.append(await self._put(command, 802, [("SetOp", "DISCONNECT")]))
            return ", ".join(done)
        raise DriverValidationError(f"unknown command {command!r}", resource=self.name)
