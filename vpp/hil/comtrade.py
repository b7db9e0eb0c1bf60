"""COMTRADE (IEEE C37.111-1999) export of a case's record, and import of a channel.

Written from the standard's description of the two files:

- ``.cfg`` (text): ``station_name,rec_dev_id,rev_year``; ``TT,##A,##D``; one line per
  analog channel ``An,ch_id,ph,ccbm,uu,a,b,skew,min,max,primary,secondary,PS`` and per
  status channel ``Dn,ch_id,ph,ccbm,y``; the line frequency; ``nrates`` and that many
  ``samp,endsamp`` lines; the first sample's and the trigger's time
  ``dd/mm/yyyy,hh:mm:ss.ssssss``; the file type (``ASCII`` or ``BINARY``); ``timemult``.
- ``.dat``: per sample ``n``, ``timestamp`` (in µs times ``timemult``), the analog
  values as integers ``x`` (the quantity is ``a * x + b`` in ``uu``) and the status bits.
  ASCII: one comma-separated line per sample. BINARY: little-endian uint32 ``n`` and
  ``timestamp``, int16 per analog channel, the status bits packed 16 to a uint16 word.

The harness writes ASCII with ``nrates`` 0 (the timestamps give the times: PMU frames
lost on the way leave gaps rather than shift later samples) and each channel scaled so
that its range fills int16. The reader takes both file types and the 1991, 1999 and 2013
revisions of the ``.cfg`` (2013's extra lines are read past; its float32 types are not
supported). A missing sample (ASCII empty or 99999, BINARY -32768) reads as NaN.
"""

from __future__ import annotations

import datetime as dt
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike, NDArray

from vpp.validation import config_error

__all__ = ["AnalogChannel", "ComtradeRecord", "read_channel", "read_comtrade", "write_comtrade"]

FloatArray = NDArray[np.float64]
INT16 = 32767
MISSING_BINARY = -32768
MISSING_ASCII = 99999


@dataclass(frozen=True)
class AnalogChannel:
    """One analog channel to write: its id, unit and values (NaN: missing)."""

    name: str
    unit: str
    values: ArrayLike


@dataclass(frozen=True)
class ComtradeRecord:
    """What :func:`read_comtrade` read: times (s from the first sample) and the analog
    channels by ch_id (in their units, scaling applied), with their units."""

    station: str
    times: FloatArray
    analog: dict[str, FloatArray]
    units: dict[str, str]
    status: dict[str, NDArray[np.int64]]


def _scaling(values: FloatArray) -> tuple[float, float]:
    # a, b so that the finite values span -32767..32767 (a constant channel: a = 1e-6
    # of its magnitude, so that it still reads back exactly).
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 1.0, 0.0
    lo, hi = float(finite.min()), float(finite.max())
    b = (lo + hi) / 2
    a = (hi - lo) / (2 * INT16) if hi > lo else (abs(b) * 1e-6 or 1.0)
    return a, b


def _stamp(t: dt.datetime) -> str:
    return t.strftime("%d/%m/%Y,%H:%M:%S.%f")


