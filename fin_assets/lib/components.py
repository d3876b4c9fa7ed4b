"""``MarketDataSource``: the Dagster component a source is declared with, one YAML file each.

``fin_assets/defs/<name>/defs.yaml``::

    type: fin_assets.lib.components.MarketDataSource
    attributes:
      name: us_equities
      provider: polygon
      symbols: [AAPL, MSFT]
      calendar: XNYS                 # or "24/7"
      quota: {requests: 5, window_seconds: 60}   # or "learn", or "documented" (the provider's);
                                                 # omitted: FIN_QUOTA_*, else the provider's
      base_url: https://api.massive.com          # omitted: the provider's default
      api_key_env: POLYGON_API_KEY   # the NAME of the variable holding the key, never the key
      partitions_start: "2026-01-01"
      freshness: {fail_minutes: 90, warn_minutes: 75, daily_deadline_cron: "0 2 * * *"}
                                     # each omitted: FIN_FRESHNESS_*, else 90 / 75 / 0 2 * * *
      max_quiet_minutes: 2           # minutes without a bar per symbol and hour, not a warning
      intervals: [5m, 1h]            # interval tables built from the 1-minute bars (5m, 15m, 1h)
      archive: {use: auto}           # history from the provider's bulk archive (Binance public
                                     # data; Massive flat files: url, access_key_env,
                                     # secret_key_env), recent hours from REST

Adding a source is a new file and no Python. ``dg check yaml fin_assets/defs/<name>`` validates
a file against this model's JSON schema, which refuses what the load refuses in one file: an
unknown provider, a symbol no provider accepts, a calendar not in ``SUPPORTED_CALENDARS``, a name
too long for its tables, a number that is not positive and finite (``.inf``, ``.nan``), a quota
or a base URL written as another string, the key itself instead of its variable's name. The load
refuses the same (and what one file cannot show: two files with one name, a symbol of another
provider, a ``{{ env(...) }}`` that resolves to a bad value), with the file, line and field:
``source file .../defs.yaml:7: attributes.quota.requests: ...``, the message ``dg check yaml``
gives. ``dg check defs`` does both for every file. ``dg list defs`` lists every source's assets.
Shared settings (warehouse, quota store, retries, alerting) stay in the ``FIN_*`` variables
(``fin_assets/lib/settings.py``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import date
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

import dagster as dg
import yaml
from pydantic import Field, ValidationError

from fin_assets.lib.pipeline import build_source_definitions
from fin_assets.lib.settings import Settings
from fin_assets.lib.sources import (
    ENV_VAR_NAME,
    LONGEST_TABLE,
    MAX_NAME_LENGTH,
    SOURCE_NAME,
    ArchiveSettings,
    Source,
    SourceFieldError,
)
from resources.calendars import SUPPORTED_CALENDARS, TWENTY_FOUR_SEVEN
from resources.errors import InvalidInputError
from resources.providers import get_adapter, provider_names
from resources.ratelimit.policy import QuotaPolicy
from resources.tables.intervals import INTERVALS
from resources.validation import PROVIDER_SYMBOL_RE, SYMBOL_RE, parse_symbols

# The providers a source may name, from the registry (resources/providers/__init__.py): a
# Literal, so that the schema `dg check yaml` validates against lists them.
if TYPE_CHECKING:
    ProviderName = str
    IntervalName = str
else:
    ProviderName = Literal[tuple(provider_names())]
    IntervalName = Literal[tuple(INTERVALS)]
ANY_SYMBOL_PATTERN = "|".join(
    f"(?:{rule.pattern})" for rule in (SYMBOL_RE, *PROVIDER_SYMBOL_RE.values())
)
# Dagster lets every field of a component hold a template ("{{ env('X') }}", resolved at
# load), so its schema accepts any string where a number or a list is expected. A string that
# is no template is what these patterns refuse, in the schema `dg check yaml` validates with.
TEMPLATE = r"\{\{.*\}\}"
HTTP_URL_PATTERN = rf"^https?://[^\s/?#]+(/\S*)?$|{TEMPLATE}"
QUOTA_WORD_PATTERN = rf"^(learn|documented)$|{TEMPLATE}"
# A positive, finite number. pydantic refuses .inf and .nan at load ("a finite number"); the
# schema must too, and JSON Schema knows no infinity or NaN: .inf is above `maximum`, and .nan,
# for which every comparison is false (so no bound refuses it), is the one number besides 0
# that `minimum: 0, maximum: 0` accepts, so `not` of that refuses it.
FINITE_MAX = sys.float_info.max
POSITIVE_FINITE_SCHEMA: dict[str, Any] = {
    "exclusiveMinimum": 0,
    "maximum": FINITE_MAX,
    "not": {"$comment": ".nan", "type": "number", "minimum": 0, "maximum": 0},
    "pattern": TEMPLATE,
}
PositiveFinite = Annotated[float, Field(gt=0, le=FINITE_MAX, allow_inf_nan=False)]


TYPE_NAME = "fin_assets.lib.components.MarketDataSource"
# The FIN_* variables that are every source's defaults, by the YAML field that overrides them.
QUOTA_DEFAULTS = ("FIN_QUOTA_REQUESTS", "FIN_QUOTA_WINDOW_SECONDS", "FIN_QUOTA_BURST")
FRESHNESS_DEFAULTS = {
    "fail_minutes": "FIN_FRESHNESS_HOURLY_FAIL_MINUTES",
    "warn_minutes": "FIN_FRESHNESS_HOURLY_WARN_MINUTES",
    "daily_deadline_cron": "FIN_FRESHNESS_DAILY_DEADLINE_CRON",
}


def _field(description: str, *, schema: Mapping[str, Any] | None = None, **kwargs: Any) -> Any:
    """A pydantic ``Field`` whose description reaches the schema `dg check yaml` reads, and the
    load's "expected: ..." (Dagster's derived model drops the description of a field with a
    default, but keeps its json_schema_extra); ``schema``: more of that schema."""
    extra = {"description": description, **(schema or {})}
    return Field(description=description, json_schema_extra=extra, **kwargs)


class QuotaModel(dg.Model, dg.Resolvable):
    # The bounds are on the number (Annotated), not on the field: Dagster makes every field
    # `<type> | str` (templates), and a bound on that union fails on a string with a TypeError
    # that names no field ("Unable to apply constraint 'gt'").
    requests: PositiveFinite = _field(
        "Requests (or weight) per window: a positive, finite number.",
        schema=POSITIVE_FINITE_SCHEMA,
    )
    window_seconds: PositiveFinite = _field(
        "The quota's window, in seconds: a positive, finite number.",
        schema=POSITIVE_FINITE_SCHEMA,
    )
    burst: Annotated[int, Field(ge=1)] = _field(
        "Requests allowed back to back: a whole number, at least 1.",
        schema={"minimum": 1, "pattern": TEMPLATE},
        default=1,
    )


class FreshnessModel(dg.Model, dg.Resolvable):
    """Each field omitted: the FIN_FRESHNESS_* default (fin_assets/lib/settings.py)."""

    fail_minutes: PositiveFinite | None = _field(
        "An hour not landed after this many minutes: a positive, finite number.",
        schema=POSITIVE_FINITE_SCHEMA,
        default=None,
    )
    # The bound is on the number: on `float | None` pydantic applies it to null too and fails
    # with a TypeError that names no field.
    warn_minutes: PositiveFinite | None = _field(
        "Warn after this many minutes (a positive, finite number); null: never.",
        schema=POSITIVE_FINITE_SCHEMA,
        default=None,
    )
    daily_deadline_cron: str | None = _field(
        "By when the daily tables are rebuilt (cron, UTC).", default=None
    )


class ArchiveModel(dg.Model, dg.Resolvable):
    """The provider's bulk archive (Binance public data, Massive flat files)."""

    use: Literal["auto", "always", "never"] = _field(
        "auto: days old enough to be archived come from the archive, the rest from REST; "
        "always: the archive only (never spends quota); never: REST only.",
        schema={"enum": ["auto", "always", "never"]},
        default="auto",
    )
    url: str | None = _field(
        "The archive's address: https://data.binance.vision (Binance), the S3 endpoint "
        "https://files.massive.com (Massive); omitted: the provider's own.",
        schema={"pattern": HTTP_URL_PATTERN},
        default=None,
    )
    bucket: str | None = _field("S3 bucket (Massive: flatfiles).", default=None)
    prefix: str | None = _field(
        "S3 key prefix (Massive: us_stocks_sip/minute_aggs_v1).", default=None
    )
    access_key_env: str | None = _field(
        "The NAME of the variable holding the S3 access key (Massive), never the key.",
        schema={"pattern": ENV_VAR_NAME.pattern},
        default=None,
        pattern=ENV_VAR_NAME.pattern,
    )
    secret_key_env: str | None = _field(
        "The NAME of the variable holding the S3 secret key (Massive), never the key.",
        schema={"pattern": ENV_VAR_NAME.pattern},
        default=None,
        pattern=ENV_VAR_NAME.pattern,
    )


