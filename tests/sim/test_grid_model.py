"""The single-area grid model (vpp.sim.grid_model): swing-equation checks against the
closed-form figures, the fleet in the loop (the core's DroopController), and the model
streamed by a real PmuServer on loopback."""

from __future__ import annotations

import contextlib
import math

import numpy as np
import pytest

from tests.support.aio import run
from vpp import c37118 as c
from vpp.core import DroopController
from vpp.drivers.pmu import PdcClient
from vpp.errors import ConfigError
from vpp.sim.grid_model import (
    GridEvent,
    GridFrequencySource,
    GridModel,
    GridModelConfig,
    generation_loss,
)
from vpp.sim.pmu import PmuServer
from vpp.validation import validate_model

F0 = 50.0


def test_initial_rocof_after_a_step_is_minus_dp_f0_over_2hs() -> None:
    cfg = GridModelConfig(base_mw=200.0, inertia_s=4.0)
    dp_mw = 3.0  # 1.5 % of the base
    m = GridModel(cfg, [GridEvent(10.0, dp_mw)])
    m.advance_to(9.99)
    assert m.rocof == 0.0 and m.frequency == F0
    m.advance_to(10.0)
    want = -dp_mw * F0 / (2 * cfg.inertia_s * cfg.base_mw)
    assert want == pytest.approx(-0.09375)
    assert m.rocof == pytest.approx(want, rel=1e-12)
    # The slope of f over the first 20 ms, before governor and damping matter.
    f_before = m.frequency
    m.step(0.02)
    assert (m.frequency - f_before) / 0.02 == pytest.approx(want, rel=0.01)


@pytest.mark.parametrize(
    ("damping", "droop", "reheat", "dp_mw"),
    [(1.0, 0.05, 7.0, 1.0), (2.0, 0.04, 0.0, 2.5), (0.0, 0.03, 5.0, -1.5)],
)
def test_steady_state_deviation_is_minus_dp_over_d_plus_1_over_r(
    damping: float, droop: float, reheat: float, dp_mw: float
) -> None:
    cfg = GridModelConfig(damping_pu=damping, droop_pu=droop, reheat_time_s=reheat)
    m = GridModel(cfg, [GridEvent(1.0, dp_mw)])
    m.advance_to(300.0)
    dev_pu = (m.frequency - F0) / F0
    want = -(dp_mw / cfg.base_mw) / (damping + 1 / droop)
    assert dev_pu == pytest.approx(want, rel=1e-4)
    # The turbines make up the deficit less what the load's damping absorbs.
    assert m.mechanical_mw == pytest.approx(-want / droop * cfg.base_mw, rel=1e-4)


def test_governor_limit_leaves_the_rest_to_load_damping() -> None:
    cfg = GridModelConfig(damping_pu=1.5, governor_limit_pu=0.004)
    m = GridModel(cfg, [generation_loss(0.0, 0.01, cfg.base_mw)])
    m.advance_to(400.0)
    assert m.mechanical_mw == pytest.approx(0.4, rel=1e-9)
    assert (m.frequency - F0) / F0 == pytest.approx(-(0.01 - 0.004) / 1.5, rel=1e-4)


def test_fleet_discharge_raises_frequency_by_p_over_d_plus_1_over_r() -> None:
    m = GridModel()
    m.fleet_kw = 2000.0  # 2 MW into a 100 MW area
    m.advance_to(300.0)
    assert (m.frequency - F0) / F0 == pytest.approx(0.02 / (1.0 + 20.0), rel=1e-4)


def test_battery_droop_in_the_loop_raises_the_nadir_and_the_settled_frequency() -> None:
    cfg = GridModelConfig()
    loss = generation_loss(5.0, 0.02, cfg.base_mw)
    alone = GridModel(cfg, [loss]).run(60.0, 0.02)

    # 10 MW of batteries at 5 % droop without deadband: gain (10 / 100) / 0.05 = 2 pu.
    droop = DroopController(
        p_max_kw=10_000.0,
        droop_percent=5.0,
        deadband_low_hz=F0,
        deadband_high_hz=F0,
        ramp_kw_per_s=math.inf,
    )

    def fleet(t: float, f: float, rocof: float) -> float:
        return droop.update(t, f, soc_pct=50.0, temp_c=25.0).output_kw

    helped = GridModel(cfg, [loss]).run(300.0, 0.02, fleet)
    nadir_alone, nadir_helped = alone.f.min(), helped.f.min()
    assert nadir_helped > nadir_alone + 0.005
    assert nadir_alone < 49.90 < nadir_helped  # the fleet keeps it in the normal band
    settled = (helped.f[-1] - F0) / F0
    assert settled == pytest.approx(-0.02 / (1.0 + 20.0 + 2.0), rel=1e-4)
    assert helped.fleet_kw[-1] == pytest.approx(-settled / 0.05 * 10_000.0, rel=1e-6)
    assert np.all(helped.fleet_kw[helped.t < 5.0] == 0.0)


