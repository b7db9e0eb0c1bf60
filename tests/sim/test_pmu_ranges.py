"""Every field the simulated PMU sends lies within C37.118.2's ranges, and pyPMU reads
every frame of a 60 s stream at 50 frames/s.

The frames are built by the simulator's own builder (``PmuServer.data_frame``) at their
simulated times: with a profile, frame k is a pure function of k, so 3000 frames take a
fraction of a second instead of a minute (the TCP run with pyPMU's ``Pdc`` is in
tests/drivers/test_pmu_interop_pypmu.py). pyPMU (PyPI ``synchrophasor``) is the foreign
parser: it refuses a float polar angle outside +-3.142, an int16 angle outside +-31416
and FREQ/DFREQ outside +-32767; and (a quirk, see tests/c37118/test_interop_pypmu.py)
any float FREQ of absolute Hz, so it reads the FORMATs with integer FREQ (bit 3 clear).
Our own decode checks the ranges of every FORMAT.
"""

from __future__ import annotations

import math
import random
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.pypmu import CommonFrame, ConfigFrame2
from tests.support.pypmu import DataFrame as PypmuData
from vpp import c37118 as c
from vpp.sim.frequency import FrequencyProfile
from vpp.sim.pmu import TIME_BASE, V_PHASE, PmuServer

RATE = 50
FRAMES = 60 * RATE
SOC0 = 1_700_000_000
INT_FREQ_FORMATS = range(8)  # FORMAT bit 3 clear: FREQ/DFREQ as int16

PROFILES = {
    # The default: a generation loss, a fall to ~49.6 Hz and recovery, 0.5 mHz noise.
    "event": FrequencyProfile(),
    # Below nominal from the first frame: the phase turns backwards at once.
    "under": FrequencyProfile("step", magnitude=-0.2, start=0.0, noise=0.0),
    # +1 Hz/s for 60 s: past what int16 FREQ holds (32.767 Hz from nominal) after 33 s.
    "ramp": FrequencyProfile("ramp", magnitude=1.0, start=0.0, noise=0.0),
    "oscillation": FrequencyProfile("oscillation", magnitude=0.5, period=2.0, noise=0.01),
    "60 Hz": FrequencyProfile(nominal=60.0),
}


def stream(
    fmt: int, profile: FrequencyProfile, frames: int = FRAMES
) -> tuple[PmuServer, list[bytes]]:
    """A fresh simulated PMU's first ``frames`` data frames, from SOC0 on."""
    srv = PmuServer(rate=RATE, profile=profile, port=0, data_format=fmt)
    srv.k0 = SOC0 * RATE
    return srv, [srv.data_frame(k) for k in range(frames)]


def assert_in_range(srv: PmuServer, k: int, frame: bytes) -> None:
    """Every field of data frame ``k`` of ``srv``, read raw and through our decoder."""
    fmt = srv.config.pmus[0].format
    polar, ph_float, fr_float = fmt & 1, fmt & 0b10, fmt & 0b1000
    d = c.decode(frame, srv.config)
    assert isinstance(d, c.DataFrame)
    assert d.soc * RATE + d.fracsec // (TIME_BASE // RATE) == srv.k0 + k, "on the time grid"
    assert 0 <= d.fracsec < d.time_base == TIME_BASE
    assert frame[10] == 0, "time quality: locked, no leap second flags"
    (p,) = d.pmus
    assert p.stat == 0, "good data, in sync, sorted by time stamp, no trigger"
    pos = 16  # SYNC FRAMESIZE IDCODE SOC FRACSEC, then STAT
    for magnitude, angle in p.phasors:
        assert magnitude >= 0 and magnitude == pytest.approx(V_PHASE, rel=1e-4)
        if ph_float:
            assert -math.pi < angle <= math.pi
        else:
            a, b = struct.unpack_from(">Hh" if polar else ">hh", frame, pos)
            if polar:
                assert -31416 <= b <= 31416 and abs(angle) <= 3.1416 + 1e-12
            else:
                assert min(a, b) > -32768, "-32768 would mean absent data"
        pos += 8 if ph_float else 4
    if fr_float:
        assert math.isfinite(p.freq) and math.isfinite(p.dfreq)
    else:
        freq, dfreq = struct.unpack_from(">hh", frame, pos)
        assert min(freq, dfreq) > -32768, "-32768 would mean absent data"
    assert p.analogs == [] and p.digitals == []


