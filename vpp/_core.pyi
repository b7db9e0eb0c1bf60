"""Type stub of the compiled core ``vpp._core`` (checked against it by mypy.stubtest)."""

from collections.abc import Sequence
from typing import ClassVar, Literal, final

__version__: str

def allocation_count() -> int: ...

# ---- errors (core_ext/py/src/errors.rs) ----

class VppError(Exception): ...

class ConfigError(VppError, ValueError):
    field: str

class FrameError(VppError, ValueError):
    kind: str
    field: str
    offset: int
    expected: int | None
    found: int | None

class TruncatedFrameError(FrameError): ...
class FrameSizeError(FrameError): ...
class CrcError(FrameError): ...
class SyncError(FrameError): ...
class FrameCountError(FrameError): ...
class NoConfigError(FrameError): ...
class ConfigMismatchError(FrameError): ...
class FrameValueError(FrameError): ...
class FrameEncodeError(FrameError): ...
class TickerError(VppError, OSError): ...

# ---- c37118 (core_ext/py/src/c37118.rs) ----

# ---- control (core_ext/py/src/control.rs) ----

@final
class Band:
    """Operator frequency band (IEGC defaults: 49.50 / 49.90 / 50.05 / 50.50 Hz)."""

    CRITICAL_LOW: ClassVar[Band]
    LOW: ClassVar[Band]
    NORMAL: ClassVar[Band]
    HIGH: ClassVar[Band]
    CRITICAL_HIGH: ClassVar[Band]
    @property
    def label(self) -> str: ...
    def __int__(self) -> int: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __ne__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
class Transition:
    """A band change: ``from_band`` -> ``to_band`` at frame time ``time`` (UNIX s)."""

    @property
    def from_band(self) -> Band: ...
    @property
    def to_band(self) -> Band: ...
    @property
    def time(self) -> float: ...

@final
class FrequencyMonitor:
    """Band tracker with hysteresis and min / max / mean over a sliding window."""

    def __new__(
        cls,
        *,
        nominal_hz: float = 50.0,
        critical_low_hz: float = 49.50,
        low_hz: float = 49.90,
        high_hz: float = 50.05,
        critical_high_hz: float = 50.50,
        hysteresis_hz: float = 0.01,
        window_samples: int = 50,
    ) -> FrequencyMonitor: ...
    def update(self, t: float, f: float) -> Transition | None: ...
    def classify(self, f: float) -> Band: ...
    @property
    def band(self) -> Band | None: ...
    @property
    def last_transition(self) -> Transition | None: ...
    @property
    def min(self) -> float | None: ...
    @property
    def max(self) -> float | None: ...
    @property
    def mean(self) -> float | None: ...
    @property
    def deviation(self) -> float | None: ...
    @property
    def invalid_count(self) -> int: ...
    @property
    def transition_count(self) -> int: ...
    def __len__(self) -> int: ...
    def reset(self) -> None: ...

@final
class RocofEstimator:
    """Least-squares ROCOF (Hz/s) over ``window_s`` of frame timestamps, or PMU DFREQ."""

    def __new__(
        cls,
        *,
        window_s: float = 0.2,
        capacity: int = 64,
        source: Literal["frequency", "dfreq"] = "frequency",
    ) -> RocofEstimator: ...
    def update(self, t: float, freq: float, dfreq: float = ...) -> float | None: ...
    @property
    def value(self) -> float | None: ...
    @property
    def is_full(self) -> bool: ...
    @property
    def source(self) -> str: ...
    @property
    def window_s(self) -> float: ...
    @property
    def invalid_count(self) -> int: ...
    @property
    def duplicate_count(self) -> int: ...
    @property
    def out_of_order_count(self) -> int: ...
    def __len__(self) -> int: ...
    def reset(self) -> None: ...

@final
class DroopOutput:
    """One droop decision, kW (positive = discharge)."""

    @property
    def droop_kw(self) -> float: ...
    @property
    def inertia_kw(self) -> float: ...
    @property
    def derate(self) -> float: ...
    @property
    def target_kw(self) -> float: ...
    @property
    def output_kw(self) -> float: ...
    @property
    def valid(self) -> bool: ...

@final
class DroopController:
    """Droop response with deadband, inertia, SOC / temperature derating, limits, ramp."""

    def __new__(
        cls,
        *,
        p_max_kw: float,
        droop_percent: float = 5.0,
        nominal_hz: float = 50.0,
        deadband_low_hz: float = 49.90,
        deadband_high_hz: float = 50.05,
        max_charge_kw: float | None = None,
        max_discharge_kw: float | None = None,
        ramp_kw_per_s: float | None = None,
        inertia_kw_per_hz_s: float = 0.0,
        soc_min_pct: float = 10.0,
        soc_low_knee_pct: float = 20.0,
        soc_high_knee_pct: float = 90.0,
        soc_max_pct: float = 100.0,
        temp_knee_c: float = 45.0,
        temp_max_c: float = 55.0,
    ) -> DroopController: ...
    def update(
        self, t: float, f: float, *, soc_pct: float, temp_c: float, rocof: float | None = None
    ) -> DroopOutput: ...
    def droop_kw(self, f: float) -> float: ...
    def derate(self, discharge: bool, soc_pct: float, temp_c: float) -> float: ...
    @property
    def output_kw(self) -> float: ...
    @property
    def invalid_count(self) -> int: ...
    def reset(self, output_kw: float = 0.0) -> None: ...

