"""COMTRADE in and out, checked against a foreign reader: the ``comtrade`` package
(python-comtrade 0.2.0, MIT), which only reads.

- what the harness writes, the foreign reader reads back with the same values (within
  half a scaling step);
- a hand-made standard BINARY .cfg/.dat pair (C37.111-1999), which the foreign reader
  also reads, is imported by the harness and replayed through the simulated target.
"""

from __future__ import annotations

import csv
import math
import struct
from pathlib import Path

import comtrade
import numpy as np
import pytest

from tests.hil.helpers import hil_run, write_plan
from vpp.hil.comtrade import AnalogChannel, read_channel, read_comtrade, write_comtrade

RATE = 50


def _steps(cfg: Path) -> list[float]:
    """Each analog channel's ``a`` (its scaling step), in order, from the .cfg."""
    lines = cfg.read_text(encoding="ascii").splitlines()
    n_a = int(lines[1].split(",")[1].rstrip("A"))
    return [float(lines[2 + i].split(",")[5]) for i in range(n_a)]


def test_what_the_harness_writes_the_foreign_reader_reads(tmp_path: Path) -> None:
    t = np.arange(0, 4, 1 / RATE) + 0.013 * np.sin(np.arange(200))  # uneven, like frames
    t.sort()
    freq = 50 - 0.3 * (t > 1)
    power = np.where(t > 1.2, 437.25, 0.0)
    flat = np.full_like(t, 49.99)  # a constant channel must survive its scaling
    bits = [int(x > 2) for x in t]
    cfg, dat = write_comtrade(
        tmp_path / "case-49.50",
        station="vpp hil case",
        device="rig",
        start_unix_s=1_764_756_000.25,
        times_s=t,
        analog=[
            AnalogChannel("freq", "Hz", freq),
            AnalogChannel("measured", "kW", power),
            AnalogChannel("soc", "%", flat),
        ],
        status=[("safety_active", bits)],
    )
    assert cfg.name == "case-49.50.cfg" and dat.name == "case-49.50.dat"
    rec = comtrade.Comtrade()
    rec.load(str(cfg), str(dat))
    assert rec.analog_channel_ids == ["freq", "measured", "soc"]
    assert rec.total_samples == t.size
    steps = _steps(cfg)
    for got, want, a in zip(rec.analog, (freq, power, flat), steps, strict=True):
        np.testing.assert_allclose(np.asarray(got), want, atol=a / 2 + 1e-9)
    # The times come from the timestamps (nrates 0), to the microsecond.
    np.testing.assert_allclose(np.asarray(rec.time), t - t[0], atol=1e-6)
    assert list(rec.status[0]) == bits
    assert rec.cfg.analog_channels[0].uu == "Hz" and rec.cfg.analog_channels[1].uu == "kW"
    assert rec.start_timestamp.year == 2025
    # Our own reader agrees with the foreign one.
    ours = read_comtrade(cfg)
    for i, name in enumerate(("freq", "measured", "soc")):
        np.testing.assert_allclose(ours.analog[name], np.asarray(rec.analog[i]), atol=1e-9)


def _hand_made_binary(where: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """A BINARY C37.111-1999 pair written field by field from the standard: 50 Hz for
    2 s, a fall to 49.6 Hz over 2 s, held; 1 analog channel ``F`` (a = 0.0001 Hz per
    count, b = 50 Hz), 1 status channel; one sample rate of 50/s."""
    n = 10 * RATE
    t = np.arange(n) / RATE
    f = 50.0 - 0.2 * np.clip(t - 2.0, 0.0, 2.0)
    raw = np.rint((f - 50.0) / 0.0001).astype(int)
    cfg = where / "HAND.CFG"
    cfg.write_text(
        "\r\n".join([
            "HAND MADE RIG,TEST 1,1999",
            "2,1A,1D",
            "1,F,,,Hz,0.0001,50.0,0,-32767,32767,1,1,P",
            "1,TRIP,,,0",
            "50",
            "1",
            f"{RATE},{n}",
            "03/12/2026,10:00:00.000000",
            "03/12/2026,10:00:02.000000",
            "BINARY",
            "1",
        ]) + "\r\n",
        encoding="ascii",
    )  # fmt: skip
    with (where / "HAND.DAT").open("wb") as fh:
        for k in range(n):
            fh.write(struct.pack("<IIhH", k + 1, k * 20_000, int(raw[k]), int(t[k] > 5)))
    return cfg, t, f


def test_a_hand_made_binary_record_is_imported_and_replayed(tmp_path: Path) -> None:
    cfg, t, f = _hand_made_binary(tmp_path)
    foreign = comtrade.Comtrade()
    foreign.load(str(cfg), str(tmp_path / "HAND.DAT"))
    np.testing.assert_allclose(np.asarray(foreign.analog[0]), f, atol=1e-4)
    times, freqs = read_channel(cfg, "F")
    np.testing.assert_allclose(freqs, np.asarray(foreign.analog[0]), atol=1e-9)
    np.testing.assert_allclose(times, t, atol=1e-9)

    plan = write_plan(tmp_path, {
        "name": "replay",
        "settle_s": 2,
        "cases": [{"name": "hand-made", "procedure": "iegc_primary", "duration_s": 8,
                   "profile": {"kind": "comtrade", "file": "HAND.CFG", "channel": "F"}}],
    })  # fmt: skip
    out = tmp_path / "out"
    r = hil_run(plan, "--out", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    with (out / "hand-made.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    # The frames carried the recording: 50 Hz, the fall, 49.6 Hz (PMU float32).
    for row in rows:
        tc = float(row["t_s"])
        assert float(row["freq_hz"]) == pytest.approx(np.interp(tc, t, f), abs=1e-4)
    assert min(float(r["freq_hz"]) for r in rows) == pytest.approx(49.6, abs=1e-4)
    # At 49.6 Hz the IEGC droop expects 60 kW; the unit delivered it.
    late = [float(r["measured_kw"]) for r in rows if float(r["t_s"]) > 6]
    assert late and all(abs(p - 60.0) < 1.0 for p in late)

    # The harness's record of the real run, read by the foreign reader.
    rec = comtrade.Comtrade()
    rec.load(str(out / "hand-made.cfg"), str(out / "hand-made.dat"))
    steps = dict(zip(rec.analog_channel_ids, _steps(out / "hand-made.cfg"), strict=True))
    for name, column in (("freq", "freq_hz"), ("measured", "measured_kw"),
                         ("setpoint", "setpoint_kw")):  # fmt: skip
        got = np.asarray(rec.analog[rec.analog_channel_ids.index(name)])
        want = np.array([float(r[column]) for r in rows])
        ok = np.isfinite(want)
        # The CSV keeps 6 significant digits: its own rounding adds to the scaling's.
        tol = steps[name] / 2 + 1e-5 * np.abs(want[ok]) + 1e-9
        assert np.all(np.abs(got[ok] - want[ok]) <= tol), name
    tt = np.array([float(r["t_s"]) for r in rows])
    np.testing.assert_allclose(np.asarray(rec.time), tt - tt[0], atol=2e-5)
    assert math.isclose(rec.cfg.frequency, 50.0)


def test_an_unknown_channel_or_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    from vpp.errors import ConfigError

    cfg, _, _ = _hand_made_binary(tmp_path)
    with pytest.raises(ConfigError, match=r"no analog channel 'FREQ'.*'F'"):
        read_channel(cfg, "FREQ")
    with pytest.raises(ConfigError, match="cannot read"):
        read_channel(tmp_path / "nope.cfg", "F")
