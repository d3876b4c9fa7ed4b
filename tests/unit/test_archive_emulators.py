"""The bulk-archive emulators: Binance public data (data.binance.vision) and Massive flat files,
checked against the providers' documented layout and against the REST emulators' bars."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import zipfile
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import httpx
import obstore
import pytest
from obstore.store import S3Store

from tests.emulators.binance import kline_rows
from tests.emulators.binance_archive import (
    BinanceArchiveEmulator,
    archive_csv,
    archive_path,
    archive_rows,
    archive_zip,
    checksum_line,
)
from tests.emulators.massive_flatfiles import (
    HEADER,
    MassiveFlatFiles,
    day_window_ms,
    flatfile_key,
    ready_at,
)
from tests.emulators.polygon import PolygonEmulator

MINUTE_MS = 60_000
SYMBOL = "BTCUSDT"
DAY_2024 = date(2024, 1, 5)
DAY_2025 = date(2025, 3, 4)
# Long after every file these tests read was published.
LATER = datetime(2026, 6, 1, tzinfo=UTC).timestamp()


class Clock:
    """Epoch seconds that move only when told to."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def day_ms(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * 1000


def csv_rows(data: bytes) -> list[list[str]]:
    return [line.split(",") for line in data.decode("ascii").splitlines()]


