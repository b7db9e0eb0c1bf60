"""What the simulated PMU measures at frame ``k``: frequency, ROCOF and the phase of VA.

:class:`ProfileSignal` makes every value a pure function of ``k`` (and the profile), so
a frame can be built again, out of order or after frames were skipped, and a long
stream can be generated at simulated times without waiting for wall time.
:class:`SourceSignal` follows a stateful :class:`~vpp.sim.frequency.FrequencySource`
(the grid model), sampled at increasing frames.

The phase is what a real PMU reports: the angle of the bus voltage against a reference
turning at the nominal frequency, so it turns at ``2 pi (f - nominal)`` rad/s. (The
encoder puts every phasor angle in (-pi, pi], the range C37.118.2 gives them.)
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from numpy.typing import NDArray

from vpp.sim.frequency import FrequencyProfile, FrequencySource

__all__ = ["NOISE_BLOCK", "ProfileSignal", "SourceSignal"]

#: Frames whose noise is drawn together, from a generator seeded by (seed, k // block).
NOISE_BLOCK = 1024


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
        # The clean frequency of the last frames asked: in order, each is computed once
        # (for the ROCOF of frame k and k + 1, and for the phase).
        self._f_memo: dict[int, float] = {}

    def _f(self, k: int) -> float:
        f = self._f_memo.get(k)
        if f is None:
            if len(self._f_memo) >= 4:
                self._f_memo.clear()
            f = self._f_memo[k] = float(self._clean.at(np.array([k / self.rate]))[0])
        return f

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
        f0, f1 = self._f(k - 1), self._f(k)
        return f1 + self.noise(k), (f1 - f0) * self.rate, self.phase(k)


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
