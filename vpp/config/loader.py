"""Load the site configuration from YAML, with clear errors and secrets from the environment.

Errors name the file, the key (a dotted path such as ``field.0.units.1.rated_power_kw``)
and the reason, as :class:`vpp.errors.ConfigError` with ``.field`` and ``.file`` set.

Secrets stay out of the file in two ways:

- a string value ``${NAME}`` is replaced by the environment variable ``NAME`` (an unset
  variable is an error naming the key);
- an environment variable ``VPP__<KEY>__<KEY>...`` overrides the value at that path
  (case-insensitive keys, list indices as numbers), e.g.
  ``VPP__FIELD__0__UNITS__0__INVERTER__CONFIG__PASSWORD=s3cret``. The value is parsed
  as YAML, so numbers and booleans keep their type.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import pydantic
import yaml

from vpp.config.models import SiteConfig
from vpp.errors import ConfigError, VppError
from vpp.validation import load_yaml

__all__ = ["DEFAULT_CONFIG", "ENV_PREFIX", "default_text", "load", "load_text"]

#: Prefix of environment variables that override configuration values.
ENV_PREFIX = "VPP__"
#: Name of the embedded default site (a simulated plant).
DEFAULT_CONFIG = "default.yaml"
#: The address a simulated unit's inverter config gets at start (vpp.sim.ports.HOST).
_SIM_HOST = "127.0.0.1"
_VAR = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")


def _error(message: str, field: str, file: str) -> ConfigError:
    err = ConfigError(f"{file}: {field}: {message}" if field else f"{file}: {message}")
    err.field = field
    err.file = file  # type: ignore[attr-defined]
    return err


def default_text() -> str:
    """The embedded default configuration (a simulated site)."""
    return resources.files("vpp.config").joinpath(DEFAULT_CONFIG).read_text(encoding="utf-8")


def load(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> SiteConfig:
    """The site configuration of ``path``, or the embedded default when None."""
    if path is None:
        return load_text(default_text(), f"<embedded {DEFAULT_CONFIG}>", env)
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise _error(f"cannot read: {exc.strerror or exc}", "", str(p)) from exc
    return load_text(text, str(p), env)


def load_text(
    text: str, file: str = "<string>", env: Mapping[str, str] | None = None
) -> SiteConfig:
    """Parse, substitute secrets, apply overrides and validate (see the module docstring)."""
    env = os.environ if env is None else env
    try:
        data = load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        raise _error(f"{where}not valid YAML ({getattr(exc, 'problem', exc)})", "", file) from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise _error(f"the top level must be a mapping, not {type(data).__name__}", "", file)
    data = _substitute(data, (), env, file)
    for name, value in env.items():
        if name.startswith(ENV_PREFIX):
            keys = [k.lower() for k in name[len(ENV_PREFIX) :].split("__") if k]
            _override(data, keys, value, file, name)
    try:
        site = SiteConfig.model_validate(data)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        more = f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
        raise _error(f"{first['msg']}{more}", field, file) from exc
    _check_devices(site, file)
    return site


def _check_devices(site: SiteConfig, file: str) -> None:
    """Validate every device config by its protocol now, not when a process starts."""
    from vpp.drivers.factory import default_factory

    simulated = {b.unit for b in site.simulation.bess} if site.simulation.enabled else set()
    for i, fld in enumerate(site.field):
        for j, unit in enumerate(fld.units):
            for role, dev in (("inverter", unit.inverter), ("bms", unit.bms)):
                if dev is None:
                    continue
                where = f"field.{i}.units.{j}.{role}"
                for key, cfg in (("config", dev.config), ("secondary", dev.secondary)):
                    if cfg is None:
                        continue
                    if role == "inverter" and key == "config" and unit.id in simulated:
                        # The simulator's address is known only at start, where it replaces
                        # these two (vpp.sim.ports.with_ports); every other key is checked.
                        cfg = {**cfg, "host": _SIM_HOST, "port": 1}
                    try:
                        default_factory.validate(dev.protocol, cfg)
                    except ConfigError as exc:
                        # A whole-config problem comes back on the field "config".
                        inner = "" if exc.field in (None, "", "config") else exc.field
                        key_path = f"{where}.{key}.{inner}" if inner else f"{where}.{key}"
                        raise _error(str(exc), key_path, file) from exc
                    except VppError as exc:  # no such protocol
                        raise _error(str(exc), f"{where}.protocol", file) from exc


def _substitute(node: Any, path: tuple[str, ...], env: Mapping[str, str], file: str) -> Any:
    if isinstance(node, dict):
        return {k: _substitute(v, (*path, str(k)), env, file) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute(v, (*path, str(i)), env, file) for i, v in enumerate(node)]
    if isinstance(node, str) and (m := _VAR.match(node)):
        name = m.group(1)
        if name not in env:
            raise _error(f"environment variable {name} is not set", ".".join(path), file)
        return env[name]
    return node


def _override(data: Any, keys: list[str], value: str, file: str, var: str) -> None:
    node = data
    for i, key in enumerate(keys):
        last = i == len(keys) - 1
        where = ".".join(keys[: i + 1])
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                raise _error(f"{var}: no list item {key}", where, file)
            if last:
                node[int(key)] = load_yaml(value)
            else:
                node = node[int(key)]
        elif isinstance(node, dict):
            match = next((k for k in node if str(k).lower() == key), key)
            if last:
                node[match] = load_yaml(value)
            else:
                node = node.setdefault(match, {})
        else:
            raise _error(f"{var}: cannot set a key inside a {type(node).__name__}", where, file)
