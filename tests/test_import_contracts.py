"""Import contracts: which modules a process of the site imports (issue 12, "Footprint").

Every role runs in a fresh interpreter (multiprocessing's ``spawn``), so what its module
imports at top level, and what the site configuration it unpickles imports, is memory
that process holds for its whole life on an RTU with 1 GB. These tests start a fresh
``python -c`` for each case and read its ``sys.modules``:

- the site configuration loads without the services (no ZeroMQ, numpy, scipy, web
  server, SCADA stacks or simulators);
- the field controller imports only what it uses;
- every role module imports alone, and only its own heavy dependencies;
- the layer direction: core <- drivers <- orchestrator (nothing below imports above),
  checked both in a fresh interpreter (what a module pulls in transitively at import)
  and in the source (an import inside a function too).

Where a dependency is allowed, the docs say why (docs/architecture.md, "Import rules").
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VPP = ROOT / "vpp"

#: Third-party libraries that cost a process tens of MB or belong to one role only.
NUMPY = {"numpy"}
SCIPY = {"scipy"}
WEB = {"fastapi", "uvicorn", "starlette"}
SCADA_STACKS = {"dnp3", "c104"}
#: The campus's telemetry ingest validates with msgspec; no other role needs it.
MSGSPEC = {"msgspec"}
DEVICE_LIBS = {"pymodbus", "can", "cantools", "aiomqtt", "sunspec2"}
#: Our modules that belong to one role: the market's optimiser and gateway, the API's
#: web application, the SCADA outstations, the bus's sockets.
MARKET_SERVICE = {"vpp.orchestrator.market.optimiser", "vpp.orchestrator.market.gateway"}
API_SERVICE = {"vpp.orchestrator.api.app", "vpp.orchestrator.api.service"}
SCADA_SERVICE = {
    "vpp.orchestrator.scada.service",
    "vpp.orchestrator.scada.dnp3",
    "vpp.orchestrator.scada.iec104",
}
BUS_SOCKETS = {
    "zmq",
    "vpp.orchestrator.bus.broker",
    "vpp.orchestrator.bus.commands",
    "vpp.orchestrator.bus.curve",
    "vpp.orchestrator.bus.pubsub",
}
#: Simulator modules a production process may import: configuration only.
SIM_ALLOWED = {"vpp.sim", "vpp.sim.config"}


def modules_after(code: str) -> set[str]:
    """``sys.modules`` of a fresh interpreter after it ran ``code``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120,
        cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.splitlines()[-1]))


def loaded(mods: set[str], names: set[str]) -> list[str]:
    """The modules of ``mods`` that are one of ``names`` or inside one of them."""
    return sorted(m for m in mods if m in names or m.split(".")[0] in names
                  or any(m.startswith(n + ".") for n in names))  # fmt: skip


def simulators(mods: set[str]) -> list[str]:
    """Simulator modules beyond configuration."""
    return sorted(m for m in mods if m.startswith("vpp.sim") and m not in SIM_ALLOWED)


# ---- the site configuration ----


def test_config_models_import_no_service() -> None:
    mods = modules_after("import vpp.config.models")
    forbidden = (NUMPY | SCIPY | WEB | SCADA_STACKS | DEVICE_LIBS | BUS_SOCKETS
                 | MARKET_SERVICE | API_SERVICE | SCADA_SERVICE)  # fmt: skip
    assert loaded(mods, forbidden) == []
    assert simulators(mods) == []


def test_loading_the_default_site_imports_no_service() -> None:
    # The loader checks each device's config with its protocol's model, so the drivers
    # of the site's protocols (Modbus, CAN) are imported: that is the check, and those
    # drivers import nothing of the services. Nothing else is.
    mods = modules_after("import vpp.config\nvpp.config.load()")
    forbidden = (NUMPY | SCIPY | WEB | SCADA_STACKS | BUS_SOCKETS | MARKET_SERVICE
                 | API_SERVICE | SCADA_SERVICE)  # fmt: skip
    assert loaded(mods, forbidden) == []
    assert simulators(mods) == []


# ---- the field controller ----

#: What a field controller process runs: the child's entry point, its role module, and
#: the drivers of the default site's devices (imported by the controller at start).
FIELD_PROCESS = """
import vpp.orchestrator.processes
import vpp.orchestrator.field.controller
import vpp.drivers.modbus, vpp.drivers.can_bms
"""


def test_field_controller_imports_only_what_it_uses() -> None:
    mods = modules_after(FIELD_PROCESS)
    forbidden = (NUMPY | SCIPY | MSGSPEC | WEB | SCADA_STACKS | MARKET_SERVICE | API_SERVICE
                 | SCADA_SERVICE | {"vpp.orchestrator.campus.service",
                                    "vpp.orchestrator.grid.service"})  # fmt: skip
    assert loaded(mods, forbidden) == []
    assert simulators(mods) == []


