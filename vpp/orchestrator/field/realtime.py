"""The field controller's side of the core's real-time loop (docs/realtime-loop.md).

:func:`rt_target` reads a unit's inverter configuration and its register map file and
says how the loop writes its setpoint (None: the unit's setpoints stay on the Python
path: another protocol, a failover path, or a map without a writable setpoint).
:func:`start_loop` starts the core's :class:`~vpp.core.RtLoop` over the units'
pipelines: the same objects the :class:`~vpp.orchestrator.field.unit.FieldUnit` keeps
feeding with telemetry, base power and droop settings, so nothing is copied and the
ramp carries over whichever path steps them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from vpp.config.models import FieldConfig, RealtimeConfig, UnitConfig
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

__all__ = ["SETPOINT_POINT", "point_tuple", "rt_target", "start_loop"]

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


def rt_target(unit: UnitConfig, rt: RealtimeConfig) -> RtTarget | None:
    """How the loop writes ``unit``'s setpoint, or None for the Python path (see the
    module docstring). A map that cannot be read is a ConfigError, as for the driver."""
    inv = unit.inverter
    if inv.protocol != "modbus_tcp" or inv.secondary is not None:
        return None
    # Read by hand rather than through the driver's model, which would import pymodbus
    # with this module (the import contracts); the driver validates the same dict when
    # it starts and reports a bad one with its own error.
    c = inv.config
    host, port = c.get("host"), c.get("port", 502)
    device_id, map_file = c.get("device_id", 1), c.get("map", DEFAULT_MAP)
    if not (isinstance(host, str) and host and isinstance(map_file, str)):
        return None
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (port, device_id)):
        return None
    if not (1 <= port <= 65535 and 1 <= device_id <= 247):
        return None
    regmap = load_register_map(map_file)
    points = {p.name: p for p in regmap.points}
    setpoint = _writable(points, SETPOINT_POINT)
    if setpoint is None:
        return None
    watchdog = _writable(points, WATCHDOG_POINT)
    timeout = _writable(points, WATCHDOG_TIMEOUT_POINT)
    return RtTarget(
        f"{host}:{port}",
        device_id,
        point_tuple(setpoint),
        watchdog=None if watchdog is None else point_tuple(watchdog),
        watchdog_period_s=rt.watchdog_period_s,
        watchdog_timeout=None if timeout is None else point_tuple(timeout),
        watchdog_timeout_s=rt.watchdog_timeout_s,
        threshold_kw=unit.write_threshold_kw,
    )


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
