"""The one reader of configuration: environment variables in, typed and frozen ``Settings`` out.

Every setting is declared once in ``SETTINGS`` — its variable, its default and what it means
(the table of ``docs/configuration.md`` is checked against this list by a test) — and parsed
once in ``Settings.from_env``, when Dagster loads the definitions, never at import time. A bad value
fails the load with an error naming the variable and what to do, before any request or write:
a directory that cannot be written, a warehouse URL libpq would refuse and a base URL that is
not http(s) included, not only values out of range. Secrets (``FIN_API_KEY``,
``FIN_ALERT_WEBHOOK_URL``) are never read into settings: only whether they are set, so that
``fin_assets/definitions.py`` can bind them as ``dg.EnvVar`` and their values stay out of run
config, the UI and event logs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from fin_assets.lib.freshness import FreshnessSettings
from resources.calendars import TWENTY_FOUR_SEVEN, validate_calendar_name
from resources.errors import InvalidInputError
from resources.http.client import DEFAULT_MAX_ATTEMPTS, DEFAULT_MAX_WAIT_S
from resources.notify.alert import PAYLOAD_FORMATS, PayloadFormat
from resources.providers import get_adapter
from resources.providers.base import ProviderAdapter
from resources.ratelimit.policy import QuotaPolicy
from resources.raw.ingest import DEFAULT_LATE_DATA_RETRIES, DEFAULT_LATE_DATA_RETRY_S
from resources.storage.parquet import ParquetWarehouse
from resources.storage.warehouse import warehouse_from_url
from resources.validation import directory_problem, parse_symbols, validate_http_url

PROJECT_ROOT = Path(__file__).resolve().parents[2]
API_KEY_VARIABLE = "FIN_API_KEY"
WEBHOOK_VARIABLE = "FIN_ALERT_WEBHOOK_URL"
QUOTA_STORE_FILE = "fin_assets_quota.sqlite"
# Caches (exchange sessions) live next to the quota state: under DAGSTER_HOME, else under
# FIN_DATA_DIR; never in the checkout, which a deployment mounts read-only.
CACHE_DIR = "fin_assets_cache"
WAREHOUSE_FORMS = "an absolute directory (the Parquet lake) or postgresql://user@host:5432/db"
EXECUTORS = ("multiprocess", "in_process", "celery")
# RabbitMQ's own default account, on loopback: a real deployment names its broker.
DEFAULT_CELERY_BROKER = "amqp://guest:guest@127.0.0.1:5672//"
# Any of these set: the environment describes the deployment's one source (the shorthand,
# fin_assets/lib/catalog.py), instead of the sources declared in YAML.
SHORTHAND_VARIABLES = ("FIN_PROVIDER", "FIN_SYMBOLS", "FIN_API_BASE_URL")

_FRESHNESS = FreshnessSettings()


@dataclass(frozen=True)
class Setting:
    """One environment variable: its default as written in the environment, and its meaning."""

    name: str
    default: str  # "" = unset; what that means is in `meaning`
    meaning: str
    secret: bool = False  # only whether it is set is read; the value goes through dg.EnvVar


SETTINGS: tuple[Setting, ...] = (
    Setting("FIN_PROVIDER", "simulator", "provider adapter: simulator, binance, polygon"),
    Setting("FIN_API_BASE_URL", "", "empty = the provider's own base URL"),
    Setting(API_KEY_VARIABLE, "", "the provider's API key", secret=True),
    Setting("FIN_SYMBOLS", "AAPL,MSFT,GOOG,AMZN,NVDA", "the symbol universe, comma-separated"),
    Setting("FIN_CALENDAR", TWENTY_FOUR_SEVEN, "the exchange calendar of the shorthand source"),
    Setting("FIN_SOURCES_DIR", "", "empty = fin_assets/defs/: the declared sources' YAML"),
    Setting(
        "FIN_DATA_DIR", "", "empty = <project>/data: snapshots, manifests, Parquet lake, caches"
    ),
    Setting("FIN_WAREHOUSE_URL", "", "empty = <FIN_DATA_DIR>/warehouse (Parquet)"),
    Setting(
        "FIN_QUOTA_REQUESTS",
        "",
        "every source's quota unless its YAML sets one; empty = the provider's; 'learn'",
    ),
    Setting("FIN_QUOTA_WINDOW_SECONDS", "1", "the quota's window (with FIN_QUOTA_REQUESTS)"),
    Setting("FIN_QUOTA_BURST", "1", "requests allowed back to back (with FIN_QUOTA_REQUESTS)"),
    Setting("FIN_QUOTA_STORE", "", f"empty = $DAGSTER_HOME/{QUOTA_STORE_FILE}"),
    Setting("FIN_MAX_ATTEMPTS", str(DEFAULT_MAX_ATTEMPTS), "attempts per request"),
    Setting("FIN_MAX_WAIT_SECONDS", f"{DEFAULT_MAX_WAIT_S:g}", "waiting one step may do"),
    Setting(
        "FIN_LATE_DATA_RETRIES",
        str(DEFAULT_LATE_DATA_RETRIES),
        "tries again for a window the provider has not published",
    ),
    Setting(
        "FIN_LATE_DATA_RETRY_SECONDS", f"{DEFAULT_LATE_DATA_RETRY_S:g}", "seconds between them"
    ),
    Setting(WEBHOOK_VARIABLE, "", "where alerts are posted; empty = only logged", secret=True),
    Setting("FIN_ALERT_FORMAT", "slack", "'slack' or 'plain'"),
    Setting("FIN_SENSOR_INTERVAL_SECONDS", "60", "new-data and alert sensors' tick"),
    Setting("FIN_AUTOMATION_INTERVAL_SECONDS", "30", "daily tables' automation tick"),
    Setting("FIN_NEW_DATA_LOOKBACK_HOURS", "48", "new_bars_sensor's first look back"),
    Setting(
        "FIN_FRESHNESS_HOURLY_FAIL_MINUTES",
        f"{_FRESHNESS.hourly_fail_minutes:g}",
        "hourly assets are stale after this (every source unless its YAML sets it)",
    ),
    Setting(
        "FIN_FRESHNESS_HOURLY_WARN_MINUTES",
        f"{_FRESHNESS.hourly_warn_minutes:g}",
        "warn after this (0 = never)",
    ),
    Setting(
        "FIN_FRESHNESS_DAILY_DEADLINE_CRON",
        _FRESHNESS.daily_deadline_cron,
        "by when the daily tables are rebuilt, UTC (every source unless its YAML sets it)",
    ),
    Setting(
        "FIN_METRICS_CACHE_SECONDS", "5", "scrapes of fin-assets metrics share a reading this long"
    ),
    Setting(
        "FIN_EXECUTOR",
        "multiprocess",
        "where steps run: 'multiprocess' (here), 'in_process' (in the run's process) or 'celery'",
    ),
    Setting("FIN_CELERY_BROKER", DEFAULT_CELERY_BROKER, "the Celery broker, FIN_EXECUTOR=celery"),
)
DEFAULTS: dict[str, str] = {s.name: s.default for s in SETTINGS}


@dataclass(frozen=True)
class Settings:
    """Everything the code location is configured with, parsed and checked."""

    provider: str
    adapter: ProviderAdapter
    base_url: str
    has_api_key: bool
    symbols: tuple[str, ...]
    data_dir: Path
    warehouse_url: str
    quota_store: str
    # FIN_QUOTA_REQUESTS; None: the provider's documented quota, or learned (learn_quota).
    configured_quota: QuotaPolicy | None
    learn_quota: bool
    max_attempts: int
    max_wait_s: float
    late_data_retries: int
    late_data_retry_s: float
    alert_format: PayloadFormat
    has_webhook: bool
    sensor_interval_s: int
    automation_interval_s: int
    new_data_lookback_hours: int
    # The defaults of every source's freshness windows (a source's YAML may set its own).
    freshness: FreshnessSettings
    calendar: str  # FIN_CALENDAR: the shorthand source's calendar
    # Exchange sessions, computed once (resources/calendars.py): <DAGSTER_HOME or FIN_DATA_DIR>/
    # fin_assets_cache/calendars; unwritable, they are kept in each process's memory instead.
    cache_dir: Path
    sources_dir: Path | None  # FIN_SOURCES_DIR; None: fin_assets/defs/ (the component tree)
    metrics_cache_s: float  # FIN_METRICS_CACHE_SECONDS (fin_assets/tools/metrics/)
    executor: str  # FIN_EXECUTOR: one of EXECUTORS (fin_assets/dagster_internals/executors.py)
    celery_broker: str  # FIN_CELERY_BROKER (may hold a password: log it redacted)
    celery_broker_set: bool  # FIN_CELERY_BROKER is set: bind it as an env var, not a value

    def adapter_for(self, provider: str) -> ProviderAdapter:
        return self.adapter if provider == self.provider else get_adapter(provider)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        read = _Reader(env)
        provider = read.text("FIN_PROVIDER")
        adapter = get_adapter(provider)
        has_api_key = bool(env.get(API_KEY_VARIABLE))
        adapter.check_api_key(API_KEY_VARIABLE if has_api_key else None)
        data_dir = _data_dir(env)
        # One quota state for every process of the instance: a file next to it.
        instance_dir = Path(env["DAGSTER_HOME"]) if env.get("DAGSTER_HOME") else data_dir
        quota_text = read.text("FIN_QUOTA_REQUESTS").strip().lower()
        learn = quota_text == "learn"
        quota: QuotaPolicy | None = None
        window_s = read.number("FIN_QUOTA_WINDOW_SECONDS", float, minimum=0.001)
        burst = int(read.number("FIN_QUOTA_BURST", int, minimum=1))
        for name in ("FIN_QUOTA_WINDOW_SECONDS", "FIN_QUOTA_BURST"):
            if env.get(name) and quota_text in ("", "learn"):
                raise InvalidInputError(
                    f"{name} is set but FIN_QUOTA_REQUESTS is "
                    + ("'learn'" if quota_text else "not")
                    + f": {name} shapes a configured quota only; set FIN_QUOTA_REQUESTS to a "
                    f"number, or unset {name}"
                )
        if quota_text not in ("", "learn"):
            limit = read.number("FIN_QUOTA_REQUESTS", float)
            if limit == 0:
                raise InvalidInputError(
                    "FIN_QUOTA_REQUESTS=0 would never send: use a number or 'learn'"
                )
            quota = QuotaPolicy(limit, window_s, burst)
        alert_format = read.text("FIN_ALERT_FORMAT")
        if alert_format not in PAYLOAD_FORMATS:
            raise InvalidInputError(
                f"FIN_ALERT_FORMAT={alert_format!r}: expected one of {', '.join(PAYLOAD_FORMATS)}"
            )
        if env.get("FIN_ALERT_FORMAT") and not env.get(WEBHOOK_VARIABLE):
            raise InvalidInputError(
                f"FIN_ALERT_FORMAT is set but {WEBHOOK_VARIABLE} is not: the format is that of "
                "the webhook's payload, and without a webhook alerts are only logged; set "
                f"{WEBHOOK_VARIABLE}, or unset FIN_ALERT_FORMAT"
            )
        executor = read.text("FIN_EXECUTOR")
        if executor not in EXECUTORS:
            raise InvalidInputError(
                f"FIN_EXECUTOR={executor!r}: expected one of {', '.join(EXECUTORS)}"
            )
        if env.get("FIN_CELERY_BROKER") and executor != "celery":
            raise InvalidInputError(
                f"FIN_CELERY_BROKER is set but FIN_EXECUTOR={executor!r}: the broker carries "
                "steps only with FIN_EXECUTOR=celery; set it, or unset FIN_CELERY_BROKER"
            )
        warn = read.number("FIN_FRESHNESS_HOURLY_WARN_MINUTES", float)
        freshness = FreshnessSettings(
            hourly_fail_minutes=read.number("FIN_FRESHNESS_HOURLY_FAIL_MINUTES", float, minimum=1),
            hourly_warn_minutes=warn or None,
            daily_deadline_cron=read.text("FIN_FRESHNESS_DAILY_DEADLINE_CRON"),
        )
        base_url = env.get("FIN_API_BASE_URL") or adapter.default_base_url
        try:
            validate_http_url(base_url)
        except InvalidInputError as exc:
            raise InvalidInputError(
                f"FIN_API_BASE_URL: {exc}; set the provider's address, or unset FIN_API_BASE_URL "
                "for its own"
            ) from None
        if "FIN_SYMBOLS" in env and not env["FIN_SYMBOLS"]:
            # Empty is not "unset" here: the defaults would be fetched instead of nothing.
            raise InvalidInputError(
                "FIN_SYMBOLS is set but empty: name the symbols (e.g. FIN_SYMBOLS=AAPL,MSFT), or "
                "unset FIN_SYMBOLS for the declared sources (fin_assets/defs/)"
            )
        symbols = parse_symbols(read.text("FIN_SYMBOLS"), provider=provider)
        try:
            calendar = validate_calendar_name(read.text("FIN_CALENDAR"))
        except InvalidInputError as exc:
            raise InvalidInputError(f"FIN_CALENDAR: {exc}") from None
        return cls(
            provider=provider,
            adapter=adapter,
            base_url=base_url,
            has_api_key=has_api_key,
            symbols=symbols,
            data_dir=data_dir,
            warehouse_url=_warehouse_url(env.get("FIN_WAREHOUSE_URL", ""), data_dir),
            quota_store=env.get("FIN_QUOTA_STORE") or str(instance_dir / QUOTA_STORE_FILE),
            configured_quota=quota,
            learn_quota=learn,
            max_attempts=int(read.number("FIN_MAX_ATTEMPTS", int, minimum=1)),
            max_wait_s=read.number("FIN_MAX_WAIT_SECONDS", float),
            late_data_retries=int(read.number("FIN_LATE_DATA_RETRIES", int)),
            late_data_retry_s=read.number("FIN_LATE_DATA_RETRY_SECONDS", float, minimum=1),
            alert_format=alert_format,  # type: ignore[arg-type]  # checked just above
            has_webhook=bool(env.get(WEBHOOK_VARIABLE)),
            sensor_interval_s=int(read.number("FIN_SENSOR_INTERVAL_SECONDS", int, minimum=1)),
            automation_interval_s=int(
                read.number("FIN_AUTOMATION_INTERVAL_SECONDS", int, minimum=1)
            ),
            new_data_lookback_hours=int(read.number("FIN_NEW_DATA_LOOKBACK_HOURS", int)),
            freshness=freshness,
            calendar=calendar,
            cache_dir=instance_dir / CACHE_DIR / "calendars",
            sources_dir=Path(env["FIN_SOURCES_DIR"]).expanduser().resolve()
            if env.get("FIN_SOURCES_DIR")
            else None,
            metrics_cache_s=read.number("FIN_METRICS_CACHE_SECONDS", float),
            executor=executor,
            celery_broker=read.text("FIN_CELERY_BROKER"),
            celery_broker_set=bool(env.get("FIN_CELERY_BROKER")),
        )


def _data_dir(env: Mapping[str, str]) -> Path:
    """FIN_DATA_DIR, resolved, if snapshots can be written there (checked without writing)."""
    given = env.get("FIN_DATA_DIR")
    data_dir = Path(given or PROJECT_ROOT / "data").expanduser().resolve()
    problem = directory_problem(data_dir)
    if problem is not None:
        what = (
            f"FIN_DATA_DIR={given!r}"
            if given
            else f"FIN_DATA_DIR is unset and its default {data_dir}"
        )
        raise InvalidInputError(
            f"{what} cannot hold the snapshots and tables: {problem}; point FIN_DATA_DIR at a "
            "directory this user can write (created if missing; the systemd units use "
            "/var/lib/fin-assets/data)"
        )
    return data_dir


def _warehouse_url(url: str, data_dir: Path) -> str:
    """FIN_WAREHOUSE_URL if the warehouse it names can be written: a directory (checked like
    FIN_DATA_DIR) or a PostgreSQL URL libpq accepts (checked without connecting)."""
    if not url:
        return str(data_dir / "warehouse")  # FIN_DATA_DIR is checked already
    from resources.storage.pg import redact_url

    shown = redact_url(url) if "://" in url else url

    def refuse(problem: str) -> InvalidInputError:
        return InvalidInputError(f"FIN_WAREHOUSE_URL={shown!r}: {problem}; use {WAREHOUSE_FORMS}")

    try:
        warehouse = warehouse_from_url(url)  # the schemes, as the run will choose
    except InvalidInputError as exc:
        raise refuse(str(exc).removesuffix(" in FIN_WAREHOUSE_URL")) from None
    if not isinstance(warehouse, ParquetWarehouse):
        from resources.storage.pg import postgres_url_problem

        problem = postgres_url_problem(url)
        if problem is not None:
            raise refuse(f"not a PostgreSQL URL libpq accepts ({problem})")
        return url
    parts = urlsplit(url)
    if parts.scheme and parts.netloc not in ("", "localhost"):
        raise refuse(f"{parts.scheme}:// takes a path, not the host {parts.netloc!r}")
    if not Path(parts.path if parts.scheme else url).is_absolute():
        # A relative directory would follow each process's working directory; and
        # "postgresql//host/db", a URL with a typo, is one.
        raise refuse("a relative path, which each process would read from its own directory")
    problem = directory_problem(warehouse.root)
    if problem is not None:
        raise refuse(f"the Parquet lake cannot be written there: {problem}")
    return url


class _Reader:
    """Reads one variable at a time, falling back to its declared default."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def text(self, name: str) -> str:
        return self._env.get(name) or DEFAULTS[name]

    def number(self, name: str, kind: type[int] | type[float], *, minimum: float = 0) -> float:
        """A finite number of ``kind``, at least ``minimum``: ``nan`` and ``inf`` parse as
        floats but are refused here, or a budget of ``nan`` seconds would run as if unset."""
        raw = self.text(name)
        try:
            value = kind(raw)
        except ValueError:
            raise InvalidInputError(f"{name}={raw!r} is not a valid {kind.__name__}") from None
        if not math.isfinite(value):
            raise InvalidInputError(f"{name}={raw!r} must be a finite number")
        if value < minimum:
            raise InvalidInputError(
                f"{name}={raw!r} must not be negative"
                if minimum == 0
                else f"{name}={raw!r} must be at least {minimum:g}"
            )
        return value