class MarketDataSource(dg.Component, dg.Model, dg.Resolvable):
    """A market-data source: one provider, credential, symbol list and exchange calendar."""

    # name, calendar and base_url are checked by Source itself, whose messages say why (a name
    # too long for its tables, a calendar whose sessions cross midnight UTC); the schema keeps
    # the same rules for `dg check yaml`.
    name: str = _field(
        "The source's name, in its asset keys, tables and jobs: lower-case letters, digits and "
        f"single underscores, starting with a letter, at most {MAX_NAME_LENGTH} characters "
        f"(<name>__{LONGEST_TABLE} must fit the 63 of a PostgreSQL identifier).",
        schema={"pattern": SOURCE_NAME.pattern, "maxLength": MAX_NAME_LENGTH},
        pattern=SOURCE_NAME.pattern,
    )
    provider: ProviderName = _field(
        f"Provider adapter: {', '.join(get_args(ProviderName))}.",
        schema={"enum": list(get_args(ProviderName))},
    )
    symbols: list[str] = _field(
        "The symbols, e.g. [AAPL, MSFT] or [BTCUSDT].",
        # The loosest form any provider accepts; each provider's own rule is checked at load.
        schema={"items": {"type": "string", "pattern": ANY_SYMBOL_PATTERN}, "pattern": TEMPLATE},
        min_length=1,
    )
    calendar: str = _field(
        "'24/7', or a calendar of exchange_calendars whose sessions fit in UTC days (XNYS, "
        "XNAS, XLON, XTKS, 24/5, ...: SUPPORTED_CALENDARS in resources/calendars.py).",
        schema={"enum": list(SUPPORTED_CALENDARS)},
        default=TWENTY_FOUR_SEVEN,
    )
    quota: QuotaModel | Literal["learn", "documented"] | None = _field(
        "The provider's quota: {requests: N, window_seconds: S, burst: B}, 'learn' (from its "
        "headers), 'documented' (its own), or omitted: FIN_QUOTA_REQUESTS if set, else the "
        "provider's own.",
        schema={"pattern": QUOTA_WORD_PATTERN},
        default=None,
    )
    base_url: str | None = _field(
        "The provider's http(s) address, e.g. https://api.massive.com; omitted: its default.",
        schema={"pattern": HTTP_URL_PATTERN},
        default=None,
    )
    api_key_env: str | None = _field(
        "The NAME of the environment variable holding the API key (never the key).",
        schema={"pattern": ENV_VAR_NAME.pattern},
        default=None,
        pattern=ENV_VAR_NAME.pattern,
    )
    partitions_start: str = _field(
        "The first day of the partitions, YYYY-MM-DD.",
        default="2026-01-01",
        pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
    )
    freshness: FreshnessModel = Field(default_factory=FreshnessModel)
    max_quiet_minutes: Annotated[int, Field(ge=0, le=60)] = _field(
        "Minutes without a bar per symbol and hour that are not a warning: 0 to 60.",
        schema={"minimum": 0, "maximum": 60, "pattern": TEMPLATE},
        default=0,
    )

    intervals: list[IntervalName] = _field(
        f"Interval tables built from the 1-minute bars: any of {', '.join(INTERVALS)}.",
        schema={"items": {"enum": list(INTERVALS)}, "pattern": TEMPLATE},
        default_factory=list,
    )

    archive: ArchiveModel | None = _field(
        "History from the provider's bulk archive instead of the REST quota: {use: auto} "
        "(Binance public data; Massive flat files with url, access_key_env, secret_key_env).",
        default=None,
    )

    def to_source(self, defaults: Settings) -> Source:
        """The source this declaration describes; what it leaves out comes from ``defaults``
        (the FIN_* variables: quota and freshness)."""
        try:
            symbols = parse_symbols(self.symbols, provider=self.provider)
        except InvalidInputError as exc:
            raise SourceFieldError(self.name, "symbols", str(exc)) from None
        try:
            partitions_start = date.fromisoformat(self.partitions_start)
        except ValueError:
            day = self.partitions_start
            raise SourceFieldError(
                self.name, "partitions_start", f"{day!r} is not a day (YYYY-MM-DD)"
            ) from None
        if isinstance(self.quota, QuotaModel):
            quota: QuotaPolicy | None = QuotaPolicy(
                self.quota.requests, self.quota.window_seconds, self.quota.burst
            )
            learn = False
        elif self.quota is None:
            quota, learn = defaults.configured_quota, defaults.learn_quota
        else:
            quota, learn = None, self.quota == "learn"
        given = self.freshness.model_fields_set
        fresh = defaults.freshness
        overrides = {v for f, v in FRESHNESS_DEFAULTS.items() if f in given}
        if self.quota is not None:
            overrides |= set(QUOTA_DEFAULTS)
        return Source(
            name=self.name,
            provider=self.provider,
            symbols=symbols,
            base_url=self.base_url or get_adapter(self.provider).default_base_url,
            calendar=self.calendar,
            api_key_env=self.api_key_env,
            quota=quota,
            learn_quota=learn,
            partitions_start=partitions_start,
            freshness=replace(
                fresh,
                hourly_fail_minutes=self.freshness.fail_minutes or fresh.hourly_fail_minutes,
                hourly_warn_minutes=self.freshness.warn_minutes
                if "warn_minutes" in given
                else fresh.hourly_warn_minutes,
                daily_deadline_cron=self.freshness.daily_deadline_cron or fresh.daily_deadline_cron,
            ),
            max_quiet_minutes=self.max_quiet_minutes,
            intervals=tuple(dict.fromkeys(self.intervals)),
            archive=None
            if self.archive is None
            else ArchiveSettings(
                use=self.archive.use,
                url=self.archive.url,
                bucket=self.archive.bucket,
                prefix=self.archive.prefix,
                access_key_env=self.archive.access_key_env,
                secret_key_env=self.archive.secret_key_env,
            ),
            overrides=frozenset(overrides),
        )

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        # Shared settings come from the environment, read by the one reader of configuration.
        env = dict(os.environ)
        settings = Settings.from_env(env)
        source = replace(self.to_source(settings), origin=str(context.path / "defs.yaml"))
        return build_source_definitions(source, settings, env)


