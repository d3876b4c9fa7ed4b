"""The providers' bulk archives: Binance public data and Massive flat files.

**Binance** (data.binance.vision, documented in the binance/binance-public-data README):
``data/spot/{daily|monthly}/klines/<SYMBOL>/1m/<SYMBOL>-1m-<YYYY-MM-DD|YYYY-MM>.zip``, each with
``<file>.CHECKSUM`` (sha256sum's line: ``<hex>  <file name>``). The zip holds one CSV of the
12 kline fields of ``/api/v3/klines``, without a header row for spot. Spot timestamps are in
microseconds from 2025-01-01, milliseconds before. Daily files appear the next day, monthly
ones early the next month; a month wholly in a range is one file instead of 30. Files have
been re-uploaded after truncation (issues #413, #436 there): the CHECKSUM is read on every
run, and a changed one fetches the file again.

**Massive flat files** (massive.com docs, "Flat Files Quickstart", stocks minute aggregates):
an S3 endpoint (``https://files.massive.com``, bucket ``flatfiles``) with its own access and
secret keys, one gzip CSV per trading day (New York date) holding every ticker:
``us_stocks_sip/minute_aggs_v1/YYYY/MM/YYYY-MM-DD.csv.gz`` with ``ticker, volume, open, close,
high, low, window_start`` (Unix nanoseconds) ``, transactions``. Ready around 11:00 ET the next
day and sometimes replaced (the ETag says). The files are not split-adjusted ("the flat file
row ... opens at 20.34", knowledge base: "why doesn't a bar from the REST API match the flat
files"): they equal the REST aggregates with ``adjusted=false``, which is what raw/bars fetches.
They have no VWAP column: an archived Massive minute has no vwap (null), where the REST bar has
Massive's ``vw``. Nothing is made up in its place.

Read through obstore (Rust's object_store) rather than boto3: a streaming GET in bounded memory
and SigV4 signing without botocore. Measured here against moto's S3 server (5 GETs of a 30 MB
object, two runs each): the same transfer time (obstore 0.12-0.14 s, boto3 0.14-0.16 s), but
0.02 s to import and build the client against boto3's 0.43 s, paid by every step process.
"""

from __future__ import annotations

import gzip
import io
import logging
import re
import threading
import zipfile
import zlib
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import httpx
import polars as pl

from resources.endpoints import Endpoint, Feed
from resources.errors import ArchiveError, InvalidInputError, SchemaError
from resources.providers.binance import BinanceAdapter
from resources.providers.decoding import BAR_SCHEMA, PAGE_COLUMN, ParsedPages, canonical_bars
from resources.raw.archive import (
    ArchiveFile,
    ArchiveFormat,
    Download,
    SymbolRows,
    UpstreamVersion,
    write_stream,
)
from resources.secrets import redact, register
from resources.windows import PartitionWindow

logger = logging.getLogger("fin_assets.archive")
T = TypeVar("T")

BINANCE_VISION_URL = "https://data.binance.vision"
MASSIVE_FLATFILES_URL = "https://files.massive.com"
MASSIVE_BUCKET = "flatfiles"
MASSIVE_MINUTE_AGGS = "us_stocks_sip/minute_aggs_v1"
NEW_YORK = ZoneInfo("America/New_York")
CHUNK = 1 << 20
DOWNLOAD_ATTEMPTS = 3

_CHECKSUM_RE = re.compile(r"^([0-9a-f]{64})\s+\*?(\S+)\s*$")
_MICROS_FROM = 10**15  # a kline open time this large is in microseconds (years after 2001)

KLINE_COLUMNS = (
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "_quote_volume",
    "trades",
    "taker_base",
    "taker_quote",
    "ignore",
)
FLATFILE_COLUMNS = (
    "ticker",
    "volume",
    "open",
    "close",
    "high",
    "low",
    "window_start",
    "transactions",
)


