"""Binance public data (https://data.binance.vision) spot 1-minute klines archives on loopback.

Follows the binance/binance-public-data README:

* ``/data/spot/daily/klines/<SYMBOL>/<interval>/<SYMBOL>-<interval>-<YYYY-MM-DD>.zip`` and
  ``/data/spot/monthly/klines/<SYMBOL>/<interval>/<SYMBOL>-<interval>-<YYYY-MM>.zip``, each with
  a ``<same>.zip.CHECKSUM`` holding ``sha256sum``'s line: ``<64 hex>  <zip name>\\n``.
* A zip holds one member, ``<zip name without .zip>.csv``: the 12 fields of ``/api/v3/klines``
  per row, comma-separated, no header (spot), in time order, lines ending ``\\n``.
* "The timestamp for SPOT Data from January 1st 2025 onwards will be in microseconds": open
  and close time of rows from 2025-01-01 are in microseconds (close = open + 60 s - 1 µs),
  earlier ones in milliseconds as REST sends them. The boundary is a month boundary, so every
  file is in one unit.
* "daily data will be uploaded in the next day, and we start to upload monthly data from the
  beginning of next month": a daily file appears ``daily_lag_s`` after its UTC day ends, a
  monthly one ``monthly_lag_s`` after its month ends (a later README says "the first monday
  of the month"; tune ``monthly_lag_s`` for that).
* A missing key is S3's 404 ``NoSuchKey`` XML (the site is an S3 bucket behind a CDN).

Values are the REST emulator's (``tests.emulators.binance.kline_rows``, same ``seed``) but for
the two timestamps, so a test can check a bulk reader against the REST path bar for bar. A
symbol in ``listed`` has no file before its listing day, and the monthly file of its listing
month starts on that day. Only the ``1m`` interval exists here; others are 404.

Fault hooks reproduce what readers meet in practice: a file replaced after publication with
different values and a matching CHECKSUM (binance-public-data issues #413, #436), a transfer
cut short (``truncate``), a CHECKSUM that does not match (``corrupt_checksum``).
"""

from __future__ import annotations

import calendar
import hashlib
import io
import re
import time
import zipfile
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from email.message import Message
from email.utils import format_datetime
from typing import Any
from xml.sax.saxutils import escape

from tests.emulators.base import Clock, LoopbackEmulator, Reply
from tests.emulators.binance import BINANCE_SYMBOL_RE, MINUTE_MS, kline_rows

__all__ = [
    "ARCHIVE_PATH_RE",
    "MICROSECONDS_FROM",
    "BinanceArchiveEmulator",
    "Period",
    "archive_csv",
    "archive_name",
    "archive_path",
    "archive_rows",
    "archive_zip",
    "checksum_line",
    "no_such_key_body",
    "period_days",
]

# "The timestamp for SPOT Data from January 1st 2025 onwards will be in microseconds."
MICROSECONDS_FROM = date(2025, 1, 1)
INTERVAL = "1m"
DAY_S = 86_400

# A ``date`` names a daily file, a ``"YYYY-MM"`` string a monthly one.
Period = date | str

ARCHIVE_PATH_RE = re.compile(
    r"^/data/spot/(?P<freq>daily|monthly)/klines/(?P<symbol>[^/]+)/(?P<interval>[^/]+)/"
    r"(?P<name>[^/]+?)(?P<checksum>\.CHECKSUM)?$"
)
_MONTH_RE = re.compile(r"^[0-9]{4}-(0[1-9]|1[0-2])$")
_DAY_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
# Generated data covers 1970..2099 (resources.simulator.walk.SUPPORTED_RANGE).
_FIRST_DAY, _LAST_DAY = date(1970, 1, 1), date(2099, 12, 31)


# --------------------------------------------------------------------------------------
# Files, as module functions so tests can build what a reader should have received
# --------------------------------------------------------------------------------------


def period_days(period: Period) -> tuple[date, date]:
    """First and last day (inclusive) a daily (``date``) or monthly (``"YYYY-MM"``) file covers."""
    if isinstance(period, datetime):
        raise TypeError("period: a date for a daily file or 'YYYY-MM' for a monthly one")
    if isinstance(period, date):
        return period, period
    if not isinstance(period, str) or not _MONTH_RE.fullmatch(period):
        raise ValueError(
            f"period {period!r}: a date for a daily file or 'YYYY-MM' for a monthly one"
        )
    year, month = int(period[:4]), int(period[5:])
    return date(year, month, 1), date(year, month, calendar.monthrange(year, month)[1])


