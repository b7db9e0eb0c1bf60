"""A file-based exchange: bid files out, result files in, for a trader who carries them to
the real exchange by hand (docs/market-exchange.md has the formats and an example).

Under ``market.file_exchange.dir``:

- ``outbox/bids-<PRODUCT>-<YYYY-MM-DD>[-s<session>].csv``: each auction's bids, written
  whole (a temporary file renamed over the old one), so a reader never sees half a file.
  Columns :data:`BID_COLUMNS`, one row per step; ``block`` is the exchange's 1-96.
- ``inbox/*.csv``: the exchange's results, as the trader puts them there (write it under
  another name, e.g. ``.tmp``, and rename it: files starting with ``.`` or not ending in
  ``.csv`` are left alone). Columns: ``accepted_mw``, ``clearing_price_rs_mwh`` and either
  ``bid_id`` or ``delivery`` and ``block`` (1-96; with ``product`` and ``side`` when more
  than one bid is pending there). A file answers the auctions whose bids it names: their
  bids it does not name are accepted 0 MW. A whole file is taken or refused.
- ``done/``: result files taken; ``rejected/``: result files refused, each with
  ``<name>.error`` beside it, the :class:`~vpp.orchestrator.market.ExchangeFileError`
  that names the file, the line and the column.
- ``prices-<YYYY-MM-DD>.csv`` (optional, read by :class:`FilePriceForecast`): the
  forecast, columns ``block`` (1-96), ``price_rs_mwh`` and optionally ``product``.

The exchange knows the bids sent since it started: a result for a bid sent before a
restart (and not sent again) is refused.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from vpp.orchestrator.market.bids import Bid, BidLimits, Side, validate_bid
from vpp.orchestrator.market.errors import ExchangeFileError, MarketError
from vpp.orchestrator.market.exchange import Auction, Clearing
from vpp.orchestrator.market.products import BLOCKS_PER_DAY, Product
from vpp.orchestrator.market.schedule import Award

__all__ = ["BID_COLUMNS", "RESULT_COLUMNS", "FileExchange", "FileExchangeConfig",
           "FilePriceForecast"]  # fmt: skip

#: Columns of a bid file, in order.
BID_COLUMNS = ("delivery", "block", "product", "side", "price_rs_mwh", "volume_mw", "bid_id")
#: Columns a result file may have (see the module docstring for which it must).
RESULT_COLUMNS = ("bid_id", "delivery", "block", "product", "side", "accepted_mw",
                  "clearing_price_rs_mwh")  # fmt: skip
_TOL = 1e-6


class FileExchangeConfig(BaseModel):
    """Where the file exchange keeps its files and how often it looks for results."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    dir: str = Field(default="market-exchange", min_length=1,
                     description="folder of outbox/, inbox/, done/, rejected/ and the "
                     "prices-YYYY-MM-DD.csv forecasts")  # fmt: skip
    poll_s: float = Field(default=5.0, gt=0, le=3600, description="inbox polling interval, s")


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _rows(path: Path, shown: str) -> Iterator[tuple[int, dict[str, str]]]:
    """(line, row) of a CSV file with a header (names stripped and lower-cased)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ExchangeFileError(shown, f"cannot read it ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ExchangeFileError(shown, "not UTF-8 text") from None
    reader = csv.reader(io.StringIO(text))
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise ExchangeFileError(shown, "empty: no header line") from None
    for row in reader:
        if not any(c.strip() for c in row):
            continue
        if len(row) != len(header):
            raise ExchangeFileError(shown, f"{len(row)} columns, the header has {len(header)}",
                                    line=reader.line_num)  # fmt: skip
        yield reader.line_num, {h: c.strip() for h, c in zip(header, row, strict=True)}


def _number(row: dict[str, str], key: str, shown: str, line: int) -> float:
    try:
        value = float(row[key])
    except ValueError:
        raise ExchangeFileError(shown, f"{row[key]!r} is not a number", line=line,
                                field=key) from None  # fmt: skip
    if not math.isfinite(value):
        raise ExchangeFileError(shown, f"{row[key]!r} is not finite", line=line, field=key)
    return value


def _block(row: dict[str, str], shown: str, line: int) -> int:
    value = _number(row, "block", shown, line)
    if value != int(value) or not 1 <= value <= BLOCKS_PER_DAY:
        raise ExchangeFileError(shown, f"{row['block']!r} is not a block 1-96", line=line,
                                field="block")  # fmt: skip
    return int(value) - 1


@dataclass
class FileExchange:
    """The exchange of the module docstring over the folder ``config.dir``."""

    config: FileExchangeConfig
    limits: BidLimits = field(default_factory=BidLimits)
    rejected_files: int = 0
    """Result files refused so far."""
    _pending: dict[Auction, dict[str, Bid]] = field(default_factory=dict)
    _cleared: dict[Auction, Clearing] = field(default_factory=dict)
    _prices: dict[tuple[Product, date], dict[int, float]] = field(default_factory=dict)
    _errors: list[MarketError] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root = Path(self.config.dir)
        self.poll_s = self.config.poll_s
        for sub in ("outbox", "inbox", "done", "rejected"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    @staticmethod
    def bid_file(auction: Auction) -> str:
        """The name of ``auction``'s bid file in ``outbox/``."""
        tail = "" if auction.session is None else f"-s{auction.session:02d}"
        return f"bids-{auction.product.value}-{auction.delivery.isoformat()}{tail}.csv"

    async def submit(self, auction: Auction, bids: Sequence[Bid]) -> None:
        """Validate ``bids`` and write the auction's bid file (replacing an earlier one)."""
        for bid in bids:
            validate_bid(bid, self.limits)
            if Auction(bid.product, bid.delivery, bid.session) != auction:
                raise MarketError(f"bid {bid.bid_id} is not of the auction {auction}",
                                  field="bid_id", block=bid.block)  # fmt: skip
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(BID_COLUMNS)
        for bid in bids:
            for st in bid.steps:
                w.writerow([bid.delivery.isoformat(), bid.block + 1, bid.product.value,
                            bid.side.value, repr(st.price_rs_mwh), repr(st.volume_mw),
                            bid.bid_id])  # fmt: skip
        target = self.root / "outbox" / self.bid_file(auction)
        try:
            _atomic_write(target, out.getvalue())
        except OSError as exc:
            raise ExchangeFileError(str(target), f"cannot write it ({exc.strerror})") from None
        self._pending[auction] = {b.bid_id: b for b in bids}
        self._cleared.pop(auction, None)

    async def results(self, auction: Auction) -> Clearing | None:
        """Take the inbox's result files, then the auction's clearing if one came."""
        self.poll()
        return self._cleared.pop(auction, None)

    async def prices(self, product: Product, delivery: date) -> dict[int, float]:
        """The clearing prices of the result files taken."""
        return dict(self._prices.get((product, delivery), {}))

    def take_errors(self) -> list[MarketError]:
        """The result files refused since the last call. Reads the inbox first, so a file
        that comes while no auction awaits results is refused then, not left there."""
        self.poll()
        errors, self._errors = self._errors, []
        return errors

    def poll(self) -> int:
        """Take or refuse every result file in ``inbox/`` (in name order); how many.

        Raises :class:`ExchangeFileError` when the folder cannot be read or a file not
        moved (the file stays, and is read again next time)."""
        try:
            return self._poll()
        except OSError as exc:
            raise ExchangeFileError(str(exc.filename or self.root),
                                    f"cannot read or move it ({exc.strerror})") from None

    def _poll(self) -> int:
        files = sorted(p for p in (self.root / "inbox").iterdir()
                       if p.is_file() and p.suffix == ".csv" and not p.name.startswith("."))
        for path in files:
            shown = f"inbox/{path.name}"
            try:
                cleared = self._read_results(path, shown)
            except ExchangeFileError as err:
                self.rejected_files += 1
                self._errors.append(err)
                target = self._free(self.root / "rejected", path.name)
                os.replace(path, target)
                target.with_name(target.name + ".error").write_text(f"{err}\n", "utf-8")
                continue
            # Moved first: a file that cannot be moved is taken next time, not twice.
            os.replace(path, self._free(self.root / "done", path.name))
            for auction, clearing in cleared.items():
                del self._pending[auction]
                self._cleared[auction] = clearing
                known = self._prices.setdefault((auction.product, auction.delivery), {})
                known.update((b, p) for b, p in clearing.prices.items() if p is not None)
        return len(files)

    @staticmethod
    def _free(folder: Path, name: str) -> Path:
        """``folder/name``, or ``name`` with ``-2``, ``-3``... when that exists."""
        target, n = folder / name, 1
        while target.exists():
            n += 1
            target = folder / f"{Path(name).stem}-{n}{Path(name).suffix}"
        return target

    def _find(self, row: dict[str, str], shown: str, line: int) -> tuple[Auction, Bid]:
        """The pending bid a result row names."""
        if row.get("bid_id"):
            for auction, bids in self._pending.items():
                if row["bid_id"] in bids:
                    return auction, bids[row["bid_id"]]
            raise ExchangeFileError(shown, f"no bid {row['bid_id']!r} awaits a result",
                                    line=line, field="bid_id")  # fmt: skip
        if not row.get("delivery") or not row.get("block"):
            raise ExchangeFileError(shown, "give bid_id, or delivery and block", line=line)
        block = _block(row, shown, line)
        product, side = row.get("product", "").upper(), row.get("side", "").lower()
        found = [(a, b) for a, bids in self._pending.items() for b in bids.values()
                 if b.delivery.isoformat() == row["delivery"] and b.block == block
                 and product in ("", b.product.value) and side in ("", b.side.value)]
        if len(found) != 1:
            what = "no bid awaits a result" if not found else f"{len(found)} bids await " \
                "results (give bid_id, or product and side)"
            raise ExchangeFileError(shown, f"{what} for {row['delivery']} block {block + 1}",
                                    line=line)  # fmt: skip
        return found[0]

    def _read_results(self, path: Path, shown: str) -> dict[Auction, Clearing]:
        """The clearings a result file gives (nothing changes when it raises)."""
        rows = list(_rows(path, shown))
        if not rows:
            raise ExchangeFileError(shown, "no result rows")
        missing = {"accepted_mw", "clearing_price_rs_mwh"} - set(rows[0][1])
        if missing:
            raise ExchangeFileError(shown, f"no column {sorted(missing)[0]}", line=1)
        lim = self.limits
        got: dict[Auction, dict[str, Award]] = {}
        prices: dict[Auction, dict[int, float | None]] = {}
        for line, row in rows:
            auction, bid = self._find(row, shown, line)
            mw = _number(row, "accepted_mw", shown, line)
            if not -_TOL <= mw <= bid.volume_mw + _TOL:
                raise ExchangeFileError(shown, f"{mw:g} MW outside 0-{bid.volume_mw:g} (the bid's"
                                        " volume)", line=line, field="accepted_mw")
            price: float | None = None
            if row["clearing_price_rs_mwh"] or mw > 0:
                price = _number(row, "clearing_price_rs_mwh", shown, line)
                if not lim.price_min_rs_mwh <= price <= lim.price_max_rs_mwh:
                    raise ExchangeFileError(shown, f"Rs {price:g}/MWh outside the band Rs "
                                            f"{lim.price_min_rs_mwh:g}-{lim.price_max_rs_mwh:g}"
                                            "/MWh", line=line, field="clearing_price_rs_mwh")
                if not _price_fits(bid, price):
                    raise ExchangeFileError(shown, f"a {bid.side.value} bid at its limit does "
                                            f"not clear at Rs {price:g}/MWh", line=line,
                                            field="clearing_price_rs_mwh")  # fmt: skip
            awards = got.setdefault(auction, {})
            if bid.bid_id in awards:
                raise ExchangeFileError(shown, f"bid {bid.bid_id!r} again", line=line)
            awards[bid.bid_id] = Award(bid.bid_id, bid.product, bid.delivery, bid.block,
                                       bid.side, max(0.0, mw), price)  # fmt: skip
            block_prices = prices.setdefault(auction, {})
            if price is not None and block_prices.get(bid.block, price) != price:
                raise ExchangeFileError(shown, f"block {bid.block + 1} has two clearing "
                                        "prices", line=line, field="clearing_price_rs_mwh")
            block_prices.setdefault(bid.block, price)
        out = {}
        for auction, awards in got.items():
            for bid in self._pending[auction].values():
                # A bid the file does not name did not clear.
                awards.setdefault(bid.bid_id, Award(bid.bid_id, bid.product, bid.delivery,
                                                    bid.block, bid.side, 0.0, None))
            out[auction] = Clearing(auction, awards, prices.get(auction, {}))
        return out


