"""Typed configuration errors for pydantic models: a bad value becomes a
:class:`~vpp.errors.ConfigError` whose ``field`` names the offending setting."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import pydantic

from vpp.errors import ConfigError

__all__ = ["config_error", "validate_model"]

M = TypeVar("M", bound=pydantic.BaseModel)


def config_error(message: str, field: str) -> ConfigError:
    """A :class:`~vpp.errors.ConfigError` saying ``message`` about ``field``."""
    err = ConfigError(message)
    err.field = field
    return err


def validate_model(cls: type[M], data: Mapping[str, Any], what: str, section: str = "") -> M:
    """``data`` validated as ``cls``; the first pydantic error becomes a ConfigError on
    its field (dotted path, after ``section.`` when given), with ``what`` saying which
    configuration it was."""
    try:
        return cls.model_validate(dict(data))
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or what
        field = f"{section}.{field}" if section else field
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise config_error(f"{what}: field {field!r}: {first['msg']}{more}", field) from exc