def _label(period: Period) -> str:
    first, last = period_days(period)
    return first.isoformat() if first == last else first.isoformat()[:7]


def archive_name(symbol: str, period: Period) -> str:
    """``BTCUSDT-1m-2024-01-05.zip`` / ``BTCUSDT-1m-2024-01.zip``."""
    return f"{symbol}-{INTERVAL}-{_label(period)}.zip"


def archive_path(symbol: str, period: Period) -> str:
    """The URL path of a file, e.g. ``/data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2024-01-05.zip``
    (append ``.CHECKSUM`` for its checksum file)."""
    first, last = period_days(period)
    freq = "daily" if first == last else "monthly"
    return f"/data/spot/{freq}/klines/{symbol}/{INTERVAL}/{archive_name(symbol, period)}"


def _day_ms(day: date) -> int:
    return (day - _FIRST_DAY).days * DAY_S * 1000


def archive_rows(symbol: str, start: date, end: date, *, seed: int = 0) -> list[list[Any]]:
    """The kline rows of the days ``start..end`` (inclusive) as the archive has them: those of
    ``kline_rows`` with open and close time in microseconds from 2025-01-01."""
    rows = kline_rows(symbol, _day_ms(start), _day_ms(end + timedelta(days=1)) - 1, seed=seed)
    switch_ms = _day_ms(MICROSECONDS_FROM)
    for row in rows:
        if row[0] >= switch_ms:
            row[0] = row[0] * 1000
            row[6] = row[0] + MINUTE_MS * 1000 - 1
    return rows


def _csv(rows: list[list[Any]]) -> bytes:
    return "".join(",".join(str(v) for v in row) + "\n" for row in rows).encode("ascii")


def archive_csv(symbol: str, start: date, end: date, *, seed: int = 0) -> bytes:
    """The CSV member of the file of the days ``start..end`` (one day, or a whole month)."""
    return _csv(archive_rows(symbol, start, end, seed=seed))


