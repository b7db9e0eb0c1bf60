"""Line charts as inline SVG text, written by hand (a report must open anywhere, with no
JavaScript, no network and no plotting library).

A chart is a plot box (``<rect class="plot">``) with one ``<polyline>`` per series, one
point per finite sample (a non-finite one is left out), horizontal reference lines
(``levels``: band edges, thresholds) and vertical marks (event start and end). The
y range covers the data and the levels; :func:`scale` maps into the box and clamps,
so no point can land outside it whatever the values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

__all__ = ["Box", "Level", "Series", "line_chart", "nice_ticks", "scale"]


@dataclass(frozen=True)
class Series:
    """One line: samples (``x``, ``y``), a label for the legend, a colour and a dash."""

    label: str
    x: Sequence[float]
    y: Sequence[float]
    color: str = "#1f5fa8"
    dash: str = ""


@dataclass(frozen=True)
class Level:
    """A horizontal reference line at ``y``."""

    label: str
    y: float
    color: str = "#999999"


@dataclass(frozen=True)
class Box:
    """The plot area in SVG pixels (y grows downwards)."""

    left: float
    top: float
    right: float
    bottom: float


def scale(v: float, lo: float, hi: float, out_lo: float, out_hi: float) -> float:
    """``v`` mapped linearly from [lo, hi] to [out_lo, out_hi] (either may run downwards),
    clamped to that interval; a degenerate or non-finite input range maps to its middle."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi == lo or not math.isfinite(v):
        # Halves first (the sum of two large ends overflows), then clamped (halving the
        # smallest subnormals rounds them to 0).
        mid = out_lo / 2 + out_hi / 2
        return min(max(mid, min(out_lo, out_hi)), max(out_lo, out_hi))
    frac = (v - lo) / (hi - lo)
    if not math.isfinite(frac):
        # A range wider than a float holds (hi - lo overflowed): clamp at the side.
        frac = 0.0 if v <= lo else 1.0
    frac = min(1.0, max(0.0, frac))
    # A weighted mean of the ends, not out_lo + frac * (out_hi - out_lo): the difference
    # of two large ends of opposite sign overflows.
    out = out_lo * (1.0 - frac) + out_hi * frac
    return min(max(out, min(out_lo, out_hi)), max(out_lo, out_hi))


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round values (1, 2 or 5 times a power of ten apart) within [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi - lo <= 1e-12 * max(abs(lo), abs(hi)):
        # No range, or one too narrow for its magnitude to divide (lo / step overflows).
        return [lo] if math.isfinite(lo) else []
    raw = (hi - lo) / max(1, n)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    ticks = []
    k = 0
    while (v := first + k * step) <= hi + step * 1e-9 and k < 1000:
        ticks.append(round(v, 12))
        k += 1
    return ticks


def _range(values: Sequence[float]) -> tuple[float, float]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return 0.0, 1.0
    lo, hi = min(finite), max(finite)
    pad = (hi - lo) * 0.05 or max(abs(hi) * 0.01, 1e-3)
    return lo - pad, hi + pad


def _fmt(v: float) -> str:
    return f"{v:.6g}"


def line_chart(
    title: str,
    series: Sequence[Series],
    *,
    y_label: str = "",
    x_label: str = "s",
    levels: Sequence[Level] = (),
    marks: Sequence[tuple[str, float]] = (),
    width: int = 880,
    height: int = 280,
) -> str:
    """An ``<svg>`` element: ``series`` against x, with ``levels`` and vertical ``marks``
    ((label, x)), titled ``title``."""
    top, right, bottom, left = 30, 150, 40, 70
    box = Box(left, top, width - right, height - bottom)
    xs = [v for s in series for v in s.x] + [m[1] for m in marks]
    ys = [y for s in series for x, y in zip(s.x, s.y, strict=True) if math.isfinite(x)]
    x0, x1 = _range(xs)
    y0, y1 = _range(ys + [lv.y for lv in levels])

    def px(x: float) -> float:
        return scale(x, x0, x1, box.left, box.right)

    def py(y: float) -> float:
        return scale(y, y0, y1, box.bottom, box.top)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
        f"<title>{escape(title)}</title>",
        f'<text x="{left}" y="18" font-size="13" font-weight="bold">{escape(title)}</text>',
        f'<rect class="plot" x="{box.left}" y="{box.top}" width="{box.right - box.left}" '
        f'height="{box.bottom - box.top}" fill="#fcfcfc" stroke="#444"/>',
    ]
    for t in nice_ticks(y0, y1):
        y = py(t)
        out.append(f'<line x1="{box.left}" y1="{y:.1f}" x2="{box.right}" y2="{y:.1f}" '
                   'stroke="#e4e4e4"/>')  # fmt: skip
        out.append(f'<text x="{box.left - 4}" y="{y + 4:.1f}" text-anchor="end">{_fmt(t)}</text>')
    for t in nice_ticks(x0, x1, 10):
        x = px(t)
        out.append(f'<text x="{x:.1f}" y="{box.bottom + 14}" text-anchor="middle">{_fmt(t)}</text>')
    out.append(f'<text x="{(box.left + box.right) / 2}" y="{height - 6}" '
               f'text-anchor="middle">{escape(x_label)}</text>')  # fmt: skip
    mid = (box.top + box.bottom) / 2
    out.append(f'<text x="14" y="{mid}" text-anchor="middle" '
               f'transform="rotate(-90 14 {mid})">{escape(y_label)}</text>')  # fmt: skip
    for lv in levels:
        y = py(lv.y)
        out.append(f'<line class="level" x1="{box.left}" y1="{y:.1f}" x2="{box.right}" '
                   f'y2="{y:.1f}" stroke="{lv.color}" stroke-dasharray="4 3"/>')  # fmt: skip
        # Inside the box at its left end: the right margin holds the legend.
        out.append(f'<text x="{box.left + 4}" y="{y - 3:.1f}" fill="{lv.color}">'
                   f'{escape(lv.label)}</text>')  # fmt: skip
    for label, t in marks:
        x = px(t)
        out.append(f'<line class="mark" x1="{x:.1f}" y1="{box.top}" x2="{x:.1f}" '
                   f'y2="{box.bottom}" stroke="#c03030" stroke-dasharray="2 2"/>')  # fmt: skip
        out.append(f'<text x="{x + 3:.1f}" y="{box.top + 11}" fill="#c03030">'
                   f"{escape(label)}</text>")  # fmt: skip
    for i, s in enumerate(series):
        pts = " ".join(
            f"{px(x):.1f},{py(y):.1f}"
            for x, y in zip(s.x, s.y, strict=True)
            if math.isfinite(x) and math.isfinite(y)
        )
        dash = f' stroke-dasharray="{s.dash}"' if s.dash else ""
        out.append(f'<polyline data-series="{escape(s.label)}" points="{pts}" fill="none" '
                   f'stroke="{s.color}" stroke-width="1.5"{dash}/>')  # fmt: skip
        ly = box.top + 14 * i + 6
        out.append(f'<line x1="{box.right + 6}" y1="{ly}" x2="{box.right + 22}" y2="{ly}" '
                   f'stroke="{s.color}" stroke-width="2"{dash}/>')  # fmt: skip
        out.append(f'<text x="{box.right + 26}" y="{ly + 4}">{escape(s.label)}</text>')
    out.append("</svg>")
    return "\n".join(out)