def resolve_source(
    attributes: Mapping[str, Any],
    defaults: Settings,
    *,
    origin: str,
    where: str,
    text: str | None = None,
) -> Source:
    """A source from a declaration's attributes, validated and resolved as Dagster resolves a
    component (templates such as ``{{ env(...) }}``). A bad field raises an InvalidInputError
    naming ``where``, the field's line in ``text`` (the file it came from) and the field, with
    the words `dg check yaml` uses for it and what the field expects."""
    try:
        component = MarketDataSource.resolve_from_yaml(yaml.safe_dump(dict(attributes)))
        return replace(component.to_source(defaults), origin=origin)
    except SourceFieldError as exc:
        path: list[str | int] = [exc.field]
        message = exc.reason
        written = attributes.get(exc.field)
        if isinstance(written, str) and "{{" in written:  # say which variable to fix
            message += f" (the value of {written.strip()})"
    except Exception as exc:
        path, message = _explain(attributes, exc)
    line = _line_of(text, path) if text else None
    at = f"{where}:{line}" if line else where
    field = f"attributes.{'.'.join(map(str, path))}: " if path else ""
    raise InvalidInputError(f"{at}: {field}{message}") from None


def schema_problems(attributes: Mapping[str, Any]) -> list[tuple[list[str | int], str]]:
    """What the schema `dg check yaml` validates with refuses in ``attributes`` (the same
    validator): ``(path of the field, message)``, the most specific first (the deepest field,
    inside an "any of" too); empty if it refuses nothing."""

    def flatten(errors: Iterable[Any], branch: int = 0) -> Iterator[tuple[int, Any]]:
        for error in errors:
            yield branch, error
            yield from flatten(error.context or (), branch + 1)

    # Deepest field first; at one field, a rule of the field itself before the complaints of
    # each alternative of an "any of" (5 "is not of type 'object'", then "... not 'learn'").
    found = sorted(
        flatten(_schema_validator().iter_errors(dict(attributes))),
        key=lambda item: (-len(item[1].absolute_path), item[1].validator == "anyOf", item[0]),
    )
    errors = [error for _, error in found]
    return [(list(e.absolute_path), _schema_message(e)) for e in errors]


