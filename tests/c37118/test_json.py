"""The JSON form of frames and of a decoded stream (what `vpp pmu decode FILE` prints)."""

from __future__ import annotations

import io
import json
import math

from vpp import c37118 as c

from .helpers import config, data_frame

COMMON = {"type", "version", "idcode", "soc", "fracsec", "time", "time_quality"}


def test_data_frame_json() -> None:
    cfg = config(0x0F)
    j = c.frame_to_json(c.decode(c.encode(data_frame(cfg, 3)), cfg))
    assert set(j) == COMMON | {"pmus"}
    assert j["type"] == "data" and j["soc"] == 1_700_000_003 and j["fracsec"] == 60_000
    assert j["time"] == 1_700_000_003.06
    assert j["time_quality"] == {
        "code": 0,
        "leap_second_pending": False,
        "leap_second_occurred": False,
        "leap_second_delete": False,
    }
    (p,) = j["pmus"]
    assert set(p) == {"idcode", "stat", "phasors", "freq", "rocof", "analogs", "digitals"}
    assert p["freq"] == 50.0 - 0.022 or math.isclose(p["freq"], 49.978, abs_tol=1e-5)
    assert math.isclose(p["rocof"], -0.17, abs_tol=1e-6)
    assert set(p["phasors"][0]) == {"magnitude", "angle"}
    assert len(p["analogs"]) == 3 and p["digitals"] == [3]
    json.dumps(j, allow_nan=False)


def test_config_header_command_json() -> None:
    for kind in ("cfg1", "cfg2", "cfg3"):
        j = c.frame_to_json(c.decode(c.encode(config(1, kind))))
        assert set(j) == COMMON | {"time_base", "data_rate", "pmus"}
        assert j["type"] == kind and j["time_base"] == 1_000_000 and j["data_rate"] == 50
        (p,) = j["pmus"]
        assert set(p) == {"station", "idcode", "format", "fnom", "cfgcnt"} | {
            "phasor_names",
            "analog_names",
            "digital_names",
        }
        assert (p["station"], p["format"], p["fnom"], p["cfgcnt"]) == ("STATION A", 1, 50.0, 3)
    h = c.frame_to_json(c.HeaderFrame(1, "text here"))
    assert h["type"] == "header" and h["text"] == "text here"
    cmd = c.frame_to_json(c.CommandFrame(1, "send_cfg2"))
    assert cmd["type"] == "command" and cmd["command"] == "send_cfg2" and cmd["code"] == 5
    ext = c.frame_to_json(c.CommandFrame(1, 8, b"\x01\x02"))
    assert ext["command"] == "extended" and ext["extended"] == "0102"


def test_nan_becomes_null() -> None:
    cfg = config(0x0F)
    p = data_frame(cfg).pmus[0]
    f = c.DataFrame(cfg, [c.PmuData(p.phasors, math.nan, p.dfreq, p.analogs, p.digitals)], 1)
    j = c.frame_to_json(c.decode(c.encode(f), cfg))
    assert j["pmus"][0]["freq"] is None
    json.dumps(j, allow_nan=False)


def test_stream_to_json_with_corruption_goes_on() -> None:
    cfg = config(0)
    good = [c.encode(data_frame(cfg, s)) for s in range(3)]
    bad = bytearray(good[1])
    bad[16] ^= 0xFF
    data = c.encode(cfg) + good[0] + bytes(bad) + b"junk" + good[2] + good[0][:10]
    out = list(c.decode_stream_to_json(io.BytesIO(data)))
    types = [o["type"] for o in out]
    assert types == ["cfg2", "data", "error", "data", "error"]
    err = out[2]
    assert set(err) == {"type", "offset", "error", "field", "reason"}
    assert err["error"] == "crc" and err["field"] == "CHK"
    assert err["offset"] == len(c.encode(cfg)) + 2 * len(good[0]) - 2
    assert out[4]["error"] == "truncated"
    for o in out:
        json.dumps(o, allow_nan=False)


def test_stream_to_json_joins_cfg3_fragments_and_uses_given_configs() -> None:
    cfg = config(0x0F, "cfg3", idcode=4)
    data = b"".join(cfg.encode_cfg3_fragments(100)) + c.encode(data_frame(cfg))
    out = list(c.decode_stream_to_json(io.BytesIO(data)))
    assert [o["type"] for o in out] == ["cfg3", "data"]
    only_data = c.encode(data_frame(config(0)))
    assert [o["type"] for o in c.decode_stream_to_json(io.BytesIO(only_data))] == ["error"]
    out = list(c.decode_stream_to_json(io.BytesIO(only_data), configs=[config(0)]))
    assert out[0]["type"] == "data"
