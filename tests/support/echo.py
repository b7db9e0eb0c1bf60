"""An in-memory protocol for the protocol-layer tests: its transport plays back a list of
outcomes (an error to raise, or None for a good read)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from vpp.drivers.base import BaseProtocol, ProtocolConfig, Status


class EchoConfig(ProtocolConfig):
    """Config of the in-memory protocol."""

    value: float = 1.0


class EchoProtocol(BaseProtocol):
    """A protocol whose transport is a list of outcomes to play back."""

    Config: ClassVar[type[ProtocolConfig]] = EchoConfig
    commands: ClassVar[frozenset[str]] = frozenset({"ping"})
    outcomes: ClassVar[list[BaseException | None]] = []

    async def _connect(self) -> None:
        pass

    async def _disconnect(self) -> None:
        pass

    async def _read(self) -> Status:
        outcome = self.outcomes.pop(0) if self.outcomes else None
        if outcome is not None:
            raise outcome
        assert isinstance(self.config, EchoConfig)
        return {"value": self.config.value}

    async def _write(self, command: str, params: Mapping[str, Any]) -> str:
        return f"{command} {dict(params)}"