def write_comtrade(
    base: Path,
    *,
    station: str,
    device: str,
    start_unix_s: float,
    times_s: ArrayLike,
    analog: Sequence[AnalogChannel],
    status: Sequence[tuple[str, Sequence[int]]] = (),
    line_hz: float = 50.0,
    trigger_s: float = 0.0,
) -> tuple[Path, Path]:
    """Write ``base.cfg`` and ``base.dat`` (ASCII, C37.111-1999): ``times_s`` from the
    first sample (at UNIX time ``start_unix_s``), the trigger at ``trigger_s`` after it.
    Returns the two paths."""
    t = np.asarray(times_s, dtype=np.float64)
    n = t.size
    cols = [np.asarray(ch.values, dtype=np.float64) for ch in analog]
    if any(c.size != n for c in cols) or any(len(s[1]) != n for s in status):
        raise ValueError("every channel needs one value per time")
    # Commas would break the comma-separated files; the ids stay readable without them.
    clean = [s.replace(",", ";") for s in (station, device)]
    lines = [
        f"{clean[0]},{clean[1]},1999",
        f"{len(cols) + len(status)},{len(cols)}A,{len(status)}D",
    ]
    raw_cols: list[NDArray[np.int64]] = []
    for i, (ch, vals) in enumerate(zip(analog, cols, strict=True), start=1):
        a, b = _scaling(vals)
        raw = np.where(np.isfinite(vals), np.rint((np.nan_to_num(vals) - b) / a), MISSING_ASCII)
        raw_cols.append(raw.astype(np.int64))
        name = ch.name.replace(",", ";")
        lines.append(f"{i},{name},,,{ch.unit},{a:.9g},{b:.9g},0,{-INT16},{INT16},1,1,P")
    for j, (name, _bits) in enumerate(status, start=1):
        lines.append(f"{j},{name.replace(',', ';')},,,0")
    start = dt.datetime.fromtimestamp(start_unix_s, tz=dt.timezone.utc)
    lines += [
        f"{line_hz:g}",
        "0",  # nrates 0: the samples' timestamps give their times
        f"0,{n}",
        _stamp(start),
        _stamp(start + dt.timedelta(seconds=trigger_s)),
        "ASCII",
        "1",
    ]
    # Appended, not with_suffix: a case name may hold dots ("step-49.50").
    cfg, dat = base.parent / f"{base.name}.cfg", base.parent / f"{base.name}.dat"
    cfg.write_text("\r\n".join(lines) + "\r\n", encoding="ascii", errors="replace")
    stamps = np.rint((t - (t[0] if n else 0.0)) * 1e6).astype(np.int64)
    bits = [np.asarray(s[1], dtype=np.int64) for s in status]
    with dat.open("w", encoding="ascii", newline="\r\n") as fh:
        for k in range(n):
            fields = [str(k + 1), str(int(stamps[k]))]
            fields += [str(int(c[k])) for c in raw_cols]
            fields += [str(int(b[k] != 0)) for b in bits]
            fh.write(",".join(fields) + "\n")
    return cfg, dat


def _fields(line: str) -> list[str]:
    return [f.strip() for f in line.split(",")]


def _error(path: Path, why: str) -> Exception:
    return config_error(f"COMTRADE {path}: {why}", "comtrade")


def read_comtrade(cfg_path: Path) -> ComtradeRecord:
    """Read a COMTRADE record: ``cfg_path`` and the ``.dat`` beside it (ASCII or BINARY).
    A file that cannot be read or parsed is a ConfigError naming it."""
    try:
        lines = [ln for ln in cfg_path.read_text(encoding="latin-1").splitlines()]
    except OSError as exc:
        raise _error(cfg_path, f"cannot read ({exc.strerror or exc})") from exc
    try:
        return _parse(cfg_path, lines)
    except (ValueError, IndexError, struct.error) as exc:
        raise _error(cfg_path, f"malformed ({exc})") from exc


