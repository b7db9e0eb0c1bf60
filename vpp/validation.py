"""Reading configuration: YAML through libyaml where PyYAML has it, and typed errors for
pydantic models (a bad value becomes a :class:`~vpp.errors.ConfigError` whose ``field``
names the offending setting)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, TypeVar

import pydantic
import yaml

from vpp.errors import ConfigError

__all__ = ["config_error", "finite_or_none", "first_error", "load_yaml", "validate_model"]

# libyaml's safe loader parses the same documents to the same values about ten times as
# fast as the pure-Python one (a register map: 64 -> 7 ms), which is most of a field
# controller's configuration work at start; PyYAML built without libyaml falls back.
_SafeLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(text: str) -> Any:
    """``yaml.safe_load(text)``, with libyaml when available; raises ``yaml.YAMLError``."""
    return yaml.load(text, Loader=_SafeLoader)


M = TypeVar("M", bound=pydantic.BaseModel)


def config_error(message: str, field: str) -> ConfigError:
    """A :class:`~vpp.errors.ConfigError` saying ``message`` about ``field``."""
    err = ConfigError(message)
    err.field = field
    return err


def first_error(exc: pydantic.ValidationError) -> tuple[str, str]:
    """The first problem of ``exc``: its field as a dotted path ("" for the whole) and a
    message, with how many more there are."""
    first = exc.errors(include_url=False)[0]
    field = ".".join(str(part) for part in first["loc"])
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return field, f"{first['msg']}{more}"


def finite_or_none(value: Any) -> float | None:
    """``value`` as a finite float, or None: not a real number (a bool, a text), NaN, an
    infinity, or an int past the float range."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        f = float(value)
    except OverflowError:
        return None
    return f if math.isfinite(f) else None


def validate_model(cls: type[M], data: Mapping[str, Any], what: str, section: str = "") -> M:
    """``data`` validated as ``cls``; the first pydantic error becomes a ConfigError on
    its field (dotted path, after ``section.`` when given), with ``what`` saying which
    configuration it was."""
    try:
        return cls.model_validate(dict(data))
    except pydantic.ValidationError as exc:
        field, msg = first_error(exc)
        field = field or what
        field = f"{section}.{field}" if section else field
        raise config_error(f"{what}: field {field!r}: {msg}", field) from exc
