"""Round trips of every frame type and FORMAT, known values, and every error class."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vpp import c37118 as c
from vpp import errors

from .helpers import V_UNIT, assert_data_equal, config, data_frame, pmu_config

FORMATS = list(range(16))


def test_crc_check_value() -> None:
    assert c.crc_ccitt(b"123456789") == 0x29B1


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("kind", ["cfg1", "cfg2", "cfg3"])
def test_config_round_trip(fmt: int, kind: str) -> None:
    cfg = config(fmt, kind)
    raw = c.encode(cfg)
    assert raw[0] == 0xAA and raw[1] >> 4 == {"cfg1": 2, "cfg2": 3, "cfg3": 5}[kind]
    back = c.decode(raw)
    assert isinstance(back, c.ConfigFrame)
    assert (back.kind, back.type, back.idcode, back.time_base, back.data_rate) == (
        kind,
        kind,
        7,
        1_000_000,
        50,
    )
    assert back.time == 1_700_000_000.25
    (p,) = back.pmus
    assert (p.station, p.format, p.fnom, p.cfgcnt) == ("STATION A", fmt, 50.0, 3)
    assert p.phasor_names == ["PH0", "PH1", "PH2", "PH3"]
    assert p.digital_names[15] == "D15"
    assert c.encode(back) == raw
    if kind == "cfg3":
        assert p.cfg3 is not None and p.cfg3["svc_class"] == "M"
    else:
        assert back == cfg and p.cfg3 is None


@pytest.mark.parametrize("fmt", FORMATS)
def test_data_round_trip_every_format(fmt: int) -> None:
    cfg = config(fmt)
    want = data_frame(cfg, 11)
    raw = c.encode(want)
    assert len(raw) == cfg.data_frame_size
    got = c.decode(raw, cfg)
    assert isinstance(got, c.DataFrame)
    assert_data_equal(got, want)
    assert got.type == "data"
    assert got.time == pytest.approx(1_700_000_011 + 0.22)
    assert got.freq == got.pmus[0].freq and got.dfreq == got.pmus[0].dfreq
    assert got.config == cfg


def test_integer_scaling_known_values() -> None:
    # FORMAT 1: integer polar. Magnitude 23000 counts x 0.01 V, angle 1.0 rad.
    cfg = config(1, pmus=[pmu_config(1, phasors=1, analogs=1, digitals=0, fnom=60.0)])
    frame = c.DataFrame(
        cfg, [c.PmuData([(230.0, 1.0)], 59.975, -0.5, [-20.0], [])], 1_700_000_000, 500_000
    )
    raw = c.encode(frame)
    # STAT(2) then magnitude 23000 = 0x59D8, angle 10000 = 0x2710, FREQ -25 mHz, DFREQ -50.
    assert raw[14:26] == bytes.fromhex("0000 59d8 2710 ffe7 ffce fff6".replace(" ", ""))
    got = c.decode(raw, [cfg])
    assert isinstance(got, c.DataFrame)
    assert got.pmus[0].phasors == [(pytest.approx(230.0), pytest.approx(1.0))]
    assert got.pmus[0].freq == pytest.approx(59.975)
    assert got.pmus[0].analogs == [-20.0]


def test_two_pmus_with_different_formats() -> None:
    pmus = [pmu_config(0x0F, 101, "ONE", 2, 1, 1), pmu_config(0x00, 102, "TWO", 3, 2, 2)]
    for kind in ("cfg1", "cfg2", "cfg3"):
        cfg = config(kind=kind, idcode=21, pmus=pmus)
        back = c.decode(c.encode(cfg))
        assert isinstance(back, c.ConfigFrame)
        assert [p.idcode for p in back.pmus] == [101, 102]
        want = data_frame(back, 5)
        got = c.decode(c.encode(want), {21: back})
        assert isinstance(got, c.DataFrame)
        assert_data_equal(got, want)
        assert [p.idcode for p in got.pmus] == [101, 102]


def test_version_1_frames() -> None:
    cfg = config(0x0F, version=1)
    raw = c.encode(cfg)
    assert raw[:2] == b"\xaa\x31"
    d = c.encode(data_frame(cfg))
    assert d[:2] == b"\xaa\x01"
    got = c.decode(d, cfg)
    assert isinstance(got, c.DataFrame) and got.version == 1


def test_stat_and_time_quality_bits() -> None:
    cfg = config(0x0F)
    p = data_frame(cfg).pmus[0]
    stat = 0x8000 | 0x2000 | 0x0400 | (5 << 6) | (2 << 4) | 0x3
    frame = c.DataFrame(
        cfg,
        [c.PmuData(p.phasors, p.freq, p.dfreq, p.analogs, p.digitals, stat=stat)],
        5,
        7,
        time_quality=0x75,
    )
    got = c.decode(c.encode(frame), cfg)
    assert isinstance(got, c.DataFrame)
    q = got.pmus[0]
    assert (q.stat, q.data_error, q.sync_lost, q.sorted_by_arrival, q.trigger) == (
        stat,
        2,
        True,
        False,
        False,
    )
    assert (
        q.config_changed,
        q.data_modified,
        q.pmu_time_quality,
        q.unlocked_time,
        q.trigger_reason,
    ) == (True, False, 5, 2, 3)
    tq = got.time_quality
    assert (
        tq.raw,
        tq.leap_second_delete,
        tq.leap_second_occurred,
        tq.leap_second_pending,
        tq.quality_code,
    ) == (0x75, True, True, True, 5)
    assert tq.max_error == pytest.approx(1e-5)


def test_header_frame() -> None:
    raw = c.encode(c.HeaderFrame(9, "PMU at bus 4", soc=10, fracsec=5))
    h = c.decode(raw)
    assert isinstance(h, c.HeaderFrame)
    assert (h.type, h.text, h.data, h.idcode, h.soc, h.fracsec) == (
        "header",
        "PMU at bus 4",
        b"PMU at bus 4",
        9,
        10,
        5,
    )
    assert raw[:2] == b"\xaa\x12"


@pytest.mark.parametrize(
    ("command", "code"),
    [
        ("data_off", 1),
        ("data_on", 2),
        ("send_header", 3),
        ("send_cfg1", 4),
        ("send_cfg2", 5),
        ("send_cfg3", 6),
        ("extended", 8),
        (0x0123, 0x0123),
    ],
)
def test_command_frames(command: int | str, code: int) -> None:
    ext = b"\x00\x01\x02\x03" if code in (8, 0x0123) else b""
    raw = c.encode(c.CommandFrame(7, command, ext, soc=3))
    assert raw[:2] == b"\xaa\x42" and int.from_bytes(raw[14:16], "big") == code
    f = c.decode(raw)
    assert isinstance(f, c.CommandFrame)
    assert (f.command, f.extended, f.type) == (code, ext, "command")
    assert f.command_name == (command if isinstance(command, str) else "user")


def test_cfg3_fragments_encode_and_join() -> None:
    cfg = config(0x0F, "cfg3", pmus=[pmu_config(0x0F, 7, "Ünïcode station name", 8, 4, 2)])
    frames = cfg.encode_cfg3_fragments(max_frame_size=200)
    assert len(frames) > 2 and all(len(f) <= 200 for f in frames)
    parts = [c.decode(f) for f in frames]
    assert all(isinstance(p, c.Cfg3Fragment) for p in parts)
    assert [p.cont_idx for p in parts if isinstance(p, c.Cfg3Fragment)][:2] == [1, 2]
    dec = c.StreamDecoder()
    events = dec.feed(b"".join(frames))
    joined = [f for _, f in events if isinstance(f, c.ConfigFrame)]
    assert len(joined) == 1 and joined[0] == c.decode(c.encode(cfg))
    assert joined[0].pmus[0].station == "Ünïcode station name"


def test_decode_batch() -> None:
    cfg = config(0)
    frames = [data_frame(cfg, s) for s in range(200)]
    buf = b"".join(c.encode(f) for f in frames)
    out = c.decode_batch(buf, cfg)
    assert out["time"].shape == (200,) and out["magnitude"].shape == (200, 4)
    assert out["analogs"].shape == (200, 3) and out["digitals"].dtype == np.uint16
    for i in (0, 57, 199):
        one = c.decode(c.encode(frames[i]), cfg)
        assert isinstance(one, c.DataFrame)
        assert (
            out["time"][i] == one.time
            and out["freq"][i] == one.freq
            and out["dfreq"][i] == one.dfreq
        )
        assert out["stat"][i] == one.pmus[0].stat
        assert list(out["magnitude"][i]) == [m for m, _ in one.pmus[0].phasors]
        assert list(out["angle"][i]) == [a for _, a in one.pmus[0].phasors]
    bad = bytearray(buf)
    bad[cfg.data_frame_size * 3 + 20] ^= 1
    with pytest.raises(errors.CrcError) as e:
        c.decode_batch(bytes(bad), cfg)
    assert e.value.offset == cfg.data_frame_size * 4 - 2
    with pytest.raises(errors.TruncatedFrameError):
        c.decode_batch(buf[:-3], cfg)


# ---- errors: each class, with field and offset ----


def _refit(raw: bytes | bytearray) -> bytes:
    """Fix FRAMESIZE and CHK so that a deeper check is reached."""
    b = bytearray(raw)
    b[2:4] = len(b).to_bytes(2, "big")
    b[-2:] = c.crc_ccitt(bytes(b[:-2])).to_bytes(2, "big")
    return bytes(b)


def _patched(raw: bytes, at: int, value: bytes) -> bytes:
    b = bytearray(raw)
    b[at : at + len(value)] = value
    return _refit(b)


CFG = config(0)
CFG_RAW = c.encode(CFG)
DATA_RAW = c.encode(data_frame(CFG, 1))

KINDS: dict[type[errors.FrameError], str] = {
    errors.TruncatedFrameError: "truncated",
    errors.FrameSizeError: "framesize",
    errors.CrcError: "crc",
    errors.SyncError: "sync",
    errors.FrameCountError: "count",
    errors.NoConfigError: "no_config",
    errors.ConfigMismatchError: "mismatch",
    errors.FrameValueError: "value",
}

ERROR_CASES: list[tuple[str, bytes, object, type[errors.FrameError], str, int]] = [
    ("truncated", DATA_RAW[:20], CFG, errors.TruncatedFrameError, "FRAMESIZE", 2),
    ("empty", b"", None, errors.TruncatedFrameError, "SYNC", 0),
    (
        "framesize",
        DATA_RAW[:2] + b"\x00\x05" + DATA_RAW[4:],
        CFG,
        errors.FrameSizeError,
        "FRAMESIZE",
        2,
    ),
    ("trailing", DATA_RAW + b"\x00", CFG, errors.FrameSizeError, "FRAMESIZE", 2),
    (
        "crc",
        DATA_RAW[:-1] + bytes([DATA_RAW[-1] ^ 1]),
        CFG,
        errors.CrcError,
        "CHK",
        len(DATA_RAW) - 2,
    ),
    ("sync", b"\x55" + DATA_RAW[1:], CFG, errors.SyncError, "SYNC", 0),
    ("type", b"\xaa\x72" + DATA_RAW[2:], CFG, errors.SyncError, "SYNC", 1),
    ("cfg3 v1", b"\xaa\x51" + DATA_RAW[2:], CFG, errors.SyncError, "SYNC", 1),
    ("num_pmu", _patched(CFG_RAW, 18, b"\xff\xff"), None, errors.FrameCountError, "NUM_PMU", 18),
    ("phnmr", _patched(CFG_RAW, 40, b"\x7f\xff"), None, errors.FrameCountError, "PHNMR", 40),
    ("annmr", _patched(CFG_RAW, 42, b"\x7f\xff"), None, errors.FrameCountError, "ANNMR", 42),
    ("no config", DATA_RAW, None, errors.NoConfigError, "IDCODE", 4),
    (
        "size mismatch",
        _refit(DATA_RAW[:-4] + b"\x00\x00"),
        CFG,
        errors.ConfigMismatchError,
        "FRAMESIZE",
        2,
    ),
    (
        "time_base",
        _patched(CFG_RAW, 14, b"\x00\x00\x00\x00"),
        None,
        errors.FrameValueError,
        "TIME_BASE",
        14,
    ),
    ("station utf8", _patched(CFG_RAW, 20, b"\xc3\x28"), None, errors.FrameValueError, "STN", 20),
    (
        "cmd",
        _patched(c.encode(c.CommandFrame(1, 2)), 14, b"\x00\x07"),
        None,
        errors.FrameValueError,
        "CMD",
        14,
    ),
]


@pytest.mark.parametrize(
    ("name", "raw", "cfg", "cls", "field", "offset"), ERROR_CASES, ids=[e[0] for e in ERROR_CASES]
)
def test_decode_errors(
    name: str, raw: bytes, cfg: object, cls: type[errors.FrameError], field: str, offset: int
) -> None:
    with pytest.raises(cls) as e:
        c.decode(raw, cfg)  # type: ignore[arg-type]
    assert (e.value.field, e.value.offset) == (field, offset), str(e.value)
    assert isinstance(e.value, ValueError) and isinstance(e.value, errors.VppError)
    assert e.value.kind == KINDS[cls]


def test_crc_error_carries_values() -> None:
    with pytest.raises(errors.CrcError) as e:
        c.decode(DATA_RAW[:-1] + bytes([DATA_RAW[-1] ^ 1]), CFG)
    assert e.value.expected is not None and e.value.found is not None
    assert e.value.expected ^ e.value.found == 1


def test_encode_errors() -> None:
    p = data_frame(CFG).pmus[0]
    too_fast = c.DataFrame(CFG, [c.PmuData(p.phasors, 90.0, p.dfreq, p.analogs, p.digitals)], 1)
    with pytest.raises(errors.FrameEncodeError) as e:
        c.encode(too_fast)
    assert (e.value.field, e.value.offset) == ("FREQ", 14 + 2 + 4 * 4)
    missing = c.DataFrame(CFG, [c.PmuData(p.phasors[:2], 50.0, 0.0, p.analogs, p.digitals)], 1)
    with pytest.raises(errors.FrameEncodeError):
        c.encode(missing)
    with pytest.raises(errors.FrameEncodeError):
        c.ConfigFrame(
            "cfg2", 1, [c.PmuConfig("x" * 17, 1, 0, ["a"], [V_UNIT])]
        ).encode_cfg3_fragments(10)
    with pytest.raises(errors.FrameEncodeError):
        c.encode(c.ConfigFrame("cfg2", 1, [c.PmuConfig("x" * 17, 1, 0, ["a"], [V_UNIT])]))
    with pytest.raises(errors.FrameEncodeError):
        c.ConfigFrame("cfg2", 1, [c.PmuConfig("s", 1, 0, ["a", "b"], [V_UNIT])])
    with pytest.raises(errors.ConfigError):
        c.CommandFrame(1, 7)
    with pytest.raises(TypeError):
        c.encode(object())  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", [0b0001, 0b0011])
def test_polar_phasors_are_encoded_within_the_standards_ranges(fmt: int) -> None:
    # C37.118.2: magnitude >= 0, angle in (-pi, pi]. Float angles used to be written as
    # given (pyPMU refuses a frame with one outside +-3.142); a negative magnitude is the
    # same phasor turned by pi.
    cfg = config(1, pmus=[pmu_config(fmt, phasors=4, analogs=0, digitals=0)])
    given = [(10.0, 3 * math.pi + 0.5), (10.0, -math.pi), (-10.0, 0.25), (10.0, 1e4)]
    f = c.DataFrame(cfg, [c.PmuData(given, 50.0)], 1)
    got = c.decode(c.encode(f), cfg)
    assert isinstance(got, c.DataFrame)
    for (m, a), (gm, ga) in zip(given, got.pmus[0].phasors, strict=True):
        assert gm >= 0 and -math.pi < ga <= math.pi + (1e-4 if fmt == 1 else 0.0)
        want = m * complex(math.cos(a), math.sin(a))
        assert abs(gm * complex(math.cos(ga), math.sin(ga)) - want) < 1e-3 * abs(m)


def test_angle_wraps_and_nan_refused_for_integers() -> None:
    cfg = config(1, pmus=[pmu_config(1, phasors=1, analogs=0, digitals=0)])
    f = c.DataFrame(cfg, [c.PmuData([(100.0, 3 * math.pi)], 50.0)], 1)
    got = c.decode(c.encode(f), cfg)
    assert isinstance(got, c.DataFrame)
    assert abs(got.pmus[0].phasors[0][1]) == pytest.approx(math.pi, abs=1e-4)
    with pytest.raises(errors.FrameEncodeError):
        c.encode(c.DataFrame(cfg, [c.PmuData([(math.nan, 0.0)], 50.0)], 1))