def _parsed_pages(
    frame_of: Callable[..., pl.DataFrame],
    pages: Sequence[tuple[str, bytes]],
    *,
    partition: str | None,
) -> ParsedPages:
    """``(symbol, body)`` pages as one frame, each row with its page's index (PAGE_COLUMN)."""
    frames = []
    for index, (symbol, body) in enumerate(pages):
        where = f"partition {partition}" if partition else "snapshot"
        frame = frame_of(body, symbol=symbol, where=where)
        frames.append(frame.hstack([_page_column(index, frame.height)]))
    return _with_page(frames)


def _empty_pages() -> ParsedPages:
    return ParsedPages(pl.DataFrame(schema={**BAR_SCHEMA, PAGE_COLUMN: pl.UInt32()}), {})


def _with_page(frames: list[pl.DataFrame]) -> ParsedPages:
    if not frames:
        return _empty_pages()
    return ParsedPages(pl.concat(frames), {})


def _page_column(index: int, height: int) -> pl.Series:
    return pl.Series(PAGE_COLUMN, [index], dtype=pl.UInt32()).new_from_index(0, height)


# --------------------------------------------------------------------------------------------
# Binance public data
# --------------------------------------------------------------------------------------------


class BinanceVision(ArchiveFormat):
    provider = "binance"
    dataset = "binance_vision_klines_1m"
    # A zip holds one symbol: it is its snapshot, as downloaded (a third of the CSV's bytes;
    # core/bars unzips it).
    suffix = ".zip"
    keeps_files = False

    def __init__(
        self,
        base_url: str = BINANCE_VISION_URL,
        *,
        daily_lag: timedelta = timedelta(hours=12),
        monthly_lag: timedelta = timedelta(days=3),
        timeout_s: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        endpoint = Endpoint.parse(base_url, where="binance archive url")
        self.base_url = endpoint.public_url
        self.feed = Feed.of(self.provider, endpoint, api_key=None, by_credential=False)
        self.daily_lag = daily_lag
        self.monthly_lag = monthly_lag
        self._client_args: dict[str, Any] = {"timeout": timeout_s, "transport": transport}
        self._client: httpx.Client | None = None
        self._client_lock = threading.Lock()
        self._klines = BinanceAdapter()

    @property
    def _http(self) -> httpx.Client:
        with self._client_lock:  # files are fetched by several threads: one client for all
            if self._client is None:  # parsing alone (core/bars) never opens one
                self._client = httpx.Client(follow_redirects=True, **self._client_args)
            return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def url(self, file: ArchiveFile) -> str:
        return f"{self.base_url}/{file.key}"

    @staticmethod
    def daily_key(symbol: str, day: date) -> str:
        return f"data/spot/daily/klines/{symbol}/1m/{symbol}-1m-{day:%Y-%m-%d}.zip"

    @staticmethod
    def monthly_key(symbol: str, month: date) -> str:
        return f"data/spot/monthly/klines/{symbol}/1m/{symbol}-1m-{month:%Y-%m}.zip"

    def plan(
        self, symbols: Sequence[str], partitions: Sequence[PartitionWindow], *, now: datetime
    ) -> list[ArchiveFile]:
        days = sorted({d for p in partitions for d in _utc_days(p.start, p.end)})
        published = [
            d for d in days if _utc_midnight(d + timedelta(days=1)) + self.daily_lag <= now
        ]
        wanted = set(days)
        months: dict[date, list[date]] = {}
        for day in published:
            months.setdefault(day.replace(day=1), []).append(day)
        files: list[ArchiveFile] = []
        for symbol in symbols:
            for month, month_days in months.items():
                following = _next_month(month)
                whole = all(
                    month + timedelta(days=i) in wanted for i in range((following - month).days)
                )
                dailies = tuple(
                    ArchiveFile(
                        self.daily_key(symbol, day),
                        _utc_midnight(day),
                        _utc_midnight(day + timedelta(days=1)),
                        (symbol,),
                    )
                    for day in month_days
                )
                if whole and _utc_midnight(following) + self.monthly_lag <= now:
                    files.append(
                        ArchiveFile(
                            self.monthly_key(symbol, month),
                            _utc_midnight(month),
                            _utc_midnight(following),
                            (symbol,),
                            fallback=dailies,
                        )
                    )
                else:
                    files.extend(dailies)
        return files

    def _retrying(self, url: str, read: Callable[[httpx.Response], T]) -> T | None:
        """GET ``url`` (streamed) and ``read`` a 200; None on 403/404 (not there); 5xx and
        connection errors tried again, ``DOWNLOAD_ATTEMPTS`` in all; any other status, or the
        last failure, is an ArchiveError naming the URL."""
        last = ""
        for _ in range(DOWNLOAD_ATTEMPTS):
            try:
                with self._http.stream("GET", url) as response:
                    status = response.status_code
                    if status == 200:
                        return read(response)
                    if status in (403, 404):
                        return None
                    if status < 500:
                        raise ArchiveError(
                            f"binance archive: {url} answered HTTP {status}",
                            provider=self.provider,
                            file=url,
                        )
                    last = f"HTTP {status}"
            except httpx.TransportError as exc:
                last = redact(str(exc))
        raise ArchiveError(
            f"binance archive: {url} could not be read after {DOWNLOAD_ATTEMPTS} attempts ({last})",
            provider=self.provider,
            file=url,
        )

    def version(self, file: ArchiveFile) -> UpstreamVersion | None:
        text = self._retrying(self.url(file) + ".CHECKSUM", lambda r: r.read().decode("latin-1"))
        if text is None:
            return None
        match = _CHECKSUM_RE.match(text.strip())
        name = file.key.rsplit("/", 1)[-1]
        if match is None or match.group(2) != name:
            raise self.error(
                file,
                f"has a CHECKSUM file that is not sha256sum's line for {name}: {text[:120]!r}",
                checksum=True,
            )
        return UpstreamVersion(f"sha256:{match.group(1)}", sha256=match.group(1))

    def download(self, file: ArchiveFile, into: Path) -> Download:
        got = self._retrying(self.url(file), lambda r: write_stream(into, r.iter_bytes(CHUNK)))
        if got is None:
            raise self.error(file, "disappeared between its CHECKSUM and its download")
        return got

    def split(self, file: ArchiveFile, path: Path) -> dict[str, SymbolRows]:
        (symbol,) = file.symbols
        body = path.read_bytes()
        frame = self._frame(body, symbol=symbol, where=self.url(file), file=file)
        first, last = _span(frame)
        if first is not None and (first < file.start or last >= file.end):  # type: ignore[operator]
            raise self.error(
                file,
                f"holds bars from {first} to {last}, outside its window "
                f"{file.start:%Y-%m-%d %H:%M}..{file.end:%Y-%m-%d %H:%M} UTC",
            )
        return {symbol: SymbolRows(body, frame.height)}

    def _csv(self, body: bytes, *, where: str, file: ArchiveFile | None) -> bytes:
        """The CSV of a zip of klines (one member); a zip cut short names its file."""
        try:
            with zipfile.ZipFile(io.BytesIO(body)) as archive:
                members = [m for m in archive.infolist() if not m.is_dir()]
                if len(members) != 1 or not members[0].filename.endswith(".csv"):
                    names = [m.filename for m in members]
                    raise ValueError(f"it holds {names}, not one CSV")
                return archive.read(members[0])
        except (zipfile.BadZipFile, zlib.error, EOFError, ValueError) as exc:
            what = f"is not a whole zip file of one CSV (cut short?): {exc}"
            if file is not None:
                raise self.error(file, what) from None
            raise SchemaError(f"binance archive: {where}: {what}", provider=self.provider) from None

    def _frame(
        self, body: bytes, *, symbol: str, where: str, file: ArchiveFile | None = None
    ) -> pl.DataFrame:
        """Canonical bars of one zip (or CSV) of klines (no header row for spot; a header row
        is skipped)."""
        if body[:4] == b"PK\x03\x04":
            body = self._csv(body, where=where, file=file)
        if not body.strip():
            return canonical_bars(pl.DataFrame(schema=BAR_SCHEMA).drop("symbol"), symbol=symbol)
        header = not body[:1].isdigit()
        try:
            raw = pl.read_csv(
                io.BytesIO(body),
                has_header=False,
                skip_rows=1 if header else 0,
                new_columns=list(KLINE_COLUMNS),
                schema_overrides={name: pl.String() for name in KLINE_COLUMNS},
            )
            if raw.width != len(KLINE_COLUMNS):
                raise ValueError(f"{raw.width} columns, expected {len(KLINE_COLUMNS)}")
            opened = raw.get_column("open_time").cast(pl.Int64, strict=True)
            frame = pl.DataFrame(
                [
                    # Microseconds from 2025-01-01, milliseconds before: told apart per row.
                    (opened * 1000)
                    .zip_with(opened < _MICROS_FROM, opened)
                    .alias("ts")
                    .cast(pl.Datetime("us"))
                    .dt.replace_time_zone("UTC"),
                    *(
                        raw.get_column(name).cast(pl.Float64, strict=True)
                        for name in ("open", "high", "low", "close", "volume", "_quote_volume")
                    ),
                    raw.get_column("trades").cast(pl.Int64, strict=True),
                ]
            )
        except (pl.exceptions.PolarsError, ValueError) as exc:
            raise _rows_refused(
                self, "binance archive", symbol, where, "Binance klines", exc
            ) from None
        _no_empty_field(self, frame, "binance archive", symbol, where)
        return canonical_bars(self._klines.finish_frame(frame), symbol=symbol)

    def parse_pages(
        self, pages: Sequence[tuple[str, bytes]], *, partition: str | None = None
    ) -> ParsedPages:
        return _parsed_pages(self._frame, pages, partition=partition)


def _rows_refused(
    fmt: ArchiveFormat, archive: str, symbol: str, where: str, expected: str, exc: Exception
) -> SchemaError:
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return SchemaError(
        f"{archive}: symbol {symbol}: {where}: rows are not {expected} ({first})",
        provider=fmt.provider,
        symbol=symbol,
    )


def _no_empty_field(
    fmt: ArchiveFormat, frame: pl.DataFrame, archive: str, symbol: str, where: str
) -> None:
    """A null in a parsed row is a field left empty: a line cut short, never a value."""
    if frame.null_count().sum_horizontal().item():
        raise SchemaError(
            f"{archive}: symbol {symbol}: {where}: a row has an empty field (a line cut short?)",
            provider=fmt.provider,
            symbol=symbol,
        )


def _span(frame: pl.DataFrame) -> tuple[datetime | None, datetime | None]:
    """The first and last bar times of a frame (None, None without a bar)."""
    if not frame.height:
        return None, None
    ts = frame.get_column("ts")
    first, last = ts.min(), ts.max()
    assert isinstance(first, datetime) and isinstance(last, datetime)
    return first, last


def _utc_midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def _utc_days(start: datetime, end: datetime) -> list[date]:
    first, last = (
        start.astimezone(UTC).date(),
        (end - timedelta(microseconds=1)).astimezone(UTC).date(),
    )
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def _next_month(month: date) -> date:
    return (month.replace(day=28) + timedelta(days=4)).replace(day=1)


# --------------------------------------------------------------------------------------------
# Massive flat files
# --------------------------------------------------------------------------------------------


class MassiveFlatFiles(ArchiveFormat):
    provider = "polygon"
    dataset = "massive_flatfiles_minute_aggs_v1"

    def __init__(
        self,
        endpoint: str = MASSIVE_FLATFILES_URL,
        *,
        bucket: str = MASSIVE_BUCKET,
        prefix: str = MASSIVE_MINUTE_AGGS,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        region: str = "us-east-1",
        ready_after: timedelta = timedelta(hours=36),
    ) -> None:
        register(access_key_id, secret_access_key)  # never in a log line, error or file
        parsed = Endpoint.parse(endpoint, where="massive flat files endpoint")
        self.endpoint = parsed.public_url
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        where = Endpoint.parse(f"{self.endpoint}/{bucket}/{self.prefix}")
        self.feed = Feed.of(self.provider, where, api_key=None, by_credential=False)
        # A New York day's file is ready about 11:00 ET the next day: 35 h after its midnight;
        # an hour more of margin. Asked for earlier, a missing file just goes to REST.
        self.ready_after = ready_after
        self._credentials = (access_key_id, secret_access_key, region)
        self._store: Any = None
        self._store_lock = threading.Lock()

    def store(self) -> Any:
        with self._store_lock:
            return self._open_store()

    def _open_store(self) -> Any:
        if self._store is None:
            from obstore.store import S3Store  # imported where flat files are used, only

            key, secret, region = self._credentials
            config: dict[str, Any] = (
                {"access_key_id": key, "secret_access_key": secret}
                if key
                else {"skip_signature": True}
            )
            self._store = S3Store(
                self.bucket,
                config={"endpoint": self.endpoint, "region": region, **config},  # type: ignore[arg-type]
                client_options={"allow_http": self.endpoint.startswith("http://")},
            )
        return self._store

    def url(self, file: ArchiveFile) -> str:
        return f"s3://{self.bucket}/{file.key} at {self.endpoint}"

    def key(self, day: date) -> str:
        return f"{self.prefix}/{day:%Y}/{day:%m}/{day:%Y-%m-%d}.csv.gz"

    def plan(
        self, symbols: Sequence[str], partitions: Sequence[PartitionWindow], *, now: datetime
    ) -> list[ArchiveFile]:
        days = sorted({p.start.astimezone(NEW_YORK).date() for p in partitions})
        files = []
        for day in days:
            start = datetime.combine(day, time(), tzinfo=NEW_YORK)
            if start + self.ready_after > now:
                continue
            end = datetime.combine(day + timedelta(days=1), time(), tzinfo=NEW_YORK)
            files.append(
                ArchiveFile(
                    self.key(day), start.astimezone(UTC), end.astimezone(UTC), tuple(symbols)
                )
            )
        return files

    def _error(self, file: ArchiveFile, exc: Exception) -> ArchiveError:
        first = redact(str(exc)).splitlines()[0] if str(exc) else type(exc).__name__
        return self.error(file, f"could not be read: {first[:300]}")

    def version(self, file: ArchiveFile) -> UpstreamVersion | None:
        import obstore

        try:
            meta = obstore.head(self.store(), file.key)
        except FileNotFoundError:
            return None
        except PermissionError:
            # Massive: "a 403 does not say why: the file may be outside your plan or its
            # history, not yet published, or blocked by unsigned agreements".
            logger.warning(
                "massive flat files: %s answered 403 (outside the plan, not yet published, or "
                "the S3 keys refused): its window goes to the REST API",
                self.url(file),
            )
            return None
        except Exception as exc:  # obstore's errors: connection, 5xx after its retries
            raise self._error(file, exc) from None
        etag = str(meta.get("e_tag") or "").strip('"')
        return UpstreamVersion(f"etag:{etag}", size=int(meta["size"]))

    def download(self, file: ArchiveFile, into: Path) -> Download:
        import obstore

        try:
            result = obstore.get(self.store(), file.key)
            return write_stream(
                into, (bytes(chunk) for chunk in result.stream(min_chunk_size=CHUNK))
            )
        except FileNotFoundError:
            raise self.error(file, "disappeared between listing and download") from None
        except Exception as exc:
            raise self._error(file, exc) from None

    def verify(self, file: ArchiveFile, download: Download, version: UpstreamVersion) -> None:
        super().verify(file, download, version)
        etag = version.token.removeprefix("etag:")
        # A single-part upload's ETag is the MD5 of its bytes; a multipart one ("<md5>-<n>")
        # is not, and is checked by size and the gzip stream's own CRC instead.
        if re.fullmatch(r"[0-9a-f]{32}", etag) and download.md5 != etag:
            raise self.error(
                file,
                f"fails its checksum: MD5 {download.md5} received, its ETag is {etag}",
                checksum=True,
            )

    def split(self, file: ArchiveFile, path: Path) -> dict[str, SymbolRows]:
        """One pass over the day's file, line by line: only the source's symbols' lines are
        kept (a few thousand), whatever the number of tickers in the file."""
        wanted = set(file.symbols)
        lines: dict[str, list[bytes]] = {symbol: [] for symbol in wanted}
        try:
            with gzip.open(path, "rb") as stream:
                header = stream.readline()
                names = tuple(header.decode("ascii", "replace").strip().split(","))
                if set(names) != set(FLATFILE_COLUMNS):
                    raise self.error(
                        file, f"has header {header[:200]!r}, expected {','.join(FLATFILE_COLUMNS)}"
                    )
                for line in stream:
                    ticker = line[: line.find(b",")].decode("ascii", "replace")
                    if ticker in wanted:
                        lines[ticker].append(line if line.endswith(b"\n") else line + b"\n")
        except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
            raise self.error(file, f"is not a whole gzip file (cut short?): {exc}") from None
        pieces = {}
        for symbol in file.symbols:
            body = header + b"".join(lines[symbol])
            frame = self._frame(body, symbol=symbol, where=self.url(file))
            first, last = _span(frame)
            if first is not None and (first < file.start or last >= file.end):  # type: ignore[operator]
                raise self.error(
                    file, f"holds {symbol} bars from {first} to {last}, outside its day"
                )
            pieces[symbol] = SymbolRows(body, frame.height)
        return pieces

    def _frame(self, body: bytes, *, symbol: str, where: str) -> pl.DataFrame:
        try:
            raw = pl.read_csv(
                io.BytesIO(body),
                has_header=True,
                schema_overrides={name: pl.String() for name in FLATFILE_COLUMNS},
            )
            missing = set(FLATFILE_COLUMNS) - set(raw.columns)
            if missing:
                raise ValueError(f"columns {sorted(missing)} are missing")
            frame = pl.DataFrame(
                [
                    pl.Series(
                        "ts", raw.get_column("window_start").cast(pl.Int64, strict=True) // 1000
                    )
                    .cast(pl.Datetime("us"))
                    .dt.replace_time_zone("UTC"),
                    *(
                        raw.get_column(name).cast(pl.Float64, strict=True)
                        for name in ("open", "high", "low", "close", "volume")
                    ),
                    raw.get_column("transactions").cast(pl.Int64, strict=True).alias("trades"),
                ]
            )
            tickers = raw.get_column("ticker")
            if raw.height and not (tickers == symbol).all():
                raise ValueError(f"rows of another ticker than {symbol}")
        except (pl.exceptions.PolarsError, ValueError) as exc:
            raise _rows_refused(
                self, "massive flat files", symbol, where, "minute aggregates", exc
            ) from None
        _no_empty_field(self, frame, "massive flat files", symbol, where)
        return canonical_bars(frame, symbol=symbol)  # vwap: null, the files have none

    def parse_pages(
        self, pages: Sequence[tuple[str, bytes]], *, partition: str | None = None
    ) -> ParsedPages:
        return _parsed_pages(self._frame, pages, partition=partition)


# dataset -> format, for core/bars: parsing needs no endpoint, so one instance of each serves
# every snapshot cut from its archive.
_PARSERS: dict[str, ArchiveFormat] = {
    BinanceVision.dataset: BinanceVision(),
    MassiveFlatFiles.dataset: MassiveFlatFiles(),
}


def archive_parser(dataset: str) -> ArchiveFormat | None:
    """The format whose snapshots are of ``dataset``; None for an API response's dataset."""
    return _PARSERS.get(dataset)


# The providers with a bulk archive, and the format of each.
ARCHIVE_PROVIDERS = ("binance", "polygon")


def archive_format(
    provider: str,
    *,
    url: str | None = None,
    bucket: str | None = None,
    prefix: str | None = None,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
) -> ArchiveFormat:
    """The bulk archive of ``provider`` at ``url`` (None: the provider's own)."""
    if provider == "binance":
        return BinanceVision(url or BINANCE_VISION_URL)
    if provider == "polygon":
        return MassiveFlatFiles(
            url or MASSIVE_FLATFILES_URL,
            bucket=bucket or MASSIVE_BUCKET,
            prefix=prefix or MASSIVE_MINUTE_AGGS,
            access_key_id=access_key_id,
            secret_access_key=secret_access_key,
        )
    raise InvalidInputError(
        f"provider {provider} has no bulk archive: archives exist for "
        f"{', '.join(ARCHIVE_PROVIDERS)} (Binance public data, Massive flat files)"
    )
