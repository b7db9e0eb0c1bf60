"""The stream decoder: any chunking gives the same frames; garbage is reported once."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.pypmu import Stream
from vpp import c37118 as c
from vpp import errors
from vpp.core import Pipeline

from .helpers import config, data_frame

CFG = config(0x0B)
CFG_RAW = c.encode(CFG)
FRAMES = [
    CFG_RAW,
    *(c.encode(data_frame(CFG, s)) for s in range(5)),
    c.encode(c.HeaderFrame(7, "hello")),
    c.encode(c.CommandFrame(7, "send_cfg2")),
    *config(0x0F, "cfg3", idcode=9).encode_cfg3_fragments(120),
    c.encode(data_frame(config(0x0F, "cfg3", idcode=9), 3)),
]
STREAM = b"".join(FRAMES)


def summary(events: list[tuple[int, Any]]) -> list[tuple[int, str]]:
    out = []
    for off, item in events:
        if isinstance(item, errors.FrameError):
            out.append((off, f"error:{item.kind}:{item.field}"))
        else:
            out.append((off, f"{item.type}:{item.idcode}:{getattr(item, 'time', 0)}"))
    return out


def run(chunks: list[bytes], configs: object = None) -> list[tuple[int, str]]:
    dec = c.StreamDecoder(configs)  # type: ignore[arg-type]
    events: list[tuple[int, Any]] = []
    for ch in chunks:
        events.extend(dec.feed(ch))
    events.extend(dec.finish())
    return summary(events)


WHOLE = run([STREAM])


def test_whole_stream_offsets() -> None:
    offsets = []
    pos = 0
    for f in FRAMES:
        offsets.append(pos)
        pos += len(f)
    framed = [off for off, what in WHOLE]
    # The joined CFG-3 is reported at the offset of its last fragment, after it.
    assert sorted(set(framed)) == offsets
    assert not any(what.startswith("error") for _, what in WHOLE)
    assert [w.split(":")[0] for _, w in WHOLE].count("data") == 6


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_any_chunking_gives_the_same_events(cuts: list[int]) -> None:
    points = [0, *sorted(cuts), len(STREAM)]
    chunks = [STREAM[a:b] for a, b in itertools.pairwise(points)]
    assert run(chunks) == WHOLE


@settings(max_examples=100, deadline=None)
@given(
    st.binary(min_size=1, max_size=64).filter(lambda g: b"\xaa" not in g),
    st.integers(min_value=1, max_value=len(FRAMES) - 1),
    st.integers(min_value=1, max_value=50),
)
def test_garbage_is_one_error_then_resync(garbage: bytes, where: int, chunk: int) -> None:
    before = b"".join(FRAMES[:where])
    data = before + garbage + b"".join(FRAMES[where:])
    events = run([data[i : i + chunk] for i in range(0, len(data), chunk)])
    errs = [e for e in events if e[1].startswith("error")]
    assert errs == [(len(before), "error:sync:SYNC")]
    frames = [e for e in events if not e[1].startswith("error")]
    assert [w for _, w in frames] == [w for _, w in WHOLE]


def test_corrupt_frame_reports_crc_and_next_frame_decodes() -> None:
    bad = bytearray(FRAMES[2])
    bad[20] ^= 0x10
    data = FRAMES[0] + FRAMES[1] + bytes(bad) + FRAMES[3]
    events = run([data])
    kinds = [w.split(":")[0] + ":" + w.split(":")[1] for _, w in events]
    assert kinds == ["cfg2:7", "data:7", "error:crc", "data:7"]


def test_data_without_config_is_no_config_error_and_configs_argument() -> None:
    data = c.encode(data_frame(CFG, 1))
    (ev,) = run([data])
    assert ev == (4, "error:no_config:IDCODE")
    assert run([data], [CFG])[0][1].startswith("data")
    dec = c.StreamDecoder()
    dec.add_config(CFG)
    assert dec.configs == [CFG]
    (pair,) = dec.feed(data)
    assert isinstance(pair[1], c.DataFrame)


def test_truncated_tail_and_offset() -> None:
    dec = c.StreamDecoder()
    assert dec.feed(CFG_RAW[:30]) == []
    assert dec.offset == 0
    ((off, err),) = dec.finish()
    assert isinstance(err, errors.TruncatedFrameError) and off == 2
    assert dec.feed(CFG_RAW)[0][0] == 30
    assert dec.offset == 30 + len(CFG_RAW)


def test_large_chunks_beyond_the_buffer() -> None:
    many = b"".join(c.encode(data_frame(CFG, s % 50)) for s in range(6000))
    assert len(many) > 2 * 65535
    events = c.StreamDecoder([CFG]).feed(many)
    assert len(events) == 6000
    assert all(isinstance(f, c.DataFrame) for _, f in events)


# Garbage that looks like a data frame's SYNC with FRAMESIZE 65535 (a false start).
FALSE_START = b"\xaa\x02\xff\xff"


def test_a_false_start_does_not_hold_up_the_frames_behind_it() -> None:
    # Mid-stream (a TCP stream never ends) the decoder used to wait for the 65535 bytes
    # the false start claims: 30 s of a 50 frames/s stream. Now one error, then every
    # frame as soon as the header of the next one is in.
    dec = c.StreamDecoder()
    got = summary(dec.feed(FALSE_START + STREAM))
    assert got[0] == (2, "error:framesize:FRAMESIZE")
    assert [(off - 4, what) for off, what in got[1:]] == WHOLE
    assert dec.finish() == []


@settings(max_examples=100, deadline=None)
@given(
    st.integers(min_value=1, max_value=len(FRAMES) - 1),
    st.integers(min_value=1, max_value=64),
)
def test_at_the_end_of_input_the_bytes_behind_a_false_start_are_rescanned(
    where: int, chunk: int
) -> None:
    # Two false starts in a row: the second (never complete) stops the search behind
    # the first, so the frames behind them wait. The end of input used to drop them all
    # with one truncated-frame error; now they are rescanned and come out.
    before = b"".join(FRAMES[:where])
    data = before + FALSE_START * 2 + b"".join(FRAMES[where:])
    events = run([data[i : i + chunk] for i in range(0, len(data), chunk)])
    errs = [e for e in events if e[1].startswith("error")]
    assert errs == [(len(before) + 2, "error:truncated:FRAMESIZE")]
    frames = [e for e in events if not e[1].startswith("error")]
    assert [w for _, w in frames] == [w for _, w in WHOLE]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(st.binary(min_size=1, max_size=8), st.just(FALSE_START)), min_size=1, max_size=6
    ),
    st.integers(min_value=1, max_value=len(FRAMES)),
    st.lists(st.integers(min_value=0, max_value=len(STREAM) + 64), max_size=12),
)
def test_any_garbage_anywhere_loses_no_frame_whatever_the_chunks(
    pieces: list[bytes], where: int, cuts: list[int]
) -> None:
    # Garbage of any bytes, 0xAA and false starts included, before a frame or at the
    # end: one error for it, and every frame of the stream, in order, once.
    garbage = b"".join(pieces)
    before = b"".join(FRAMES[:where])
    data = before + garbage + b"".join(FRAMES[where:])
    points = [0, *sorted(min(x, len(data)) for x in cuts), len(data)]
    events = run([data[a:b] for a, b in itertools.pairwise(points)])
    errs = [e for e in events if e[1].startswith("error")]
    # At the garbage (a CHK error of a false start is where its claimed bytes end).
    assert len(errs) == 1 and len(before) <= errs[0][0] < len(data)
    frames = [w for _, w in events if not w.startswith("error")]
    assert frames == [w for _, w in WHOLE]


def test_a_pipeline_buffer_keeps_the_frames_behind_a_false_start() -> None:
    # Pipeline.process_buffer splits a buffer with the same decoder, and used to lose
    # every frame behind a false start that nothing resolved before the buffer's end.
    s = Stream()
    frames = [s.frame(50.0 - 0.002 * k)[1] for k in range(100)]
    cols = Pipeline().process_buffer(s.config_bytes() + FALSE_START * 2 + b"".join(frames))
    assert cols["errors"] == 1
    np.testing.assert_allclose(cols["freq"], [50.0 - 0.002 * k for k in range(100)])
