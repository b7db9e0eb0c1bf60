"""The file exchange on real files: the bid files it writes, result files written by hand
taken or refused (moved to rejected/ with the error beside them), the price forecast
file, and a real gateway on real ZeroMQ sockets trading through it."""

from __future__ import annotations

import csv
import io
from datetime import date
from pathlib import Path

import pytest

from tests.orchestrator.service_peers import Broker, site, topology, until
from tests.orchestrator.test_market_gateway import NOON, FakeCampus, gateway
from tests.support.aio import run
from vpp.orchestrator.market import (
    Bid,
    BidError,
    ExchangeFileError,
    MarketError,
    Product,
    Side,
    day_start,
)
from vpp.orchestrator.market.exchange import Auction
from vpp.orchestrator.market.file_exchange import (
    BID_COLUMNS,
    FileExchange,
    FileExchangeConfig,
    FilePriceForecast,
)

DAY = date(2026, 1, 5)
DAM = Auction(Product.DAM, DAY)


def _bids() -> list[Bid]:
    return [
        Bid.single("DAM-2026-01-05-40-sell", Product.DAM, DAY, 40, Side.SELL, 1.2, 0.0),
        Bid.single("DAM-2026-01-05-41-sell", Product.DAM, DAY, 41, Side.SELL, 0.5, 0.0),
        Bid.single("DAM-2026-01-05-10-buy", Product.DAM, DAY, 10, Side.BUY, 0.8, 10_000.0),
    ]


def _exchange(tmp_path: Path) -> FileExchange:
    ex = FileExchange(FileExchangeConfig(dir=str(tmp_path / "ex"), poll_s=0.1))
    run(ex.submit(DAM, _bids()))
    return ex


def _csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


def test_bids_go_out_as_one_whole_csv_per_auction(tmp_path: Path) -> None:
    ex = _exchange(tmp_path)
    out = tmp_path / "ex" / "outbox"
    assert [p.name for p in out.iterdir()] == ["bids-DAM-2026-01-05.csv"]  # no temp left
    text = (out / "bids-DAM-2026-01-05.csv").read_text()
    assert text.splitlines()[0] == ",".join(BID_COLUMNS)
    rows = _csv(out / "bids-DAM-2026-01-05.csv")
    # The exchange's block numbers, 1-96: block 40 from 00:00 is IEX block 41.
    assert rows[0] == {"delivery": "2026-01-05", "block": "41", "product": "DAM",
                       "side": "sell", "price_rs_mwh": "0.0", "volume_mw": "1.2",
                       "bid_id": "DAM-2026-01-05-40-sell"}  # fmt: skip
    # Submitting again replaces the file; a bad bid is refused before anything is written.
    run(ex.submit(DAM, _bids()[:1]))
    assert len(_csv(out / "bids-DAM-2026-01-05.csv")) == 1
    bad = Bid.single("x", Product.DAM, DAY, 3, Side.SELL, 0.05, 0.0)
    with pytest.raises(BidError, match="minimum"):
        run(ex.submit(DAM, [bad]))
    with pytest.raises(MarketError, match="not of the auction"):
        run(ex.submit(Auction(Product.DAM, date(2026, 1, 6)), _bids()))
    assert len(_csv(out / "bids-DAM-2026-01-05.csv")) == 1


def test_a_hand_written_result_file_clears_the_auction(tmp_path: Path) -> None:
    ex = _exchange(tmp_path)
    assert run(ex.results(DAM)) is None  # nothing in the inbox yet
    inbox = tmp_path / "ex" / "inbox"
    # Half written: a temporary name is left alone.
    (inbox / "r.csv.tmp").write_text("bid_id,accepted_mw,clearing_price_rs_mwh\n")
    # By bid id, and by delivery and IEX block (41 = our 40... here 11 = our 10 and its side).
    (inbox / "iex-result.csv").write_text(
        "bid_id,delivery,block,side,accepted_mw,clearing_price_rs_mwh\n"
        "DAM-2026-01-05-40-sell,,,,1.0,4200\n"
        ",2026-01-05,11,buy,0.8,2500\n"
    )
    got = run(ex.results(DAM))
    assert got is not None and got.auction == DAM
    aw = got.awards
    assert (aw["DAM-2026-01-05-40-sell"].accepted_mw, aw["DAM-2026-01-05-40-sell"].price_rs_mwh) \
        == (1.0, 4200.0)  # fmt: skip
    assert aw["DAM-2026-01-05-10-buy"].side is Side.BUY and aw["DAM-2026-01-05-10-buy"].block == 10
    # A bid the file does not name did not clear.
    assert (aw["DAM-2026-01-05-41-sell"].accepted_mw, aw["DAM-2026-01-05-41-sell"].price_rs_mwh) \
        == (0.0, None)  # fmt: skip
    assert got.prices == {40: 4200.0, 10: 2500.0}
    assert run(ex.prices(Product.DAM, DAY)) == {40: 4200.0, 10: 2500.0}
    assert [p.name for p in (tmp_path / "ex" / "done").iterdir()] == ["iex-result.csv"]
    assert [p.name for p in inbox.iterdir()] == ["r.csv.tmp"]
    assert run(ex.results(DAM)) is None  # given once
    assert ex.take_errors() == [] and ex.rejected_files == 0