def test_results_do_not_depend_on_how_time_is_chopped() -> None:
    events = [GridEvent(1.013, 1.0), GridEvent(4.5, -0.4)]
    a = GridModel(events=events).run(8.0, 0.02)
    b = GridModel(events=events)
    rng = np.random.default_rng(5)
    for t in a.t[1:]:
        # Irregular hops between the sample times, some of them zero.
        for _ in range(int(rng.integers(0, 3))):
            b.advance_to(b.t + float(rng.uniform(0.0, t - b.t)))
        b.advance_to(float(t))
        assert b.frequency == pytest.approx(a.f[np.searchsorted(a.t, t)], abs=1e-9)


def test_event_added_late_applies_from_its_time() -> None:
    m = GridModel()
    m.advance_to(2.0)
    m.add_event(GridEvent(1.0, 1.0))  # in the past: applies now
    m.add_event(GridEvent(3.0, 1.0))
    assert m.load_mw == 1.0
    m.advance_to(3.0)
    assert m.load_mw == 2.0
    assert [e.time_s for e in m.events] == [1.0, 3.0]


@pytest.mark.parametrize(
    ("data", "field"),
    [({"inertia_s": -1.0}, "inertia_s"), ({"droop_pu": 0.0}, "droop_pu"), ({"bogus": 1}, "bogus")],
)
def test_bad_config_is_a_config_error_on_the_field(data: dict[str, float], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate_model(GridModelConfig, data, "grid model")
    assert info.value.field == field
    assert field in str(info.value)


def test_bad_inputs_are_config_errors() -> None:
    m = GridModel()
    with pytest.raises(ConfigError) as info:
        m.fleet_kw = math.nan
    assert info.value.field == "fleet_kw"
    with pytest.raises(ConfigError):
        m.step(-0.1)
    with pytest.raises(ConfigError) as info:
        GridEvent(-1.0, 1.0)
    assert info.value.field == "time_s"
    assert m.fleet_kw == 0.0 and m.t == 0.0


def test_pmu_server_streams_the_model_and_sees_the_fleet() -> None:
    """Frames from a real PmuServer carry the model's frequency at the frame times; a
    fleet discharging into the model lifts what the PMU measures."""
    loss = [GridEvent(0.1, 2.0)]
    source = GridFrequencySource(GridModel(events=loss))
    source.fleet_kw = 500.0

    async def main() -> tuple[list[c.DataFrame], int]:
        async with PmuServer(rate=50, port=0, source=source) as srv:
            client = PdcClient("127.0.0.1", srv.port)
            data: list[c.DataFrame] = []
            async with contextlib.aclosing(client.frames()) as frames:
                async for fr in frames:
                    if isinstance(fr, c.DataFrame):
                        data.append(fr)
                        if len(data) == 40:
                            break
            await client.close()
            return data, srv.k0

    data, k0 = run(main())
    # Frame k of the run carries the model at k / rate seconds.
    times = np.array([(fr.soc * 50 + fr.fracsec // 20_000 - k0) / 50 for fr in data])
    assert np.all(np.diff(times) > 0) and times[-1] > 0.5
    ref = GridModel(events=loss)
    ref.fleet_kw = 500.0
    bare = GridModel(events=loss)
    got = np.array([fr.freq for fr in data])
    want = np.array([ref.advance_to(float(t)) for t in times])
    np.testing.assert_allclose(got, want, atol=1e-5)  # FREQ is float32 on the wire
    rocof = np.array([fr.dfreq for fr in data])
    # Right after the 2 % loss (less the fleet's 0.5 %): -0.015 x 50 / 10 Hz/s.
    assert rocof[times >= 0.1][0] == pytest.approx(-0.075, abs=0.005)
    without = np.array([bare.advance_to(float(t)) for t in times])
    late = times > 0.3
    assert np.all(got[late] > without[late] + 1e-4)


def test_fleet_in_the_loop_over_c37118_raises_the_nadir() -> None:
    """Closed loop over loopback TCP: PmuServer streams the model, a PDC client feeds each
    frame to the core's DroopController, and its output goes back into the model."""
    cfg = GridModelConfig(base_mw=10.0, inertia_s=2.0)
    loss = [GridEvent(0.2, 0.5)]  # 5 % of a 10 MW island
    open_loop = GridModel(cfg, loss).run(3.0, 0.02)
    source = GridFrequencySource(GridModel(cfg, loss))
    droop = DroopController(p_max_kw=2000.0, deadband_low_hz=49.98, ramp_kw_per_s=20_000.0)

    async def main() -> tuple[list[float], list[float]]:
        freqs: list[float] = []
        outputs: list[float] = []
        async with PmuServer(rate=50, port=0, source=source) as srv:
            client = PdcClient("127.0.0.1", srv.port)
            async with contextlib.aclosing(client.frames()) as frames:
                async for fr in frames:
                    if not isinstance(fr, c.DataFrame):
                        continue
                    out = droop.update(fr.time, fr.freq, soc_pct=50.0, temp_c=25.0)
                    source.fleet_kw = out.output_kw
                    freqs.append(fr.freq)
                    outputs.append(out.output_kw)
                    if source.model.t >= 3.0:
                        break
            await client.close()
            return freqs, outputs

    freqs, outputs = run(main())
    assert open_loop.f.min() == pytest.approx(49.608, abs=0.001)
    assert open_loop.f.min() + 0.08 < min(freqs) < 49.76  # the fleet holds it up
    assert max(outputs) > 150.0  # and it was the fleet: ~190 kW at the nadir

