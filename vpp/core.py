"""The Python face of the compiled real-time core (``vpp._core``), re-exported by name.

Control (frequency monitor, ROCOF, droop, safety envelope): see docs/control.md.
The per-frame ``Pipeline`` composes them behind the C37.118 decoder: docs/pipeline.md.
The 10 Hz control loop is paced by ``Ticker`` (absolute monotonic deadlines): docs/ticker.md.
Power sign everywhere: positive = discharge. Units: kW, Hz, Hz/s, V, A, degrees C, percent.
"""

from vpp._core import (
    Action,
    Band,
    Decision,
    DroopController,
    DroopOutput,
    FrequencyMonitor,
    Pipeline,
    RocofEstimator,
    RtLoop,
    RtTarget,
    SafetyEnvelope,
    SafetyReset,
    SafetyStatus,
    Telemetry,
    Ticker,
    Transition,
    Violation,
    ViolationCode,
)

__all__ = [
    "Action",
    "Band",
    "Decision",
    "DroopController",
    "DroopOutput",
    "FrequencyMonitor",
    "Pipeline",
    "RocofEstimator",
    "RtLoop",
    "RtTarget",
    "SafetyEnvelope",
    "SafetyReset",
    "SafetyStatus",
    "Telemetry",
    "Ticker",
    "Transition",
    "Violation",
    "ViolationCode",
]
