"""The status of a SunSpec BESS in vpp's keys, units and sign.

:func:`status_of` maps the loaded model blocks (701, 702, 704, 711, 713, 802) to one
flat status: kW, kvar, kVA, kWh, Hz, V, A, degrees C, percent; power positive =
discharge (SunSpec's own sign for 701 ``W`` and 704 ``WSet``, so nothing is negated).
A point the device does not implement (0x8000, 0xFFFF, ... or an unimplemented scale
factor) is left out of the status rather than reported as a number. Enum points give
their code in the status and their symbol name in the second dict returned.
"""

from __future__ import annotations

from vpp.drivers.base import Status
from vpp.drivers.sunspec_models import ModelBlock

__all__ = ["MODES", "status_of"]

#: Modes of ``set_mode`` and the 704 ``WSetEna`` symbol each writes.
MODES = {"standby": "DISABLED", "power_control": "ENABLED"}

# (status key, point, divisor): engineering values, divided into vpp's unit.
_NUMBERS: dict[int, list[tuple[str, str, float]]] = {
    701: [
        ("power_kw", "W", 1000.0),
        ("reactive_power_kvar", "Var", 1000.0),
        ("apparent_power_kva", "VA", 1000.0),
        ("power_factor", "PF", 1.0),
        ("current_a", "A", 1.0),
        ("voltage_ll_v", "LLV", 1.0),
        ("voltage_ln_v", "LNV", 1.0),
        ("frequency_hz", "Hz", 1.0),
        ("temperature_c", "TmpCab", 1.0),
        ("der_alarms", "Alrm", 1.0),
    ],
    702: [
        ("rated_power_kw", "WMaxRtg", 1000.0),
        ("rated_apparent_power_kva", "VAMaxRtg", 1000.0),
        ("max_charge_kw", "WChaRteMax", 1000.0),
        ("max_discharge_kw", "WDisChaRteMax", 1000.0),
    ],
    704: [
        ("power_setpoint_kw", "WSet", 1000.0),
        ("reactive_power_setpoint_kvar", "VarSet", 1000.0),
    ],
    711: [],
    713: [
        ("capacity_kwh", "WHRtg", 1000.0),
        ("energy_available_kwh", "WHAvail", 1000.0),
        ("soc_pct", "SoC", 1.0),
        ("soh_pct", "SoH", 1.0),
    ],
    802: [
        ("dc_voltage_v", "V", 1.0),
        ("dc_current_a", "A", 1.0),
        ("dc_power_kw", "W", 1000.0),
        ("battery_events", "Evt1", 1.0),
        ("cycle_count", "NCyc", 1.0),
        ("heartbeat", "Hb", 1.0),
        ("alarm_reset", "AlmRst", 1.0),
    ],
}
# 802 fills in what 713 does not have (a device may implement either).
_FALLBACK = [
    ("soc_pct", "SoC", 1.0),
    ("soh_pct", "SoH", 1.0),
    ("capacity_kwh", "WHRtg", 1000.0),
    ("max_charge_kw", "WChaRteMax", 1000.0),
    ("max_discharge_kw", "WDisChaRteMax", 1000.0),
]
# (status key, model, enum point): the code goes in the status, the name in `names`.
_ENUMS = [
    ("operating_state", 701, "St"),
    ("inverter_state", 701, "InvSt"),
    ("grid_connection", 701, "ConnSt"),
    ("storage_status", 713, "Sta"),
    ("battery_state", 802, "State"),
    ("charge_status", 802, "ChaSt"),
    ("control_mode", 802, "LocRemCtl"),
    ("inverter_command", 802, "SetInvState"),
]
_FLAGS = [
    ("power_setpoint_enabled", 704, "WSetEna"),
    ("reactive_power_setpoint_enabled", 704, "VarSetEna"),
    ("droop_enabled", 711, "Ena"),
]


def _put(status: Status, key: str, value: float | None) -> None:
    if value is not None:
        status[key] = value


def status_of(blocks: dict[int, ModelBlock]) -> tuple[Status, dict[str, str]]:
    """(status, enum names) from the loaded blocks (see the module docstring)."""
    status: Status = {}
    names: dict[str, str] = {}
    for model_id, fields in _NUMBERS.items():
        block = blocks.get(model_id)
        if block is None or not block.loaded:
            continue
        for key, point, divisor in fields:
            value = block.value(point)
            _put(status, key, None if value is None else value / divisor)
    battery = blocks.get(802)
    if battery is not None and battery.loaded:
        for key, point, divisor in _FALLBACK:
            if key not in status:
                value = battery.value(point)
                _put(status, key, None if value is None else value / divisor)
    for key, model_id, point in _ENUMS:
        block = blocks.get(model_id)
        if block is None or not block.loaded:
            continue
        code = block.raw(point)
        if isinstance(code, int):
            status[key] = float(code)
            names[key] = block.symbol(point) or str(code)
    for key, model_id, point in _FLAGS:
        block = blocks.get(model_id)
        if block is not None and block.loaded and isinstance(block.raw(point), int):
            status[key] = block.symbol(point) == "ENABLED"
    if "power_setpoint_enabled" in status:
        names["mode"] = "power_control" if status["power_setpoint_enabled"] else "standby"
    droop = blocks.get(711)
    if droop is not None and droop.loaded:
        # The first stored curve: the one a device with NCtl = 1 runs.
        for key, point in (
            ("droop_deadband_over_hz", "DbOf"),
            ("droop_deadband_under_hz", "DbUf"),
            ("droop_k_over", "KOf"),
            ("droop_k_under", "KUf"),
            ("droop_response_s", "RspTms"),
        ):
            try:
                _put(status, key, droop.value(point, group="Ctl", index=0))
            except ValueError:  # no stored curve (NCtl = 0)
                break
    return status, names
