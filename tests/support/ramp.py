"""The safety promise as a check: what may happen to a setpoint between two decisions.

Used by the property tests of the core pipeline and of the field unit. The rule
(docs/pipeline.md, "What the setpoint may do"):

- it always lies in the envelope's range before the ramp, ``[-max_charge, max_discharge]``;
- when the envelope stops the unit (stop, emergency, latched) it is 0;
- otherwise it is within ``ramp * elapsed`` of the setpoint in force, ``elapsed`` being
  the real (monotonic) time since that setpoint, or protection pulled it to the edge of
  the range nearest the previous setpoint, which is toward zero.
"""

from __future__ import annotations

import dataclasses

from vpp.core import Action, Decision

__all__ = ["InForce", "check_step"]


@dataclasses.dataclass
class InForce:
    """The setpoint in force (kW) and the monotonic time (s) it was set at."""

    kw: float
    mono: float


def check_step(prev: InForce, d: Decision, mono: float, ramp: float, what: str = "") -> None:
    """Raise AssertionError if ``d`` (decided at monotonic time ``mono``) breaks the rule."""
    s = d.safety
    sp = d.setpoint_kw
    eps = 1e-9 * (1.0 + abs(prev.kw))
    where = f"{what}: {prev.kw} -> {sp} after {mono - prev.mono:.4f} s: {d!r}"
    assert sp == sp and abs(sp) != float("inf"), where
    assert -s.max_charge_kw - eps <= sp <= s.max_discharge_kw + eps, "outside the envelope " + where
    if s.action >= Action.STOP or s.latched:
        assert sp == 0.0, "not stopped " + where
        return
    elapsed = max(0.0, mono - prev.mono)
    within = abs(sp - prev.kw) <= ramp * elapsed + eps
    pulled = (prev.kw > s.max_discharge_kw and sp == s.max_discharge_kw) or (
        prev.kw < -s.max_charge_kw and sp == -s.max_charge_kw
    )
    assert within or pulled, "faster than the ramp " + where
