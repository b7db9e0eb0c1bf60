"""The rules of deviation settlement and reserve payments as configuration tables:
:class:`DsmConfig` (the site config's ``dsm`` section, and ``vpp settle --dsm FILE``) with
its deviation :class:`Band` tables and the :class:`ReserveTariff`, and :func:`band_charge`.

The defaults follow the structure of the CERC DSM Regulations 2024 for a general seller
and of the CERC Ancillary Services Regulations 2022 for secondary reserve (SRAS); every
figure is a default to check against the current regulation, and each field's
description says so.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["Band", "DsmConfig", "ReserveTariff", "band_charge"]

_CHECK = " (check against the current regulation)"


class Band(BaseModel):
    """A deviation band: deviation up to ``up_to_pct`` % of the base (None: no upper edge)
    is charged at ``multiplier`` times the normal rate."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)
    up_to_pct: float | None = Field(default=None, gt=0, description="upper edge, % of base")
    multiplier: float = Field(ge=0, description="times the normal rate")


def _bands(bands: Sequence[Band], side: str) -> None:
    edges = [b.up_to_pct for b in bands]
    if not bands or edges[-1] is not None:
        raise ValueError(f"{side}: the last band must have no upper edge (up_to_pct: null)")
    if None in edges[:-1]:
        raise ValueError(f"{side}: only the last band may have no upper edge")
    bounded = [e for e in edges[:-1] if e is not None]
    if any(b <= a for a, b in itertools.pairwise(bounded)):
        raise ValueError(f"{side}: band edges must increase")


class ReserveTariff(BaseModel):
    """What secondary reserve (SRAS) earns per block: availability for the MW held (up and
    down) and energy for the regulation delivered on instruction (up and down)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)
    capacity_up_rs_mw_h: float = Field(
        default=0.0, ge=0,
        description="availability payment per MW of reserve up held per hour, Rs (the 2022 "
        "regulation pays SRAS no availability charge; a contract may)" + _CHECK,
    )  # fmt: skip
    capacity_down_rs_mw_h: float = Field(
        default=0.0, ge=0,
        description="availability payment per MW of reserve down held per hour, Rs" + _CHECK,
    )  # fmt: skip
    energy_up_rs_mwh: float = Field(
        default=5500.0,
        description="payment per MWh of regulation up delivered, Rs (the 2022 regulation: "
        "the energy or compensation charge plus a mark-up; project default 5000 + 10 %)"
        + _CHECK,
    )  # fmt: skip
    energy_down_rs_mwh: float = Field(
        default=0.0,
        description="payment per MWh of regulation down (energy taken), Rs; negative: the "
        "plant pays for it (the 2022 regulation has a down-regulated provider pay back part "
        "of its charge)" + _CHECK,
    )  # fmt: skip


class DsmConfig(BaseModel):
    """The Deviation Settlement Mechanism as a table (defaults: the structure of the CERC
    DSM Regulations 2024 for a general seller; every figure to be checked)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)
    rate_products: tuple[Literal["DAM", "RTM"], ...] = Field(
        default=("DAM", "RTM"), min_length=1,
        description="normal rate: the highest clearing price of these products" + _CHECK,
    )  # fmt: skip
    rate_cap_rs_mwh: float = Field(
        default=10_000.0, gt=0, description="cap on the normal rate, Rs/MWh" + _CHECK
    )
    fallback_rate_rs_mwh: float = Field(
        default=5_000.0, ge=0,
        description="normal rate of a day without any clearing price, Rs/MWh" + _CHECK,
    )  # fmt: skip
    tolerance_pct: float = Field(
        default=0.0, ge=0, description="deviation up to this % of base is not charged" + _CHECK
    )
    min_base_mw: float = Field(
        default=0.0, ge=0,
        description="percent base floor, MW (a zero schedule has no % otherwise)" + _CHECK,
    )  # fmt: skip
    over_injection: tuple[Band, ...] = Field(
        default=(Band(up_to_pct=10.0, multiplier=1.0), Band(multiplier=0.0)),
        description="receivable for injection above schedule, by band" + _CHECK,
    )
    under_injection: tuple[Band, ...] = Field(
        default=(
            Band(up_to_pct=10.0, multiplier=1.0),
            Band(up_to_pct=15.0, multiplier=1.5),
            Band(multiplier=2.0),
        ),
        description="payable for injection below schedule, by band" + _CHECK,
    )
    hold_s: float = Field(
        default=10.0, gt=0, description="metering: how long a telemetry sample holds, s"
    )
    meter: str | None = Field(
        default=None, min_length=1,
        description="id of the metered series (telemetry power_kw, + = export) at the "
        "connection point whose energy is the actual; None: the sum of the units",
    )  # fmt: skip
    reserve: ReserveTariff = Field(
        default_factory=ReserveTariff,
        description="secondary reserve (SRAS) payments" + _CHECK,
    )

    @model_validator(mode="after")
    def _tables(self) -> DsmConfig:
        _bands(self.over_injection, "over_injection")
        _bands(self.under_injection, "under_injection")
        return self




def band_charge(deviation_mwh: float, base_mwh: float, rate_rs_mwh: float,
                config: DsmConfig) -> float:  # fmt: skip
    """The DSM charge (Rs, + payable) of a deviation of ``deviation_mwh`` (+ over-injection)
    from a percent base of ``base_mwh``, at the normal rate ``rate_rs_mwh``."""
    size = abs(deviation_mwh)
    if size == 0.0:
        return 0.0
    bands = config.over_injection if deviation_mwh > 0 else config.under_injection
    lower = min(size, config.tolerance_pct / 100.0 * base_mwh)
    amount = 0.0
    for band in bands:
        upper = size if band.up_to_pct is None else min(size, band.up_to_pct / 100.0 * base_mwh)
        if upper > lower:
            amount += (upper - lower) * band.multiplier * rate_rs_mwh
            lower = upper
    return amount if deviation_mwh < 0 else 0.0 - amount
