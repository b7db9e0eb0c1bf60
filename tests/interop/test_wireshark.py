"""Frames produced by this codec, read by Wireshark's C37.118 dissector (tshark).

Every FORMAT combination, several PMUs per frame, CFG-1/2/3, header and command
frames: Wireshark must find the CRC good and report the values we encoded.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from tests.interop import tshark
from vpp import c37118

SOC = 1_700_000_000
V_UNIT = 915_527  # PHUNIT: voltage, 9.15527 V per count
I_UNIT = (1 << 24) | 45_776  # PHUNIT: current, 0.45776 A per count


def pmu(idcode: int, fmt: int, station: str = "PMU") -> c37118.PmuConfig:
    return c37118.PmuConfig(
        f"{station} {idcode}",
        idcode,
        fmt,
        ["VA", "VB", "VC", "I1"],
        [V_UNIT, V_UNIT, V_UNIT, I_UNIT],
        ["P", "Q", "F"],
        [(1 << 24) | 1, (1 << 24) | 1, (2 << 24) | 1],
        [f"B{i}" for i in range(16)],
        [0x0000FFFF],
        fnom=50.0,
        cfgcnt=3,
    )


def data_for(cfg: c37118.ConfigFrame, k: int) -> c37118.DataFrame:
    pmus = []
    for j, p in enumerate(cfg.pmus):
        # Values every FORMAT represents exactly: whole counts of the scale factors.
        volt = V_UNIT * 1e-5
        mags = [20_000 * volt, 20_010 * volt, 19_990 * volt, 1_000 * 0.45776]
        angles = [0.0, -2.0944, 2.0944, -0.5236]
        if not p.polar:
            # Rectangular integers: choose whole-count real/imaginary parts.
            comps = [(14_000, -3_000), (-9_000, -12_000), (-5_000, 13_000), (900, -400)]
            scales = [V_UNIT * 1e-5] * 3 + [0.45776]
            mags = [math.hypot(re, im) * s for (re, im), s in zip(comps, scales, strict=True)]
            angles = [math.atan2(im, re) for re, im in comps]
        pmus.append(
            c37118.PmuData(
                list(zip(mags, angles, strict=True)),
                49.950 + 0.001 * (k + j),
                -0.25,
                [100.0, -50.0, 7.0],
                [0x3C12 + k],
                idcode=p.idcode,
            )
        )
    return c37118.DataFrame(cfg, pmus, soc=SOC, fracsec=40_000 * (k + 1))


@pytest.fixture(scope="module")
def dissected(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    frames: list[bytes] = []
    sports: list[int] = []
    expected: list[tuple[str, object]] = []
    for fmt in range(16):
        cfg = c37118.ConfigFrame("cfg2", 100 + fmt, [pmu(100 + fmt, fmt)], data_rate=25, soc=SOC)
        frames.append(c37118.encode(cfg))
        sports.append(41000 + fmt)
        expected.append(("cfg", cfg))
        for k in range(2):
            df = data_for(cfg, k)
            frames.append(c37118.encode(df))
            sports.append(41000 + fmt)
            expected.append(("data", c37118.decode(c37118.encode(df), [cfg])))
    two = c37118.ConfigFrame("cfg2", 300, [pmu(301, 0b0000), pmu(302, 0b1111)], soc=SOC)
    frames += [c37118.encode(two), c37118.encode(data_for(two, 0))]
    sports += [42000, 42000]
    expected += [("cfg", two), ("data", c37118.decode(c37118.encode(data_for(two, 0)), [two]))]
    cfg1 = c37118.ConfigFrame("cfg1", 400, [pmu(400, 0b0101)], soc=SOC, version=1)
    cfg3 = c37118.ConfigFrame("cfg3", 401, [pmu(401, 0b1111)], soc=SOC)
    hdr = c37118.HeaderFrame(402, "vpp test header", soc=SOC)
    cmd = c37118.CommandFrame(403, 2, soc=SOC)
    for i, f in enumerate((cfg1, cfg3, hdr, cmd)):
        frames.append(c37118.encode(f))
        sports.append(43000 + i)
        expected.append(("other", f))
    path = Path(tmp_path_factory.mktemp("pcap")) / "frames.pcap"
    tshark.write_pcap(path, frames, sports)
    return {"packets": tshark.dissect(path), "expected": expected, "frames": frames}


def test_every_frame_has_a_good_crc_and_the_right_header(dissected: dict[str, Any]) -> None:
    packets, expected, frames = dissected["packets"], dissected["expected"], dissected["frames"]
    assert len(packets) == len(expected)
    for fields, (_, frame), raw in zip(packets, expected, frames, strict=True):
        assert tshark.values(fields, "synphasor.checksum.status") == ["1"], frame
        assert tshark.values(fields, "synphasor.frsize") == [str(len(raw))]
        assert tshark.values(fields, "synphasor.idcode_stream_source") == [str(frame.idcode)]
        assert tshark.values(fields, "synphasor.fracsec_raw") == [str(frame.fracsec)]


def test_configuration_frames_read_by_wireshark(dissected: dict[str, Any]) -> None:
    for fields, (kind, cfg) in zip(dissected["packets"], dissected["expected"], strict=True):
        if kind != "cfg":
            continue
        assert tshark.values(fields, "synphasor.conf.numpmu") == [str(len(cfg.pmus))]
        assert tshark.values(fields, "synphasor.conf.timebase") == ["1000000"]
        assert tshark.values(fields, "synphasor.rate_of_transmission") == [str(cfg.data_rate)]
        stations = tshark.values(fields, "station")
        assert stations == [p.station for p in cfg.pmus]
        assert tshark.values(fields, "synphasor.num_phasors") == ["4"] * len(cfg.pmus)
        assert tshark.values(fields, "synphasor.num_analog_values") == ["3"] * len(cfg.pmus)
        assert tshark.values(fields, "synphasor.conf.fnom") == ["1"] * len(cfg.pmus)
        assert tshark.values(fields, "synphasor.conf.cfgcnt") == ["3"] * len(cfg.pmus)
        names = [n.strip() for n in tshark.values(fields, "synphasor.channel_name")]
        assert names[:7] == ["VA", "VB", "VC", "I1", "P", "Q", "F"]


def test_data_frames_read_by_wireshark_match_what_we_encoded(
    dissected: dict[str, Any],
) -> None:
    checked = 0
    for fields, (kind, df) in zip(dissected["packets"], dissected["expected"], strict=True):
        if kind != "data":
            continue
        ws_phasors = tshark.phasors(fields)
        ours = [ph for p in df.pmus for ph in p.phasors]
        assert len(ws_phasors) == len(ours)
        for (wm, wa), (m, a) in zip(ws_phasors, ours, strict=True):
            assert wm == pytest.approx(m, rel=1e-4, abs=2e-3)
            d = (wa - math.degrees(a) + 180.0) % 360.0 - 180.0
            assert abs(d) < 2e-3
        assert tshark.frequency(fields) == pytest.approx([p.freq for p in df.pmus], abs=1e-3)
        assert tshark.rocof(fields) == pytest.approx([p.dfreq for p in df.pmus], abs=1e-2)
        assert tshark.analogs(fields) == pytest.approx(
            [a for p in df.pmus for a in p.analogs], rel=1e-5
        )
        words = [int(w, 16) for w in tshark.values(fields, "synphasor.digital_status_word")]
        assert words == [d for p in df.pmus for d in p.digitals]
        checked += 1
    assert checked == 33


def test_header_command_cfg1_cfg3_frames(dissected: dict[str, Any]) -> None:
    others = [
        (fields, f)
        for fields, (kind, f) in zip(dissected["packets"], dissected["expected"], strict=True)
        if kind == "other"
    ]
    (cfg1_f, _), (cfg3_f, cfg3), (hdr_f, _), (cmd_f, _) = others
    assert tshark.values(cfg1_f, "synphasor.frtype") == ["0x0002"]
    assert tshark.values(cfg1_f, "synphasor.version") == ["1"]
    assert tshark.values(cfg3_f, "synphasor.frtype") == ["0x0005"]
    assert tshark.values(cfg3_f, "synphasor.conf.contindx") == ["0"]
    assert [s.strip() for s in tshark.values(cfg3_f, "synphasor.station_name")] == [
        cfg3.pmus[0].station
    ]
    assert tshark.values(hdr_f, "synphasor.frtype") == ["0x0001"]
    assert tshark.values(cmd_f, "synphasor.frtype") == ["0x0004"]
    assert tshark.values(cmd_f, "synphasor.command") == ["0x0002"]
