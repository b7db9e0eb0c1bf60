"""A registry of protocols by name, with third-party plug-ins found lazily.

Built-in protocols are named here with the module that holds them and imported only
when first used; plug-ins declare an entry point in the group ``vpp.protocols``
(``name = "package.module:ProtocolClass"``), loaded on first use too. Each protocol's
pydantic ``Config`` (``extra="forbid"``: a misspelt option is an error) and its
:meth:`~vpp.drivers.base.BaseProtocol.check_config` (the files the options name) validate
a config at :meth:`ProtocolFactory.validate`, which the site's load calls for every device
and :meth:`ProtocolFactory.create` before making a driver; an invalid config raises
:class:`vpp.errors.ConfigError` naming the protocol, the field and the reason (``.field``
holds the field).
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Mapping
from typing import Any

import pydantic

from vpp.drivers.base import BaseProtocol, ProtocolConfig
from vpp.drivers.errors import ProtocolUnavailableError
from vpp.validation import config_error, first_error

__all__ = ["ENTRY_POINT_GROUP", "ProtocolFactory"]

#: The entry-point group of third-party protocols.
ENTRY_POINT_GROUP = "vpp.protocols"

# Built-ins as "module:class", so that a protocol's dependencies load only when used.
_BUILTIN = {
    "modbus_tcp": "vpp.drivers.modbus:ModbusTcpProtocol",
    "modbus_rtu": "vpp.drivers.modbus_rtu:ModbusRtuProtocol",
    "can_bms": "vpp.drivers.can_bms:CanBmsProtocol",
    "sunspec": "vpp.drivers.sunspec:SunSpecProtocol",
    "mqtt": "vpp.drivers.mqtt:MqttProtocol",
}


class ProtocolFactory:
    """Protocols by name: built-ins, registered classes and ``vpp.protocols`` entry points."""

    def __init__(self) -> None:
        """A factory that knows the built-in protocols; entry points are read lazily."""
        self._classes: dict[str, type[BaseProtocol]] = {}
        self._lazy: dict[str, str] = dict(_BUILTIN)
        self._entry_points: dict[str, importlib.metadata.EntryPoint] | None = None

    def register_protocol(self, name: str, cls: type[BaseProtocol]) -> None:
        """Register ``cls`` under ``name`` (replacing any protocol of that name)."""
        if not (isinstance(cls, type) and issubclass(cls, BaseProtocol)):
            raise TypeError(f"protocol {name!r}: {cls!r} is not a BaseProtocol subclass")
        self._classes[name] = cls

    def _plugins(self) -> dict[str, importlib.metadata.EntryPoint]:
        if self._entry_points is None:
            eps = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
            self._entry_points = {ep.name: ep for ep in eps}
        return self._entry_points

    def supported_protocols(self) -> list[str]:
        """Names of every protocol available (nothing is imported to list them)."""
        return sorted(set(self._classes) | set(self._lazy) | set(self._plugins()))

    def protocol_class(self, name: str) -> type[BaseProtocol]:
        """The class of protocol ``name``, imported on first use."""
        if name in self._classes:
            return self._classes[name]
        loaded: object
        try:
            if name in self._lazy:
                module, _, attr = self._lazy[name].partition(":")
                loaded = getattr(importlib.import_module(module), attr)
            elif name in self._plugins():
                loaded = self._plugins()[name].load()
            else:
                raise ProtocolUnavailableError(
                    f"unknown protocol {name!r}; available: "
                    f"{', '.join(self.supported_protocols())}",
                    resource=name,
                )
        except (ImportError, AttributeError) as exc:
            raise ProtocolUnavailableError(
                f"protocol {name!r} cannot be loaded: {exc}", resource=name
            ) from exc
        if not (isinstance(loaded, type) and issubclass(loaded, BaseProtocol)):
            raise ProtocolUnavailableError(
                f"protocol {name!r} is {loaded!r}, not a BaseProtocol subclass", resource=name
            )
        self._classes[name] = loaded
        return loaded

    def validate(self, name: str, config: Mapping[str, Any]) -> ProtocolConfig:
        """``config`` validated against protocol ``name``'s ``Config``."""
        cls = self.protocol_class(name)
        try:
            cfg = cls.Config.model_validate(dict(config))
        except pydantic.ValidationError as exc:
            field, msg = first_error(exc)
            first = exc.errors(include_url=False)[0]
            if first["type"] == "extra_forbidden" and len(first["loc"]) == 1:
                # Most often a misspelling: the list of the right names says which.
                msg = f"unknown option; {name} takes {', '.join(sorted(cls.Config.model_fields))}"
            field = field or "config"
            raise config_error(f"protocol {name!r}: field {field!r}: {msg}", field) from exc
        cls.check_config(cfg)
        return cfg

    def create(self, name: str, config: Mapping[str, Any], *, label: str = "") -> BaseProtocol:
        """A new, unconnected protocol ``name`` with ``config`` (validated first)."""
        cfg = self.validate(name, config)
        cls = self.protocol_class(name)
        return cls(cfg, name=label or name)


#: The process-wide factory.
default_factory = ProtocolFactory()