def unzip(data: bytes) -> tuple[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        (name,) = archive.namelist()
        return name, archive.read(name)


@pytest.fixture
def archive() -> Iterator[tuple[BinanceArchiveEmulator, httpx.Client]]:
    with (
        BinanceArchiveEmulator(now=Clock(LATER), listed={"NEWUSDT": date(2024, 2, 10)}) as emu,
        httpx.Client(base_url=emu.url, timeout=10, trust_env=False) as client,
    ):
        yield emu, client


# --------------------------------------------------------------------------------------
# Binance public data
# --------------------------------------------------------------------------------------


def test_a_2024_daily_file_holds_the_rest_klines_of_the_day_in_milliseconds(archive) -> None:
    emu, client = archive
    path = archive_path(SYMBOL, DAY_2024)
    assert path == "/data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2024-01-05.zip"
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/zip"
    name, data = unzip(response.content)
    assert name == "BTCUSDT-1m-2024-01-05.csv"
    assert data.endswith(b"\n") and b"\r" not in data
    rows = csv_rows(data)
    assert len(rows) == 1440  # no header row: every line is a minute
    rest = kline_rows(SYMBOL, day_ms(DAY_2024), day_ms(DAY_2024) + 1439 * MINUTE_MS)
    assert rows == [[str(v) for v in kline] for kline in rest]
    assert int(rows[0][0]) == day_ms(DAY_2024) and int(rows[0][6]) == day_ms(DAY_2024) + 59_999
    assert data == archive_csv(SYMBOL, DAY_2024, DAY_2024)


def test_a_2025_daily_file_has_microsecond_open_and_close_times(archive) -> None:
    _, client = archive
    name, data = unzip(client.get(archive_path(SYMBOL, DAY_2025)).content)
    rows = csv_rows(data)
    rest = kline_rows(SYMBOL, day_ms(DAY_2025), day_ms(DAY_2025) + 1439 * MINUTE_MS)
    assert len(rows) == len(rest) == 1440
    for row, kline in zip(rows, rest, strict=True):
        assert int(row[0]) == kline[0] * 1000
        assert int(row[6]) == kline[0] * 1000 + 60_000_000 - 1
        assert row[1:6] + row[7:] == [str(v) for v in kline[1:6] + kline[7:]]
    # The era switches at 2025-01-01 00:00 UTC: the day before is still in milliseconds.
    last_ms = archive_rows(SYMBOL, date(2024, 12, 31), date(2024, 12, 31))[-1]
    first_us = archive_rows(SYMBOL, date(2025, 1, 1), date(2025, 1, 1))[0]
    assert (last_ms[0], first_us[0]) == (day_ms(date(2025, 1, 1)) - MINUTE_MS, 1735689600000000)


def test_the_checksum_file_is_sha256sum_output_of_the_zip(archive) -> None:
    _, client = archive
    path = archive_path(SYMBOL, DAY_2024)
    zipped = client.get(path).content
    body = client.get(path + ".CHECKSUM").content
    digest, name = body.decode("ascii").removesuffix("\n").split("  ")
    assert digest == hashlib.sha256(zipped).hexdigest() and name == "BTCUSDT-1m-2024-01-05.zip"
    assert body == checksum_line(zipped, name)
    # Deterministic: the same file is the same bytes, built again or served again.
    assert archive_zip(SYMBOL, DAY_2024) == zipped == client.get(path).content


def test_a_monthly_file_is_its_daily_files_end_to_end(archive) -> None:
    _, client = archive
    name, data = unzip(client.get(archive_path(SYMBOL, "2024-02")).content)
    assert name == "BTCUSDT-1m-2024-02.csv"
    days = [date(2024, 2, 1) + timedelta(days=i) for i in range(29)]
    assert data == b"".join(archive_csv(SYMBOL, day, day) for day in days)
    assert len(data.splitlines()) == 29 * 1440
    assert unzip(client.get(archive_path(SYMBOL, days[-1])).content)[1] == archive_csv(
        SYMBOL, days[-1], days[-1]
    )


def test_files_appear_only_after_their_period_ends_plus_the_lag() -> None:
    day_end = datetime(2024, 1, 6, tzinfo=UTC).timestamp()
    clock = Clock(day_end + 6 * 3600 - 1)
    with (
        BinanceArchiveEmulator(now=clock, daily_lag_s=6 * 3600, monthly_lag_s=2 * 86400) as emu,
        httpx.Client(base_url=emu.url, timeout=10, trust_env=False) as client,
    ):
        path = archive_path(SYMBOL, DAY_2024)
        early = client.get(path)
        assert early.status_code == 404
        assert early.headers["content-type"] == "application/xml"
        assert early.content == (
            b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchKey</Code>'
            b"<Message>The specified key does not exist.</Message>"
            b"<Key>data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2024-01-05.zip</Key></Error>"
        )
        assert client.get(path + ".CHECKSUM").status_code == 404
        clock.t += 1
        assert client.get(path).status_code == 200
        assert emu.published_at(SYMBOL, DAY_2024) == day_end + 6 * 3600

        month_end = datetime(2024, 2, 1, tzinfo=UTC).timestamp()
        clock.t = month_end + 2 * 86400 - 1
        assert client.get(archive_path(SYMBOL, "2024-01")).status_code == 404
        assert client.get(archive_path(SYMBOL, date(2024, 1, 31))).status_code == 200
        clock.t += 1
        assert client.get(archive_path(SYMBOL, "2024-01")).status_code == 200


def test_unknown_files_are_404_and_a_listed_symbol_starts_on_its_listing_day(archive) -> None:
    emu, client = archive
    for path in (
        "/data/spot/daily/klines/BTCUSDT/5m/BTCUSDT-5m-2024-01-05.zip",  # only 1m is emulated
        "/data/spot/daily/klines/btcusdt/1m/btcusdt-1m-2024-01-05.zip",
        "/data/spot/daily/klines/BTCUSDT/1m/ETHUSDT-1m-2024-01-05.zip",
        "/data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2024-02-30.zip",
        "/data/spot/monthly/klines/BTCUSDT/1m/BTCUSDT-1m-2024-13.zip",
        "/data/spot/monthly/klines/BTCUSDT/1m/BTCUSDT-1m-2024-01-05.zip",
        "/data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2024-01-05.csv",
        archive_path("NEWUSDT", date(2024, 2, 9)),  # the day before its listing
        archive_path("NEWUSDT", "2024-01"),
    ):
        answer = client.get(path)
        assert answer.status_code == 404, path
        assert b"<Code>NoSuchKey</Code>" in answer.content
    assert client.get(archive_path("NEWUSDT", date(2024, 2, 10))).status_code == 200
    _, month = unzip(client.get(archive_path("NEWUSDT", "2024-02")).content)
    assert month == archive_csv("NEWUSDT", date(2024, 2, 10), date(2024, 2, 29))
    assert client.put(archive_path(SYMBOL, DAY_2024)).status_code == 403
    assert emu.stats()["not_found"] == 9


def test_a_reupload_changes_the_values_and_its_checksum_follows(archive) -> None:
    emu, client = archive
    path = archive_path(SYMBOL, DAY_2024)
    before = client.get(path).content
    new = emu.reupload(SYMBOL, DAY_2024)
    after = client.get(path).content
    assert after == new != before
    assert client.get(path + ".CHECKSUM").content == checksum_line(after, path.rsplit("/")[-1])
    old_rows, new_rows = csv_rows(unzip(before)[1]), csv_rows(unzip(after)[1])
    assert len(new_rows) == len(old_rows) - 1
    assert new_rows[0][4] != old_rows[0][4] and new_rows[0][0] == old_rows[0][0]

    def drop_last(rows: list[list]) -> list[list]:
        return rows[:-1]

    emu.reupload(SYMBOL, DAY_2024, change=drop_last)
    assert csv_rows(unzip(client.get(path).content)[1]) == old_rows[:-1]


def test_a_truncated_transfer_fails_to_open_while_the_checksum_names_the_full_file(
    archive,
) -> None:
    emu, client = archive
    path = archive_path(SYMBOL, DAY_2024)
    full = archive_zip(SYMBOL, DAY_2024)
    emu.truncate(SYMBOL, DAY_2024)
    cut = client.get(path).content
    assert cut == full[: len(full) // 2]
    with pytest.raises(zipfile.BadZipFile):
        unzip(cut)
    assert client.get(path + ".CHECKSUM").content == checksum_line(full, path.rsplit("/")[-1])
    emu.restore(SYMBOL, DAY_2024)
    assert client.get(path).content == full
    # A fault for one download only: the retry gets the whole file.
    emu.truncate(SYMBOL, DAY_2024, keep_bytes=100, times=1)
    assert len(client.get(path).content) == 100
    assert client.get(path).content == full


def test_a_corrupt_checksum_does_not_match_the_intact_zip(archive) -> None:
    emu, client = archive
    path = archive_path(SYMBOL, DAY_2024)
    emu.corrupt_checksum(SYMBOL, DAY_2024)
    zipped = client.get(path).content
    digest = client.get(path + ".CHECKSUM").text.split("  ")[0]
    assert len(digest) == 64 and digest != hashlib.sha256(zipped).hexdigest()
    assert unzip(zipped)[1] == archive_csv(SYMBOL, DAY_2024, DAY_2024)


def test_stats_count_files_checksums_bytes_and_404s(archive) -> None:
    emu, client = archive
    path = archive_path(SYMBOL, DAY_2024)
    sizes = [len(client.get(path).content), len(client.get(path + ".CHECKSUM").content)]
    client.get(archive_path(SYMBOL, date(2099, 1, 1)))
    stats = emu.stats()
    assert (stats["zips_served"], stats["checksums_served"], stats["not_found"]) == (1, 1, 1)
    assert stats["bytes_served"] == sum(sizes)
    assert [(e["path"], e["status"]) for e in emu.request_log()] == [
        (path, 200),
        (path + ".CHECKSUM", 200),
        (archive_path(SYMBOL, date(2099, 1, 1)), 404),
    ]


# --------------------------------------------------------------------------------------
# Massive flat files
# --------------------------------------------------------------------------------------

# A Friday with quiet minutes (AAPL has 384 bars of 390), before AMZN's 10-for-1 split of
# Tuesday 2026-01-20 (seed 0), and after it the MLK Day holiday.
SESSION = date(2026, 1, 16)
KEY = "pk_FLATFILES_TEST"


@pytest.fixture(scope="module")
def flatfiles() -> Iterator[MassiveFlatFiles]:
    with MassiveFlatFiles({"AAPL": "XNYS", "AMZN": "XNYS"}, extra_tickers=2) as files:
        yield files


def store_of(files: MassiveFlatFiles) -> S3Store:
    return S3Store(
        files.bucket,
        endpoint=files.endpoint_url,
        access_key_id=files.access_key_id,
        secret_access_key=files.secret_access_key,
        region="us-east-1",
        client_options={"allow_http": True},
    )


def rest_aggs(emu: PolygonEmulator, ticker: str, day: date, *, adjusted: bool) -> list[dict]:
    first, last = day_window_ms(day)
    with httpx.Client(base_url=emu.url, timeout=10, trust_env=False) as client:
        response = client.get(
            f"/v2/aggs/ticker/{ticker}/range/1/minute/{first}/{last}",
            params={"adjusted": str(adjusted).lower(), "limit": 50_000, "apiKey": KEY},
        )
    assert response.status_code == 200
    return response.json()["results"]


def test_a_flat_file_holds_the_rest_unadjusted_bars_of_the_new_york_day(flatfiles) -> None:
    key = flatfiles.publish(SESSION)
    assert key == "us_stocks_sip/minute_aggs_v1/2026/01/2026-01-16.csv.gz" == flatfile_key(SESSION)
    obj = flatfiles.client().get_object(Bucket="flatfiles", Key=key)
    lines = gzip.decompress(obj["Body"].read()).decode().splitlines()
    assert lines[0] == HEADER == "ticker,volume,open,close,high,low,window_start,transactions"
    rows = list(csv.DictReader(lines))
    assert {r["ticker"] for r in rows} == {"AAPL", "AMZN", "ZZ0001", "ZZ0002"}
    order = [(r["ticker"], int(r["window_start"])) for r in rows]
    assert order == sorted(order)

    now = datetime(2026, 3, 1, tzinfo=UTC)
    calendars = {"AAPL": "XNYS", "AMZN": "XNYS"}
    with PolygonEmulator(
        api_keys={KEY}, calendars=calendars, calls_per_window=None, now=now
    ) as emu:
        for ticker in ("AAPL", "AMZN"):
            raw = rest_aggs(emu, ticker, SESSION, adjusted=False)
            mine = [r for r in rows if r["ticker"] == ticker]
            assert len(mine) == len(raw)
            for row, agg in zip(mine, raw, strict=True):
                assert int(row["window_start"]) == agg["t"] * 1_000_000  # nanoseconds
                assert (int(row["volume"]), int(row["transactions"])) == (agg["v"], agg["n"])
                # The decimal text is the JSON number REST sent.
                for column, field in (("open", "o"), ("close", "c"), ("high", "h"), ("low", "l")):
                    assert row[column] == json.dumps(agg[field])
            adjusted = rest_aggs(emu, ticker, SESSION, adjusted=True)
            if ticker == "AMZN":  # split on Tuesday: REST's default adjusts, the file does not
                assert adjusted[0]["c"] == pytest.approx(raw[0]["c"] / 10, abs=1e-4)
    aapl = [r for r in rows if r["ticker"] == "AAPL"]
    # The regular session (9:30-16:00 ET) less the quiet minutes that have no bar.
    assert len(aapl) == 384
    assert datetime.fromtimestamp(int(aapl[0]["window_start"]) / 1e9, UTC).hour == 14


def test_an_s3_get_through_obstore_returns_the_published_bytes(flatfiles) -> None:
    day = date(2026, 1, 13)
    key = flatfiles.publish(day)
    before = flatfiles.stats()
    data = bytes(obstore.get(store_of(flatfiles), key).bytes())
    assert data == flatfiles.day_file(day) == flatfiles.day_file(day)  # deterministic gzip
    stats = flatfiles.stats()
    assert stats["gets"] - before["gets"] == 1
    assert stats["bytes_served"] - before["bytes_served"] == len(data)
    with pytest.raises(FileNotFoundError):
        obstore.get(store_of(flatfiles), flatfile_key(date(2026, 1, 10)))
    assert flatfiles.stats()["not_found"] - before["not_found"] == 1


def test_a_replaced_file_has_other_values_and_a_new_etag(flatfiles) -> None:
    day = date(2026, 1, 14)
    key = flatfiles.publish(day)
    first = flatfiles.etag(day)
    assert flatfiles.replace(day) == key
    assert flatfiles.etag(day) != first
    replaced = gzip.decompress(bytes(obstore.get(store_of(flatfiles), key).bytes()))
    original = gzip.decompress(flatfiles.day_file(day))
    assert len(replaced.splitlines()) == len(original.splitlines()) - 1
    assert replaced.splitlines()[1] != original.splitlines()[1]


def test_a_truncated_upload_fails_to_decompress(flatfiles) -> None:
    day = date(2026, 1, 15)
    key = flatfiles.put_truncated(day)
    data = bytes(obstore.get(store_of(flatfiles), key).bytes())
    assert data == flatfiles.day_file(day)[: len(flatfiles.day_file(day)) // 2]
    with pytest.raises((EOFError, gzip.BadGzipFile)):
        gzip.decompress(data)


def test_publish_range_skips_days_without_a_session(flatfiles) -> None:
    keys = flatfiles.publish_range(date(2026, 1, 16), date(2026, 1, 20))
    # Saturday, Sunday and Monday (MLK Day) have no file.
    assert keys == [flatfile_key(date(2026, 1, 16)), flatfile_key(date(2026, 1, 20))]
    assert ready_at(SESSION) == datetime(2026, 1, 17, 16, tzinfo=UTC)  # 11:00 ET


def test_the_new_york_day_follows_daylight_saving_time() -> None:
    first, last = day_window_ms(date(2026, 3, 8))  # clocks go forward: a 23-hour day
    assert (last + 1 - first) == 23 * 3600 * 1000
    assert first == int(datetime(2026, 3, 8, 5, tzinfo=UTC).timestamp()) * 1000
