"""The per-frame pipeline from Python, on frames built by pyPMU (a foreign encoder)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from tests.support.pypmu import Stream
from vpp import _core, errors
from vpp.core import Action, Band, Pipeline, Telemetry, ViolationCode


def healthy(t: float) -> Telemetry:
    return Telemetry(
        timestamp=t,
        pack_voltage_v=52.8,
        current_a=0.0,
        temp_min_c=24.0,
        temp_max_c=25.0,
        soc_pct=50.0,
        cell_v_min=3.30,
        cell_v_max=3.31,
    )


def run(p: Pipeline, s: Stream, freqs: list[float]) -> list[object]:
    out = []
    for f in freqs:
        t, b = s.frame(f)
        p.set_telemetry(healthy(t))
        out.append(p.process(b, replay=True))
    return out


def test_configuration_frames_return_none_and_are_remembered() -> None:
    p, s = Pipeline(), Stream()
    assert p.process(s.config_bytes()) is None
    assert p.idcodes() == [7734]
    assert p.stats()["configs"] == 1


def test_under_frequency_gives_the_droop_response() -> None:
    p, s = Pipeline(p_max_kw=5.0), Stream(rate=25)
    p.process(s.config_bytes())
    d = run(p, s, [49.80] * 200)[-1]
    assert d is not None
    # 5 % droop on 5 kW, 0.10 Hz beyond the 49.90 Hz edge: 5 / 0.05 * 0.10 / 50 = 0.2 kW.
    assert d.freq == pytest.approx(49.80)
    assert d.response_kw == pytest.approx(0.2, abs=1e-6)
    assert d.setpoint_kw == pytest.approx(0.2, abs=1e-6)
    assert d.band == Band.LOW
    assert d.min_kw <= d.setpoint_kw <= d.max_kw
    assert d.time == pytest.approx(s.soc0 + 199 / 25)


def test_base_schedule_is_added_and_clamped_to_the_envelope() -> None:
    p, s = Pipeline(p_max_kw=5.0, base_kw=4.9), Stream()
    p.process(s.config_bytes())
    d = run(p, s, [49.0] * 400)[-1]
    assert d is not None
    assert d.requested_kw > 5.0
    assert d.setpoint_kw == pytest.approx(5.0)
    p.base_kw = -2.0
    assert p.base_kw == -2.0
    with pytest.raises(errors.ConfigError):
        p.base_kw = float("nan")


def test_no_telemetry_means_stop() -> None:
    p, s = Pipeline(base_kw=2.0), Stream()
    p.process(s.config_bytes())
    _, b = s.frame(50.0)
    d = p.process(b)
    assert d is not None
    assert d.setpoint_kw == 0.0
    assert d.action == Action.STOP
    assert any(v.code == ViolationCode.STALE_TELEMETRY for v in d.violations)
    assert d.to_dict()["action"] == "stop"


def test_bad_frames_raise_typed_errors_are_counted_and_the_loop_goes_on() -> None:
    p, s = Pipeline(), Stream()
    _, early = s.frame(50.0)
    with pytest.raises(errors.NoConfigError) as no_cfg:
        p.process(early)
    assert no_cfg.value.field == "IDCODE"
    p.process(s.config_bytes())
    _, b = s.frame(50.0)
    bad = bytearray(b)
    bad[-1] ^= 0xFF
    with pytest.raises(errors.CrcError) as crc:
        p.process(bytes(bad))
    assert crc.value.field == "CHK"
    assert crc.value.offset == len(b) - 2
    with pytest.raises(errors.TruncatedFrameError):
        p.process(b[:10])
    assert isinstance(crc.value, ValueError)
    _, good = s.frame(50.0)
    assert p.process(good) is not None
    stats = p.stats()
    assert stats["errors"]["crc"] == 1
    assert stats["errors"]["no_config"] == 1
    assert stats["error_total"] == 3
    assert stats["decisions"] == 1


def test_no_rust_allocation_per_frame() -> None:
    p, s = Pipeline(), Stream()
    p.process(s.config_bytes())
    frames = [s.frame(50.0 + 0.3 * np.sin(k / 20)) for k in range(3000)]
    tels = [healthy(t) for t, _ in frames]
    for tel, (_, b) in zip(tels[:20], frames[:20], strict=True):
        p.set_telemetry(tel)
        p.process(b, replay=True)
    before = _core.thread_allocation_count()
    for tel, (_, b) in zip(tels[20:], frames[20:], strict=True):
        p.set_telemetry(tel)
        p.process(b, replay=True)
    assert _core.thread_allocation_count() - before == 0
    assert _core.allocation_count() >= _core.thread_allocation_count()
    assert p.stats()["decisions"] == 3000


def test_process_buffer_matches_frame_by_frame() -> None:
    s = Stream()
    cfg = s.config_bytes()
    freqs = [50.0 - 0.002 * k for k in range(300)]
    frames = [s.frame(f)[1] for f in freqs]
    one = Pipeline()
    one.step(0.0, 50.0, wall=0.0, mono=0.0)  # give both the same history
    one.process(cfg)
    singles = [one.process(b, replay=True) for b in frames]
    many = Pipeline()
    many.step(0.0, 50.0, wall=0.0, mono=0.0)
    cols = many.process_buffer(cfg + b"\x00garbage" + b"".join(frames))
    assert cols["errors"] == 1
    assert len(cols["freq"]) == 300
    np.testing.assert_allclose(cols["freq"], [d.freq for d in singles if d is not None])
    np.testing.assert_allclose(cols["setpoint_kw"], [d.setpoint_kw for d in singles if d])


def test_process_releases_the_gil() -> None:
    s = Stream()
    p = Pipeline()
    p.process(s.config_bytes())
    # The same 2000 frames (40 s) a hundred times: every lap goes back in time, so its
    # first 2 s are refused as late until they have held as a new time base.
    buffer = b"".join(s.frame(50.0)[1] for _ in range(2000)) * 100
    ticks = 0
    stop = threading.Event()

    def spin() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1

    th = threading.Thread(target=spin)
    th.start()
    try:
        before = ticks
        cols = p.process_buffer(buffer)
        during = ticks - before
    finally:
        stop.set()
        th.join()
    assert len(cols["time"]) == 2000 + 99 * 1900
    assert cols["refused"] == 99 * 100
    # With the GIL held for the whole call the spinning thread could not count at all.
    assert during > 1000
