"""The site configuration: pydantic models and the YAML loader (docs/configuration.md)."""

from vpp.config.loader import load, load_text
from vpp.config.models import FieldConfig, SiteConfig, UnitConfig

__all__ = ["FieldConfig", "SiteConfig", "UnitConfig", "load", "load_text"]
