"""Pointing a site configuration at a running simulated plant (:mod:`vpp.sim.plant`).

:func:`with_ports` sets the field controllers' PMU source, each simulated unit's inverter
address and its BMS bus port from the ports the plant reports. It also pins the plant's
own ports, so that a plant restarted from the returned config binds the same ones and
the field controllers reconnect to it. Apart from the plant because the launcher calls
it: the launcher must not import the simulators (numpy, pymodbus, python-can) for it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from vpp.config.models import SiteConfig

__all__ = ["HOST", "with_ports"]

#: The plant's servers' address: loopback (vpp.config.loader gives simulated units it).
HOST = "127.0.0.1"

# The plant's logger: the warning is the plant's news, wherever the config is rewired.
log = logging.getLogger("vpp.sim.plant")


def _udp_bus(config: Mapping[str, Any]) -> bool:
    """Whether a ``can_bms`` device's config puts it on a CAN-over-UDP bus."""
    # python-can only when a unit has a BMS without a port: the launcher seldom needs it.
    from vpp.drivers.can_bus import UDP_INTERFACES

    return config.get("interface") in UDP_INTERFACES


def with_ports(site: SiteConfig, ports: Mapping[str, int]) -> SiteConfig:
    """A copy of ``site`` pointing at a plant listening on ``ports`` (from :func:`serve_plant`):
    every field controller's PMU source, each simulated unit's inverter host and port, and
    the plant's own ports (so that a restart binds the same ones)."""
    data: dict[str, Any] = site.model_dump(mode="json")
    sim = data["simulation"]
    if "pmu" in ports:
        sim["pmu"]["port"] = ports["pmu"]
        for f in data["field"]:
            f["pmu"].update(host=HOST, port=ports["pmu"], idcode=sim["pmu"]["idcode"])
            f["pmu"]["transport"] = "tcp"
    for b in sim["bess"]:
        if b["unit"] in ports:
            b["port"] = ports[b["unit"]]
    for f in data["field"]:
        for u in f["units"]:
            if u["id"] in ports:
                u["inverter"]["config"].update(host=HOST, port=ports[u["id"]])
            bms = u.get("bms")
            if u["id"] in ports and bms and bms["protocol"] == "can_bms":
                options = bms["config"].setdefault("bus_options", {})
                if f"{u['id']}/bms" in ports:
                    options["port"] = ports[f"{u['id']}/bms"]
                elif _udp_bus(bms["config"]) and not options.get("port"):
                    log.warning("unit %s runs without its BMS (its simulator did not start)",
                                u["id"])  # fmt: skip
                    u["bms"] = None
    return SiteConfig.model_validate(data)
