"""A unit's droop settings with a knee (GB Dynamic Containment): accepted as the service
states it, refused where the core would refuse it, and carried to the core."""

from __future__ import annotations

import math
from typing import Any

import pytest
from pydantic import ValidationError

from vpp.config import load_text
from vpp.config.models import DroopSettings
from vpp.errors import ConfigError

DC: dict[str, float] = {"deadband_low_hz": 49.985, "deadband_high_hz": 50.015,
                        "knee_hz": 0.2, "knee_percent": 5.0, "full_hz": 0.5}  # fmt: skip


def test_gb_dc_is_written_as_the_service_states_it() -> None:
    s = DroopSettings(**DC)
    assert (s.knee_hz, s.knee_percent, s.full_hz) == (0.2, 5.0, 0.5)
    # The default is no knee: today's straight droop.
    assert (DroopSettings().knee_hz, DroopSettings().knee_percent) == (0.0, 0.0)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"knee_hz": 0.01}, "knee_hz"),  # inside the 15 mHz deadband
        ({"knee_hz": 0.015}, "knee_hz"),  # at its edge
        ({"deadband_low_hz": 49.7}, "knee_hz"),  # the lower edge beyond the knee
        ({"knee_hz": -0.2}, "knee_hz"),
        ({"knee_percent": 0.0}, "knee_percent"),
        ({"knee_percent": 100.0}, "knee_percent"),
        ({"knee_percent": -1.0}, "knee_percent"),
        ({"full_hz": 0.2}, "full_hz"),  # a vertical outer segment
        ({"full_hz": 0.1}, "full_hz"),
        ({"knee_hz": 0.0}, "knee_percent"),  # points without a knee: ignored, so refused
        ({"knee_hz": 0.0, "knee_percent": 0.0}, "full_hz"),
        ({"knee_hz": math.inf}, "knee_hz"),
        ({"knee_hz": math.nan}, "knee_hz"),
        ({"knee_percent": "5"}, "knee_percent"),  # strict: no strings
        ({"full_hz": True}, "full_hz"),  # nor bools
    ],
)
def test_bad_knees_are_refused(change: dict[str, Any], says: str) -> None:
    with pytest.raises(ValidationError) as exc:
        DroopSettings(**(DC | change))
    assert says in str(exc.value)


def test_a_site_file_with_a_knee_loads_and_a_bad_one_names_the_key() -> None:
    unit = ("{id: u1, rated_power_kw: 100, capacity_kwh: 200, "
            "inverter: {protocol: modbus_tcp, config: {host: 10.0.0.1}}, droop: %s}")  # fmt: skip
    good = ("{deadband_low_hz: 49.985, deadband_high_hz: 50.015, knee_hz: 0.2, "
            "knee_percent: 5, full_hz: 0.5}")  # fmt: skip
    site = load_text(f"field:\n  - id: f1\n    units: [{unit % good}]\n", env={})
    droop = next(iter(site.units())).droop
    assert (droop.knee_hz, droop.knee_percent, droop.full_hz) == (0.2, 5.0, 0.5)
    bad = good.replace("full_hz: 0.5", "full_hz: 0.15")
    with pytest.raises(ConfigError) as exc:
        load_text(f"field:\n  - id: f1\n    units: [{unit % bad}]\n", env={})
    assert "full_hz" in str(exc.value)
