"""The IEC 104 codec through the binding: byte-exact frames, typed errors, round trips,
and arbitrary bytes (decoded without a crash, or refused with ScadaError only)."""

from __future__ import annotations

import math
import struct

import c104
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vpp._core import (
    iec104_decode,
    iec104_encode_asdus,
    iec104_encode_i,
    iec104_encode_s,
    iec104_encode_u,
    iec104_reply,
)
from vpp.errors import ScadaError

GI = bytes([0x68, 0x0E, 0, 0, 0, 0, 100, 1, 6, 0, 1, 0, 0, 0, 0, 20])


def test_general_interrogation_decodes() -> None:
    n, apdu = iec104_decode(GI + b"\x68")  # a following partial frame is left alone
    assert n == len(GI)
    assert apdu is not None
    assert (apdu.format, apdu.send_seq, apdu.recv_seq) == ("I", 0, 0)
    assert (apdu.type_id, apdu.cot, apdu.common_address, apdu.known_type) == (100, 6, 1, True)
    assert [(o.ioa, o.value) for o in apdu.objects] == [(0, 20)]


def test_partial_frame_asks_for_more() -> None:
    for cut in range(len(GI)):
        assert iec104_decode(GI[:cut]) == (0, None)


@pytest.mark.parametrize(
    ("function", "octet"),
    [("startdt_act", 0x07), ("startdt_con", 0x0B), ("stopdt_act", 0x13),
     ("stopdt_con", 0x23), ("testfr_act", 0x43), ("testfr_con", 0x83)],
)  # fmt: skip
def test_u_frames(function: str, octet: int) -> None:
    frame = iec104_encode_u(function)
    assert frame == bytes([0x68, 4, octet, 0, 0, 0])
    _, apdu = iec104_decode(frame)
    assert apdu is not None and apdu.format == "U" and apdu.u_function == function


def test_s_and_i_frames_are_byte_exact() -> None:
    assert iec104_encode_s(5) == bytes([0x68, 4, 1, 0, 10, 0])
    (asdu,) = iec104_encode_asdus(13, 20, 1, [(1000, 1.5, 0, False, None)])
    frame = iec104_encode_i(1, 1, asdu)
    assert frame == bytes.fromhex("6812020002000d0114000100e803000000c03f00")
    # A foreign decoder (c104, test-only) reads the same frame.
    explained = c104.explain_bytes(frame)
    assert "M_ME_NC_1" in explained and "INTERROGATED_BY_STATION" in explained


@pytest.mark.parametrize(
    ("frame", "kind", "field", "offset"),
    [
        (b"\x67\x04\x07\x00\x00\x00", "apdu", "start", 0),
        (b"\x68\x03\x07\x00\x00", "apdu", "length", 1),
        (b"\x68\x04\x0f\x00\x00\x00", "apdu", "control", 2),
        (bytes([0x68, 0x0E, 0, 0, 0, 0, 100, 2, 6, 0, 1, 0, 0, 0, 0, 20]), "asdu", "VSQ", 7),
        # C_CS_NA_1 whose CP56Time2a has minute 61.
        (bytes([0x68, 0x14, 0, 0, 0, 0, 103, 1, 6, 0, 1, 0, 0, 0, 0, 0, 0, 61, 1, 1, 1, 24]),
         "time", "CP56Time2a.minute", 17),
    ],
)  # fmt: skip
def test_malformed_frames_raise_typed_errors(
    frame: bytes, kind: str, field: str, offset: int
) -> None:
    with pytest.raises(ScadaError) as info:
        iec104_decode(frame)
    err = info.value
    assert (err.kind, getattr(err, "field", None), getattr(err, "offset", None)) == (
        kind,
        field,
        offset,
    )


def test_reply_mirrors_with_cause_and_negative_bit() -> None:
    asdu = iec104_reply(GI, 7, True)
    assert asdu == bytes([100, 1, 7 | 0x40, 0, 1, 0, 0, 0, 0, 20])
    with pytest.raises(ScadaError):
        iec104_reply(GI[:8], 7, False)


