"""docs/site-config.md is generated from the config models and must match them."""

from __future__ import annotations

from pathlib import Path

from vpp.config.reference import markdown

DOC = Path(__file__).resolve().parents[2] / "docs" / "site-config.md"


def test_the_reference_page_matches_the_models() -> None:
    assert DOC.read_text(encoding="utf-8") == markdown(), (
        "docs/site-config.md is stale: run `python -m vpp.config.reference > "
        "docs/site-config.md`"
    )


def test_every_key_of_the_default_site_is_in_the_reference() -> None:
    text = markdown()
    for key in ("`field[].units[].rated_power_kw`", "`simulation.events[].delta_mw`",
                "`campus.dispatch.default_strategy`", "`market.limits.price_min_rs_mwh`",
                "`bus.keys_dir`", "`history.path`"):  # fmt: skip
        assert key in text, key
