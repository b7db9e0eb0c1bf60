"""IEEE C37.118.2 synchrophasor frames: the Python face of the compiled codec.

Decode and encode data, header, CFG-1/2/3 and command frames (versions 1 = 2005 and
2 = 2011), follow a TCP byte stream with :class:`StreamDecoder`, decode a buffer of
many data frames to NumPy arrays with :func:`decode_batch` (GIL released), and turn
frames into JSON-ready dicts (:func:`frame_to_json`, :func:`decode_stream_to_json`).

Units: phasor magnitudes in V or A (integer counts times PHUNIT x 1e-5, or CFG-3
PHSCALE), angles in radians, frequency in Hz (absolute), ROCOF in Hz/s, times in UNIX
seconds from SOC + FRACSEC / TIME_BASE. Every decode failure raises a subclass of
:class:`vpp.errors.FrameError` with ``kind``, ``field`` and ``offset``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO, TypeAlias

from vpp._core import (
    Cfg3Fragment,
    CommandFrame,
    ConfigFrame,
    DataFrame,
    HeaderFrame,
    PmuConfig,
    PmuData,
    StreamDecoder,
    TimeQuality,
    crc_ccitt,
    decode,
    decode_batch,
    encode,
)
from vpp.errors import FrameError

__all__ = [
    "Cfg3Fragment",
    "CommandFrame",
    "ConfigFrame",
    "DataFrame",
    "Frame",
    "FrameError",
    "HeaderFrame",
    "PmuConfig",
    "PmuData",
    "StreamDecoder",
    "TimeQuality",
    "crc_ccitt",
    "decode",
    "decode_batch",
    "decode_stream_to_json",
    "encode",
    "error_to_json",
    "frame_to_json",
]

#: Any decoded frame.
Frame: TypeAlias = DataFrame | ConfigFrame | HeaderFrame | CommandFrame | Cfg3Fragment

#: Bytes read from the stream per call in :func:`decode_stream_to_json`.
READ_CHUNK = 1 << 16


def _num(x: float) -> float | None:
    """JSON has no NaN or infinity; a missing measurement becomes null."""
    return x if math.isfinite(x) else None


def _time_quality(tq: TimeQuality) -> dict[str, Any]:
    return {
        "code": tq.quality_code,
        "leap_second_pending": tq.leap_second_pending,
        "leap_second_occurred": tq.leap_second_occurred,
        "leap_second_delete": tq.leap_second_delete,
    }


def _common(frame: Frame) -> dict[str, Any]:
    return {
        "type": frame.type,
        "version": frame.version,
        "idcode": frame.idcode,
        "soc": frame.soc,
        "fracsec": frame.fracsec,
        "time": frame.time,
        "time_quality": _time_quality(frame.time_quality),
    }


def _pmu_data(p: PmuData) -> dict[str, Any]:
    return {
        "idcode": p.idcode,
        "stat": p.stat,
        "phasors": [{"magnitude": _num(m), "angle": _num(a)} for m, a in p.phasors],
        "freq": _num(p.freq),
        "rocof": _num(p.dfreq),
        "analogs": [_num(a) for a in p.analogs],
        "digitals": p.digitals,
    }


def _pmu_config(p: PmuConfig) -> dict[str, Any]:
    return {
        "station": p.station,
        "idcode": p.idcode,
        "format": p.format,
        "phasor_names": p.phasor_names,
        "analog_names": p.analog_names,
        "digital_names": p.digital_names,
        "fnom": p.fnom,
        "cfgcnt": p.cfgcnt,
    }


def frame_to_json(frame: Frame) -> dict[str, Any]:
    """A JSON-ready dict of one frame.

    Every frame has ``type`` (data, header, cfg1, cfg2, cfg3, command), ``version``,
    ``idcode``, ``soc``, ``fracsec`` (the 24-bit fraction count), ``time`` (float
    seconds) and ``time_quality`` (dict: ``code``, ``leap_second_pending``,
    ``leap_second_occurred``, ``leap_second_delete``). Data frames add ``pmus`` (each
    ``idcode``, ``stat``, ``phasors`` [{``magnitude``, ``angle``}], ``freq`` Hz,
    ``rocof`` Hz/s, ``analogs``, ``digitals``); configuration frames add ``time_base``,
    ``data_rate`` and ``pmus`` (``station``, ``idcode``, ``format``, ``phasor_names``,
    ``analog_names``, ``digital_names``, ``fnom`` Hz, ``cfgcnt``); command frames add
    ``command`` (its name, e.g. ``send_cfg2``), ``code`` and, for extended frames,
    ``extended`` (hex); header frames add ``text``; a CFG-3 fragment adds ``cont_idx``.
    Non-finite measurements become None.
    """
    out = _common(frame)
    if isinstance(frame, DataFrame):
        out["pmus"] = [_pmu_data(p) for p in frame.pmus]
    elif isinstance(frame, ConfigFrame):
        out["time_base"] = frame.time_base
        out["data_rate"] = frame.data_rate
        out["pmus"] = [_pmu_config(p) for p in frame.pmus]
    elif isinstance(frame, CommandFrame):
        out["command"] = frame.command_name
        out["code"] = frame.command
        if frame.extended:
            out["extended"] = frame.extended.hex()
    elif isinstance(frame, HeaderFrame):
        out["text"] = frame.text
    else:
        out["cont_idx"] = frame.cont_idx
    return out


def error_to_json(error: FrameError, offset: int | None = None) -> dict[str, Any]:
    """The JSON object of a frame that could not be decoded:
    ``{"type": "error", "offset", "error" (kind), "field", "reason"}``."""
    return {
        "type": "error",
        "offset": error.offset if offset is None else offset,
        "error": error.kind,
        "field": error.field,
        "reason": str(error),
    }


def decode_stream_to_json(
    stream: BinaryIO, configs: Iterable[ConfigFrame] | None = None
) -> Iterator[dict[str, Any]]:
    """Decode a C37.118 byte stream (a file or socket file) into JSON-ready dicts.

    One dict per frame as :func:`frame_to_json` makes it, in stream order; a corrupt
    stretch yields one error object (:func:`error_to_json`, with the stream offset) and
    decoding goes on from the next valid frame. Garbage that looks like the start of a
    long frame loses nothing after it: at the end of the input the bytes behind it are
    rescanned (see docs/c37118.md). Configuration frames seen in the stream
    (and ``configs``) decode the data frames after them. CFG-3 fragments are not
    reported one by one: the joined configuration is, once its last fragment arrives.
    """
    dec = StreamDecoder(list(configs) if configs is not None else None)
    while True:
        chunk = stream.read(READ_CHUNK)
        events = dec.feed(chunk) if chunk else dec.finish()
        for _offset, item in events:
            if isinstance(item, FrameError):
                yield error_to_json(item)
            elif not isinstance(item, Cfg3Fragment):
                yield frame_to_json(item)
        if not chunk:
            return
