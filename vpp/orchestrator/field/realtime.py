"""The field controller's side of the core's real-time loop (docs/realtime-loop.md).

:func:`rt_target` reads a unit's inverter configuration and its register map file and
says how the loop writes its setpoint: over Modbus TCP, or over Modbus RTU on a serial
port the loop then owns (the unit's driver polls through the loop). None: the unit's
setpoints stay on the Python path: another protocol, a failover path, a map without a
writable setpoint, or a serial port another unit uses too. A SunSpec unit's layout is
known only once its driver has walked the model chain: :func:`sunspec_target` makes
its target from the driver's :class:`~vpp.drivers.sunspec.SunSpecSetpoint`, which the
controller gives the running loop (``RtLoop.set_target``).
:func:`start_loop` starts the core's :class:`~vpp.core.RtLoop` over the units'
pipelines: the same objects the :class:`~vpp.orchestrator.field.unit.FieldUnit` keeps
feeding with telemetry, base power and droop settings, so nothing is copied and the
ramp carries over whichever path steps them.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from vpp.config.field import FieldConfig, RealtimeConfig, UnitConfig
from vpp.core import RtLoop, RtTarget
from vpp.drivers.register_map import (
    DEFAULT_MAP,
    Point,
    PointType,
    Sign,
    Table,
    WordOrder,
    load_register_map,
)
from vpp.errors import ConfigError
from vpp.orchestrator.field.unit import FieldUnit

if TYPE_CHECKING:  # the driver's module imports pymodbus (the import contracts)
    from vpp.drivers.sunspec import SunSpecSetpoint

__all__ = [
    "SETPOINT_POINT",
    "point_tuple",
    "rt_target",
    "serial_units",
    "start_loop",
    "sunspec_target",
    "sunspec_units",
]

log = logging.getLogger(__name__)

#: The register map point the loop writes, and the optional watchdog points.
SETPOINT_POINT = "active_power_setpoint"
WATCHDOG_POINT = "watchdog"
WATCHDOG_TIMEOUT_POINT = "watchdog_timeout"


def point_tuple(p: Point) -> tuple[int, str, float, bool, bool]:
    """A map point as the core takes it: (address, type, scale, negate, little_words)."""
    return (
        p.address,
        p.type.value,
        p.scale,
        p.sign is Sign.CHARGE_POSITIVE,
        p.word_order is WordOrder.LITTLE,
    )


def _writable(regmap_points: dict[str, Point], name: str) -> Point | None:
    p = regmap_points.get(name)
    if p is None or p.table is not Table.HOLDING or p.access != "rw" or p.type is PointType.BOOL:
        return None
    return p


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


#: The serial settings the driver defaults to (``ModbusRtuConfig``): 19200 8E1.
RTU_DEFAULTS: dict[str, Any] = {"baudrate": 19200, "parity": "E", "stopbits": 1, "bytesize": 8}


def _link(protocol: str, c: dict[str, Any]) -> tuple[str, tuple[int, str, int, int] | None] | None:
    """Where the loop reaches the device: ("host:port", None) for Modbus TCP, (serial
    port, (baudrate, parity, stopbits, bytesize)) for Modbus RTU; None if the config
    does not say it plainly (the driver reports a bad one with its own error)."""
    if protocol == "modbus_tcp":
        host, port = c.get("host"), c.get("port", 502)
        if not (isinstance(host, str) and host and _is_int(port) and 1 <= port <= 65535):
            return None
        return f"{host}:{port}", None
    if protocol == "modbus_rtu":
        path = c.get("port")
        s = {k: c.get(k, d) for k, d in RTU_DEFAULTS.items()}
        if not (isinstance(path, str) and path and isinstance(s["parity"], str)):
            return None
        if not all(_is_int(s[k]) for k in ("baudrate", "stopbits", "bytesize")):
            return None
        return path, (s["baudrate"], s["parity"], s["stopbits"], s["bytesize"])
    return None


def rt_target(unit: UnitConfig, rt: RealtimeConfig) -> RtTarget | None:
    """How the loop writes ``unit``'s setpoint, or None for the Python path (see the
    module docstring). A map that cannot be read is a ConfigError, as for the driver."""
    inv = unit.inverter
    if inv.secondary is not None:
        return None
    # Read by hand rather than through the driver's model, which would import pymodbus
    # with this module (the import contracts); the driver validates the same dict when
    # it starts and reports a bad one with its own error.
    c = inv.config
    link = _link(inv.protocol, dict(c))
    device_id, map_file = c.get("device_id", 1), c.get("map", DEFAULT_MAP)
    if link is None or not isinstance(map_file, str):
        return None
    if not (_is_int(device_id) and 1 <= device_id <= 247):
        return None
    address, serial = link
    regmap = load_register_map(map_file)
    points = {p.name: p for p in regmap.points}
    setpoint = _writable(points, SETPOINT_POINT)
    if setpoint is None:
        return None
    watchdog = _writable(points, WATCHDOG_POINT)
    timeout = _writable(points, WATCHDOG_TIMEOUT_POINT)
    try:
        return RtTarget(
            address,
            device_id,
            point_tuple(setpoint),
            watchdog=None if watchdog is None else point_tuple(watchdog),
            watchdog_period_s=rt.watchdog_period_s,
            watchdog_timeout=None if timeout is None else point_tuple(timeout),
            watchdog_timeout_s=rt.watchdog_timeout_s,
            threshold_kw=unit.write_threshold_kw,
            serial=serial,
        )
    except ValueError as exc:
        if serial is None:
            raise
        # A line setting the loop cannot make (a baud rate termios has no constant for):
        # the driver, through pyserial, may still; the unit stays on the Python path.
        log.warning("unit %s: serial line not for the real-time loop: %s", unit.id, exc)
        return None


def sunspec_units(field: FieldConfig) -> list[int]:
    """The indexes of ``field``'s units whose SunSpec inverter the loop may write once
    discovered (a failover path stays on the Python path, as for Modbus)."""
    return [
        i
        for i, u in enumerate(field.units)
        if u.inverter.protocol == "sunspec" and u.inverter.secondary is None
    ]


def sunspec_target(unit: UnitConfig, layout: SunSpecSetpoint, rt: RealtimeConfig) -> RtTarget:
    """The loop's target for SunSpec ``unit`` with its driver's discovered ``layout``:
    704 ``WSet`` in W at 10^sf per step (the loop's setpoints are kW, positive
    discharging as SunSpec's), with ``WSetEna``/``WSetMod`` in the same request and the
    layout's registers checked on each connect. Where the device implements 704's
    reversion, it is the watchdog: ``WSetRvrt`` = 0 W, enabled, after ``rt``'s
    ``watchdog_timeout_s`` (whole seconds, rounded up) without a write, written on each
    connect, and the loop writes the setpoint again every ``watchdog_period_s``."""
    c = unit.inverter.config
    address = f"{c.get('host')}:{c.get('port', 502)}"
    point = (layout.address, layout.type, 10.0**layout.sf / 1000.0, False, False)
    init: list[tuple[int, list[int]]] = []
    refresh_s = 0.0
    if layout.reversion_time is not None:
        seconds = max(1, math.ceil(rt.watchdog_timeout_s))
        init = [(a, list(words)) for a, words in layout.reversion]
        init.append((layout.reversion_time, [seconds >> 16, seconds & 0xFFFF]))
        refresh_s = rt.watchdog_period_s
    try:
        return RtTarget(
            address,
            c.get("device_id", 1),
            point,
            threshold_kw=unit.write_threshold_kw,
            prefix=list(layout.prefix),
            verify=[(a, list(words)) for a, words in layout.verify],
            init=init,
            refresh_s=refresh_s,
        )
    except ValueError as exc:
        raise ConfigError(f"unit {unit.id}: real-time loop: {exc}") from exc


def start_loop(
    field: FieldConfig,
    units: Sequence[FieldUnit],
    *,
    read_timeout_s: float,
    stale_s: float,
    idle_period_s: float,
    realtime_settings: bool,
) -> tuple[RtLoop, list[bool]]:
    """Start the loop over ``units`` (in this order); returns it and, per unit, whether
    the loop writes its setpoints. ``realtime_settings``: ask for SCHED_FIFO and locked
    memory (a dedicated controller process; not a test process hosting many)."""
    rt = field.realtime
    targets = [rt_target(u.cfg, rt) for u in units]
    # One request in flight per line, and the loop's links are one per unit: units that
    # share a serial port stay on the Python path (their drivers share it as before).
    ports = Counter(t.address for t in targets if t is not None and t.serial is not None)
    for i, t in enumerate(targets):
        if t is not None and t.serial is not None and ports[t.address] > 1:
            log.warning("unit %s: serial port %s is shared with another unit; its "
                        "setpoints stay on the Python path", units[i].id, t.address)  # fmt: skip
            targets[i] = None
    pmu = field.pmu
    udp = f"0.0.0.0:{pmu.udp_port}" if pmu.transport == "udp" else None
    try:
        loop = RtLoop(
            f"{pmu.host}:{pmu.port}",
            pmu.idcode,
            [(u.pipeline, t) for u, t in zip(units, targets, strict=True)],
            udp_bind=udp,
            read_timeout_s=read_timeout_s,
            stale_s=stale_s,
            idle_period_s=idle_period_s,
            write_timeout_s=rt.write_timeout_s,
            priority=rt.priority if realtime_settings else 0,
            lock_memory=rt.lock_memory and realtime_settings,
            spin_s=rt.spin_us * 1e-6,
        )
    except ValueError as exc:
        raise ConfigError(f"field {field.id}: real-time loop: {exc}") from exc
    return loop, [t is not None for t in targets]


def serial_units(units: Sequence[FieldUnit], written: Sequence[bool]) -> list[int]:
    """The indexes of the units whose serial line the loop owns (written by the loop
    over Modbus RTU): their drivers must poll through the loop."""
    return [
        i
        for i, (u, w) in enumerate(zip(units, written, strict=True))
        if w and u.cfg.inverter.protocol == "modbus_rtu"
    ]
