"""The simulator depends on the market's domain, never the reverse: no module of
``vpp.orchestrator.market`` imports ``vpp.sim`` when it is loaded, and only the exchange
factory names it at all (lazily, when ``market.exchange`` is ``sim``)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import vpp.orchestrator.market as market_pkg

MARKET = Path(market_pkg.__file__).parent


def _sim_imports(path: Path) -> list[tuple[int, bool]]:
    """(line, at module level) of each import of vpp.sim in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(n) for n in tree.body}
    out = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        if any(n == "vpp.sim" or n.startswith("vpp.sim.") for n in names):
            out.append((node.lineno, id(node) in top))
    return out


def test_no_market_module_imports_the_simulator_at_load() -> None:
    found = {p.name: _sim_imports(p) for p in sorted(MARKET.glob("*.py"))}
    assert "gateway.py" in found and "exchanges.py" in found  # the check sees the package
    at_load = {name: lines for name, lines in found.items() if any(top for _, top in lines)}
    assert at_load == {}
    # The factory alone chooses an implementation, inside its function.
    assert {name for name, lines in found.items() if lines} == {"exchanges.py"}


def test_loading_the_market_package_and_the_gateway_leaves_the_simulator_out() -> None:
    modules = sorted(f"vpp.orchestrator.market.{p.stem}" for p in MARKET.glob("*.py")
                     if p.stem != "__init__")  # fmt: skip
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
        "from vpp.orchestrator.market.exchanges import from_config\n"
        "from vpp.config.models import MarketSection\n"
        "import tempfile\n"
        "d = tempfile.mkdtemp()\n"
        "from_config(MarketSection(exchange='file', file_exchange={'dir': d}))\n"
        "import json\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('vpp.sim.'))))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=MARKET.parents[2], check=False)  # fmt: skip
    assert r.returncode == 0, r.stderr
    loaded = json.loads(r.stdout)
    # The site config's simulator models (vpp.sim.config: pydantic only) are the only part
    # of vpp.sim a market process loads; the simulated exchange is not, with the file
    # exchange chosen.
    assert "vpp.sim.exchange" not in loaded and "vpp.sim.exchange_adapter" not in loaded
    assert set(loaded) <= {"vpp.sim.config"}


def test_the_factory_gives_the_simulated_exchange_by_default(tmp_path: Path) -> None:
    from vpp.config.models import MarketSection
    from vpp.orchestrator.market.exchanges import from_config
    from vpp.orchestrator.market.file_exchange import FileExchange, FilePriceForecast
    from vpp.sim.exchange_adapter import SimMarketExchange, SyntheticForecast

    exchange, forecast = from_config(MarketSection())
    assert isinstance(exchange, SimMarketExchange) and isinstance(forecast, SyntheticForecast)
    section = MarketSection(exchange="file", file_exchange={"dir": str(tmp_path / "x")})
    exchange, forecast = from_config(section)
    assert isinstance(exchange, FileExchange) and isinstance(forecast, FilePriceForecast)
    assert {p.name for p in (tmp_path / "x").iterdir()} == {"outbox", "inbox", "done",
                                                           "rejected"}  # fmt: skip
