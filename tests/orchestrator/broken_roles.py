"""Roles that fail, for the supervision tests: ``config_error`` stops at its start on its
configuration, as a role whose section is wrong would; ``crash`` runs a moment and then
raises an unexpected error, as a bug would. Each leaves a file in the directory named by
``VPP_TEST_MARKS`` at each start, so that a test can count the starts."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from vpp.config.models import SiteConfig
from vpp.errors import ConfigError
from vpp.orchestrator.bus.topology import Topology


def _mark(name: str) -> None:
    marks = os.environ.get("VPP_TEST_MARKS")
    if marks:
        (Path(marks) / f"{name}-{os.getpid()}-{time.monotonic_ns()}").touch()


async def config_error(site: SiteConfig, topo: Topology, name: str, stop: asyncio.Event) -> None:
    """Fail at the start on the configuration."""
    _mark(name)
    err = ConfigError(f"{name}: field 'tiemout': unknown option")
    err.field = "tiemout"
    raise err


async def crash(site: SiteConfig, topo: Topology, name: str, stop: asyncio.Event) -> None:
    """Run 0.2 s, then crash."""
    _mark(name)
    await asyncio.sleep(0.2)
    raise RuntimeError(f"{name}: a bug")
