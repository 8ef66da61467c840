"""Loaders: every format, every validation rule, gaps, ranges, resampling."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liqbt.core.errors import ValidationError
from liqbt.data import (
    detect_format,
    fill_gaps,
    infer_timeframe,
    load_candles,
    load_funding,
    parse_timeframe,
    resample,
    save_candles,
    save_funding,
    select_range,
)
from liqbt.data.loaders import epoch_to_datetime

T0 = pd.Timestamp("2024-01-01", tz="UTC")
T0_MS = int(T0.value // 1_000_000)


def make_candles(n: int = 24, tf: str = "5min", start: pd.Timestamp = T0) -> pd.DataFrame:
    """A small valid OHLCV frame (a gentle zig-zag around 100)."""
    idx = pd.date_range(start, periods=n, freq=tf, name="date")
    close = 100 + np.sin(np.arange(n)) * 2
    open_ = np.concatenate([[100.0], close[:-1]])
    return pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close) + 0.5,
            "low": np.minimum(open_, close) - 0.5,
            "close": close,
            "volume": np.arange(n, dtype=float) + 1,
        },
        index=idx,
    )


def kline_rows(frame: pd.DataFrame, unit: str = "ms") -> list[list[object]]:
    mult = {"ms": 1, "us": 1000}[unit]
    rows = []
    for ts, r in frame.iterrows():
        ot = int(ts.value // 1_000_000) * mult
        rows.append(
            [ot, r.open, r.high, r.low, r.close, r.volume, ot + 299_999 * mult, 1.0, 3, 0.5, 0.5, 0]
        )
    return rows


def write_binance_csv(path: Path, rows: list[list[object]], header: list[str] | None) -> str:
    buf = io.StringIO()
    if header:
        buf.write(",".join(header) + "\n")
    for r in rows:
        buf.write(",".join(str(x) for x in r) + "\n")
    text = buf.getvalue()
    if path.suffix == ".zip":
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr(path.with_suffix(".csv").name, text)
    else:
        path.write_text(text)
    return text


KLINE_HEADER = [
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "count",
    "taker_buy_volume",
    "taker_buy_quote_volume",
    "ignore",
]


def assert_same(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert got.index.name == "date"
    assert str(got.index.tz) == "UTC"
    assert list(got.columns) == ["open", "high", "low", "close", "volume"]
    assert (got.dtypes == "float64").all()
    pd.testing.assert_frame_equal(
        got, want, check_freq=False, check_index_type=False, check_exact=False, rtol=1e-12
    )
    assert (got.index == want.index).all()


# ------------------------------------------------------------------ formats


def test_freqtrade_feather_roundtrip(tmp_path: Path) -> None:
    frame = make_candles()
    path = tmp_path / "BTC_USDT-5m.feather"
    save_candles(frame, path)
    got = load_candles(path)
    assert_same(got, frame)
    assert got.attrs["timeframe"] == pd.Timedelta("5min")
    assert got.attrs["gaps"] == []
    assert got.attrs["kind"] == "candles"
    assert load_candles(tmp_path / "BTC_USDT-5m.feather", kind="mark").attrs["kind"] == "mark"


def test_freqtrade_json_and_mark_suffix(tmp_path: Path) -> None:
    frame = make_candles()
    rows = [
        [int(ts.value // 1_000_000), *r]
        for ts, r in zip(frame.index, frame.values.tolist(), strict=True)
    ]
    path = tmp_path / "BTC_USDT-5m-mark.json"
    path.write_text(json.dumps(rows))
    got = load_candles(path)
    assert_same(got, frame)
    assert got.attrs["kind"] == "mark"
    assert detect_format(path) == "freqtrade-json"


def test_freqtrade_funding_json_rounds_jitter(tmp_path: Path) -> None:
    ms = [T0_MS, T0_MS + 8 * 3_600_000 + 7, T0_MS + 16 * 3_600_000 + 11]
    rows = [[t, r, 0, 0, 0, 0] for t, r in zip(ms, [0.0001, -0.0002, 0.0003], strict=True)]
    path = tmp_path / "BTC_USDT-8h-funding_rate.json"
    path.write_text(json.dumps(rows))
    got = load_funding(path)
    assert list(got.columns) == ["funding_rate"]
    assert list(got.index) == [T0, T0 + pd.Timedelta("8h"), T0 + pd.Timedelta("16h")]
    assert got["funding_rate"].tolist() == [0.0001, -0.0002, 0.0003]
    with pytest.raises(ValidationError, match="load_funding"):
        load_candles(path)


def test_freqtrade_funding_feather(tmp_path: Path) -> None:
    funding = pd.DataFrame(
        {"funding_rate": [0.0001, 0.0002]},
        index=pd.DatetimeIndex([T0, T0 + pd.Timedelta("8h")], name="date"),
    )
    path = tmp_path / "X-1h-funding_rate.feather"
    save_funding(funding, path)
    raw = pd.read_feather(path)
    assert raw["open"].tolist() == [0.0001, 0.0002]  # freqtrade layout: rate in "open"
    pd.testing.assert_frame_equal(load_funding(path), funding, check_index_type=False)


@pytest.mark.parametrize("suffix", [".csv", ".zip"])
@pytest.mark.parametrize("header", [True, False])
@pytest.mark.parametrize("unit", ["ms", "us"])
def test_binance_klines(tmp_path: Path, suffix: str, header: bool, unit: str) -> None:
    frame = make_candles()
    path = tmp_path / f"BTCUSDT-5m-2024-01{suffix}"
    write_binance_csv(path, kline_rows(frame, unit), KLINE_HEADER if header else None)
    assert detect_format(path) == "binance"
    assert_same(load_candles(path), frame)
    assert_same(load_candles(path, fmt="binance", kind="mark"), frame)


@pytest.mark.parametrize("header", [True, False])
def test_binance_funding_zip(tmp_path: Path, header: bool) -> None:
    rows = [[T0_MS + 3, 8, 0.0001], [T0_MS + 8 * 3_600_000, 8, -0.00025]]
    path = tmp_path / "BTCUSDT-fundingRate-2024-01.zip"
    hdr = ["calc_time", "funding_interval_hours", "last_funding_rate"] if header else None
    write_binance_csv(path, rows, hdr)
    got = load_funding(path)
    assert list(got.index) == [T0, T0 + pd.Timedelta("8h")]
    assert got["funding_rate"].tolist() == [0.0001, -0.00025]
    with pytest.raises(ValidationError, match="use load_funding"):
        load_candles(path)


def test_binance_zip_with_two_csvs_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("a.csv", "1,2,3\n")
        zf.writestr("b.csv", "1,2,3\n")
    with pytest.raises(ValidationError, match="expected exactly one"):
        load_candles(path)


@pytest.mark.parametrize("stamp", ["iso", "s", "ms", "us"])
def test_generic_csv_with_mapping(tmp_path: Path, stamp: str) -> None:
    frame = make_candles()
    ns = frame.index.as_unit("ns").asi8
    stamps = {
        "iso": [ts.isoformat() for ts in frame.index],
        "s": ns // 10**9,
        "ms": ns // 10**6,
        "us": ns // 10**3,
    }[stamp]
    table = pd.DataFrame(
        {
            "Time": stamps,
            "O": frame["open"].to_numpy(),
            "H": frame["high"].to_numpy(),
            "L": frame["low"].to_numpy(),
            "C": frame["close"].to_numpy(),
            "Vol": frame["volume"].to_numpy(),
        }
    )
    path = tmp_path / "anything.csv"
    table.to_csv(path, index=False)
    mapping = {"date": "Time", "open": "O", "high": "H", "low": "L", "close": "C", "volume": "Vol"}
    assert detect_format(path) == "csv"
    assert_same(load_candles(path, columns=mapping), frame)


def test_generic_parquet_default_names_and_funding(tmp_path: Path) -> None:
    frame = make_candles()
    path = tmp_path / "candles.parquet"
    frame.reset_index().rename(columns={"date": "timestamp"}).to_parquet(path)
    assert_same(load_candles(path), frame)
    fpath = tmp_path / "funding.parquet"
    pd.DataFrame({"time": [T0_MS], "rate": [0.0001]}).to_parquet(fpath)
    got = load_funding(fpath, columns={"date": "time", "funding_rate": "rate"})
    assert got.index[0] == T0 and got["funding_rate"].iloc[0] == 0.0001


def test_generic_csv_missing_column_is_named(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    pd.DataFrame({"date": ["2024-01-01"], "open": [1.0]}).to_csv(path, index=False)
    with pytest.raises(ValidationError) as info:
        load_candles(path)
    msg = str(info.value)
    assert "lacks required column(s)" in msg and "'high'" in msg and "'volume'" in msg


def test_feather_wrong_columns(tmp_path: Path) -> None:
    path = tmp_path / "x.feather"
    pd.DataFrame({"date": [T0], "price": [1.0]}).to_feather(path)
    with pytest.raises(ValidationError, match=r"lacks required column\(s\)"):
        load_candles(path)


def test_json_wrong_width_lists_rows(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text(json.dumps([[T0_MS, 1, 2, 0.5, 1, 3], [T0_MS + 60000, 1, 2, 3]]))
    with pytest.raises(ValidationError, match=r"row 1: has 4 fields"):
        load_candles(path)


def test_unknown_extension_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(ValidationError, match="fmt="):
        load_candles(tmp_path / "x.txt")
    with pytest.raises(ValidationError, match="does not exist"):
        load_candles(tmp_path / "nope.feather")


# ------------------------------------------------------------------ validation rules


def write_rows(tmp_path: Path, rows: list[list[object]], name: str = "bad.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(rows))
    return path


def ok_row(i: int) -> list[object]:
    return [T0_MS + i * 300_000, 100.0, 101.0, 99.0, 100.5, 10.0]


def test_every_rule_reported_at_once(tmp_path: Path) -> None:
    rows = [ok_row(i) for i in range(10)]
    rows[1][2] = 99.5  # high < max(open, close)
    rows[2][3] = 100.2  # low > min(open, close)
    rows[3][5] = -1.0  # negative volume
    rows[4][1] = None  # NaN
    rows[5][4] = 0.0  # non-positive close (also makes low > min(open, close))
    rows[6][0] = rows[5][0]  # duplicate timestamp
    rows[8][0] = rows[2][0] + 1  # unsorted
    rows[9][1] = "abc"  # unparsable number
    with pytest.raises(ValidationError) as info:
        load_candles(write_rows(tmp_path, rows))
    err = info.value
    msg = str(err)
    assert err.source and err.source.endswith("bad.json")
    assert (
        "row 1 (2024-01-01T00:05:00+00:00): column 'high' = 99.5 < max(open, close) = 100.5" in msg
    )
    assert (
        "row 2 (2024-01-01T00:10:00+00:00): column 'low' = 100.2 > min(open, close) = 100.0" in msg
    )
    assert "row 3 (2024-01-01T00:15:00+00:00): column 'volume' = -1.0 (rule: volume >= 0)" in msg
    assert "row 4 (2024-01-01T00:20:00+00:00): column 'open' = NaN" in msg
    assert "row 5 (2024-01-01T00:25:00+00:00): column 'close' = 0.0 (rule: prices > 0)" in msg
    assert "row 6 (2024-01-01T00:25:00+00:00): column 'date'" in msg and "duplicates row 5" in msg
    assert "row 8 (2024-01-01T00:10:00.001000+00:00)" in msg and "earlier than row 7" in msg
    assert "row 9 (2024-01-01T00:45:00+00:00): column 'open' = 'abc' is not a number" in msg


def test_unparsable_timestamp_reported(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    table = make_candles(3).reset_index()
    table["date"] = ["2024-01-01T00:00:00Z", "not a date", "2024-01-01T00:10:00Z"]
    table.to_csv(path, index=False)
    with pytest.raises(ValidationError) as info:
        load_candles(path)
    assert "row 1: column 'date' = 'not a date' is not a parsable timestamp" in str(info.value)


def test_funding_absurd_rate(tmp_path: Path) -> None:
    rows = [[T0_MS, 0.0001, 0, 0, 0, 0], [T0_MS + 8 * 3_600_000, 0.07, 0, 0, 0, 0]]
    path = write_rows(tmp_path, rows, "X-8h-funding_rate.json")
    with pytest.raises(ValidationError) as info:
        load_funding(path)
    assert "row 1 (2024-01-01T08:00:00+00:00): column 'funding_rate' = 0.07" in str(info.value)
    assert "|funding rate| <= 0.05" in str(info.value)
    assert load_funding(path, max_abs=0.1)["funding_rate"].iloc[1] == 0.07


def test_problem_list_is_capped(tmp_path: Path) -> None:
    rows = [ok_row(i) for i in range(500)]
    for r in rows:
        r[5] = -1.0
    with pytest.raises(ValidationError) as info:
        load_candles(write_rows(tmp_path, rows))
    err = info.value
    assert len(err.problems) == 21
    assert err.problems[-1] == "... and 480 more volume problems"


def test_loading_120k_rows_is_fast(tmp_path: Path) -> None:
    import time

    frame = make_candles(120_000)
    path = tmp_path / "big.feather"
    save_candles(frame, path)
    t = time.perf_counter()
    got = load_candles(path)
    assert time.perf_counter() - t < 1.0
    assert len(got) == 120_000


# ------------------------------------------------------------------ gaps, range, resample


def gappy(tmp_path: Path) -> Path:
    frame = make_candles(24).drop(index=make_candles(24).index[[5, 6, 7, 15]])
    path = tmp_path / "gappy.feather"
    save_candles(frame, path)
    return path


def test_gaps_report(tmp_path: Path) -> None:
    got = load_candles(gappy(tmp_path))
    gaps = got.attrs["gaps"]
    assert [(g.start, g.end, g.missing) for g in gaps] == [
        (T0 + pd.Timedelta("25min"), T0 + pd.Timedelta("40min"), 3),
        (T0 + pd.Timedelta("75min"), T0 + pd.Timedelta("80min"), 1),
    ]
    assert "3 bar(s) missing from 2024-01-01T00:25:00+00:00" in str(gaps[0])
    assert len(got) == 20


def test_gaps_fill(tmp_path: Path) -> None:
    got = load_candles(gappy(tmp_path), gaps="fill")
    assert len(got) == 24
    prev_close = got["close"].iloc[4]
    filled = got.iloc[5:8]
    assert (filled[["open", "high", "low", "close"]] == prev_close).all().all()
    assert (filled["volume"] == 0).all()
    assert infer_timeframe(got) == pd.Timedelta("5min")


def test_gaps_refuse_lists_each(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as info:
        load_candles(gappy(tmp_path), gaps="refuse")
    assert len(info.value.problems) == 2
    assert "gap: 3 bar(s) missing from 2024-01-01T00:25:00+00:00" in str(info.value)


def test_declared_timeframe_finds_more_gaps(tmp_path: Path) -> None:
    frame = make_candles(12, tf="10min")
    path = tmp_path / "x.feather"
    save_candles(frame, path)
    assert load_candles(path).attrs["gaps"] == []
    assert len(load_candles(path, timeframe="5m").attrs["gaps"]) == 11


def test_date_range(tmp_path: Path) -> None:
    path = tmp_path / "x.feather"
    save_candles(make_candles(24), path)
    got = load_candles(path, start="2024-01-01 00:30", end="2024-01-01T01:00:00Z")
    assert got.index[0] == T0 + pd.Timedelta("30min")
    assert got.index[-1] == T0 + pd.Timedelta("55min")  # end exclusive
    assert len(got) == 6
    got2 = select_range(make_candles(24), start=pd.Timestamp("2024-01-01 01:00"))
    assert got2.index[0] == T0 + pd.Timedelta("1h")


def test_resample_ohlcv() -> None:
    frame = make_candles(24)
    hourly = resample(frame, "1h")
    assert len(hourly) == 2
    first = frame.iloc[:12]
    assert hourly.iloc[0].tolist() == [
        first["open"].iloc[0],
        first["high"].max(),
        first["low"].min(),
        first["close"].iloc[-1],
        first["volume"].sum(),
    ]
    assert hourly.attrs["timeframe"] == pd.Timedelta("1h")
    assert resample(frame, "15m").index[1] == T0 + pd.Timedelta("15min")


def test_resample_refuses_finer_and_non_multiple() -> None:
    frame = make_candles(24)
    with pytest.raises(ValidationError, match="finer"):
        resample(frame, "1m")
    with pytest.raises(ValidationError, match="whole multiple"):
        resample(frame, "7m")


def test_resample_drop_incomplete() -> None:
    frame = make_candles(18)  # one full hour and half an hour
    assert len(resample(frame, "1h")) == 2
    assert len(resample(frame, "1h", drop_incomplete=True)) == 1


def test_fill_gaps_on_frame() -> None:
    frame = make_candles(6).drop(index=make_candles(6).index[2])
    assert len(fill_gaps(frame, pd.Timedelta("5min"))) == 6


def test_infer_timeframe_uses_mode() -> None:
    idx = pd.DatetimeIndex(
        [T0 + pd.Timedelta(minutes=m) for m in (0, 1, 2, 3, 10, 11, 12)], name="date"
    )
    assert infer_timeframe(idx) == pd.Timedelta("1min")
    with pytest.raises(ValidationError):
        infer_timeframe(idx[:1])


@pytest.mark.parametrize(
    ("text", "want"),
    [("5m", "5min"), ("1h", "1h"), ("8h", "8h"), ("1d", "1D"), ("1w", "7D"), ("15min", "15min")],
)
def test_parse_timeframe(text: str, want: str) -> None:
    assert parse_timeframe(text) == pd.Timedelta(want)


def test_parse_timeframe_rejects_garbage() -> None:
    with pytest.raises(ValidationError):
        parse_timeframe("soon")


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=4_000_000_000_000), st.sampled_from([1, 1000, 1_000_000]))
def test_epoch_unit_detection(ms: int, scale: int) -> None:
    """Any date 1973..2096 in s/ms/µs resolves to the same instant (to the unit's precision)."""
    ms = max(ms, 100_000_000_000)  # 1973: below that, seconds and ms overlap by design
    value = {1: ms // 1000, 1000: ms, 1_000_000: ms * 1000}[scale]
    got = epoch_to_datetime(np.array([value], dtype="float64"))[0]
    want_ms = (ms // 1000) * 1000 if scale == 1 else ms
    assert got == pd.Timestamp(want_ms, unit="ms", tz="UTC")
