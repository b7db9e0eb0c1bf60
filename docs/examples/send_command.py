"""A user's own program: send one command to a running site with the operator's key.

Start a site (``vpp run``), then::

    python docs/examples/send_command.py bess-1 150        # set_power bess-1 to 150 kW
    python docs/examples/send_command.py --config my-site.yaml bess-1 0

It finds the site the way ``vpp ctl`` does (the run directory of the configuration,
its ``site.json``), signs the command with the ``operator`` key from the site's keys
directory, and prints the site's answer. The field controller decides by that key and
audits the command in the history either way.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from vpp.errors import VppError
from vpp.orchestrator.site_client import SiteClient, find_site


async def send(config: str | None, unit: str, kw: float) -> int:
    site = find_site(config)
    async with SiteClient(site, "operator") as client:
        ack = await client.call_unit("set_power", unit, kw=kw)
    if not ack.ok:
        print(f"refused ({ack.refused}): {ack.error}", file=sys.stderr)
        return 1
    print(f"done: {ack.result}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description="set one unit's base power on a running site")
    parser.add_argument("--config", default=None, help="the site's YAML (default: embedded)")
    parser.add_argument("unit", help="unit id, e.g. bess-1")
    parser.add_argument("kw", type=float, help="base power, kW (+ = discharge)")
    args = parser.parse_args()
    try:
        return asyncio.run(send(args.config, args.unit, args.kw))
    except VppError as exc:  # no running site, no key, a parameter out of range, no answer
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