HEAD = "bid_id,accepted_mw,clearing_price_rs_mwh\n"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (HEAD + "DAM-2026-01-05-40-sell,lots,4200\n", "line 2: accepted_mw: 'lots' is not a"),
        (HEAD + "DAM-2026-01-05-40-sell,1.3,4200\n", "line 2: accepted_mw: 1.3 MW outside 0-1.2"),
        (HEAD + "DAM-2026-01-05-40-sell,1,4200\nnope,1,4200\n", "line 3: bid_id: no bid 'nope'"),
        (HEAD + "DAM-2026-01-05-40-sell,1,12000\n", "line 2: clearing_price_rs_mwh: Rs 12000"),
        (HEAD + "DAM-2026-01-05-40-sell,1,\n", "clearing_price_rs_mwh: '' is not a number"),
        (HEAD + "DAM-2026-01-05-10-buy,0.5,10000.5\n", "clearing_price_rs_mwh: Rs 10000.5"),
        (HEAD + "DAM-2026-01-05-40-sell,1,4200\nDAM-2026-01-05-40-sell,1,4200\n", "line 3: bid"),
        ("bid_id,accepted_mw\nDAM-2026-01-05-40-sell,1\n", "no column clearing_price_rs_mwh"),
        ("", "empty: no header line"),
        (HEAD, "no result rows"),
        (HEAD + "DAM-2026-01-05-40-sell,1\n", "line 2: 2 columns, the header has 3"),
        ("delivery,block,accepted_mw,clearing_price_rs_mwh\n2026-01-05,97,1,4200\n",
         "line 2: block: '97' is not a block 1-96"),
        ("delivery,block,accepted_mw,clearing_price_rs_mwh\n2026-01-05,30,1,4200\n",
         "line 2: no bid awaits a result for 2026-01-05 block 30"),
    ],
)
def test_a_malformed_result_file_is_rejected_with_its_error_beside_it(
    tmp_path: Path, text: str, says: str
) -> None:
    ex = _exchange(tmp_path)
    (tmp_path / "ex" / "inbox" / "bad.csv").write_text(text)
    assert run(ex.results(DAM)) is None
    rejected = tmp_path / "ex" / "rejected"
    assert sorted(p.name for p in rejected.iterdir()) == ["bad.csv", "bad.csv.error"]
    error = (rejected / "bad.csv.error").read_text()
    assert error.startswith("inbox/bad.csv") and says in error, error
    (err,) = ex.take_errors()
    assert isinstance(err, ExchangeFileError) and str(err) == error.strip()
    assert ex.rejected_files == 1 and ex.take_errors() == []
    # Nothing of the refused file was taken: a corrected one (same name) clears the auction.
    (tmp_path / "ex" / "inbox" / "bad.csv").write_text(HEAD + "DAM-2026-01-05-40-sell,1,4200\n")
    got = run(ex.results(DAM))
    assert got is not None and got.awards["DAM-2026-01-05-40-sell"].accepted_mw == 1.0
    assert (tmp_path / "ex" / "done" / "bad.csv").is_file()


