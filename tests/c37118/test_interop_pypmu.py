"""Interoperability with pyPMU (PyPI ``synchrophasor``) in both directions.

pyPMU quirks found here (we test against the standard, not against them):

* Float FREQ/DFREQ: pyPMU treats a float FREQ as a deviation from nominal (its encoder
  refuses values outside +-32.767 and ``get_measurements`` adds FNOM to it). The
  standard says a float FREQ is the actual frequency in Hz, so a pyPMU float FREQ of
  0.02 decodes here as 0.02 Hz, and a float 50.0 Hz cannot be built with pyPMU at all.
* FRACSEC: ``_int2frasec`` masks the fraction with 2**23 - 1 (23 bits, not 24), so
  fractions >= 2**23 lose their top bit in pyPMU; the tests use smaller fractions.
* Header frames: ``HeaderFrame.convert2frame`` returns ``str(bytes)``, i.e. the text
  wrapped as ``"b'...'"``.
* pyPMU has no CFG-3 codec (``ConfigFrame3`` is a stub), so CFG-3 is not tested here.
  Its type codes are right (4 = command, 5 = CFG-3).
* ``DataFrame.get_phasors()`` multiplies an integer polar *angle* by PHUNIT as well as
  the magnitude (the standard: angle = int16 x 1e-4 rad), and ignores ``convert2polar``
  for a single PMU. Expected values are therefore computed from the raw integers.
* pyPMU pads station and channel names with spaces and keeps the padding on decode.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from tests.support import pypmu as fr
from vpp import c37118 as c

SOC = 1_700_000_000
FRAC = 123_456
D16 = [f"D{i}" for i in range(16)]


def pypmu_one(fmt: tuple[bool, bool, bool, bool]) -> Any:
    """pyPMU CFG-2: one PMU, 2 phasors (V, I), 1 analog, 1 digital word, 50 Hz."""
    return fr.ConfigFrame2(
        7, 1_000_000, 1, "Station A", 7, fmt, 2, 1, 1,
        ["VA", "IA", "AN1", *D16],
        [(915527, "v"), (45776, "i")], [(3, "rms")], [(0x0000, 0xFFFF)],
        50, 4, 30, soc=SOC, frasec=(FRAC,),
    )  # fmt: skip


def pypmu_two() -> Any:
    """pyPMU CFG-2 with NUM_PMU = 2 of different FORMATs and nominal frequencies."""
    return fr.ConfigFrame2(
        21, 1_000_000, 2, ["ONE", "TWO"], [101, 102],
        [(True, True, True, True), (False, False, False, False)],
        [1, 2], [1, 0], [0, 1],
        [["VA", "AN1"], ["VB", "IB", *D16]],
        [[(915527, "v")], [(915527, "v"), (45776, "i")]], [[(1, "rms")], []], [[], [(0, 0xFFFF)]],
        [50, 60], [1, 2], 25, soc=SOC, frasec=(FRAC,),
    )  # fmt: skip


def pypmu_phasors(fmt: tuple[bool, bool, bool, bool]) -> list[tuple[float, float]]:
    polar, flt = fmt[0], fmt[1]
    if flt:
        return [(230.5, 0.5), (10.25, -1.25)] if polar else [(200.0, 100.0), (-3.0, 4.0)]
    return [(25_000, 5_000), (1_000, -20_000)] if polar else [(100, 200), (-300, 400)]


def expected_phasors(
    fmt: tuple[bool, bool, bool, bool], scales: list[float]
) -> list[tuple[float, float]]:
    """What the standard makes of `pypmu_phasors(fmt)`: integers times PHUNIT x 1e-5,
    integer angles x 1e-4 rad, rectangular converted to polar."""
    polar, flt = fmt[0], fmt[1]
    out = []
    for (x, y), k in zip(pypmu_phasors(fmt), scales, strict=True):
        if flt:
            out.append((x, y) if polar else (math.hypot(x, y), math.atan2(y, x)))
        elif polar:
            out.append((x * k, y * 1e-4))
        else:
            out.append((math.hypot(x, y) * k, math.atan2(y, x)))
    return out


FORMATS = [
    (p, f, a, q)
    for p in (False, True)
    for f in (False, True)
    for a in (False, True)
    for q in (False, True)
]


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: "".join("1" if b else "0" for b in f))
def test_pypmu_frames_decode_here(fmt: tuple[bool, bool, bool, bool]) -> None:
    cfg_p = pypmu_one(fmt)
    cfg = c.decode(cfg_p.convert2bytes())
    assert isinstance(cfg, c.ConfigFrame) and cfg.kind == "cfg2"
    (p,) = cfg.pmus
    assert (p.station, p.idcode, p.phasor_names, p.analog_names, p.fnom, p.cfgcnt) == (
        "Station A", 7, ["VA", "IA"], ["AN1"], 50.0, 4,
    )  # fmt: skip
    assert p.format == sum(b << i for i, b in enumerate(fmt))
    assert p.phasor_units == [915527, (1 << 24) | 45776]
    assert (cfg.time_base, cfg.data_rate, cfg.soc, cfg.fracsec) == (1_000_000, 30, SOC, FRAC)

    freq = 0.02 if fmt[3] else -25  # float FREQ: pyPMU writes the value as is (see quirks)
    dfreq = 0.5 if fmt[3] else 10
    analog = 12.5 if fmt[2] else 300
    data_p = fr.DataFrame(
        7,
        0,
        pypmu_phasors(fmt),
        freq,
        dfreq,
        [analog],
        [0xBEEF],
        cfg_p,
        soc=SOC + 1,
        frasec=(500_000,),
    )
    d = c.decode(data_p.convert2bytes(), cfg)
    assert isinstance(d, c.DataFrame)
    assert d.time == SOC + 1.5
    q = d.pmus[0]
    for (m, a), want in zip(q.phasors, expected_phasors(fmt, [9.15527, 0.45776]), strict=True):
        assert math.isclose(m, want[0], rel_tol=1e-6) and math.isclose(a, want[1], abs_tol=1e-7)
    if fmt[1] and fmt[0]:
        assert q.phasors[0] == (230.5, 0.5)
    assert q.freq == pytest.approx(0.02 if fmt[3] else 49.975)
    assert q.dfreq == pytest.approx(0.5 if fmt[3] else 0.1)
    assert q.analogs == [12.5 if fmt[2] else 900.0]  # integer analog x ANUNIT scale 3
    assert q.digitals == [0xBEEF]


def test_pypmu_two_pmus_decode_here() -> None:
    cfg_p = pypmu_two()
    cfg = c.decode(cfg_p.convert2bytes())
    assert isinstance(cfg, c.ConfigFrame)
    assert [(p.station, p.idcode, p.format, p.fnom) for p in cfg.pmus] == [
        ("ONE", 101, 15, 50.0),
        ("TWO", 102, 0, 60.0),
    ]
    assert cfg.pmus[1].digital_names == D16
    data_p = fr.DataFrame(
        21, [0, 0x2000], [[(230.5, 0.5)], [(100, 200), (-300, 400)]], [0.02, -25], [0.5, 10],
        [[12.5], []], [[], [0xBEEF]], cfg_p, soc=SOC, frasec=(FRAC,),
    )  # fmt: skip
    d = c.decode(data_p.convert2bytes(), cfg)
    assert isinstance(d, c.DataFrame)
    one, two = d.pmus
    assert (one.idcode, two.idcode, two.stat, two.sync_lost) == (101, 102, 0x2000, True)
    assert one.phasors == [(230.5, 0.5)] and one.analogs == [12.5]
    assert two.phasors[1] == (pytest.approx(500 * 0.45776), pytest.approx(math.atan2(400, -300)))
    assert two.freq == pytest.approx(59.975) and two.dfreq == pytest.approx(0.1)
    assert two.digitals == [0xBEEF]


def test_frames_encoded_here_decode_in_pypmu() -> None:
    pc = [
        c.PmuConfig("ONE", 101, 0x0F, ["VA"], [915527], ["AN1"], [(1 << 24) | 1], fnom=50.0),
        c.PmuConfig(
            "TWO",
            102,
            0x00,
            ["VB", "IB"],
            [915527, (1 << 24) | 45776],
            [],
            [],
            D16,
            [0xFFFF],
            fnom=60.0,
            cfgcnt=2,
        ),
    ]
    cfg = c.ConfigFrame(
        "cfg2", 21, pc, time_base=1_000_000, data_rate=25, soc=SOC, fracsec=FRAC, version=1
    )
    cfg_p = fr.ConfigFrame2.convert2frame(c.encode(cfg))
    assert [n.strip() for n in cfg_p.get_station_name()] == ["ONE", "TWO"]
    assert cfg_p.get_stream_id_code() == [101, 102]
    assert cfg_p.get_phasor_num() == [1, 2]
    assert cfg_p.get_ph_units() == [[(915527, "v")], [(915527, "v"), (45776, "i")]]
    assert cfg_p.get_fnom() == [50, 60]
    assert cfg_p.get_data_rate() == 25 and cfg_p.get_time_base() == 1_000_000
    assert cfg_p.get_data_format() == [(True, True, True, True), (False, False, False, False)]

    frame = c.DataFrame(
        cfg,
        [
            c.PmuData([(230.5, 0.5)], 0.02, 0.5, [12.5], []),
            c.PmuData(
                [(2000 * 9.15527, 0.25), (200 * 0.45776, -1.0)],
                59.975,
                0.1,
                [],
                [0xBEEF],
                stat=0x2000,
            ),
        ],
        SOC + 1,
        fracsec=500_000,
    )
    d_p = fr.DataFrame.convert2frame(c.encode(frame), cfg_p)
    m = d_p.get_measurements()
    assert m["pmu_id"] == 21 and m["time"] == SOC + 1.5
    one, two = m["measurements"]
    assert (one["stream_id"], two["stream_id"]) == (101, 102)
    assert one["phasors"] == [(230.5, 0.5)] and one["analog"] == [12.5] and one["rocof"] == 0.5
    assert two["digital"] == [0xBEEF] and two["frequency"] == pytest.approx(59.975)
    assert two["rocof"] == 10  # pyPMU returns the raw int DFREQ (Hz/s x 100)
    for (pm, pa), (m_, a_) in zip(
        two["phasors"], [(2000 * 9.15527, 0.25), (200 * 0.45776, -1.0)], strict=True
    ):
        # Rectangular int16 counts quantise to about one count.
        assert pm == pytest.approx(m_, rel=5e-3) and pa == pytest.approx(a_, abs=5e-3)
    # Raw integer phasors as pyPMU reads them: rectangular counts.
    re, im = d_p.get_phasors(convert2polar=False)[1][0]
    assert (re, im) == (round(2000 * math.cos(0.25)), round(2000 * math.sin(0.25)))


def test_header_both_ways() -> None:
    h = c.decode(fr.HeaderFrame(7, "PMU at bus 4", soc=SOC, frasec=(FRAC,)).convert2bytes())
    assert isinstance(h, c.HeaderFrame) and h.text == "PMU at bus 4" and h.fracsec == FRAC
    back = fr.HeaderFrame.convert2frame(
        c.encode(c.HeaderFrame(7, "PMU at bus 4", soc=SOC, fracsec=FRAC))
    )
    assert back.get_header() == str(b"PMU at bus 4")  # pyPMU quirk: str() of the bytes
    assert back.get_id_code() == 7 and back.get_soc() == SOC


@pytest.mark.parametrize(
    ("word", "code"),
    [("stop", 1), ("start", 2), ("header", 3), ("cfg1", 4), ("cfg2", 5), ("cfg3", 6)],
)
def test_commands_both_ways(word: str, code: int) -> None:
    f = c.decode(fr.CommandFrame(7, word, soc=SOC, frasec=(FRAC,)).convert2bytes())
    assert isinstance(f, c.CommandFrame) and f.command == code
    raw = c.encode(c.CommandFrame(7, code, soc=SOC, fracsec=FRAC, version=1))
    assert fr.CommandFrame.convert2frame(raw).get_command() == word


def test_extended_command_both_ways() -> None:
    f = c.decode(
        fr.CommandFrame(7, "extended", b"\x01\x02\x03\x04", soc=SOC, frasec=(FRAC,)).convert2bytes()
    )
    assert isinstance(f, c.CommandFrame) and (f.command_name, f.extended) == (
        "extended",
        b"\x01\x02\x03\x04",
    )
    back = fr.CommandFrame.convert2frame(
        c.encode(c.CommandFrame(7, 8, b"\xaa\xbb", soc=SOC, fracsec=FRAC))
    )
    assert back.get_command() == "extended" and back._extended_frame == b"\xaa\xbb"


def test_time_quality_bits_both_ways() -> None:
    raw = fr.HeaderFrame(7, "x", soc=SOC, frasec=(FRAC, "-", True, False, 5)).convert2bytes()
    h = c.decode(raw)
    tq = h.time_quality
    assert (
        tq.leap_second_delete,
        tq.leap_second_occurred,
        tq.leap_second_pending,
        tq.quality_code,
    ) == (True, True, False, 5)
    back = fr.HeaderFrame.convert2frame(
        c.encode(c.HeaderFrame(7, "x", soc=SOC, fracsec=FRAC, time_quality=0x1A))
    )
    assert back.get_frasec() == (FRAC, "+", False, True, 0xA)
