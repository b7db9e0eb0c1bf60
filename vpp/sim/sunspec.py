"""A BESS that speaks SunSpec over Modbus TCP, backed by :class:`BessModel`.

The holding registers from ``base_address`` (40000) hold ``SunS``, then models 1, 701,
702, 704, 711, 713 and 802 (or the subset given) laid out by pysunspec2's model
definitions, then the end model (0xFFFF, 0). Points the simulator does not fill read as
SunSpec's "not implemented" value. The pymodbus server, the fixed-rate stepping on the
real clock and the lifecycle are :class:`vpp.sim.bess.BessSimulator`'s; this class
replaces its register image with the SunSpec one::

    async with SunSpecBessSimulator(port=0, capacity_kwh=1000, rated_power_kw=500) as sim:
        ...  # a SunSpec client on ("127.0.0.1", sim.port)

Writes to the control points act on the model: 704 ``WSet`` (W, + = discharge) with
``WSetMod`` = WATTS, or ``WSetPct`` (% of the rating) with W_MAX_PCT, is the power
request while ``WSetEna`` is ENABLED (else standby); ``VarSet`` while ``VarSetEna``;
802 ``SetOp`` = CONNECT and ``SetInvState`` = INVERTER_STARTED enable the inverter;
``AlmRst`` = 1 clears the latched 802 events (those no longer active) and reads back 0.
704's reversion: a write of ``WSetEna``, ``WSetMod`` or ``WSet`` starts ``WSetRvrtTms``
(0: off) again; when it passes without another, the setting takes ``WSetRvrt`` and
``WSetEnaRvrt`` (``reversions`` counts it).
A map without 802 has no start/stop: the inverter follows 704 alone.
A write that touches a read-only point is refused with ILLEGAL_ADDRESS; an enum value
outside its symbols with ILLEGAL_VALUE.
"""

from __future__ import annotations

import math
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.simulator import DataType, SimData, SimDevice
from sunspec2 import device as ss_device  # type: ignore[import-untyped]

from vpp.drivers.sunspec_models import (
    END_MODEL_ID,
    SUNS_MARKER,
    bytes_to_words,
    iter_points,
    words_to_bytes,
)
from vpp.sim.bess import BessSimulator
from vpp.sim.bess_model import FAULT_BITS, BessModel, State
from vpp.validation import config_error

__all__ = ["ALL_MODELS", "EVENT_BITS", "SunSpecBessSimulator"]

ALL_MODELS = (1, 701, 702, 704, 711, 713, 802)
#: 802 ``Evt1`` bits the simulator raises (bit numbers of the model's symbols).
EVENT_BITS = {"OVER_TEMP_ALARM": 1, "OVER_TEMP_WARNING": 2, "UNDER_TEMP_ALARM": 3}
_OVER_TEMP_701 = 7  # 701 Alrm bit OVER_TEMP


def _sf_for(peak: float, limit: int = 0x7FFF) -> int:
    """The smallest power-of-ten exponent at which ``peak`` fits in ``limit`` counts."""
    if peak <= 0:
        return 0
    return max(-3, math.ceil(math.log10(peak / limit)))