def _schema_message(error: Any) -> str:
    """jsonschema's words, but where this schema's patterns and tricks would read as regexes."""
    value = error.instance
    if error.validator == "pattern" and error.validator_value == ENV_VAR_NAME.pattern:
        # Not repeated: a value here that is no variable's name may well be the key itself.
        return "not the NAME of an environment variable (e.g. POLYGON_API_KEY): never the key"
    if error.validator == "pattern" and error.validator_value in _PATTERN_WORDS:
        return f"{value!r} is {_PATTERN_WORDS[error.validator_value]}"
    if error.validator == "not" or (
        error.validator == "maximum" and error.validator_value == FINITE_MAX
    ):
        return f"{value!r} is not a positive, finite number"
    return str(error.message)


_PATTERN_WORDS = {
    TEMPLATE: "text, and this field takes text only as a {{ template }}",
    QUOTA_WORD_PATTERN: "neither 'learn', 'documented' nor a {{ template }}",
    HTTP_URL_PATTERN: "not an http(s) URL with a host",
}


@cache
def _schema_validator() -> Any:
    # Imported here: jsonschema costs about 0.1 s, paid only when a file is refused.
    from jsonschema import Draft202012Validator

    model = MarketDataSource.get_model_cls()
    assert model is not None  # a Resolvable component always has one
    return Draft202012Validator(model.model_json_schema())