def _zip(member: str, csv: bytes, day: date) -> bytes:
    # A fixed member time (midnight after the period) and no extras: the same file has the
    # same bytes, hence the same sha256, every time it is built.
    info = zipfile.ZipInfo(member, date_time=(day.year, day.month, day.day, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(info, csv, compresslevel=6)
    return buffer.getvalue()


def _zip_rows(symbol: str, period: Period, rows: list[list[Any]]) -> bytes:
    name = archive_name(symbol, period)
    return _zip(
        name.removesuffix(".zip") + ".csv", _csv(rows), period_days(period)[1] + timedelta(1)
    )


def archive_zip(symbol: str, period: Period, *, seed: int = 0) -> bytes:
    """The zip of a whole day or month (no listing date applied)."""
    first, last = period_days(period)
    return _zip_rows(symbol, period, archive_rows(symbol, first, last, seed=seed))


def checksum_line(data: bytes, name: str) -> bytes:
    """The ``.CHECKSUM`` body of ``data`` named ``name``: ``sha256sum`` output."""
    return f"{hashlib.sha256(data).hexdigest()}  {name}\n".encode("ascii")


def no_such_key_body(key: str) -> bytes:
    """S3's 404 body for a missing key (``key`` without the leading slash)."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchKey</Code>'
        "<Message>The specified key does not exist.</Message>"
        f"<Key>{escape(key)}</Key></Error>"
    ).encode()


# --------------------------------------------------------------------------------------
# The emulator
# --------------------------------------------------------------------------------------


@dataclass
class _Fault:
    kind: str  # "truncate" | "checksum"
    keep_bytes: int | None = None
    times: int | None = None  # serves left before it heals; None: until restore()


def _parse_period(freq: str, label: str) -> Period | None:
    if freq == "daily":
        if not _DAY_RE.fullmatch(label):
            return None
        try:
            return date.fromisoformat(label)
        except ValueError:
            return None
    return label if _MONTH_RE.fullmatch(label) else None


class BinanceArchiveEmulator(LoopbackEmulator):
    """data.binance.vision's spot 1m klines files. See the module docstring.

    ``now`` (epoch seconds, default ``time.time``) decides what is published and stamps the
    request log. ``symbols`` (default: any ``^[A-Z0-9]{2,20}$``) limits the symbols that have
    files; ``listed`` maps a symbol to its listing day.
    """

    server_header = "AmazonS3"

    def __init__(
        self,
        *,
        seed: int = 0,
        now: Clock | None = None,
        daily_lag_s: float = 6 * 3600,
        monthly_lag_s: float = 2 * 86400,
        listed: Mapping[str, date] | None = None,
        symbols: Collection[str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        log_size: int = 50_000,
    ) -> None:
        super().__init__(host=host, port=port, clock=now or time.time, log_size=log_size)
        self.seed = seed
        self.daily_lag_s = float(daily_lag_s)
        self.monthly_lag_s = float(monthly_lag_s)
        self.listed = dict(listed or {})
        self.symbols = frozenset(symbols) if symbols is not None else None
        self._cache: dict[str, bytes] = {}  # zip path -> the file as generated
        self._replaced: dict[str, bytes] = {}  # zip path -> the file after reupload()
        self._faults: dict[str, _Fault] = {}
        self._reset_state()

    # -- test controls -----------------------------------------------------------------

    def reupload(
        self,
        symbol: str,
        period: Period,
        *,
        change: Callable[[list[list[Any]]], list[list[Any]]] | None = None,
    ) -> bytes:
        """Replace the file from now on, as Binance re-uploads one: ``change`` gets its rows
        (archive timestamps) and returns the new ones; by default the first row's close moves
        and the middle row is dropped. The CHECKSUM follows the new zip. Returns the new zip."""
        path = self._checked_path(symbol, period)
        first, last = self._days(symbol, period)
        rows = archive_rows(symbol, first, last, seed=self.seed)
        rows = (change or _default_change)(rows)
        new = _zip_rows(symbol, period, rows)
        with self._lock:
            self._replaced[path] = new
        return new

    def truncate(
        self,
        symbol: str,
        period: Period,
        *,
        keep_bytes: int | None = None,
        times: int | None = None,
    ) -> None:
        """Serve the zip cut to ``keep_bytes`` (default: half of it) while its CHECKSUM holds
        the full file's sha256, like a transfer cut short; for ``times`` zip downloads (default:
        until :meth:`restore`)."""
        if keep_bytes is not None and keep_bytes < 0:
            raise ValueError("keep_bytes must be >= 0")
        path = self._checked_path(symbol, period)
        with self._lock:
            self._faults[path] = _Fault("truncate", keep_bytes, times)

    def corrupt_checksum(self, symbol: str, period: Period, *, times: int | None = None) -> None:
        """Serve the normal zip with a CHECKSUM of other bytes, for ``times`` CHECKSUM downloads
        (default: until :meth:`restore`)."""
        path = self._checked_path(symbol, period)
        with self._lock:
            self._faults[path] = _Fault("checksum", None, times)

    def restore(self, symbol: str, period: Period) -> None:
        """End a ``truncate``/``corrupt_checksum`` fault (a re-upload stays)."""
        with self._lock:
            self._faults.pop(self._checked_path(symbol, period), None)

    def published_at(self, symbol: str, period: Period) -> float:
        """Epoch seconds from which the file is served."""
        first, last = period_days(period)
        end_s = (_day_ms(last + timedelta(days=1))) / 1000
        return end_s + (self.daily_lag_s if first == last else self.monthly_lag_s)

    def stats(self) -> dict[str, Any]:
        base = super().stats()
        with self._lock:
            base.update(
                zips_served=self._zips_served,
                checksums_served=self._checksums_served,
                bytes_served=self._bytes_served,
                not_found=self._not_found,
            )
        return base

    # -- hooks -------------------------------------------------------------------------

    def _reset_state(self) -> None:
        # reset() keeps re-uploads and faults: they are the files' state, not counters.
        self._zips_served = 0
        self._checksums_served = 0
        self._bytes_served = 0
        self._not_found = 0

    def is_data_path(self, path: str) -> bool:
        return path.startswith("/data/")

    def handle(
        self, method: str, path: str, query: dict[str, list[str]], headers: Message
    ) -> Reply:
        if method != "GET":
            body = (
                b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
                b"<Message>Access Denied</Message></Error>"
            )
            return 403, {"Content-Type": "application/xml"}, body
        found = self._lookup(path)
        if found is None:
            with self._lock:
                self._not_found += 1
            return 404, {"Content-Type": "application/xml"}, no_such_key_body(path.lstrip("/"))
        body, is_checksum, published = found
        with self._lock:
            if is_checksum:
                self._checksums_served += 1
            else:
                self._zips_served += 1
            self._bytes_served += len(body)
        reply_headers = {
            "Content-Type": "text/plain" if is_checksum else "application/zip",
            "ETag": f'"{hashlib.md5(body, usedforsecurity=False).hexdigest()}"',
            "Last-Modified": format_datetime(datetime.fromtimestamp(published, UTC), usegmt=True),
        }
        return 200, reply_headers, body

    # -- files -------------------------------------------------------------------------

    def _checked_path(self, symbol: str, period: Period) -> str:
        if not BINANCE_SYMBOL_RE.fullmatch(symbol):
            raise ValueError(f"symbol {symbol!r}: Binance symbols match ^[A-Z0-9]{{2,20}}$")
        period_days(period)
        return archive_path(symbol, period)

    def _days(self, symbol: str, period: Period) -> tuple[date, date]:
        first, last = period_days(period)
        listed = self.listed.get(symbol)
        return (max(first, listed), last) if listed is not None else (first, last)

    def _lookup(self, path: str) -> tuple[bytes, bool, float] | None:
        """(body, is the CHECKSUM, published at) of a served file; None for a 404."""
        match = ARCHIVE_PATH_RE.fullmatch(path)
        if match is None or match["interval"] != INTERVAL:
            return None
        symbol = match["symbol"]
        if not BINANCE_SYMBOL_RE.fullmatch(symbol):
            return None
        if self.symbols is not None and symbol not in self.symbols:
            return None
        prefix = f"{symbol}-{INTERVAL}-"
        name = match["name"]
        if not (name.startswith(prefix) and name.endswith(".zip")):
            return None
        period = _parse_period(match["freq"], name[len(prefix) : -len(".zip")])
        if period is None:
            return None
        first, last = self._days(symbol, period)
        if first > last or first < _FIRST_DAY or last > _LAST_DAY:
            return None  # before the listing, or outside the generated range
        published = self.published_at(symbol, period)
        if self.clock() < published:
            return None
        zip_path = archive_path(symbol, period)
        is_checksum = bool(match["checksum"])
        return (
            self._body(zip_path, symbol, (first, last), period, is_checksum),
            is_checksum,
            published,
        )

    def _body(
        self,
        zip_path: str,
        symbol: str,
        days: tuple[date, date],
        period: Period,
        is_checksum: bool,
    ) -> bytes:
        """The zip or CHECKSUM body now served at ``zip_path``, faults applied."""
        with self._lock:
            full = self._replaced.get(zip_path) or self._cache.get(zip_path)
        if full is None:
            # Built outside the lock (a month takes about a second); a race builds it twice.
            full = _zip_rows(symbol, period, archive_rows(symbol, *days, seed=self.seed))
            with self._lock:
                self._cache[zip_path] = full
        name = zip_path.rsplit("/", 1)[1]
        with self._lock:
            fault = self._faults.get(zip_path)
            if fault is None or (fault.kind == "checksum") != is_checksum:
                return checksum_line(full, name) if is_checksum else full
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    del self._faults[zip_path]
        if fault.kind == "checksum":
            return checksum_line(full + b"\0", name)
        keep = len(full) // 2 if fault.keep_bytes is None else fault.keep_bytes
        return full[:keep]


def _default_change(rows: list[list[Any]]) -> list[list[Any]]:
    if not rows:
        return rows
    changed = [list(row) for row in rows]
    close = float(changed[0][4])
    changed[0][4] = f"{close * 1.001:.8f}"
    changed[0][2] = f"{max(float(changed[0][2]), close * 1.001):.8f}"  # keep high >= close
    if len(changed) > 2:
        del changed[len(changed) // 2]
    return changed
