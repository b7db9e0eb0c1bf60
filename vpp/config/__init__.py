"""The site configuration: pydantic models and the YAML loader (docs/configuration.md).

The names below are loaded on first use (PEP 562) rather than when the package is
imported: a field controller's process imports :mod:`vpp.config.field` alone, and
importing this package must not bring in every section's models with the loader.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vpp.config.loader import load, load_text
    from vpp.config.models import FieldConfig, SiteConfig, UnitConfig

__all__ = ["FieldConfig", "SiteConfig", "UnitConfig", "load", "load_text"]

_WHERE = {
    "FieldConfig": "vpp.config.field",
    "UnitConfig": "vpp.config.field",
    "SiteConfig": "vpp.config.models",
    "load": "vpp.config.loader",
    "load_text": "vpp.config.loader",
}


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'vpp.config' has no attribute {name!r}")
    value = getattr(importlib.import_module(where), name)
    globals()[name] = value  # once: later lookups do not come here
    return value
