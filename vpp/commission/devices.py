"""Commissioning against the site's own devices: each unit's inverter and BMS, read only.

For every unit of every field controller of a site whose simulation is off, each device
path the site configures (the inverter, the BMS, and the secondary path of either) is
opened with the project's own driver, made by the
:class:`~vpp.drivers.factory.ProtocolFactory` from the device's ``protocol`` and
``config`` as the field controller makes it, and its status is read ``reads`` times at
the device's ``poll_interval_s``.

READ ONLY: only the driver's ``connect``, ``read_status`` and ``close`` are called. No
setpoint, no command, no mode, no watchdog counter or timeout is written (those are the
field controller's and its real-time loop's, neither of which runs here), so a device
may be checked while it is in service or commanded by something else.

Per device it tells:

- reachable: every read answered (the first failure ends the device's check, so an
  absent device costs its driver's timeout and retries, not ``reads`` of them), with
  the error's reason in one line when not;
- the poll time of each answered read (``read_status``, retries included), p50, p99 and
  largest, in ms;
- whether the status is usable: for an inverter every point
  :func:`~vpp.orchestrator.field.unit.map_telemetry` needs
  (:data:`~vpp.orchestrator.field.unit.INVERTER_NEEDS`) present and finite; for a BMS
  :data:`BMS_NEEDS` present and finite, and, where the driver reports them, data from
  every message the safety telemetry needs (``data_time`` > 0) and nothing stale. A
  status not yet usable after ``reads`` reads (a CAN BMS whose slowest messages have
  not all come) is read on for up to ``settle_s``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from vpp.bench import percentile
from vpp.commission.suite import Figure
from vpp.config.field import DeviceConfig
from vpp.config.models import CommissioningConfig, SiteConfig
from vpp.drivers.factory import ProtocolFactory, default_factory
from vpp.validation import finite_or_none

__all__ = [
    "BMS_NEEDS",
    "DeviceCheck",
    "bms_problem",
    "check_device",
    "check_devices",
    "device_figures",
    "inverter_problem",
    "run_device_checks",
]

#: The BMS values a unit takes in place of the inverter's estimate (the cell voltages).
BMS_NEEDS = ("cell_v_min", "cell_v_max")
#: Reads of each device (``--quick``: fewer).
READS, QUICK_READS = 20, 5
#: How long a status not yet usable after the reads is read on (a CAN BMS's slowest
#: messages come once a second; three of their periods make them stale).
SETTLE_S = 3.0

Status = Mapping[str, float | bool | str]
#: One device path: its name, its device, the config of the path, whether it is a BMS.
_Path = tuple[str, DeviceConfig, Mapping[str, Any], bool]


@dataclass
class DeviceCheck:
    """What reading one device path told."""

    name: str
    """``field/unit role``, e.g. ``field-1/bess-1 inverter``."""
    protocol: str
    where: str
    """Where the device is, from its config (``host:port``, a serial port, a channel)."""
    asked: int
    """Reads asked for."""
    poll_interval_s: float
    times_ms: list[float] = field(default_factory=list)
    """Time of each answered read."""
    connect_ms: float | None = None
    error: str = ""
    """Why the driver could not be made, connect or read (one line); "" if none failed."""
    problem: str | None = None
    """Why the last status is not usable; "" when usable, None before any status."""

    @property
    def answered(self) -> int:
        """Reads answered."""
        return len(self.times_ms)

    @property
    def reachable(self) -> bool:
        """Connected and every read asked for answered."""
        return not self.error and self.answered >= self.asked

    @property
    def usable(self) -> bool:
        """A status was read and the last one has what the field controller needs."""
        return self.problem == ""


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or "no detail"
    return f"{type(exc).__name__}: {text}"


def _where(protocol: str, config: Mapping[str, Any]) -> str:
    if "host" in config:
        return f"{config['host']}:{config.get('port', 'default port')}"
    parts = [str(config[k]) for k in ("interface", "channel", "port") if k in config]
    return " ".join(parts) or protocol


def _not_usable(status: Status, keys: Sequence[str]) -> str:
    missing = [k for k in keys if k not in status]
    bad = [k for k in keys if k in status and finite_or_none(status[k]) is None]
    out = []
    if missing:
        out.append(f"missing {', '.join(missing)}")
    if bad:
        out.append(f"not a finite number: {', '.join(f'{k}={status[k]!r}' for k in bad)}")
    return "; ".join(out)


def inverter_problem(raw: Status) -> str:
    """Why an inverter's status cannot feed the unit's telemetry; "" when it can."""
    from vpp.orchestrator.field.unit import INVERTER_NEEDS, inverter_status

    return _not_usable(inverter_status(raw), INVERTER_NEEDS)


def bms_problem(status: Status) -> str:
    """Why a BMS's status cannot feed the unit's telemetry; "" when it can."""
    data_time = status.get("data_time")
    if isinstance(data_time, int | float) and not isinstance(data_time, bool) and data_time <= 0:
        # The unit takes such a BMS as never heard: its telemetry is stale at once.
        return "not every message the safety telemetry needs has come (data_time 0)"
    if status.get("stale") is True:
        stale = sorted(k.removeprefix("stale_") for k, v in status.items()
                       if k.startswith("stale_") and v is True)  # fmt: skip
        return f"stale: {', '.join(stale) or 'yes'}"
    return _not_usable(status, BMS_NEEDS)


async def check_device(
    name: str,
    device: DeviceConfig,
    config: Mapping[str, Any],
    *,
    bms: bool,
    reads: int,
    settle_s: float = SETTLE_S,
    factory: ProtocolFactory | None = None,
) -> DeviceCheck:
    """Connect to ``device`` through ``config`` (its primary or secondary path) and read
    its status ``reads`` times at its poll interval, READ ONLY (see the module
    docstring). Never raises for the device's sake: a failure is the check's ``error``."""
    check = DeviceCheck(name, device.protocol, _where(device.protocol, config), reads,
                        device.poll_interval_s)  # fmt: skip
    judge = bms_problem if bms else inverter_problem
    try:
        protocol = (factory or default_factory).create(device.protocol, config, label=name)
    except Exception as exc:  # an invalid config or a plug-in that will not load
        check.error = _one_line(exc)
        return check
    try:
        start = time.perf_counter()
        await protocol.connect()
        check.connect_ms = (time.perf_counter() - start) * 1e3
        settle_until: float | None = None
        while True:
            start = time.perf_counter()
            status = await protocol.read_status()
            check.times_ms.append((time.perf_counter() - start) * 1e3)
            check.problem = judge(status)
            if check.answered >= reads:
                if not check.problem:
                    break
                if settle_until is None:
                    settle_until = time.monotonic() + settle_s
                elif time.monotonic() >= settle_until:
                    break
            # At the poll interval, as the field controller reads it.
            await asyncio.sleep(max(0.0, device.poll_interval_s - (time.perf_counter() - start)))
    except Exception as exc:  # every device is reported, whatever its driver raised
        check.error = _one_line(exc)
    finally:
        await protocol.close()
    return check


def _paths(site: SiteConfig) -> list[_Path]:
    out: list[_Path] = []
    for fc in site.field:
        for unit in fc.units:
            for role, device in (("inverter", unit.inverter), ("bms", unit.bms)):
                if device is None:
                    continue
                base = f"{fc.id}/{unit.id} {role}"
                out.append((base, device, device.config, role == "bms"))
                if device.secondary is not None:
                    out.append((f"{base} (secondary)", device, device.secondary, role == "bms"))
    return out


async def check_devices(
    site: SiteConfig,
    reads: int = READS,
    settle_s: float = SETTLE_S,
    factory: ProtocolFactory | None = None,
) -> list[DeviceCheck]:
    """:func:`check_device` on every device path of ``site`` (see the module docstring),
    whatever its simulation says (the caller decides). Devices are read side by side,
    as the field controllers poll them, except those on one serial line, which are read
    one after the other (one request at a time on a line)."""
    lines: dict[str, list[_Path]] = {}
    for path in _paths(site):
        _name, device, config, _bms = path
        serial = device.protocol == "modbus_rtu" and "port" in config
        lines.setdefault(f"serial {config['port']}" if serial else path[0], []).append(path)

    async def one_line(paths: list[_Path]) -> list[DeviceCheck]:
        return [await check_device(n, d, c, bms=b, reads=reads, settle_s=settle_s,
                                   factory=factory) for n, d, c, b in paths]  # fmt: skip

    done = await asyncio.gather(*(one_line(p) for p in lines.values()))
    by_name = {c.name: c for group in done for c in group}
    return [by_name[path[0]] for path in _paths(site)]


def device_figures(checks: Sequence[DeviceCheck], req: CommissioningConfig) -> list[Figure]:
    """Each check's figures against ``req``: reachable (reads answered of those asked)
    and status usable (required with ``req.devices_required``), poll time p99 (against
    ``req.device_poll_p99_ms``, with p50 and the largest beside it)."""
    out = []
    for c in checks:
        need = req.devices_required
        out.append(Figure(
            f"{c.name}: reachable, reads answered", c.answered, "reads",
            c.asked if need else None, at_least=True,
            reference=c.error or f"{c.protocol} {c.where}",
        ))  # fmt: skip
        if c.problem is None:
            continue  # no status read: the line above says why
        out.append(Figure(
            f"{c.name}: status usable", 1.0 if c.usable else 0.0, "yes",
            1.0 if need else None, at_least=True,
            reference=c.problem or ("every point the unit needs, finite"),
        ))  # fmt: skip
        connect = "" if c.connect_ms is None else f", connect {c.connect_ms:.3g} ms"
        out.append(Figure(
            f"{c.name}: poll time, p99", percentile(c.times_ms, 0.99), "ms",
            req.device_poll_p99_ms,
            reference=f"p50 {percentile(c.times_ms, 0.5):.3g} ms, max {max(c.times_ms):.3g} "
            f"ms, {c.answered} reads every {c.poll_interval_s:g} s{connect}",
        ))  # fmt: skip
    return out


def run_device_checks(site: SiteConfig, quick: bool, notes: list[str]) -> list[Figure]:
    """The figures of the site's own devices (read only), or none with a note when the
    site simulates its devices (they are the simulators, started with the site)."""
    if site.simulation.enabled:
        notes.append("device checks skipped: this site's simulation is on, its devices "
                     "are the simulators")  # fmt: skip
        return []
    checks = asyncio.run(check_devices(site, QUICK_READS if quick else READS))
    return device_figures(checks, site.commissioning)
