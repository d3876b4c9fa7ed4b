"""Massive (Polygon) flat files: US stocks minute aggregates on an S3 endpoint (moto's server).

Follows Massive's flat-files quickstart, the stocks minute-aggregates page and the knowledge
base's "how to get started with S3":

* an S3-compatible endpoint (``https://files.massive.com``), bucket ``flatfiles``, with S3
  access/secret keys of their own (not the REST API key); here moto's ``ThreadedMotoServer``
  on loopback, which takes any keys;
* key ``us_stocks_sip/minute_aggs_v1/YYYY/MM/YYYY-MM-DD.csv.gz``: one gzip CSV per trading day
  (the New York date) holding every ticker, header
  ``ticker,volume,open,close,high,low,window_start,transactions``, ``window_start`` in Unix
  nanoseconds, sorted by ticker then ``window_start``; no VWAP column;
* "Data for each trading day is available by approximately 11:00 AM ET the following day"
  (:func:`ready_at`); files are sometimes replaced (:meth:`MassiveFlatFiles.replace`);
* flat files are not split-adjusted: the rows are what traded.

So the rows of a ticker are the REST emulator's ``adjusted=false`` aggregates
(``tests.emulators.polygon.aggregate_bars`` with the same seed and calendar, no split
adjustment, nothing announced) for the New York day, the numbers written as Python's shortest
``repr`` so the text equals the JSON number REST sends. (Real files are not always so tidy:
Massive's own examples show values such as ``69.86160000000000``; a reader should parse
numbers, not compare text.)

moto keeps its state per process, not per server: two of these running at once in one
process share the bucket, so ``start()`` refuses a bucket that already exists and ``stop()``
empties and deletes it.
"""

from __future__ import annotations

import dataclasses
import gzip
import logging
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime, time, timedelta
from types import TracebackType
from typing import Any, Self
from zoneinfo import ZoneInfo

import boto3
from moto.server import ThreadedMotoServer

from resources.simulator.data import checked_calendars
from tests.emulators.polygon import TICKER_RE, aggregate_bars
from tests.helpers import free_port

__all__ = [
    "BUCKET",
    "HEADER",
    "MINUTE_AGGS_PREFIX",
    "FlatFileRow",
    "S3Request",
    "MassiveFlatFiles",
    "day_csv",
    "day_window_ms",
    "flatfile_key",
    "ready_at",
]

BUCKET = "flatfiles"
MINUTE_AGGS_PREFIX = "us_stocks_sip/minute_aggs_v1"
HEADER = "ticker,volume,open,close,high,low,window_start,transactions"
REGION = "us-east-1"
NEW_YORK = ZoneInfo("America/New_York")
# "available by approximately 11:00 AM ET the following day"
READY_AT_ET = time(11, 0)
EXTRA_CALENDAR = "XNYS"
# moto's server is werkzeug's: one INFO record per request on this logger, args (request
# line, status, size), the request line possibly ANSI-coloured.
_WERKZEUG = logging.getLogger("werkzeug")
_ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")
_REQUEST_RE = re.compile(r"^(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[0-9.]+$")


@dataclasses.dataclass(frozen=True)
class FlatFileRow:
    """One line of a minute-aggregates file (``window_start`` in Unix nanoseconds)."""

    ticker: str
    volume: int
    open: float
    close: float
    high: float
    low: float
    window_start: int
    transactions: int

    def csv(self) -> str:
        # repr is the shortest text that reads back as the same float: what json.dumps
        # (the REST emulator's encoder) writes too.
        return (
            f"{self.ticker},{self.volume},{self.open!r},{self.close!r},{self.high!r},"
            f"{self.low!r},{self.window_start},{self.transactions}"
        )


@dataclasses.dataclass(frozen=True)
class S3Request:
    """One request the S3 server answered: method, ``/bucket/key?query`` path, status, and
    for a 200 GET of an object uploaded here its size then (else 0)."""

    method: str
    path: str
    status: int
    size: int = 0