def _price_fits(bid: Bid, price: float) -> bool:
    """Whether some step of ``bid`` takes ``price`` (a sell at or below it, a buy at or
    above): an award at a price no step accepts is the trader's slip."""
    if bid.side is Side.SELL:
        return any(st.price_rs_mwh <= price + _TOL for st in bid.steps)
    return any(st.price_rs_mwh >= price - _TOL for st in bid.steps)


@dataclass(frozen=True)
class FilePriceForecast:
    """Forecast prices from ``<dir>/prices-YYYY-MM-DD.csv`` (module docstring): rows with
    a ``product`` column apply to that product, rows without to both; an RTM forecast
    without RTM rows takes the DAM's."""

    dir: str

    def forecast(self, product: Product, delivery: date) -> list[float]:
        """96 prices of ``delivery``; an :class:`ExchangeFileError` when the file is missing,
        malformed, or leaves a block without a price."""
        name = f"prices-{delivery.isoformat()}.csv"
        path = Path(self.dir) / name
        if not path.is_file():
            raise ExchangeFileError(str(path), f"no price forecast for {delivery.isoformat()}"
                                    " (columns block, price_rs_mwh; see docs/market-exchange.md)")
        by: dict[str, dict[int, float]] = {"": {}, "DAM": {}, "RTM": {}}
        for line, row in _rows(path, str(path)):
            if "block" not in row or "price_rs_mwh" not in row:
                raise ExchangeFileError(str(path), "needs the columns block and price_rs_mwh",
                                        line=1)  # fmt: skip
            which = row.get("product", "").upper()
            if which not in by:
                raise ExchangeFileError(str(path), f"{which!r} is not DAM or RTM", line=line,
                                        field="product")  # fmt: skip
            by[which][_block(row, str(path), line)] = _number(row, "price_rs_mwh", str(path),
                                                              line)  # fmt: skip
        # The product's own rows first, then the shared ones, then (RTM) the DAM's.
        prices = {**by[""], **by[product.value]}
        if product is Product.RTM:
            prices = {**by["DAM"], **prices}
        missing = [b + 1 for b in range(BLOCKS_PER_DAY) if b not in prices]
        if missing:
            raise ExchangeFileError(str(path), f"no {product.value} price for block "
                                    f"{missing[0]} ({len(missing)} blocks missing)")
        return [prices[b] for b in range(BLOCKS_PER_DAY)]
