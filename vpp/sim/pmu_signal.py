"""What the simulated PMU measures at frame ``k``: frequency, ROCOF and the phase of VA.

:class:`ProfileSignal` makes every value a pure function of ``k`` (and the profile), so
a frame can be built again, out of order or after frames were skipped, and a long
stream can be generated at simulated times without waiting for wall time.
:class:`SourceSignal` follows a stateful :class:`~vpp.sim.frequency.FrequencySource`
(the grid model), sampled at increasing frames.

The phase is what a real PMU reports: the angle of the bus voltage against a reference
turning at the nominal frequency, so it turns at ``2 pi (f - nominal)`` rad/s.
:func:`wrap_angle` puts it in (-pi, pi], the range C37.118.2 gives phasor angles.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from numpy.typing import NDArray

from vpp.sim.frequency import FrequencyProfile, FrequencySource

__all__ = ["NOISE_BLOCK", "ProfileSignal", "SourceSignal", "wrap_angle"]

#: Frames whose noise is drawn together, from a generator seeded by (seed, k // block).
NOISE_BLOCK = 1024


def wrap_angle(a: float) -> float:
    """``a`` in (-pi, pi] (C37.118.2's range for phasor angles)."""
    w = math.remainder(a, 2 * math.pi)  # in [-pi, pi]
    return math.pi if w <= -math.pi else w


class ProfileSignal:
    """A :class:`FrequencyProfile` at ``rate`` frames/s: :meth:`at` is a pure function of
    ``k`` (see the module docstring)."""

    def __init__(self, profile: FrequencyProfile, rate: int) -> None:
        self.profile, self.rate = profile, rate
        self.nominal = profile.nominal
        # The phase follows the true (clean) frequency; noise is the measurement's.
        self._clean = dataclasses.replace(profile, noise=0.0)
        self._noise: tuple[int, NDArray[np.float64]] | None = None
        # VA's phase at frame _phase_k: a running sum, kept so that frames in order cost
        # O(1); any frame is the same sum of the same terms in the same order.
        self._phase_k, self._phase = 0, 0.0

    def _f(self, k: int) -> float:
        return float(self._clean.at(np.array([k / self.rate]))[0])

    def noise(self, k: int) -> float:
        """The measurement noise (Hz) of frame ``k``."""
        if not self.profile.noise:
            return 0.0
        block, i = divmod(k, NOISE_BLOCK)
        if self._noise is None or self._noise[0] != block:
            rng = np.random.default_rng([self.profile.seed, block])
            self._noise = (block, rng.normal(0.0, self.profile.noise, NOISE_BLOCK))
        return float(self._noise[1][i])

    def phase(self, k: int) -> float:
        """VA's angle at frame ``k`` (rad, in [-pi, pi]): ``2 pi sum_{i=1..k} (f_i -
        nominal) / rate`` of the clean profile, 0 at frame 0."""
        if k < self._phase_k:
            self._phase_k, self._phase = 0, 0.0
        while self._phase_k < k:
            self._phase_k += 1
            step = 2 * math.pi * (self._f(self._phase_k) - self.nominal) / self.rate
            self._phase = math.remainder(self._phase + step, 2 * math.pi)
        return self._phase

    def at(self, k: int) -> tuple[float, float, float]:
        """(frequency Hz with noise, ROCOF Hz/s of the clean profile, VA's phase rad)."""
        dt = 1.0 / self.rate
        t = k / self.rate
        f0, f1 = self._clean.at(np.array([t - dt, t]))
        return float(f1) + self.noise(k), float(f1 - f0) / dt, self.phase(k)


class SourceSignal:
    """A :class:`FrequencySource` at ``rate`` frames/s; frames must come in increasing
    order (skipping is fine: the phase turns at the frequency sampled for the frame
    over the frames since the last one)."""

    def __init__(self, source: FrequencySource, rate: int) -> None:
        self.source, self.rate = source, rate
        self.nominal = source.nominal
        self._k, self._phase = 0, 0.0

    def at(self, k: int) -> tuple[float, float, float]:
        """(frequency Hz, ROCOF Hz/s, VA's phase rad) as the source gives them at ``k``."""
        freq, rocof = self.source.sample(k / self.rate)
        turned = 2 * math.pi * (freq - self.nominal) * (k - self._k) / self.rate
        if math.isfinite(turned):
            self._phase = math.remainder(self._phase + turned, 2 * math.pi)
        self._k = k
        return freq, rocof, self._phase