class _RequestLog(logging.Filter):
    """Reads moto's (werkzeug's) per-request log records into a list, and keeps them off
    stderr. The logger is process-wide: this assumes one moto server at a time, as the
    shared bucket state does anyway."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.requests: list[S3Request] = []
        self.sizes: dict[str, int] = {}  # "/bucket/key" -> size of the object now

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if not (
            isinstance(args, tuple) and len(args) == 3 and str(record.msg).endswith('"%s" %s %s')
        ):
            return True
        match = _REQUEST_RE.fullmatch(_ANSI_RE.sub("", str(args[0])))
        if match is None or not str(args[1]).isdigit():
            return True
        method, path, status = match["method"], match["path"], int(str(args[1]))
        with self.lock:
            size = self.sizes.get(path, 0) if (method, status) == ("GET", 200) else 0
            self.requests.append(S3Request(method, path, status, size))
        return False


def flatfile_key(day: date, *, prefix: str = MINUTE_AGGS_PREFIX) -> str:
    """``us_stocks_sip/minute_aggs_v1/2026/01/2026-01-16.csv.gz``."""
    return f"{prefix}/{day:%Y}/{day:%m}/{day.isoformat()}.csv.gz"


def day_window_ms(day: date) -> tuple[int, int]:
    """The New York day as inclusive epoch milliseconds: its midnight to the next one - 1."""
    start = datetime.combine(day, time(0), NEW_YORK)
    end = datetime.combine(day + timedelta(days=1), time(0), NEW_YORK)
    return int(start.timestamp()) * 1000, int(end.timestamp()) * 1000 - 1


def ready_at(day: date) -> datetime:
    """When the file of ``day`` is documented to be available (11:00 ET the next day)."""
    return datetime.combine(day + timedelta(days=1), READY_AT_ET, NEW_YORK)


def _rows(tickers: Mapping[str, str | None], day: date, seed: int) -> list[FlatFileRow]:
    from_ms, to_ms = day_window_ms(day)
    out: list[FlatFileRow] = []
    for ticker in sorted(tickers):
        for agg in aggregate_bars(ticker, from_ms, to_ms, seed=seed, calendar=tickers[ticker]):
            out.append(
                FlatFileRow(
                    ticker=ticker,
                    volume=agg["v"],
                    open=agg["o"],
                    close=agg["c"],
                    high=agg["h"],
                    low=agg["l"],
                    window_start=agg["t"] * 1_000_000,
                    transactions=agg["n"],
                )
            )
    return out


def day_csv(rows: Iterable[FlatFileRow]) -> bytes:
    """The CSV text of a file holding ``rows`` (header first, ``\\n`` line ends)."""
    return "".join(line + "\n" for line in [HEADER, *(row.csv() for row in rows)]).encode()


def _gzip(data: bytes) -> bytes:
    # mtime=0 and no file name: the same rows give the same bytes, hence the same ETag.
    return gzip.compress(data, compresslevel=6, mtime=0)


def _default_change(rows: list[FlatFileRow]) -> list[FlatFileRow]:
    if not rows:
        return rows
    first = rows[0]
    moved = round(first.close * 1.001, 4)
    changed = [
        dataclasses.replace(first, close=moved, high=max(first.high, moved)),
        *rows[1:],
    ]
    if len(changed) > 2:
        del changed[len(changed) // 2]
    return changed


class MassiveFlatFiles:
    """Massive's flat-files bucket on a loopback moto server. See the module docstring.

    ``tickers`` maps each ticker to its exchange calendar (``{"AAPL": "XNYS"}``; None: trades
    every minute, as for the REST emulator). ``extra_tickers`` adds that many generated
    ``ZZ0001``... tickers on XNYS to every file, so a reader has to filter.
    """

    def __init__(
        self,
        tickers: Mapping[str, str | None],
        *,
        seed: int = 0,
        extra_tickers: int = 0,
        prefix: str = MINUTE_AGGS_PREFIX,
    ) -> None:
        bad = sorted(t for t in tickers if not TICKER_RE.fullmatch(t))
        if bad:
            raise ValueError(f"tickers {bad}: not Massive tickers")
        if not 0 <= extra_tickers <= 9999:
            raise ValueError("extra_tickers must be in 0..9999")
        # Same check as the REST emulator: a calendar only for a plain stock ticker.
        checked_calendars({t: c for t, c in tickers.items() if c is not None})
        extra = {f"ZZ{i:04d}": EXTRA_CALENDAR for i in range(1, extra_tickers + 1)}
        clash = sorted(set(extra) & set(tickers))
        if clash:
            raise ValueError(f"tickers {clash} clash with the generated extra tickers")
        self.tickers: dict[str, str | None] = {**extra, **tickers}
        self.seed = seed
        self.prefix = prefix.strip("/")
        self.bucket = BUCKET
        self.region = REGION
        self.access_key_id = "FLATFILES-TEST-ACCESS-KEY"
        self.secret_access_key = "flatfiles-test-secret-key"
        self._server: ThreadedMotoServer | None = None
        self._port = 0
        self._client: Any = None
        self._log = _RequestLog()
        self._werkzeug_level = logging.NOTSET

    # -- life cycle --------------------------------------------------------------------

    @property
    def endpoint_url(self) -> str:
        if self._server is None:
            raise RuntimeError("MassiveFlatFiles is not started")
        return f"http://127.0.0.1:{self._port}"

    def start(self) -> Self:
        if self._server is not None:
            return self
        self._port = free_port()
        self._werkzeug_level = _WERKZEUG.level
        if _WERKZEUG.getEffectiveLevel() > logging.INFO or _WERKZEUG.level == logging.NOTSET:
            _WERKZEUG.setLevel(logging.INFO)  # the request records must exist to be counted
        _WERKZEUG.addFilter(self._log)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=self._port, verbose=False)
        server.start()
        self._server = server
        try:
            self._client = self.client()
            existing = {b["Name"] for b in self._client.list_buckets().get("Buckets", [])}
            if self.bucket in existing:
                raise RuntimeError(
                    f"bucket {self.bucket!r} already exists in this process's moto state: "
                    "another MassiveFlatFiles is running (stop it first)"
                )
            self._client.create_bucket(Bucket=self.bucket)
        except BaseException:
            self._server = None
            server.stop()
            self._unhook()
            raise
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        try:
            listed = self._client.list_objects_v2(Bucket=self.bucket).get("Contents", [])
            while listed:
                for obj in listed:
                    self._client.delete_object(Bucket=self.bucket, Key=obj["Key"])
                listed = self._client.list_objects_v2(Bucket=self.bucket).get("Contents", [])
            self._client.delete_bucket(Bucket=self.bucket)
        finally:
            self._client = None
            server.stop()
            self._unhook()

    def _unhook(self) -> None:
        _WERKZEUG.removeFilter(self._log)
        _WERKZEUG.setLevel(self._werkzeug_level)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def client(self) -> Any:
        """A boto3 S3 client of the endpoint with this server's keys."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
        )

    # -- files -------------------------------------------------------------------------

    def key_for(self, day: date) -> str:
        return flatfile_key(day, prefix=self.prefix)

    def day_rows(self, day: date) -> list[FlatFileRow]:
        """The rows of ``day``'s file as generated (every ticker, sorted)."""
        return _rows(self.tickers, day, self.seed)

    def day_file(self, day: date) -> bytes:
        """The gzip bytes of ``day``'s file as generated (what :meth:`publish` uploads)."""
        return _gzip(day_csv(self.day_rows(day)))

    def publish(self, day: date) -> str:
        """Upload ``day``'s file (even a day without a session: an empty file); its key."""
        return self._put(day, self.day_file(day))

    def publish_range(self, first: date, last: date) -> list[str]:
        """Upload the file of every day ``first..last`` that has a row; their keys."""
        keys = []
        day = first
        while day <= last:
            rows = self.day_rows(day)
            if rows:
                keys.append(self._put(day, _gzip(day_csv(rows))))
            day += timedelta(days=1)
        return keys

    def replace(
        self,
        day: date,
        *,
        change: Callable[[list[FlatFileRow]], list[FlatFileRow]] | None = None,
    ) -> str:
        """Upload ``day``'s file again with ``change(rows)`` (default: the first row's close
        moves, the middle row is dropped): other bytes, a new ETag. Its key."""
        rows = (change or _default_change)(self.day_rows(day))
        return self._put(day, _gzip(day_csv(rows)))

    def put_truncated(self, day: date, *, keep_bytes: int | None = None) -> str:
        """Upload ``day``'s gzip cut to ``keep_bytes`` (default: half). Its key."""
        data = self.day_file(day)
        return self._put(day, data[: len(data) // 2 if keep_bytes is None else keep_bytes])

    def requests(self) -> list[S3Request]:
        """Every request the S3 server has answered since ``start()``, oldest first (this
        class's own uploads and checks included)."""
        with self._log.lock:
            return list(self._log.requests)

    def stats(self) -> dict[str, int]:
        """Of requests for this bucket's objects: ``gets`` (whole-object GETs answered 200),
        ``bytes_served`` (their objects' sizes when served), ``ranged_gets`` (206) and
        ``not_found`` (GETs and HEADs answered 404)."""
        with self._log.lock:
            entries = list(self._log.requests)
        gets = ranged = missing = 0
        bytes_served = 0
        base = f"/{self.bucket}/"
        for entry in entries:
            key = entry.path[len(base) :].split("?", 1)[0]
            if not (entry.path.startswith(base) and key and entry.method in ("GET", "HEAD")):
                continue
            if entry.status == 404:
                missing += 1
            elif entry.method == "GET" and entry.status == 200:
                gets += 1
                bytes_served += entry.size
            elif entry.method == "GET" and entry.status == 206:
                ranged += 1
        return {
            "gets": gets,
            "bytes_served": bytes_served,
            "ranged_gets": ranged,
            "not_found": missing,
        }

    def etag(self, day: date) -> str:
        """The ETag (quoted, as S3 sends it) of ``day``'s object now."""
        return str(self._s3().head_object(Bucket=self.bucket, Key=self.key_for(day))["ETag"])

    def _s3(self) -> Any:
        if self._client is None:
            raise RuntimeError("MassiveFlatFiles is not started")
        return self._client

    def _put(self, day: date, data: bytes) -> str:
        key = self.key_for(day)
        # No Content-Encoding: the object *is* a .gz file, and an HTTP client would otherwise
        # be entitled to inflate it on the way.
        self._s3().put_object(Bucket=self.bucket, Key=key, Body=data)
        with self._log.lock:
            self._log.sizes[f"/{self.bucket}/{key}"] = len(data)
        return key