@pytest.mark.parametrize(
    ("fmt", "name"),
    [(f, "event") for f in INT_FREQ_FORMATS] + [(0b0111, n) for n in PROFILES if n != "event"],
)
def test_pypmu_reads_every_frame_of_a_60_s_stream(fmt: int, name: str) -> None:
    srv, frames = stream(fmt, PROFILES[name])
    cfg: Any = ConfigFrame2.convert2frame(c.encode(srv.config))
    nominal = PROFILES[name].nominal
    for k, frame in enumerate(frames):
        assert_in_range(srv, k, frame)
        theirs = CommonFrame.convert2frame(frame, cfg)  # raises what pyPMU refuses
        assert isinstance(theirs, PypmuData)
        ours = c.decode(frame, srv.config)
        assert isinstance(ours, c.DataFrame)
        # pyPMU read the same values: int16 FREQ is mHz from nominal.
        assert theirs.get_freq() == round((ours.freq - nominal) * 1000)
        if fmt & 0b11 == 0b11:  # float polar: the angles as they are
            got = [a for _, a in theirs.get_phasors()]
            assert got == pytest.approx([a for _, a in ours.pmus[0].phasors], abs=1e-6)


def test_int16_freq_saturates_instead_of_failing() -> None:
    srv, frames = stream(0b0111, PROFILES["ramp"])
    early, last = (c.decode(frames[k], srv.config) for k in (10 * RATE, FRAMES - 1))
    assert isinstance(early, c.DataFrame) and isinstance(last, c.DataFrame)
    assert early.freq == pytest.approx(60.0)
    # 60 Hz above nominal by the end; int16 holds +32.767 Hz.
    assert last.freq == pytest.approx(50.0 + 32.767)


def test_a_frame_is_the_same_bytes_whatever_order_it_is_built_in() -> None:
    # Noise, frequency and phase of frame k are a pure function of k: a frame rebuilt
    # out of order, or after the ticker skipped frames, is the frame.
    _, in_order = stream(0b1111, PROFILES["event"], 400)
    srv = PmuServer(rate=RATE, profile=PROFILES["event"], port=0)
    srv.k0 = SOC0 * RATE
    ks = list(range(400))
    random.Random(7).shuffle(ks)
    shuffled = {k: srv.data_frame(k) for k in ks}
    assert [shuffled[k] for k in range(400)] == in_order


@settings(max_examples=40, deadline=None)
@given(
    kind=st.sampled_from(["constant", "ramp", "step", "oscillation", "event"]),
    magnitude=st.floats(-40.0, 40.0),
    start=st.floats(0.0, 60.0),
    period=st.floats(0.05, 30.0),
    noise=st.floats(0.0, 1.0),
    nominal=st.sampled_from([50.0, 60.0]),
    fmt=st.integers(0, 15),
    ks=st.lists(st.integers(0, FRAMES - 1), min_size=1, max_size=20),
)
def test_every_field_is_in_range_for_any_profile_and_format(
    kind: str, magnitude: float, start: float, period: float, noise: float, nominal: float,
    fmt: int, ks: list[int],
) -> None:  # fmt: skip
    profile = FrequencyProfile(kind, nominal, magnitude, start, period, noise)
    srv = PmuServer(rate=RATE, profile=profile, port=0, data_format=fmt)
    srv.k0 = SOC0 * RATE
    for k in sorted(ks):
        assert_in_range(srv, k, srv.data_frame(k))


def test_reserved_idcodes_are_refused() -> None:
    for idcode in (0, 65535):
        with pytest.raises(ValueError, match="IDCODE"):
            PmuServer(idcode=idcode, port=0)
