"""The site configuration reference (docs/site-config.md), generated from the models.

``python -m vpp.config.reference > docs/site-config.md`` rewrites it; a test fails when
the file and the models differ, so the reference cannot drift from the code.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from vpp.config.models import SiteConfig

__all__ = ["markdown"]

HEADER = """# Site configuration reference

Generated from `vpp/config/models.py` by `python -m vpp.config.reference`; do not edit.
Every process of a site reads the same YAML file (`vpp run --config FILE`; without it the
embedded `vpp/config/default.yaml`, a simulated site). Unknown keys are errors. An error
names the file, the key (dotted, list items by index) and the reason. A value `${NAME}`
is read from the environment variable `NAME`; `VPP__KEY__KEY...=value` overrides any key
(see `vpp/config/loader.py`). A device's `config` is validated by its protocol: see
[configuration.md](configuration.md).

| key | type | default | meaning |
|---|---|---|---|
"""


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models inside an annotation (``X``, ``list[X]``, ``X | None``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    out: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        out += _models(arg)
    return out


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return annotation.__name__
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return " or ".join(_type_name(a) for a in typing.get_args(annotation))
    if typing.get_origin(annotation) is typing.Literal:
        return " / ".join(repr(a) for a in typing.get_args(annotation))
    text = str(annotation).replace("typing.", "")
    return text.replace("pathlib.", "").replace("vpp.", "")


def _clean(text: str) -> str:
    return text.replace("NoneType", "None")


def _default(field: Any) -> str:
    if field.default is PydanticUndefined:
        if field.default_factory is None:
            return "required"
        made = field.default_factory()
        return "" if isinstance(made, BaseModel) else repr(made)
    value = field.default
    return "" if value is None else repr(value)


def _rows(model: type[BaseModel], prefix: str) -> list[str]:
    rows: list[str] = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        nested = _models(field.annotation)
        listed = typing.get_origin(field.annotation) is list
        if nested and not listed:
            rows.append(f"| `{key}` | section | | {field.description or nested[0].__doc__ or ''} |")
            rows += _rows(nested[0], f"{key}.")
            continue
        if nested and listed:
            doc = (field.description or nested[0].__doc__ or "").split("\n")[0]
            rows.append(f"| `{key}` | list | {_default(field)} | {doc} |")
            rows += _rows(nested[0], f"{key}[].")
            continue
        meaning = (field.description or "").replace("|", "/")
        rows.append(
            f"| `{key}` | {_clean(_type_name(field.annotation))} | {_default(field)} | {meaning} |"
        )
    return rows


def markdown() -> str:
    """The whole reference page."""
    return HEADER + "\n".join(_rows(SiteConfig, "")) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