def test_encoder_refuses_what_does_not_fit() -> None:
    with pytest.raises(ScadaError) as info:
        iec104_encode_asdus(3, 3, 1, [(1, 4, 0, False, None)])  # double point 4
    assert info.value.kind == "encode"
    with pytest.raises(ScadaError):
        iec104_encode_asdus(36, 3, 1, [(1, 1.0, 0, False, 0.0)])  # 1970: no 2-digit year
    with pytest.raises(ScadaError):
        iec104_encode_asdus(13, 3, 1, [(1 << 24, 1.0, 0, False, None)])  # IOA > 3 octets


def test_many_objects_split_into_asdus_that_fit() -> None:
    objs = [(i + 1, float(i), 0, False, None) for i in range(500)]
    asdus = iec104_encode_asdus(13, 20, 1, objs)
    assert all(len(a) <= 249 for a in asdus)
    seen = []
    for a in asdus:
        _, apdu = iec104_decode(iec104_encode_i(0, 0, a))
        assert apdu is not None
        seen += [(o.ioa, o.value) for o in apdu.objects]
    assert seen == [(o[0], o[1]) for o in objs]


@settings(max_examples=3000, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_decode_or_raise_scada_error(data: bytes) -> None:
    try:
        n, apdu = iec104_decode(data)
    except ScadaError as err:
        assert err.kind in ("apdu", "asdu", "time")
        return
    assert (n == 0) == (apdu is None)
    assert n <= len(data)


@settings(max_examples=1000, deadline=None)
@given(
    st.binary(min_size=4, max_size=60),
    st.sampled_from([1, 3, 13, 30, 31, 36, 45, 46, 50, 58, 59, 63, 70, 100, 103]),
)
def test_framed_bytes_of_known_types_never_crash(body: bytes, type_id: int) -> None:
    # Framed correctly, so that the ASDU decoder (not the start check) gets the bytes.
    asdu = bytes([type_id]) + body
    frame = bytes([0x68, 4 + len(asdu), 0, 0, 0, 0]) + asdu
    try:
        n, apdu = iec104_decode(frame)
    except ScadaError as err:
        assert err.kind in ("asdu", "time")
        return
    assert n == len(frame) and apdu is not None and apdu.type_id == type_id


def _f32(x: float) -> float:
    return float(struct.unpack("<f", struct.pack("<f", x))[0])


finite_f32 = st.floats(allow_nan=False, allow_infinity=False, width=32)
times = st.integers(946_684_800_000, 4_102_444_799_999).map(lambda ms: ms / 1000)
quality = st.sampled_from([0, 0x01, 0x10, 0x20, 0x40, 0x80, 0xF1])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(1, 0xFFFFFF), finite_f32, quality, times), min_size=1, max_size=60
    ),
    st.integers(0, 32767),
    st.integers(0, 32767),
)
def test_time_tagged_floats_round_trip(
    objs: list[tuple[int, float, int, float]], send: int, recv: int
) -> None:
    encoded = [(ioa, v, q, False, t) for ioa, v, q, t in objs]
    got = []
    for asdu in iec104_encode_asdus(36, 3, 1, encoded):
        _, apdu = iec104_decode(iec104_encode_i(send, recv, asdu))
        assert apdu is not None and (apdu.send_seq, apdu.recv_seq) == (send, recv)
        assert apdu.cot == 3 and apdu.type_id == 36
        got += [(o.ioa, o.value, o.qualifier, o.time) for o in apdu.objects]
    want = [(ioa, _f32(v), q, t) for ioa, v, q, t in objs]
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g[:3] == w[:3]
        assert g[3] is not None and math.isclose(g[3], w[3], abs_tol=5e-4)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([(45, st.booleans()), (46, st.integers(0, 3)), (50, finite_f32)]).flatmap(
        lambda tv: st.tuples(st.just(tv[0]), tv[1])
    ),
    st.integers(0, 31),
    st.booleans(),
    st.integers(0, 65535),
)
def test_commands_round_trip(
    type_and_value: tuple[int, bool | int | float], qu: int, select: bool, ca: int
) -> None:
    type_id, value = type_and_value
    (asdu,) = iec104_encode_asdus(type_id, 6, ca, [(77, value, qu, select, None)])
    _, apdu = iec104_decode(iec104_encode_i(0, 0, asdu))
    assert apdu is not None and apdu.common_address == ca
    (o,) = apdu.objects
    want = _f32(value) if isinstance(value, float) else value
    assert (o.ioa, o.value, o.qualifier, o.select) == (77, want, qu, select)