def test_price_forecast_file(tmp_path: Path) -> None:
    fc = FilePriceForecast(str(tmp_path))
    with pytest.raises(ExchangeFileError, match=r"prices-2026-01-05\.csv: no price forecast"):
        fc.forecast(Product.DAM, DAY)
    rows = ["block,price_rs_mwh,product"] + [f"{b},{1000 + b},DAM" for b in range(1, 97)]
    (tmp_path / "prices-2026-01-05.csv").write_text("\n".join([*rows, "3,7777,RTM"]) + "\n")
    dam = fc.forecast(Product.DAM, DAY)
    assert len(dam) == 96 and dam[0] == 1001.0 and dam[2] == 1003.0
    # RTM: its own rows, else the DAM's.
    rtm = fc.forecast(Product.RTM, DAY)
    assert rtm[2] == 7777.0 and rtm[3] == 1004.0
    (tmp_path / "prices-2026-01-05.csv").write_text("block,price_rs_mwh\n1,100\n2,x\n")
    with pytest.raises(ExchangeFileError, match="line 3: price_rs_mwh: 'x' is not a number"):
        fc.forecast(Product.DAM, DAY)
    (tmp_path / "prices-2026-01-05.csv").write_text("block,price_rs_mwh\n1,100\n")
    with pytest.raises(ExchangeFileError, match=r"no DAM price for block 2 \(95 blocks missing"):
        fc.forecast(Product.DAM, DAY)


def test_the_gateway_trades_through_files(ipc_dir: Path, tmp_path: Path) -> None:
    # At 12:00:01 IST the gateway bids blocks 49-95 of the day; the trader's result file
    # becomes the campus schedule; a malformed one is refused, counted, and the gateway
    # goes on.
    folder = tmp_path / "exchange"
    folder.mkdir()
    day = date(2026, 11, 21)
    # Cheap in the afternoon, dear in the evening: worth a charge and a discharge.
    prices = [2000.0 if b < 72 else 9000.0 for b in range(96)]
    (folder / "prices-2026-11-21.csv").write_text(
        "block,price_rs_mwh\n" + "".join(f"{b + 1},{p}\n" for b, p in enumerate(prices))
    )
    cfg = site(market={"exchange": "file", "file_exchange": {"dir": str(folder), "poll_s": 0.1}})
    topo = topology(cfg, ipc_dir)

    async def go() -> None:
        with Broker(topo):
            campus = FakeCampus(topo.commands["campus"])
            async with campus.server, gateway(cfg, topo, settle_s=0.1, resend_s=3600,
                                              clock=lambda: NOON) as gw:  # fmt: skip
                bid_file = folder / "outbox" / "bids-DAM-2026-11-21.csv"
                await until(bid_file.exists)
                assert gw.pending and not campus.schedules  # awaiting the trader
                bids = _csv(bid_file)
                assert {r["side"] for r in bids} == {"buy", "sell"}
                assert all(int(r["block"]) >= 50 for r in bids)  # from our block 49
                # The trader: every bid at its full volume, except the first at half.
                rows = [f"{r['bid_id']},{float(r['volume_mw']) / (2 if i == 0 else 1)},"
                        f"{prices[int(r['block']) - 1]}" for i, r in enumerate(bids)]
                (folder / "inbox" / ".r.tmp").write_text(HEAD + "\n".join(rows) + "\n")
                (folder / "inbox" / ".r.tmp").rename(folder / "inbox" / "result-1.csv")
                await until(lambda: bool(campus.schedules))
                kw = campus.schedules[-1]["kw"]
                assert campus.schedules[-1]["start"] == day_start(day)
                want = [0.0] * 96
                for i, r in enumerate(bids):
                    sign = 1.0 if r["side"] == "sell" else -1.0
                    mw = float(r["volume_mw"]) / (2 if i == 0 else 1)
                    want[int(r["block"]) - 1] += sign * 1000.0 * mw
                assert kw == pytest.approx(want)
                assert not gw.pending and gw.summary()["delivery"] == "2026-11-21"
                # A malformed file: refused with its error, counted; the gateway goes on.
                (folder / "inbox" / "result-2.csv").write_text(HEAD + "x,1,1\n")
                await until(lambda: gw.errors["exchange"] == 1)
                assert (folder / "rejected" / "result-2.csv.error").read_text().startswith(
                    "inbox/result-2.csv, line 2: bid_id: no bid 'x'")
                assert gw.summary()["errors"]["exchange"] == 1

    run(go(), timeout=40)


def test_without_a_price_file_the_run_fails_and_is_reported(ipc_dir: Path, tmp_path: Path) -> None:
    cfg = site(market={"exchange": "file", "file_exchange": {"dir": str(tmp_path), "poll_s": 0.1}})
    topo = topology(cfg, ipc_dir)

    async def go() -> None:
        with Broker(topo):
            async with gateway(cfg, topo, settle_s=0.05, resend_s=3600,
                               clock=lambda: NOON) as gw:  # fmt: skip
                await until(lambda: gw.errors["run"] == 1)
                assert gw.runs == 0 and not list((tmp_path / "outbox").iterdir())

    run(go(), timeout=40)