#: Our modules of the other sections' configuration (SCADA point maps, market, grid,
#: API, simulation) and the whole site's models: a field controller's process is given
#: its own section (vpp.config.field.FieldSite) and imports none of them. (The campus's
#: small config module is allowed: the bus's command models name its strategies.)
OTHER_SECTIONS = {
    "vpp.config.models",
    "vpp.config.loader",
    "vpp.orchestrator.scada",
    "vpp.orchestrator.market",
    "vpp.orchestrator.grid",
    "vpp.orchestrator.api",
    "vpp.sim",
}


def test_a_field_controller_process_imports_no_other_section() -> None:
    # What the launcher gives a field controller's process, pickled as spawn does,
    # unpickled in a fresh interpreter that then runs the process's imports.
    import pickle

    from vpp.config import load
    from vpp.orchestrator.launcher import Launcher

    site = load()
    given = Launcher(site)._site_for("field", site.field[0].id)
    assert [f.id for f in given.field] == [site.field[0].id]
    blob = pickle.dumps(given).hex()
    mods = modules_after(f"import pickle\npickle.loads(bytes.fromhex({blob!r}))\n{FIELD_PROCESS}")
    assert loaded(mods, OTHER_SECTIONS) == []
    # The launcher gives every other role the whole site.
    assert Launcher(site)._site_for("campus", "campus") is site


# ---- every role alone ----

ROLES = {
    # role module: the heavy dependencies it may import (its own)
    "vpp.orchestrator.field.controller": set(),
    "vpp.orchestrator.campus.service": NUMPY | MSGSPEC,
    "vpp.orchestrator.grid.service": NUMPY,
    "vpp.orchestrator.market.gateway": NUMPY | SCIPY,
    "vpp.orchestrator.api.service": WEB,
    # The outstations import their stacks at start, not at import.
    "vpp.orchestrator.scada.service": set(),
    "vpp.sim.ldc": set(),
    "vpp.sim.plant": NUMPY | DEVICE_LIBS,
}
HEAVY = NUMPY | SCIPY | WEB | SCADA_STACKS | DEVICE_LIBS | MSGSPEC


def test_every_role_module_is_named() -> None:
    from vpp.orchestrator.processes import ROLE_MODULES

    assert set(ROLE_MODULES.values()) <= set(ROLES)


@pytest.mark.parametrize("module", sorted(ROLES))
def test_role_module_imports_alone_and_only_its_own_deps(module: str) -> None:
    mods = modules_after(f"import vpp.orchestrator.processes\nimport {module}\n"
                         f"assert callable(getattr({module}, 'serve', None)"
                         f" or getattr({module}, 'serve_plant', None))")  # fmt: skip
    assert loaded(mods, HEAVY - ROLES[module]) == []
    package = module.rpartition(".")[0]
    # Another role's service modules; its own package's are its business.
    others = {m for m in MARKET_SERVICE | API_SERVICE | SCADA_SERVICE
              if not m.startswith(package + ".")}  # fmt: skip
    assert loaded(mods, others) == []
    if not module.startswith("vpp.sim."):
        assert simulators(mods) == [], "production code imports no simulator"


# ---- the layer direction: core <- drivers <- orchestrator ----

CORE = ["vpp.core", "vpp.c37118", "vpp.errors", "vpp.aio", "vpp.validation"]
DRIVERS = sorted(f"vpp.drivers.{p.stem}" for p in (VPP / "drivers").glob("*.py")
                 if p.stem != "__init__")  # fmt: skip


def test_core_imports_no_driver_or_orchestrator() -> None:
    mods = modules_after("\n".join(f"import {m}" for m in CORE))
    assert loaded(mods, {"vpp.drivers", "vpp.orchestrator", "vpp.config"}) == []


def test_drivers_import_no_orchestrator() -> None:
    mods = modules_after("\n".join(f"import {m}" for m in DRIVERS))
    assert loaded(mods, {"vpp.orchestrator", "vpp.config", "vpp.sim"}) == []


def _imports_in(path: Path) -> set[str]:
    """Every module an ``import`` statement of ``path`` names, at any depth (inside a
    function too: a lazy import still runs upward)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def _upward(files: list[Path], above: tuple[str, ...]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in files:
        bad = sorted(m for m in _imports_in(path) if m.startswith(above))
        if bad:
            found[str(path.relative_to(ROOT))] = bad
    return found


def test_no_upward_import_in_the_source() -> None:
    core = [VPP / f"{m.removeprefix('vpp.')}.py" for m in CORE]
    drivers = sorted((VPP / "drivers").glob("*.py"))
    assert _upward(core, ("vpp.drivers", "vpp.orchestrator", "vpp.config")) == {}
    assert _upward(drivers, ("vpp.orchestrator", "vpp.config", "vpp.sim")) == {}
