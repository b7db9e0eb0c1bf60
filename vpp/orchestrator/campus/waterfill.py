"""Water-filling and priority filling without sorting the whole fleet.

Both dispatch problems need an order over the units: water-filling (proportional,
balanced) the ``2n`` breakpoints of the piecewise-linear total, priority the units by
SOC. Sorting them costs O(n log n) with a large constant: at 100,000 units one
``argsort`` of the 200,000 breakpoints takes 10-14 ms on the development VM, more than
the whole dispatch may. Only the breakpoints near the answer matter, so for a large
fleet the answer is first guessed from a strided sample of about :data:`SAMPLE` units,
bracketed by evaluating the total (a few O(n) vector passes), and then found exactly by
sorting only the breakpoints inside the bracket. Below :data:`SORT_BELOW` units the
whole fleet is sorted at once (the plain method; cheaper than the bracketing there).

The exact step is the same computation as the plain one restricted to the bracket, so
both give the same ``lam`` up to the order of floating-point sums (tested).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["SAMPLE", "SORT_BELOW", "fill_in_order", "waterfill"]

FloatArray = npt.NDArray[np.float64]

#: Fleets up to this many units are solved by sorting every breakpoint.
SORT_BELOW = 4096
#: Units in the sample that guesses the answer for a larger fleet.
SAMPLE = 1024
#: Bracket widenings before giving up on the guess and taking the whole range.
_WIDEN = 24


def _level(x: FloatArray, dslope: FloatArray, x0: float, total0: float, slope0: float,
           x_end: float, target: float) -> float:  # fmt: skip
    """``lam`` in ``[x0, x_end]`` where a piecewise-linear non-decreasing total reaches
    ``target``: the total is ``total0`` at ``x0`` with slope ``slope0`` after it, and its
    slope changes by ``dslope[k]`` at ``x[k]`` (all in ``(x0, x_end)``)."""
    order = np.argsort(x)
    pts = np.concatenate(([x0], x[order]))
    slope = slope0 + np.concatenate(([0.0], np.cumsum(dslope[order])))  # after pts[k]
    total = np.empty_like(pts)
    total[0] = total0
    np.cumsum(slope[:-1] * np.diff(pts), out=total[1:])
    total[1:] += total0
    k = int(np.searchsorted(total, target, side="left"))
    if k == 0:
        return x0
    j = k - 1
    if slope[j] <= 0:
        return float(pts[k]) if k < len(pts) else x_end
    lam = float(pts[j] + (target - total[j]) / slope[j])
    return min(lam, float(pts[k]) if k < len(pts) else x_end)


def _sorted_level(a: FloatArray, b: FloatArray, cap: FloatArray, target: float) -> float:
    """``lam`` by sorting all ``2n`` breakpoints (the plain method)."""
    start = -a / b
    x = np.concatenate([start, start + cap / b])
    dslope = np.concatenate([b, -b])
    first = int(np.argmin(x))
    # The total is 0 and flat up to the first breakpoint, which starts a unit.
    rest = np.ones(len(x), dtype=np.bool_)
    rest[first] = False
    return _level(x[rest], dslope[rest], float(x[first]), 0.0, float(dslope[first]),
                  float(x.max()), target)  # fmt: skip


def waterfill(a: FloatArray, b: FloatArray, cap: FloatArray, target: float) -> FloatArray:
    """``p = clip(a + b * lam, 0, cap)`` with the ``lam`` for which ``sum(p) == target``.

    Needs ``b > 0``, ``cap > 0`` and ``0 < target < sum(cap)``. The total is continuous,
    piecewise linear and non-decreasing in ``lam``; its breakpoints are where a unit
    starts (``-a/b``) and where it saturates (``(cap - a)/b``).
    """
    n = len(a)
    if n <= SORT_BELOW:
        lam = _sorted_level(a, b, cap, target)
    else:
        lam = _bracketed_level(a, b, cap, target)
    return _clipped(a, b, cap, lam, np.empty_like(cap))


def _clipped(a: FloatArray, b: FloatArray, cap: FloatArray, lam: float,
             out: FloatArray) -> FloatArray:  # fmt: skip
    """``clip(a + b * lam, 0, cap)`` into ``out``, without temporaries (``np.clip`` costs
    twice as much at this size)."""
    np.multiply(b, lam, out=out)
    out += a
    np.maximum(out, 0.0, out=out)
    np.minimum(out, cap, out=out)
    return out


def _bracketed_level(a: FloatArray, b: FloatArray, cap: FloatArray, target: float) -> float:
    n = len(a)
    start = -a / b
    end = start + cap / b
    step = max(1, n // SAMPLE)
    c_s = cap[::step]
    # The sample's own answer for its share of the target is close to the fleet's.
    guess = _sorted_level(a[::step], b[::step], c_s,
                          target * float(c_s.sum()) / float(cap.sum()))  # fmt: skip
    lowest, highest = float(start.min()), float(end.max())

    buf = np.empty_like(cap)

    def total(lam: float) -> float:
        return float(_clipped(a, b, cap, lam, buf).sum())

    # Widen from the guess by a few sample gaps until the target is inside.
    width = 4.0 * (float(end[::step].max()) - float(start[::step].min())) / len(c_s)
    width = max(width, 1e-12 * max(1.0, abs(guess)))
    at = total(guess)
    if at < target:
        lo, f_lo, hi = guess, at, highest
        for _ in range(_WIDEN):
            x = guess + width
            if x >= highest:
                break
            fx = total(x)
            if fx >= target:
                hi = x
                break
            lo, f_lo, width = x, fx, 4.0 * width
    else:
        lo, f_lo, hi = lowest, 0.0, guess
        for _ in range(_WIDEN):
            x = guess - width
            if x <= lowest:
                break
            fx = total(x)
            if fx <= target:
                lo, f_lo = x, fx
                break
            hi, width = x, 4.0 * width
        if f_lo == target:
            return lo
    # Inside [lo, hi] only the units with a breakpoint strictly inside change slope;
    # the others are at 0, at their cap, or linear throughout.
    inside_s = (start > lo) & (start < hi)
    inside_e = (end > lo) & (end < hi)
    slope0 = float(b[(start <= lo) & (end > lo)].sum())
    events = np.concatenate([start[inside_s], end[inside_e]])
    dslope = np.concatenate([b[inside_s], -b[inside_e]])
    return _level(events, dslope, lo, f_lo, slope0, hi, target)


def fill_in_order(key: FloatArray, cap: FloatArray, want: float) -> FloatArray:
    """Units in increasing ``key`` (ties: lower index first) each filled to ``cap`` until
    ``want`` is met; the last one used takes the remainder. ``0 < want < sum(cap)``."""
    n = len(key)
    out = np.zeros(n, dtype=np.float64)
    if n <= SORT_BELOW:
        return _fill_sorted(key, cap, want, np.arange(n), out)
    # Bracket the key of the last unit used: below ``lo`` all are full, above ``hi`` none.
    step = max(1, n // SAMPLE)
    k_s, c_s = key[::step], cap[::step]
    order = np.argsort(k_s, kind="stable")
    share = want * float(c_s.sum()) / float(cap.sum())
    i = int(np.searchsorted(np.cumsum(c_s[order]), share))
    lo_i, hi_i = max(0, i - 8), min(len(order) - 1, i + 8)
    lo, hi = float(k_s[order[lo_i]]), float(k_s[order[hi_i]])
    for _ in range(_WIDEN):
        below = float(cap[key < lo].sum())
        if below <= want or lo_i == 0:
            break
        lo_i = max(0, lo_i - 4 * (hi_i - lo_i))
        lo = float(k_s[order[lo_i]])
    if lo_i == 0:
        lo, below = -np.inf, 0.0
    for _ in range(_WIDEN):
        if hi_i >= len(order) - 1 or float(cap[key <= hi].sum()) >= want:
            break
        hi_i = min(len(order) - 1, hi_i + 4 * (hi_i - lo_i))
        hi = float(k_s[order[hi_i]])
    if hi_i >= len(order) - 1:
        hi = np.inf
    out[key < lo] = cap[key < lo]
    mid = np.flatnonzero((key >= lo) & (key <= hi))
    return _fill_sorted(key[mid], cap[mid], want - below, mid, out)


def _fill_sorted(
    key: FloatArray, cap: FloatArray, want: float, where: npt.NDArray[np.intp], out: FloatArray
) -> FloatArray:
    order = np.argsort(key, kind="stable")  # ties: lower index first
    c = cap[order]
    before = np.cumsum(c) - c
    out[where[order]] = np.clip(want - before, 0.0, c)
    return out