def _explain(attributes: Mapping[str, Any], exc: Exception) -> tuple[list[str | int], str]:
    """The field and message for a declaration Dagster's resolution refused: the schema's
    words when it refuses too, else pydantic's (a template that resolved to a bad value)."""
    problems = schema_problems(attributes)
    if problems:
        path, message = problems[0]
        description = _field_schema(path).get("description")
        return path, f"{message}" + (f"; expected: {description}" if description else "")
    if isinstance(exc, ValidationError) and exc.errors():
        error = exc.errors()[0]
        # Dagster's locations read "quota.QuotaModelModel.requests at <string>:4".
        head = str(error["loc"][0]).split(" at ")[0].split(".")[0] if error["loc"] else ""
        return ([head] if head else []), error["msg"]
    return [], str(exc)


def _field_schema(path: Sequence[str | int]) -> dict[str, Any]:
    """The JSON schema of the field at ``path`` ({} if there is none)."""
    schema = _schema_validator().schema
    node: dict[str, Any] = schema
    for part in path:
        if isinstance(part, int):
            node = node.get("items", {})
            continue
        for candidate in (node, *node.get("anyOf", ())):  # a model, or a model or else
            if "$ref" in candidate:
                node = schema["$defs"][candidate["$ref"].rsplit("/", 1)[-1]]
                break
        node = node.get("properties", {}).get(part, {})
    return node


def _line_of(text: str, path: Sequence[str | int]) -> int | None:
    """The line of ``attributes.<path>`` in a component file's ``text`` (of the deepest part
    of it that is there)."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = None
    for part in ("attributes", *path):
        if isinstance(node, yaml.MappingNode):
            found = [(k, v) for k, v in node.value if k.value == part]
            if not found:
                break
            key, node = found[0]
            line = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                break
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def load_source_files(directory: Path, defaults: Settings, *, label: str = "") -> list[Source]:
    """The sources declared as ``<name>/defs.yaml`` under ``directory``, loaded and validated as
    Dagster loads a component (a bad file names itself, the line and the field). ``label``: how
    errors name the directory (``FIN_SOURCES_DIR=...``)."""
    label = label or str(directory)
    paths = sorted(directory.glob("*/defs.yaml"))
    if not paths:
        raise InvalidInputError(f"{label}: no <source>/defs.yaml in it")
    sources = []
    for path in paths:
        text = path.read_text()
        try:
            document = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise InvalidInputError(f"source file {path}: {exc}") from exc
        if not str(document.get("type", "")).endswith("MarketDataSource"):
            raise InvalidInputError(f"source file {path}: type: expected {TYPE_NAME}")
        attributes = document.get("attributes") or {}
        sources.append(
            resolve_source(
                attributes, defaults, origin=str(path), where=f"source file {path}", text=text
            )
        )
    # One file's schema cannot see the others, so `dg check yaml` cannot refuse this; the load
    # (and so `dg check defs`) does.
    origins: dict[str | None, list[str]] = {}
    for source in sources:
        origins.setdefault(source.name, []).append(str(source.origin))
    for name, files in origins.items():
        if len(files) > 1:
            raise InvalidInputError(
                f"{label}: {len(files)} sources are named {name}: {', '.join(files)}; a name is "
                "in its source's asset keys, tables and jobs, so each source needs its own: "
                "change `name:` in all of them but one"
            )
    return sources
