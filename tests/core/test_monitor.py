"""FrequencyMonitor: IEGC bands, hysteresis, transitions, sliding-window statistics."""

import math

import numpy as np
import pytest

from vpp.core import Band, FrequencyMonitor
from vpp.errors import ConfigError


@pytest.mark.parametrize(
    ("f", "band"),
    [
        (49.49, Band.CRITICAL_LOW),
        (49.50, Band.LOW),
        (49.8999, Band.LOW),
        (49.90, Band.NORMAL),
        (50.00, Band.NORMAL),
        (50.05, Band.NORMAL),
        (50.0501, Band.HIGH),
        (50.50, Band.HIGH),
        (50.5001, Band.CRITICAL_HIGH),
    ],
)
def test_default_bands_are_iegc(f: float, band: Band) -> None:
    m = FrequencyMonitor()
    assert m.classify(f) == band
    m.update(0.0, f)
    assert m.band == band


def test_hysteresis_and_transitions() -> None:
    m = FrequencyMonitor(hysteresis_hz=0.01)
    assert m.band is None
    assert m.update(0.0, 50.0) is None
    assert m.update(0.1, 49.895) is None  # below the edge but within the hysteresis
    assert m.band == Band.NORMAL
    tr = m.update(0.2, 49.889)
    assert tr is not None
    assert (tr.from_band, tr.to_band, tr.time) == (Band.NORMAL, Band.LOW, 0.2)
    assert m.update(0.3, 49.905) is None  # back above the edge, not by 0.01 yet
    assert m.band == Band.LOW
    tr = m.update(0.4, 49.911)
    assert tr is not None and tr.to_band == Band.NORMAL
    # high side: leaving NORMAL needs f > 50.06
    assert m.update(0.5, 50.055) is None
    tr = m.update(0.6, 50.07)
    assert tr is not None and (tr.from_band, tr.to_band) == (Band.NORMAL, Band.HIGH)
    # a jump over two bands lands in the right one
    tr = m.update(0.7, 50.8)
    assert tr is not None and tr.to_band == Band.CRITICAL_HIGH
    assert m.transition_count == 4
    assert m.last_transition is not None and m.last_transition.time == 0.7
    assert m.band is not None and m.band.label == "critical_high"


def test_zero_hysteresis_follows_raw_band() -> None:
    m = FrequencyMonitor(hysteresis_hz=0.0)
    m.update(0.0, 49.95)
    tr = m.update(1.0, 49.8999)
    assert tr is not None and tr.to_band == Band.LOW
    tr = m.update(2.0, 49.90)
    assert tr is not None and tr.to_band == Band.NORMAL


def test_custom_bands() -> None:
    m = FrequencyMonitor(critical_low_hz=49.0, low_hz=49.8, high_hz=50.2, critical_high_hz=51.0)
    assert m.classify(49.85) == Band.NORMAL
    assert m.classify(49.5) == Band.LOW


@pytest.mark.parametrize("window", [1, 5, 50, 257])
def test_window_stats_match_numpy(window: int) -> None:
    rng = np.random.default_rng(42)
    freqs = 50.0 + np.cumsum(rng.normal(0.0, 0.005, 3000))
    m = FrequencyMonitor(window_samples=window)
    for i, f in enumerate(freqs):
        m.update(i * 0.04, float(f))
        w = freqs[max(0, i + 1 - window) : i + 1]
        assert m.min == w.min()
        assert m.max == w.max()
        assert m.mean == pytest.approx(w.mean(), abs=1e-10)
        assert len(m) == len(w)
    assert m.deviation == pytest.approx(freqs[-1] - 50.0)


def test_invalid_samples_counted_and_ignored() -> None:
    m = FrequencyMonitor(window_samples=4)
    m.update(0.0, 50.0)
    for bad in (math.nan, math.inf, -math.inf, 0.0, -50.0):
        assert m.update(1.0, bad) is None
    assert m.update(math.nan, 49.0) is None
    assert m.invalid_count == 6
    assert len(m) == 1
    assert (m.min, m.max, m.band) == (50.0, 50.0, Band.NORMAL)


def test_empty_and_reset() -> None:
    m = FrequencyMonitor()
    assert (m.min, m.max, m.mean, m.deviation) == (None, None, None, None)
    m.update(0.0, 49.0)
    m.reset()
    assert (len(m), m.band, m.invalid_count) == (0, None, 0)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"window_samples": 0}, "window_samples"),
        ({"hysteresis_hz": -0.01}, "hysteresis_hz"),
        ({"hysteresis_hz": math.nan}, "hysteresis_hz"),
        ({"low_hz": 50.1}, "low_hz"),
        ({"nominal_hz": 0.0}, "nominal_hz"),
        ({"critical_high_hz": math.inf}, "critical_high_hz"),
    ],
)
def test_bad_parameters_raise_config_error(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ConfigError) as exc:
        FrequencyMonitor(**kwargs)  # type: ignore[arg-type]
    assert exc.value.field == field
