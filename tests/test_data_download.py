"""Downloader against a real local http.server (127.0.0.1, ephemeral port): no internet."""

from __future__ import annotations

import hashlib
import io
import socket
import threading
import zipfile
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from liqbt.cli import main
from liqbt.data import load_candles, load_funding
from liqbt.data.download import DownloadError, download_binance, months_between, plan

SYMBOL = "BTCUSDT"


def kline_csv(month_start: pd.Timestamp, hours: int, header: bool, price: float) -> str:
    buf = io.StringIO()
    if header:
        buf.write(
            "open_time,open,high,low,close,volume,close_time,quote_volume,count,"
            "taker_buy_volume,taker_buy_quote_volume,ignore\n"
        )
    for i in range(hours):
        ot = int((month_start + pd.Timedelta(hours=i)).value // 1_000_000)
        p = price + i
        buf.write(f"{ot},{p},{p + 2},{p - 1},{p + 1},5.0,{ot + 3_599_999},10,3,1,1,0\n")
    return buf.getvalue()


def funding_csv(month_start: pd.Timestamp, n: int) -> str:
    lines = ["calc_time,funding_interval_hours,last_funding_rate"]
    for i in range(n):
        t = int((month_start + pd.Timedelta(hours=8 * i)).value // 1_000_000) + 4  # ms jitter
        lines.append(f"{t},8,0.0001")
    return "\n".join(lines) + "\n"


def put_zip(root: Path, rel: str, csv_text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(path.with_suffix(".csv").name, csv_text)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    (root / (rel + ".CHECKSUM")).write_text(f"{digest}  {path.name}\n")


class Server:
    """Serves ``root`` and records every requested path."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[str] = []
        server = self

        class Handler(SimpleHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep pytest output clean
                pass

            def do_GET(self) -> None:
                server.requests.append(self.path)
                super().do_GET()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def archive(tmp_path: Path) -> Iterator[Server]:
    root = tmp_path / "www"
    for month, header, price in (("2021-04", False, 100.0), ("2021-05", True, 200.0)):
        start = pd.Timestamp(f"{month}-01", tz="UTC")
        hours = 24 * start.days_in_month
        put_zip(
            root,
            f"monthly/klines/{SYMBOL}/1h/{SYMBOL}-1h-{month}.zip",
            kline_csv(start, hours, header, price),
        )
        put_zip(
            root,
            f"monthly/markPriceKlines/{SYMBOL}/1h/{SYMBOL}-1h-{month}.zip",
            kline_csv(start, hours, header, price + 0.5),
        )
        put_zip(
            root,
            f"monthly/fundingRate/{SYMBOL}/{SYMBOL}-fundingRate-{month}.zip",
            funding_csv(start, 3 * start.days_in_month),
        )
    server = Server(root)
    yield server
    server.close()


def test_months_between() -> None:
    assert months_between("2021-04-20", "2021-06-01") == ["2021-04", "2021-05", "2021-06"]
    assert months_between("2021-05-01", "2021-05-31") == ["2021-05"]
    with pytest.raises(DownloadError):
        months_between("2021-05-02", "2021-05-01")


def test_plan_urls(tmp_path: Path) -> None:
    items = plan(SYMBOL, "1m", "2021-05-01", "2021-05-31", tmp_path, mark=True, funding=True)
    base = "https://data.binance.vision/data/futures/um/"
    assert [i.url for i in items] == [
        base + "monthly/klines/BTCUSDT/1m/BTCUSDT-1m-2021-05.zip",
        base + "monthly/markPriceKlines/BTCUSDT/1m/BTCUSDT-1m-2021-05.zip",
        base + "monthly/fundingRate/BTCUSDT/BTCUSDT-fundingRate-2021-05.zip",
    ]
    assert len({i.path for i in items}) == 3  # klines and mark zips do not overwrite each other


def test_download_merge_and_cache(archive: Server, tmp_path: Path) -> None:
    out = tmp_path / "out"
    seen: list[tuple[str, bool]] = []

    def download_all() -> dict[str, Path]:
        """Candles, mark and funding for 2021-04-30 .. 2021-05-01, each file noted in seen."""
        return download_binance(
            SYMBOL, "1h", "2021-04-30", "2021-05-01", out, mark=True, funding=True,
            base_url=archive.url, on_file=lambda item, net: seen.append((item.month, net)),
        )

    written = download_all()
    assert len(seen) == 6 and all(net for _, net in seen)
    candles = load_candles(written["candles"])
    assert candles.index[0] == pd.Timestamp("2021-04-30", tz="UTC")
    assert candles.index[-1] == pd.Timestamp("2021-05-01 23:00", tz="UTC")  # end date inclusive
    assert len(candles) == 48 and candles.attrs["gaps"] == []
    assert candles.loc["2021-05-01 00:00", "open"].item() == 200.0  # header-row month parsed
    mark = load_candles(written["mark"])
    assert written["mark"].name == "BTCUSDT-1h-mark.feather"
    assert mark["open"].iloc[0] == candles["open"].iloc[0] + 0.5
    funding = load_funding(written["funding"])
    assert len(funding) == 6 and funding.index[0] == pd.Timestamp("2021-04-30", tz="UTC")
    # second run: zips and checksums are cached, the server sees no request at all
    before = len(archive.requests)
    seen.clear()
    download_all()
    assert len(archive.requests) == before
    assert not any(net for _, net in seen)


def test_corrupted_cache_is_refetched(archive: Server, tmp_path: Path) -> None:
    out = tmp_path / "out"
    download_binance(SYMBOL, "1h", "2021-05-01", "2021-05-02", out, base_url=archive.url)
    zip_path = out / f"{SYMBOL}-1h-2021-05.zip"
    zip_path.write_bytes(b"garbage")
    before = len(archive.requests)
    download_binance(SYMBOL, "1h", "2021-05-01", "2021-05-02", out, base_url=archive.url)
    assert len(archive.requests) == before + 2  # checksum + zip
    assert zipfile.is_zipfile(zip_path)


def test_missing_month_404(archive: Server, tmp_path: Path) -> None:
    with pytest.raises(DownloadError) as info:
        download_binance(SYMBOL, "1h", "2021-06-01", "2021-06-02", tmp_path, base_url=archive.url)
    msg = str(info.value)
    assert "HTTP 404" in msg
    assert "monthly/klines/BTCUSDT/1h/BTCUSDT-1h-2021-06.zip" in msg
    assert "2021-06" in msg


def test_bad_checksum(archive: Server, tmp_path: Path) -> None:
    rel = f"monthly/klines/{SYMBOL}/1h/{SYMBOL}-1h-2021-05.zip.CHECKSUM"
    (archive.root / rel).write_text("0" * 64 + f"  {SYMBOL}-1h-2021-05.zip\n")
    with pytest.raises(DownloadError) as info:
        download_binance(SYMBOL, "1h", "2021-05-01", "2021-05-02", tmp_path, base_url=archive.url)
    msg = str(info.value)
    actual = hashlib.sha256((archive.root / rel.removesuffix(".CHECKSUM")).read_bytes()).hexdigest()
    assert f"checksum mismatch for {SYMBOL}-1h-2021-05.zip" in msg
    assert "expected sha256 " + "0" * 64 in msg and f"got {actual}" in msg
    assert not (tmp_path / f"{SYMBOL}-1h-2021-05.zip").exists()


def test_connection_refused(tmp_path: Path) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    url = f"http://127.0.0.1:{port}/"
    with pytest.raises(DownloadError) as info:
        download_binance(SYMBOL, "1h", "2021-05-01", "2021-05-02", tmp_path, base_url=url)
    msg = str(info.value)
    assert "no network or host unreachable" in msg and url in msg


def test_cli_download(archive: Server, tmp_path: Path) -> None:
    out = tmp_path / "cli"
    args = [
        "data", "download", "--exchange", "binance", "--symbol", SYMBOL, "--timeframe", "1h",
        "--start", "2021-05-01", "--end", "2021-05-03", "--mark", "--funding",
        "--out", str(out), "--base-url", archive.url,
    ]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert f"candles: {out / 'BTCUSDT-1h.feather'}" in result.output
    assert len(load_candles(out / "BTCUSDT-1h.feather")) == 72
    bad_args = [
        "data", "download", "--symbol", SYMBOL, "--timeframe", "1h", "--start", "2021-07-01",
        "--end", "2021-07-02", "--out", str(out), "--base-url", archive.url,
    ]  # fmt: skip
    bad = CliRunner().invoke(main, bad_args)
    assert bad.exit_code != 0
    assert "HTTP 404" in bad.output


def test_second_shorter_download_merges_never_truncates(archive: Server, tmp_path: Path) -> None:
    out = tmp_path / "out"
    full = download_binance(SYMBOL, "1h", "2021-04-30", "2021-05-01", out, mark=True,
                            funding=True, base_url=archive.url)
    before = {k: p.read_bytes() for k, p in full.items()}
    # a shorter range into the same folder: candles, mark and funding all keep their rows
    download_binance(SYMBOL, "1h", "2021-05-01", "2021-05-01", out, mark=True, funding=True,
                     base_url=archive.url)
    assert len(load_candles(full["candles"])) == 48
    assert len(load_candles(full["mark"])) == 48
    assert len(load_funding(full["funding"])) == 6
    assert {k: p.read_bytes() for k, p in full.items()} == before  # same rows, same bytes
    # a later range appends
    download_binance(SYMBOL, "1h", "2021-05-02", "2021-05-02", out, base_url=archive.url)
    candles = load_candles(full["candles"])
    assert len(candles) == 72 and candles.attrs["gaps"] == []
    # --erase replaces
    res = CliRunner().invoke(main, ["data", "download", "--symbol", SYMBOL, "--timeframe", "1h",
                                    "--start", "2021-05-01", "--end", "2021-05-01", "--out",
                                    str(out), "--base-url", archive.url, "--erase"])
    assert res.exit_code == 0, res.output
    assert len(load_candles(full["candles"])) == 24
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temporary files


def test_download_refuses_bad_dates_before_any_request(archive: Server, tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["data", "download", "--symbol", SYMBOL, "--start",
                                    "yesterday", "--end", "2021-05-01", "--out",
                                    str(tmp_path / "o"), "--base-url", archive.url])
    assert res.exit_code == 1
    assert res.output.startswith("Error: --start 'yesterday' is not a date/time (use YYYY-MM-DD")
    assert archive.requests == [] and not (tmp_path / "o").exists()
