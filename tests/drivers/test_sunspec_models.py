"""ModelBlock and status_of on registers laid out by pysunspec2 (no device needed).

The registers are produced by pysunspec2's own encoder (``Model.get_mb``), which writes
SunSpec's "not implemented" value for every point left without one.
"""

from __future__ import annotations

from typing import Any

import pytest
from sunspec2 import device as ss_device  # type: ignore[import-untyped]

from vpp.drivers.sunspec_models import ModelBlock, SunSpecLayoutError, bytes_to_words
from vpp.drivers.sunspec_status import status_of


def registers(model_id: int, **raw: Any) -> list[int]:
    """A model's registers with the raw values given and every other point unset."""
    model = ss_device.Model(model_id=model_id, data=raw)
    return bytes_to_words(model.get_mb())


def block(model_id: int, **raw: Any) -> ModelBlock:
    words = registers(model_id, **raw)
    b = ModelBlock(model_id, 40002, len(words) - 2)
    b.load(words)
    return b


def test_not_implemented_values_are_none() -> None:
    b = block(701, W=-1234, W_SF=1, Var=55)  # Var_SF left unimplemented
    assert b.value("W") == -12340.0
    assert b.raw("Hz") is None and b.value("Hz") is None  # uint32 0xFFFFFFFF
    assert b.raw("TmpCab") is None  # int16 0x8000
    assert b.raw("St") is None  # enum16 0xFFFF
    # pysunspec2's cvalue would give the raw 55 here; an unknown scale is no value.
    assert b.raw("Var") == 55 and b.value("Var") is None


def test_status_leaves_out_what_is_not_implemented() -> None:
    blocks = {
        701: block(701, W=1500, W_SF=2, Hz=49950, Hz_SF=-3, InvSt=3),
        713: block(713, SoC=655, Pct_SF=-1, WHRtg=2000, WH_SF=1),
    }
    status, names = status_of(blocks)
    assert status["power_kw"] == pytest.approx(150.0)
    assert status["frequency_hz"] == pytest.approx(49.95)
    assert status["soc_pct"] == pytest.approx(65.5)
    assert status["capacity_kwh"] == pytest.approx(20.0)
    assert status["inverter_state"] == 3.0 and names["inverter_state"] == "RUNNING"
    for absent in ("reactive_power_kvar", "soh_pct", "temperature_c", "operating_state"):
        assert absent not in status


def test_encode_scales_and_checks_the_range() -> None:
    b = block(704, WSet_SF=1, WSetPct_SF=-2)
    address, words = b.encode("WSet", -1234.0)
    # WSet is register 24 of model 704 (counting ID as 0) in the SunSpec definition.
    assert address == b.address_of("WSet") == 40002 + 24
    # -123 (10 W steps) as int32, big-endian words.
    assert words == [0xFFFF, 0x10000 - 123]
    assert b.encode("WSetPct", 12.34)[1] == [1234]
    with pytest.raises(SunSpecLayoutError, match="outside int16"):
        b.encode("WSetPct", 400.0)
    with pytest.raises(SunSpecLayoutError, match="scale factor is not implemented"):
        b.encode("VarSet", 10.0)  # VarSet_SF unset


def test_wrong_length_is_a_layout_error() -> None:
    words = registers(713, SoC=500, Pct_SF=-1)
    short = ModelBlock(713, 40002, len(words) - 3)
    with pytest.raises(SunSpecLayoutError, match="model 713"):
        short.load(words[:-1])
