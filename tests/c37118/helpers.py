"""Builders of configurations and data frames shared by the C37.118 tests."""

from __future__ import annotations

import math

from vpp import c37118 as c

#: PHUNIT of a voltage channel: 0.01 V per count; of a current channel: 0.001 A per count.
V_UNIT = 1000
I_UNIT = (1 << 24) | 100
#: ANUNIT: rms, scale 2.
AN_UNIT = (1 << 24) | 2


def pmu_config(
    fmt: int,
    idcode: int = 7,
    station: str = "STATION A",
    phasors: int = 4,
    analogs: int = 3,
    digitals: int = 1,
    fnom: float = 50.0,
) -> c.PmuConfig:
    """A PMU with half voltage, half current phasors."""
    half = (phasors + 1) // 2
    return c.PmuConfig(
        station,
        idcode,
        fmt,
        [f"PH{i}" for i in range(phasors)],
        [V_UNIT if i < half else I_UNIT for i in range(phasors)],
        [f"AN{i}" for i in range(analogs)],
        [AN_UNIT] * analogs,
        [f"D{i}" for i in range(16 * digitals)],
        [0x0000FFFF] * digitals,
        fnom=fnom,
        cfgcnt=3,
    )


def config(
    fmt: int = 0,
    kind: str = "cfg2",
    idcode: int = 7,
    version: int = 2,
    pmus: list[c.PmuConfig] | None = None,
) -> c.ConfigFrame:
    return c.ConfigFrame(
        kind,
        idcode,
        pmus if pmus is not None else [pmu_config(fmt, idcode)],
        time_base=1_000_000,
        data_rate=50,
        soc=1_700_000_000,
        fracsec=250_000,
        version=version,
    )


def pmu_data(pc: c.PmuConfig, seed: int = 0) -> c.PmuData:
    """Values every FORMAT represents exactly (integer counts of the scales)."""
    scales = pc.phasor_scales
    phasors = []
    for i, k in enumerate(scales):
        if pc.polar or pc.phasors_float:
            phasors.append(((20_000 + seed) * k, round((i - 1.5 + seed * 1e-3) * 1e4) * 1e-4))
        else:
            re, im = (10_000 + seed) * k, (-5_000 - seed) * k
            phasors.append((math.hypot(re, im), math.atan2(im, re)))
    return c.PmuData(
        phasors,
        pc.fnom + (seed % 50 - 25) * 1e-3,
        (seed % 40 - 20) * 1e-2,
        [float((100 + seed + i) * 2) for i in range(len(pc.analog_names))],
        [(seed + i) & 0xFFFF for i in range(len(pc.digital_units))],
        stat=seed & 0x0F,
    )


def data_frame(cfg: c.ConfigFrame, seed: int = 0) -> c.DataFrame:
    return c.DataFrame(
        cfg,
        [pmu_data(p, seed) for p in cfg.pmus],
        1_700_000_000 + seed,
        fracsec=20_000 * (seed % 50),
    )


def assert_data_equal(got: c.DataFrame, want: c.DataFrame, rel: float = 1e-6) -> None:
    assert (got.soc, got.fracsec, got.idcode) == (want.soc, want.fracsec, want.idcode)
    for g, w in zip(got.pmus, want.pmus, strict=True):
        assert (g.stat, g.digitals, g.idcode) == (w.stat, w.digitals, w.idcode)
        assert math.isclose(g.freq, w.freq, rel_tol=1e-7, abs_tol=1e-6)
        assert math.isclose(g.dfreq, w.dfreq, rel_tol=1e-7, abs_tol=1e-6)
        for (gm, ga), (wm, wa) in zip(g.phasors, w.phasors, strict=True):
            assert math.isclose(gm * math.cos(ga), wm * math.cos(wa), rel_tol=rel, abs_tol=1e-4)
            assert math.isclose(gm * math.sin(ga), wm * math.sin(wa), rel_tol=rel, abs_tol=1e-4)
        for ga2, wa2 in zip(g.analogs, w.analogs, strict=True):
            assert math.isclose(ga2, wa2, rel_tol=1e-6)
