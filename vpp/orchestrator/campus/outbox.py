"""What a campus round sends: the setpoints grouped by field controller, minus those
already acknowledged (vectorised over slots).

Per fleet slot the :class:`Outbox` keeps the unit's id, the index of the field
controller that owns it (from the site configuration; -1: none), and the setpoint that
controller last acknowledged with the round it did so (NaN: none). A round's plan is a
few array passes and one stable sort by owner, not a dict per unit: at 100,000 units the
per-unit Python of grouping and filtering cost 40 times the dispatch itself.

A setpoint is due when nothing was acknowledged for the unit, when it differs from the
acknowledged one by more than :data:`SAME_KW`, or when the acknowledgement is
:data:`RESEND_ROUNDS` rounds old (a field controller that restarted gets its bases
back). Units left out of dispatch for a reason other than being offline get 0 kW, so a
share that moved elsewhere is not kept twice; an offline unit's acknowledgement is
forgotten (it may come back having lost it).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from itertools import repeat

import numpy as np
import numpy.typing as npt

from vpp.orchestrator.campus.dispatch import DispatchResult
from vpp.orchestrator.campus.fleet import REASONS

__all__ = ["RESEND_ROUNDS", "SAME_KW", "FieldSends", "Outbox"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]

#: An acknowledged, unchanged setpoint is sent again after this many rounds.
RESEND_ROUNDS = 10
#: Setpoints closer than this (kW) count as unchanged.
SAME_KW = 0.01
_OFFLINE = REASONS.index("offline")


@dataclasses.dataclass(frozen=True)
class FieldSends:
    """The setpoints due to one field controller this round: views of the round's
    arrays, the unit ids looked up when sent (Python objects per unit cost more than
    the whole plan)."""

    slots: IntArray
    kw: FloatArray
    ids: npt.NDArray[np.object_] = dataclasses.field(repr=False, compare=False)
    """The outbox's ids by slot."""

    def __len__(self) -> int:
        return len(self.slots)

    @property
    def units(self) -> list[str]:
        """The unit ids, in order."""
        return self.ids[self.slots].tolist()  # type: ignore[no-any-return]

    def items(self) -> list[tuple[str, float]]:
        """``(unit, kW)`` pairs, the ``set_base`` params."""
        return list(zip(self.units, self.kw.tolist(), strict=True))


class Outbox:
    """Per-slot owners and acknowledgements of one campus (see the module docstring).

    ``fields`` are the field controller ids in configuration order; a slot gets its
    owner with :meth:`place` when its unit registers.
    """

    def __init__(self, fields: list[str], capacity: int) -> None:
        self.fields = list(fields)
        self._index = {f: k for k, f in enumerate(self.fields)}
        self.owner = np.full(capacity, -1, dtype=np.intp)
        self.acked_kw = np.full(capacity, math.nan)
        self.acked_round = np.zeros(capacity, dtype=np.int64)
        self.ids = np.full(capacity, "", dtype=object)

    def _grow(self, slot: int) -> None:
        n = max(slot + 1, 2 * len(self.owner))
        for name, fill in (("owner", -1), ("acked_kw", math.nan), ("acked_round", 0),
                           ("ids", "")):  # fmt: skip
            old = getattr(self, name)
            new = np.full(n, fill, dtype=old.dtype)
            new[: len(old)] = old
            setattr(self, name, new)

    def place(self, slot: int, unit: str, owner: str | None) -> None:
        """``unit`` holds ``slot``; ``owner`` commands it (None or unknown: no one)."""
        if slot >= len(self.owner):
            self._grow(slot)
        self.ids[slot] = unit
        self.owner[slot] = self._index.get(owner, -1) if owner is not None else -1
        self.acked_kw[slot] = math.nan

    def field_indices(self, ids: Sequence[str]) -> IntArray:
        """The indices of field controllers ``ids`` in :attr:`fields`, in one pass (-1 for
        an id that is none), to compare with :attr:`owner`."""
        return np.fromiter(map(self._index.get, ids, repeat(-1)), np.intp, len(ids))

    def slots_of(self, field: str) -> IntArray:
        """The slots of the units ``field`` owns."""
        k = self._index.get(field)
        if k is None:
            return np.zeros(0, dtype=np.intp)
        return np.flatnonzero(self.owner == k)

    def forget(self, slots: IntArray) -> None:
        """Forget what was acknowledged for ``slots`` (all is sent again)."""
        self.acked_kw[slots] = math.nan

    def ack(self, slots: IntArray, kw: FloatArray, round_no: int) -> None:
        """The owner acknowledged ``kw`` for ``slots`` in round ``round_no``."""
        self.acked_kw[slots] = kw
        self.acked_round[slots] = round_no

    def plan(self, result: DispatchResult, round_no: int) -> tuple[dict[str, FieldSends], int]:
        """The sends of round ``round_no`` by field controller (only those with something
        due), and how many due setpoints have no owner to go to."""
        codes = result.excluded_codes
        gone = result.excluded_slots[codes == _OFFLINE]
        self.acked_kw[gone] = math.nan
        zeroed = result.excluded_slots[codes != _OFFLINE]
        slots = np.concatenate([result.slots, zeroed])
        kw = np.concatenate([result.setpoints_kw, np.zeros(len(zeroed))])
        last = self.acked_kw[slots]
        # NaN (nothing acknowledged) compares False with everything: due by isnan.
        due = (np.isnan(last) | (np.abs(last - kw) > SAME_KW)
               | (round_no - self.acked_round[slots] >= RESEND_ROUNDS))  # fmt: skip
        slots, kw = slots[due], kw[due]
        owner = self.owner[slots]
        # Stable: each field controller's units keep the order of the dispatch result.
        # As 16-bit keys NumPy's stable sort is a radix sort, O(n).
        small = len(self.fields) < np.iinfo(np.int16).max
        order = np.argsort(owner.astype(np.int16) if small else owner, kind="stable")
        slots, kw, owner = slots[order], kw[order], owner[order]
        nobody = int(np.searchsorted(owner, 0))  # the -1s come first
        counts = np.bincount(owner[nobody:], minlength=len(self.fields))
        out: dict[str, FieldSends] = {}
        at = nobody
        ends = np.cumsum(counts) + nobody
        for k in np.flatnonzero(counts).tolist():
            end = int(ends[k])
            out[self.fields[k]] = FieldSends(slots[at:end], kw[at:end], self.ids)
            at = end
        return out, nobody