def _parse(cfg_path: Path, lines: list[str]) -> ComtradeRecord:
    head = _fields(lines[0])
    station = head[0]
    counts = _fields(lines[1])
    n_a = int(counts[1].rstrip("Aa"))
    n_d = int(counts[2].rstrip("Dd"))
    names: list[str] = []
    units: dict[str, str] = {}
    scale: list[tuple[float, float]] = []
    row = 2
    for _ in range(n_a):
        f = _fields(lines[row])
        row += 1
        names.append(f[1])
        units[f[1]] = f[4]
        scale.append((float(f[5]), float(f[6])))
    status_names = [_fields(lines[row + i])[1] for i in range(n_d)]
    row += n_d + 1  # and the line frequency
    nrates = int(lines[row].strip())
    row += 1
    rates: list[tuple[float, int]] = []
    for _ in range(max(nrates, 1)):
        f = _fields(lines[row])
        row += 1
        rates.append((float(f[0]), int(float(f[1]))))
    row += 2  # first sample's and trigger's times
    ftype = lines[row].strip().upper()
    row += 1
    timemult = float(lines[row]) if row < len(lines) and lines[row].strip() else 1.0
    total = rates[-1][1]
    dat = cfg_path.with_suffix(".dat")
    if not dat.exists():
        dat = cfg_path.with_suffix(".DAT")
    if ftype == "ASCII":
        samples = _read_ascii(dat, n_a, n_d)
    elif ftype == "BINARY":
        samples = _read_binary(dat, n_a, n_d, total)
    else:
        raise ValueError(f"file type {ftype!r} is not supported (ASCII or BINARY)")
    stamps = samples[:, 1].astype(np.float64)
    if nrates == 0 or rates[0][0] == 0:
        times = stamps * timemult * 1e-6
    else:
        times = _times_from_rates(rates, samples.shape[0])
    analog: dict[str, FloatArray] = {}
    for i, (name, (a, b)) in enumerate(zip(names, scale, strict=True)):
        raw = samples[:, 2 + i]
        vals = np.where(np.isnan(raw), np.nan, a * raw + b)
        analog[name] = np.asarray(vals, dtype=np.float64)
    status = {
        name: np.nan_to_num(samples[:, 2 + n_a + j]).astype(np.int64)
        for j, name in enumerate(status_names)
    }
    return ComtradeRecord(station, times - (times[0] if times.size else 0.0), analog, units, status)


def _times_from_rates(rates: list[tuple[float, int]], count: int) -> FloatArray:
    out = np.empty(count, dtype=np.float64)
    t, first = 0.0, 1
    for samp, last in rates:
        for n in range(first, min(last, count) + 1):
            out[n - 1] = t + (n - first) / samp
        t += (last - first + 1) / samp
        first = last + 1
    return out


def _read_ascii(dat: Path, n_a: int, n_d: int) -> NDArray[np.float64]:
    rows: list[list[float]] = []
    with dat.open(encoding="latin-1") as fh:
        for line in fh:
            if not line.strip() or line.strip() == "\x1a":
                continue
            f = _fields(line)
            vals = [float(f[0]), float(f[1] or "nan")]
            for x in f[2 : 2 + n_a]:
                v = float(x) if x else math.nan
                vals.append(math.nan if v == MISSING_ASCII else v)
            vals += [float(x) for x in f[2 + n_a : 2 + n_a + n_d]]
            rows.append(vals)
    return np.array(rows, dtype=np.float64).reshape(len(rows), 2 + n_a + n_d)


def _read_binary(dat: Path, n_a: int, n_d: int, total: int) -> NDArray[np.float64]:
    words = (n_d + 15) // 16
    fmt = f"<II{n_a}h{words}H"
    size = struct.calcsize(fmt)
    data = dat.read_bytes()
    count = min(total, len(data) // size) if total else len(data) // size
    out = np.empty((count, 2 + n_a + n_d), dtype=np.float64)
    for k in range(count):
        rec = struct.unpack_from(fmt, data, k * size)
        out[k, 0], out[k, 1] = rec[0], rec[1]
        for i in range(n_a):
            v = rec[2 + i]
            out[k, 2 + i] = math.nan if v == MISSING_BINARY else v
        for j in range(n_d):
            out[k, 2 + n_a + j] = (rec[2 + n_a + j // 16] >> (j % 16)) & 1
    return out


def read_channel(cfg_path: Path, channel: str) -> tuple[FloatArray, FloatArray]:
    """(times s, values) of the analog ``channel`` (its ch_id) of a COMTRADE record,
    missing samples left out. An unknown channel is a ConfigError listing the known."""
    rec = read_comtrade(cfg_path)
    if channel not in rec.analog:
        raise _error(cfg_path, f"no analog channel {channel!r}; it has {sorted(rec.analog)}")
    vals = rec.analog[channel]
    keep = np.isfinite(vals)
    return rec.times[keep], vals[keep]
