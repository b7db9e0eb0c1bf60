"""Figures of the ROCOF estimator quoted in docs/control.md (ROCOF estimator section).

For 10, 25 and 50 frames/s: the step response time (first to last reported ROCOF outside
the 0.1 Hz/s band, IEC/IEEE 60255-118-1 step test on frame timestamps) for +-0.1 and
+-0.5 Hz steps landing at ``--phases`` points between two frames; the steady-state error
over ``--seeds`` runs of 60 s with 1 mHz rms noise quantised to 1 mHz, and the noise at
which it reaches the M-class 0.1 Hz/s; the +-1 Hz/s ramp error (48 <-> 52 Hz, same noise).
Deterministic (seeded). The signal models are in tests/support/rocof_signals.py.

Run: ``python benchmarks/rocof_figures.py [--window-s 0.1] [--seeds 5] [--phases 20]``
(without ``--window-s``: the estimator's default).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support import rocof_signals as sig  # noqa: E402
from vpp.core import RocofEstimator  # noqa: E402

SIGMAS_MHZ = (0.5, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5)


def _ms(s: float) -> str:
    return f"{s * 1000:.0f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--window-s", type=float, default=None, help="default: the estimator's")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--phases", type=int, default=20)
    a = ap.parse_args()

    def make() -> RocofEstimator:
        return RocofEstimator() if a.window_s is None else RocofEstimator(window_s=a.window_s)

    print(f"window_s {make().window_s} s")
    print("\nstep response time, ms (worst / best over phases; sampled step = phase 0), limit 120")
    print("fps  step Hz  worst  best  sampled")
    for fps in sig.RATES:
        for df in (0.1, -0.1, 0.5, -0.5):
            rts = [sig.response_time(make, fps, df, p / a.phases) for p in range(a.phases)]
            print(f"{fps:>3}  {df:+7.1f}  {_ms(max(rts)):>5}  {_ms(min(rts)):>4}  {_ms(rts[0]):>7}")

    seeds = range(a.seeds)
    print(f"\nsteady-state max abs error, Hz/s, over {a.seeds} x 60 s (M-class limit 0.1)")
    print("fps  " + "  ".join(f"{s:>5.2f} mHz" for s in SIGMAS_MHZ))
    for fps in sig.RATES:
        row = [
            max(sig.worst_error(make, fps, s, sigma=m / 1000) for s in seeds) for m in SIGMAS_MHZ
        ]
        print(f"{fps:>3}  " + "  ".join(f"{v:>9.4f}" for v in row))

    print(f"\n+-1 Hz/s ramp max abs error, Hz/s, 1 mHz noise, {10 * a.seeds} ramps of 4 s "
          "(M-class 0.2, P-class 0.4)")  # fmt: skip
    for fps in sig.RATES:
        worst = max(
            sig.worst_error(make, fps, s, slope, 4.0) for s in range(10 * a.seeds)
            for slope in (1.0, -1.0)
        )  # fmt: skip
        print(f"{fps:>3}  {worst:.4f}")


if __name__ == "__main__":
    main()