class SunSpecBessSimulator(BessSimulator):
    """A simulated battery behind a SunSpec Modbus TCP server (see the module docstring).

    ``models`` chooses which models the map has (to simulate devices that lack one);
    ``frequency_hz`` and ``voltage_v`` are the grid values 701 reports.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 502,
        device_id: int = 1,
        capacity_kwh: float = 1000.0,
        rated_power_kw: float = 500.0,
        rated_kva: float | None = None,
        initial_soc_pct: float = 50.0,
        ramp_kw_s: float = 100.0,
        step_hz: float = 10.0,
        model: BessModel | None = None,
        models: tuple[int, ...] = ALL_MODELS,
        base_address: int = 40000,
        frequency_hz: float = 50.0,
        voltage_v: float = 415.0,
    ) -> None:
        """Configure the simulator; ``model`` replaces the one built from the ratings."""
        unknown = sorted(set(models) - set(ALL_MODELS))
        if unknown:
            raise config_error(f"SunSpec simulator: unsupported models {unknown}", "models")
        self.models = tuple(m for m in ALL_MODELS if m in models)
        if not 0 <= base_address <= 0xFFFF - 600:  # room for the seven models
            raise config_error(
                f"SunSpec simulator: base_address {base_address} out of range", "base_address"
            )
        self.base_address = base_address
        self.frequency_hz = frequency_hz
        self.voltage_v = voltage_v
        self.latched_events = 0
        #: Modbus requests served (reads and writes).
        self.requests = 0
        #: Times 704's active power setting reverted (``WSetRvrtTms`` passed without a
        #: write of ``WSet``, ``WSetEna`` or ``WSetMod``).
        self.reversions = 0
        self._revert_at: float | None = None
        self.blocks: dict[int, Any] = {}  # model id -> pysunspec2 Model (untyped)
        self._offsets: dict[int, int] = {}  # model id -> register offset from base
        self._words: list[int] = []
        # BessSimulator.__init__ builds the model, then calls _init_image (below).
        super().__init__(
            host=host,
            port=port,
            device_id=device_id,
            capacity_kwh=capacity_kwh,
            rated_power_kw=rated_power_kw,
            rated_kva=rated_kva,
            initial_soc_pct=initial_soc_pct,
            ramp_kw_s=ramp_kw_s,
            step_hz=step_hz,
            model=model,
        )

    # --- the register image -------------------------------------------------------------

    def address_of(self, model_id: int) -> int:
        """Modbus address of a model's ``ID`` register."""
        return self.base_address + self._offsets[model_id]

    def _init_image(self) -> None:
        m = self.model
        w_sf = _sf_for(m.s_max_kva * 1000.0)
        wh_sf = _sf_for(m.capacity_kwh * 1000.0, 0xFFFE)
        initial: dict[int, dict[str, Any]] = {
            1: {"Mn": "vpp", "Md": "sim-bess", "Vr": "1.0", "SN": f"SIM{self.device_id:04d}",
                "DA": self.device_id},
            701: {"ACType": 2, "W_SF": w_sf, "VA_SF": w_sf, "Var_SF": w_sf, "PF_SF": -3,
                  "A_SF": -1, "V_SF": -1, "Hz_SF": -3, "Tmp_SF": -1, "Alrm": 0},
            702: {"W_SF": w_sf, "VA_SF": w_sf, "Var_SF": w_sf, "PF_SF": -3, "V_SF": -1,
                  "A_SF": -1, "WMaxRtg": m.p_max_kw * 1000, "VAMaxRtg": m.s_max_kva * 1000,
                  "WChaRteMaxRtg": m.p_max_kw * 1000, "WDisChaRteMaxRtg": m.p_max_kw * 1000,
                  "VNomRtg": self.voltage_v},
            704: {"WSet_SF": 0, "WSetPct_SF": -2, "VarSet_SF": 0, "VarSetPct_SF": -2,
                  "WSetEna": 0, "WSetMod": 1, "WSet": 0, "WSetPct": 0, "VarSetEna": 0,
                  "VarSetMod": 4, "VarSetPri": 0, "VarSet": 0, "WSetRvrt": 0,
                  "WSetEnaRvrt": 0, "WSetRvrtTms": 0, "WSetRvrtRem": 0},
            711: {"Ena": 0, "AdptCtlReq": 0, "AdptCtlRslt": 1, "NCtl": 1, "Db_SF": -3,
                  "K_SF": -2, "RspTms_SF": -1,
                  "Ctl": [{"DbOf": 0.05, "DbUf": 0.1, "KOf": 0.05, "KUf": 0.05, "RspTms": 1.0,
                           "PMin": 0, "ReadOnly": 0}]},
            713: {"WH_SF": wh_sf, "Pct_SF": -1, "WHRtg": m.capacity_kwh * 1000},
            802: {"AHRtg_SF": 0, "WHRtg_SF": wh_sf, "WChaDisChaMax_SF": w_sf, "SoC_SF": -1,
                  "SoH_SF": -1, "DoD_SF": -1, "V_SF": -1, "CellV_SF": -3, "A_SF": -1, "AMax_SF": 0,
                  "W_SF": w_sf, "WHRtg": m.capacity_kwh * 1000,
                  "AHRtg": 1000 * m.capacity_kwh / m.dc_voltage_v(),
                  "WChaRteMax": m.p_max_kw * 1000, "WDisChaRteMax": m.p_max_kw * 1000,
                  "SoCMax": m.soc_max_pct, "SoCMin": m.soc_min_pct, "Typ": 4,
                  "LocRemCtl": 0, "AlmRst": 0, "SetOp": 2, "SetInvState": 2, "Evt2": 0,
                  "EvtVnd1": 0, "EvtVnd2": 0, "CtrlHb": 0},
        }
        offset = 2
        for model_id in self.models:
            model = ss_device.Model(model_id=model_id, data=_raw_only(initial[model_id]))
            _set_scaled(model, initial[model_id])
            self.blocks[model_id] = model
            self._offsets[model_id] = offset
            offset += int(model.len)
        self._words = [*SUNS_MARKER] + [0] * (offset - 2) + [END_MODEL_ID, 0]
        self._apply()

    def _serialise(self, model_id: int) -> None:
        words = bytes_to_words(self.blocks[model_id].get_mb())
        start = self._offsets[model_id]
        self._words[start : start + len(words)] = words

    def _publish(self) -> None:
        m = self.model
        faults, running = m.faults, m.state == State.RUNNING
        over_temp = bool(faults & (1 << FAULT_BITS["over_temperature"]))
        events = (
            over_temp << EVENT_BITS["OVER_TEMP_ALARM"]
            | (m.temp_c >= m.charge_temp_c[1]) << EVENT_BITS["OVER_TEMP_WARNING"]
            | bool(faults & (1 << FAULT_BITS["under_temperature"]))
            << EVENT_BITS["UNDER_TEMP_ALARM"]
        )
        self.latched_events |= events
        s_kva = math.hypot(m.power_kw, m.q_kvar)
        values: dict[int, dict[str, Any]] = {
            701: {"W": m.power_kw * 1000, "Var": m.q_kvar * 1000, "VA": s_kva * 1000,
                  "PF": abs(m.power_kw) / s_kva if s_kva > 0 else 1.0,
                  "A": s_kva * 1000 / (math.sqrt(3) * self.voltage_v),
                  "LLV": self.voltage_v, "LNV": self.voltage_v / math.sqrt(3),
                  "Hz": self.frequency_hz, "TmpCab": m.temp_c,
                  "St": int(running), "InvSt": 6 if faults else 3 if running else 7,
                  "ConnSt": int(self.command.enable),
                  "Alrm": over_temp << _OVER_TEMP_701},
            702: {"WChaRteMax": m.max_charge_kw() * 1000,
                  "WDisChaRteMax": m.max_discharge_kw() * 1000},
            713: {"SoC": m.soc_pct, "SoH": m.soh_pct,
                  "WHAvail": m.capacity_kwh * 1000 * m.soc_pct / 100 * m.soh_pct / 100,
                  "Sta": 2 if faults else 1 if m.alarms else 0},
            802: {"SoC": m.soc_pct, "SoH": m.soh_pct, "DoD": 100 - m.soc_pct,
                  "V": m.dc_voltage_v(), "A": m.dc_current_a(), "W": m.power_kw * 1000,
                  "CellVAvg": m.cell_voltage(), "Hb": self.steps % 0x10000,
                  "Evt1": self.latched_events | events, "NCyc": 0,
                  "ChaSt": 3 if m.power_kw > 0.5 else 4 if m.power_kw < -0.5 else 6,
                  "State": 99 if faults else 3 if self._raw(802, "SetOp") == 1 else 1},
        }
        for model_id, points in values.items():
            if model_id in self.blocks:
                _set_scaled(self.blocks[model_id], points)
        for model_id in self.blocks:
            self._serialise(model_id)

    def _raw(self, model_id: int, name: str) -> int:
        block = self.blocks.get(model_id)
        value = None if block is None else block.points[name].value
        return int(value) if isinstance(value, int) else 0

    def _scaled(self, model_id: int, name: str) -> float:
        point = self.blocks[model_id].points[name]
        value = point.cvalue
        return float(value) if isinstance(value, (int, float)) else 0.0

    # --- the Modbus side -----------------------------------------------------------------

    def _device(self) -> SimDevice:
        # pymodbus wants all four tables; only holding registers are served (the action
        # refuses every other function code).
        bits = [SimData(0, values=[False], datatype=DataType.BITS)]
        holding = [
            SimData(self.base_address, values=list(self._words), datatype=DataType.REGISTERS)
        ]
        inputs = [SimData(0, datatype=DataType.INVALID)]
        return SimDevice(
            id=self.device_id, simdata=(bits, bits, holding, inputs), action=self._action
        )

    async def _action(
        self,
        func_code: int,
        start: int,
        address: int,
        count: int,
        registers: list[int],
        values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """pymodbus calls this before every access, with the table's live registers."""
        del count
        self.requests += 1
        if func_code not in (3, 6, 16):
            return ExcCodes.ILLEGAL_FUNCTION
        if values is not None:
            refused = self._write(address - self.base_address, [int(v) for v in values])
            if refused is not None:
                return refused
        offset = self.base_address - start
        registers[offset : offset + len(self._words)] = self._words
        return None

    def _write(self, offset: int, values: list[int]) -> ExcCodes | None:
        end = offset + len(values)
        touched: list[int] = []
        for model_id, model_start in self._offsets.items():
            model = self.blocks[model_id]
            if end <= model_start or offset >= model_start + int(model.len):
                continue
            for point in iter_points(model):
                p0 = model_start + int(point.offset)
                if p0 + int(point.len) <= offset or p0 >= end:
                    continue
                if point.pdef.get("access") != "RW":
                    return ExcCodes.ILLEGAL_ADDRESS
            touched.append(model_id)
        if not touched:
            return ExcCodes.ILLEGAL_ADDRESS  # the marker or the end model
        words = list(self._words)
        words[offset:end] = values
        decoded: dict[int, Any] = {}
        for model_id in touched:
            start, model = self._offsets[model_id], self.blocks[model_id]
            data = words_to_bytes(words[start : start + int(model.len)])
            new = ss_device.Model(model_id=model_id, model_len=int(model.len) - 2, data=data)
            if new.error_info or not _symbols_ok(new):
                return ExcCodes.ILLEGAL_VALUE
            decoded[model_id] = new
        # All or nothing: the request is applied only once every model accepted it.
        self.blocks.update(decoded)
        self._words = words
        self._arm_reversion(offset, end)
        self._apply()
        return None

    def _arm_reversion(self, offset: int, end: int) -> None:
        """A write of 704's active power setting (``WSetEna``, ``WSetMod``, ``WSet``)
        starts ``WSetRvrtTms`` again: the setting reverts unless written again in time
        (read here as SunSpec's reversion timeout after loss of communication)."""
        if 704 not in self.blocks:
            return
        start, points = self._offsets[704], self.blocks[704].points
        first = start + int(points["WSetEna"].offset)
        last = start + int(points["WSet"].offset) + int(points["WSet"].len)
        if end <= first or offset >= last:
            return
        tms = self._raw(704, "WSetRvrtTms")
        self._revert_at = self.clock() + tms if tms > 0 else None

    def _check_watchdog(self) -> None:
        super()._check_watchdog()
        if self._revert_at is None or 704 not in self.blocks:
            return
        left = self._revert_at - self.clock()
        model = self.blocks[704]
        if left > 0:
            model.points["WSetRvrtRem"].value = math.ceil(left)
            self._serialise(704)
            return
        # Reverted: the setting takes the reversion values until written again.
        self._revert_at = None
        self.reversions += 1
        model.points["WSet"].value = self._raw(704, "WSetRvrt")
        model.points["WSetEna"].value = self._raw(704, "WSetEnaRvrt")
        model.points["WSetRvrtRem"].value = 0
        self._serialise(704)
        self._apply()

    def _apply(self) -> None:
        """Turn the control points into the model's command."""
        cmd, m = self.command, self.model
        # Without 802 there is no start/stop: the inverter follows 704 alone.
        cmd.enable = 802 not in self.blocks or (
            self._raw(802, "SetOp") == 1 and self._raw(802, "SetInvState") == 3
        )
        if 704 in self.blocks:
            cmd.mode = 1 if self._raw(704, "WSetEna") == 1 else 0
            if self._raw(704, "WSetMod") == 1:
                cmd.p_kw = self._scaled(704, "WSet") / 1000.0
            else:
                cmd.p_kw = self._scaled(704, "WSetPct") / 100.0 * m.p_max_kw
            on = self._raw(704, "VarSetEna") == 1 and self._raw(704, "VarSetMod") == 4
            cmd.q_kvar = self._scaled(704, "VarSet") / 1000.0 if on else 0.0
        if self._raw(802, "AlmRst"):
            # The model's faults latch too: clear those whose cause has gone.
            m.reset_alarms()
            self.latched_events = 0
            # "Battery should reset to 0 when reset is complete" (model 802).
            self.blocks[802].points["AlmRst"].value = 0
        self._publish()


def _raw_only(values: dict[str, Any]) -> dict[str, Any]:
    """The values a model needs at construction: counts, groups and scale factors."""
    return {k: v for k, v in values.items() if k.endswith("_SF") or k in ("NCtl", "Ctl")}


def _set_scaled(model: Any, values: dict[str, Any]) -> None:
    """Set points from engineering values (scaled by the model's own scale factors)."""
    for name, value in values.items():
        if name == "Ctl":
            for group, points in zip(model.groups["Ctl"], value, strict=True):
                _set_scaled(group, points)
            continue
        point = model.points[name]
        if isinstance(value, str) or name.endswith("_SF") or not point.sf_required:
            point.set_value(value if isinstance(value, str) else int(value))
        else:
            point.set_value(float(value), computed=True)


def _symbols_ok(model: Any) -> bool:
    """Whether every written enum point holds one of its symbols (or no value)."""
    for point in iter_points(model):
        symbols = point.pdef.get("symbols")
        if point.pdef.get("access") != "RW" or point.pdef["type"] != "enum16" or not symbols:
            continue
        if point.value is not None and point.value not in {s["value"] for s in symbols}:
            return False
    return True