@final
class Action:
    """Severity of the safety envelope's verdict, in increasing order."""

    NONE: ClassVar[Action]
    LOG: ClassVar[Action]
    REDUCE: ClassVar[Action]
    STOP: ClassVar[Action]
    EMERGENCY_SHUTDOWN: ClassVar[Action]
    @property
    def label(self) -> str: ...
    def __int__(self) -> int: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __ne__(self, value: object, /) -> bool: ...
    def __lt__(self, value: Action, /) -> bool: ...
    def __le__(self, value: Action, /) -> bool: ...
    def __gt__(self, value: Action, /) -> bool: ...
    def __ge__(self, value: Action, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
class ViolationCode:
    """Which safety check was violated."""

    STALE_TELEMETRY: ClassVar[ViolationCode]
    INVALID_TELEMETRY: ClassVar[ViolationCode]
    CELL_OVERVOLTAGE_WARN: ClassVar[ViolationCode]
    CELL_OVERVOLTAGE_TRIP: ClassVar[ViolationCode]
    CELL_UNDERVOLTAGE_WARN: ClassVar[ViolationCode]
    CELL_UNDERVOLTAGE_TRIP: ClassVar[ViolationCode]
    PACK_OVERVOLTAGE: ClassVar[ViolationCode]
    PACK_UNDERVOLTAGE: ClassVar[ViolationCode]
    CHARGE_OVERCURRENT: ClassVar[ViolationCode]
    DISCHARGE_OVERCURRENT: ClassVar[ViolationCode]
    CHARGE_TEMPERATURE: ClassVar[ViolationCode]
    DISCHARGE_TEMPERATURE: ClassVar[ViolationCode]
    CRITICAL_TEMPERATURE: ClassVar[ViolationCode]
    TEMPERATURE_RISE_RATE: ClassVar[ViolationCode]
    CELL_IMBALANCE_WARN: ClassVar[ViolationCode]
    CELL_IMBALANCE_TRIP: ClassVar[ViolationCode]
    SOC_LOW: ClassVar[ViolationCode]
    SOC_HIGH: ClassVar[ViolationCode]
    SOH_LOW: ClassVar[ViolationCode]
    BMS_FAULT: ClassVar[ViolationCode]
    BMS_EMERGENCY: ClassVar[ViolationCode]
    POWER_OUTSIDE_ENVELOPE: ClassVar[ViolationCode]
    LATCHED: ClassVar[ViolationCode]
    @property
    def label(self) -> str: ...
    def __int__(self) -> int: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __ne__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
class Violation:
    """One violated check: measured ``value`` against ``limit`` and its ``action``."""

    @property
    def code(self) -> ViolationCode: ...
    @property
    def value(self) -> float: ...
    @property
    def limit(self) -> float: ...
    @property
    def action(self) -> Action: ...

@final
class SafetyStatus:
    """Verdict of one evaluation: action, allowed range, latch, violations."""

    @property
    def action(self) -> Action: ...
    @property
    def min_kw(self) -> float: ...
    @property
    def max_kw(self) -> float: ...
    @property
    def max_charge_kw(self) -> float: ...
    @property
    def max_discharge_kw(self) -> float: ...
    @property
    def latched(self) -> bool: ...
    @property
    def violations(self) -> list[Violation]: ...
    def has(self, code: ViolationCode) -> bool: ...

@final
class Telemetry:
    """Battery and inverter telemetry (current and power: positive = discharge)."""

    timestamp: float
    pack_voltage_v: float
    current_a: float
    cell_v_min: float
    cell_v_max: float
    temp_min_c: float
    temp_max_c: float
    soc_pct: float
    soh_pct: float
    bms_faults: int
    power_kw: float
    def __new__(
        cls,
        *,
        timestamp: float,
        pack_voltage_v: float,
        current_a: float,
        temp_min_c: float,
        temp_max_c: float,
        soc_pct: float,
        cell_v_min: float | None = None,
        cell_v_max: float | None = None,
        cells: Sequence[float] | None = None,
        soh_pct: float = 100.0,
        bms_faults: int = 0,
        power_kw: float = 0.0,
    ) -> Telemetry: ...

@final
class SafetyEnvelope:
    """Allowed power range and action from telemetry; presets "lfp_16s" and "nmc_16s"."""

    def __new__(
        cls, preset: Literal["lfp_16s", "nmc_16s"] = "lfp_16s", **limits: float
    ) -> SafetyEnvelope: ...
    def evaluate(self, telemetry: Telemetry, now: float) -> SafetyStatus: ...
    def clamp(self, requested_kw: float) -> float: ...
    def reset(self) -> bool: ...
    @property
    def status(self) -> SafetyStatus: ...
    @property
    def latched(self) -> bool: ...
    @property
    def invalid_count(self) -> int: ...
    @property
    def limits(self) -> dict[str, float]: ...

# ---- ticker (core_ext/py/src/ticker.rs) ----

# ---- pipeline (core_ext/py/src/pipeline.rs) ----
