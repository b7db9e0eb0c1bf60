"""Fleet response allocation (vpp.orchestrator.grid.allocation): shares sum to the
obligation, respect headroom, skip unavailable units; the shares drive the core's droop."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vpp.core import DroopController
from vpp.errors import ConfigError
from vpp.orchestrator.grid.allocation import (
    AllocationConfig,
    UnitAvailability,
    allocate,
)
from vpp.validation import validate_model


def unit(
    uid: str, rated: float, dis: float, ch: float, base: float = 0.0, **kw: object
) -> UnitAvailability:
    return UnitAvailability.model_validate(
        {
            "unit_id": uid,
            "rated_kw": rated,
            "max_discharge_kw": dis,
            "max_charge_kw": ch,
            "base_kw": base,
            **kw,
        }
    )


FLEET = [
    unit("a", 100, 100, 100),
    unit("b", 200, 150, 200, base=50),  # up 100, down 250 -> both 100
    unit("off", 100, 100, 100, online=False),
    unit("stopped", 100, 100, 100, safety_action="stop"),
    unit("empty", 100, 0, 100),  # SOC at minimum: no discharge headroom
    unit("hot", 100, 100, 100, safety_action="reduce"),  # reduced still takes part
]


def test_pro_rata_to_headroom_in_both_directions() -> None:
    alloc = allocate(FLEET, AllocationConfig(obligation_kw=150.0))
    shares = {u.unit_id: u.share_kw for u in alloc.units}
    assert shares == pytest.approx({"a": 50.0, "b": 50.0, "hot": 50.0})
    assert alloc.allocated_kw == pytest.approx(150.0) and alloc.shortfall_kw == 0.0
    assert sum(u.factor for u in alloc.units) == pytest.approx(1.0)
    # 50 kW at 5 % droop, 50 Hz: full output 2.5 Hz beyond the edge -> 20 kW/Hz.
    assert [u.gain_kw_per_hz for u in alloc.units] == pytest.approx([20.0, 20.0, 20.0])
    assert alloc.gain_kw_per_hz == pytest.approx(60.0)
    assert alloc.excluded == {
        "off": "offline",
        "stopped": "safety stop",
        "empty": "no both headroom",
    }
    assert alloc.share("off") == 0.0


def test_direction_picks_the_headroom() -> None:
    down = allocate(FLEET, AllocationConfig(obligation_kw=300.0, direction="down"))
    shares = {u.unit_id: u.share_kw for u in down.units}
    # Charge headroom a 100, b 250, empty 100, hot 100: total 550.
    assert shares == pytest.approx(
        {
            "a": 300 * 100 / 550,
            "b": 300 * 250 / 550,
            "empty": 300 * 100 / 550,
            "hot": 300 * 100 / 550,
        }
    )
    up = allocate(FLEET, AllocationConfig(obligation_kw=300.0, direction="up"))
    assert "empty" in up.excluded and up.share("b") == pytest.approx(100.0)


def test_rating_basis_caps_at_headroom_and_shares_the_rest() -> None:
    units = [unit("a", 100, 20, 100), unit("b", 100, 100, 100), unit("c", 200, 200, 200)]
    alloc = allocate(units, AllocationConfig(obligation_kw=200.0, basis="rating", direction="up"))
    # Pro rata to rating 50/50/100, but a has 20: the other 180 go 1:2 to b and c.
    assert [u.share_kw for u in alloc.units] == pytest.approx([20.0, 60.0, 120.0])
    assert [u.factor for u in alloc.units] == pytest.approx([0.1, 0.3, 0.6])


def test_shortfall_when_headroom_is_short() -> None:
    alloc = allocate(FLEET, AllocationConfig(obligation_kw=500.0))
    assert [u.share_kw for u in alloc.units] == pytest.approx([100.0, 100.0, 100.0])
    assert alloc.shortfall_kw == pytest.approx(200.0)
    assert sum(u.factor for u in alloc.units) == pytest.approx(0.6)


def test_shares_set_the_core_droop_of_each_unit() -> None:
    alloc = allocate(FLEET, AllocationConfig(obligation_kw=150.0, droop_percent=4.0))
    f = 49.80  # 0.1 Hz below the 49.90 edge
    total = sum(
        DroopController(p_max_kw=u.share_kw, droop_percent=4.0).droop_kw(f) for u in alloc.units
    )
    assert total == pytest.approx(alloc.gain_kw_per_hz * 0.1, rel=1e-9)
    assert total == pytest.approx(150.0 / (0.04 * 50.0) * 0.1)


def test_bad_input_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        allocate([unit("a", 1, 1, 1), unit("a", 1, 1, 1)], AllocationConfig(obligation_kw=1))
    assert info.value.field == "unit_id"
    with pytest.raises(ConfigError) as info:
        validate_model(AllocationConfig, {"obligation_kw": 0}, "response allocation")
    assert info.value.field == "obligation_kw"
    with pytest.raises(ConfigError) as info:
        bad = {"obligation_kw": 1, "basis": "price"}
        validate_model(AllocationConfig, bad, "response allocation")
    assert info.value.field == "basis"


caps = st.floats(min_value=0.0, max_value=500.0, allow_nan=False)


@given(
    st.lists(st.tuples(st.floats(1.0, 500.0), caps, caps, st.booleans()), max_size=12),
    st.floats(1.0, 3000.0),
    st.sampled_from(["headroom", "rating"]),
)
def test_allocation_sums_to_obligation_within_headroom(
    spec: list[tuple[float, float, float, bool]], obligation: float, basis: str
) -> None:
    units = [unit(f"u{i}", r, d, c, online=on) for i, (r, d, c, on) in enumerate(spec)]
    data = {"obligation_kw": obligation, "basis": basis}
    cfg = validate_model(AllocationConfig, data, "response allocation")
    alloc = allocate(units, cfg)
    room = {u.unit_id: min(u.headroom_up_kw, u.headroom_down_kw) for u in units if u.online}
    assert alloc.allocated_kw == pytest.approx(min(obligation, sum(room.values())), abs=1e-6)
    for part in alloc.units:
        assert 0.0 < part.share_kw <= room[part.unit_id] + 1e-9
    assert {u.unit_id for u in alloc.units} | set(alloc.excluded) == {u.unit_id for u in units}
