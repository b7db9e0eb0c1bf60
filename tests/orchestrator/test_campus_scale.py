"""The campus's large-fleet paths against straightforward references: the bracketed
water level and priority fill against sorting everything, and the vectorised grouping
and acknowledged-setpoint filter (Outbox) against the per-unit dict code it replaced."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vpp.orchestrator.campus import waterfill as wf
from vpp.orchestrator.campus.config import STRATEGIES, Strategy
from vpp.orchestrator.campus.dispatch import Dispatcher, allocate
from vpp.orchestrator.campus.outbox import RESEND_ROUNDS, SAME_KW, Outbox

from .helpers import NOW, Unit, build, units


@st.composite
def _arrays(draw: st.DrawFn) -> dict[str, np.ndarray]:
    """Per-unit dispatch inputs from a seed: many units, with repeats (ties) sometimes."""
    n = draw(st.integers(20, 400))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    ties = draw(st.booleans())

    def col(lo: float, hi: float) -> np.ndarray:
        v = rng.uniform(lo, hi, n)
        return np.round(v, 0) if ties else v  # type: ignore[no-any-return]

    cap = col(1, 250)
    return {"cap": np.maximum(cap, 1.0), "rating": np.maximum(col(1, 250), 1.0),
            "soc": col(0, 100), "energy": np.maximum(col(10, 1000), 10.0),
            "efficiency": rng.uniform(0.8, 1.0, n)}  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(_arrays(), st.floats(-1.0, 1.0).filter(lambda f: abs(f) > 1e-6),
       st.sampled_from(STRATEGIES))  # fmt: skip
def test_bracketed_allocation_equals_sorting_everything(
    args: dict[str, np.ndarray], fraction: float, strategy: Strategy
) -> None:
    target = fraction * float(args["cap"].sum())
    with pytest.MonkeyPatch.context() as mp:
        # Small fleets take the bracketing path too, with a small sample.
        mp.setattr(wf, "SORT_BELOW", 8)
        mp.setattr(wf, "SAMPLE", 8)
        fast = allocate(strategy, target, **args)
    plain = allocate(strategy, target, **args)
    cap = args["cap"]
    assert np.all(fast >= 0) and np.all(fast <= cap)
    assert abs(float(fast.sum()) - abs(target)) <= 1e-6
    assert np.allclose(fast, plain, rtol=1e-9, atol=1e-6)


def _reference(
    result_setpoints: dict[str, float],
    excluded: dict[str, str],
    owner: dict[str, str],
    acked: dict[str, tuple[float, int]],
    rounds: int,
) -> tuple[dict[str, list[tuple[str, float]]], int]:
    """The campus round's grouping and filter as it was written per unit (dicts)."""

    def due(unit: str, kw: float) -> bool:
        last = acked.get(unit)
        return last is None or abs(last[0] - kw) > SAME_KW or rounds - last[1] >= RESEND_ROUNDS

    sends: dict[str, list[tuple[str, float]]] = {}
    for unit, kw in result_setpoints.items():
        sends.setdefault(owner.get(unit, ""), []).append((unit, kw))
    for unit, why in excluded.items():
        if why != "offline":
            sends.setdefault(owner.get(unit, ""), []).append((unit, 0.0))
        else:
            acked.pop(unit, None)
    sends = {f: [(u, kw) for u, kw in items if due(u, kw)] for f, items in sends.items()}
    sends = {f: items for f, items in sends.items() if items}
    unreachable = sends.pop("", [])
    return sends, len(unreachable)


@settings(max_examples=200, deadline=None)
@given(units(max_units=40), st.floats(-1.5, 1.5), st.sampled_from(STRATEGIES),
       st.lists(st.tuples(st.integers(0, 39), st.sampled_from([0.0, SAME_KW / 2, 2 * SAME_KW,
                                                                5.0, math.nan]),
                          st.integers(-2 * RESEND_ROUNDS, 0)), max_size=40),
       st.integers(1, 4), st.integers(0, 3 * RESEND_ROUNDS), st.data())  # fmt: skip
def test_outbox_sends_what_the_per_unit_code_sent(
    us: list[Unit], fraction: float, strategy: Strategy,
    acks: list[tuple[int, float, int]], n_fields: int, rounds: int, data: st.DataObject,
) -> None:  # fmt: skip
    fleet = build(us)
    fields = [f"field-{k}" for k in range(n_fields)]
    # Some units have no owner (a configuration that lost one): counted, never sent.
    owner = {u.uid: f for u in us
             if (f := data.draw(st.sampled_from([*fields, None]))) is not None}  # fmt: skip
    box = Outbox(fields, capacity=2)  # small: it must grow
    for u in us:
        box.place(fleet.slot(u.uid), u.uid, owner.get(u.uid))
    result = Dispatcher(fleet).dispatch(fraction * 1000.0, NOW, strategy)
    # Acknowledgements: some equal to this round's setpoint, some near, some old.
    setpoints = result.setpoints
    acked: dict[str, tuple[float, int]] = {}
    for k, delta, age in acks:
        if k >= len(us):
            continue
        uid = us[k].uid
        if math.isnan(delta):
            continue
        kw = setpoints.get(uid, 0.0) + delta
        acked[uid] = (kw, rounds + age)
        box.ack(np.array([fleet.slot(uid)]), np.array([kw]), rounds + age)
    want, nobody_want = _reference(setpoints, result.excluded, owner, acked, rounds)
    got, nobody = box.plan(result, rounds)
    assert nobody == nobody_want
    assert {f: s.items() for f, s in got.items()} == want
    for s in got.values():
        assert s.slots.tolist() == [fleet.slot(u) for u in s.units]
    # Offline units' acknowledgements are forgotten, as the reference popped them.
    for uid, why in result.excluded.items():
        if why == "offline":
            assert math.isnan(box.acked_kw[fleet.slot(uid)])
