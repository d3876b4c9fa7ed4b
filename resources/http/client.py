"""``MarketApiClient``: the one way fin-assets talks to a market-data API.

httpx underneath; on top: pacing before the server has to say no (a ``Pacer``), retries with
exponential backoff and full jitter for 5xx/timeouts/connection errors, ``Retry-After`` obeyed
for 429 and in-body throttles, fail-fast on other 4xx, attempts *and* total wait capped, decoded
body size capped, and every secret (the API key, a password in the base URL) kept out of every
URL, log line and exception we produce, in every form (``resources/secrets.py``).

Waits never hold a response: a response is read, classified and released before any sleep.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from resources.endpoints import Endpoint, Feed
from resources.errors import (
    FatalResponseError,
    InvalidInputError,
    ResponseFormatError,
    RetriesExhaustedError,
    WaitBudgetExceededError,
)
from resources.http.retry import usable_wait
from resources.logfields import wait_fields
from resources.providers.base import ApiRequest, ProviderAdapter, Verdict
from resources.providers.corporate_actions import ActionDataset, ActionsPage
from resources.ratelimit.headers import RateLimitSignal
from resources.ratelimit.pacer import NoPacer, Pacer
from resources.secrets import REDACTED, redact, register
from resources.validation import ensure_utc, validate_symbol

# httpx is imported where a client is built and used, not here: the assets and sensors import
# this module whenever Dagster loads the definitions (every run worker and code server), and
# most of those processes never call the API (benchmarks/startup.py).
if TYPE_CHECKING:
    import httpx

logger = logging.getLogger("fin_assets.client")

# Headers worth keeping next to a snapshot: they explain quota and caching, and hold no secret.
RECORDED_HEADERS = (
    "content-type",
    "date",
    "retry-after",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "ratelimit",
    "ratelimit-policy",
)

# The client's defaults, and the settings' (fin_assets/lib/settings.py reads them from here).
DEFAULT_TIMEOUT_S = 30.0
DEFAULT_MAX_ATTEMPTS = 5  # per request: 429s, 5xx, timeouts, malformed bodies
DEFAULT_MAX_WAIT_S = 120.0  # retry/throttle waiting one step may do before it is rescheduled
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024  # decoded, not compressed


@dataclass
class ClientStats:
    """Counters for one client's lifetime; assets copy them into materialization metadata."""

    requests: int = 0
    retries: int = 0
    throttled: int = 0  # 429s and throttle messages in 200 bodies
    banned: int = 0  # of those, bans (the adapter's ban statuses: Binance's 418)
    seconds_waited: float = 0.0
    bytes_received: int = 0
    pages: int = 0
    # Monotonic time of the first send and the last answer: the span requests/s is taken over.
    first_sent: float | None = None
    last_answered: float | None = None

    @property
    def requests_per_second(self) -> float:
        if self.first_sent is None or self.last_answered is None:
            return 0.0
        span = self.last_answered - self.first_sent
        return self.requests / span if span > 0 else float(self.requests)

    def as_metadata(self) -> dict[str, float | int]:
        return {
            "requests": self.requests,
            "retries": self.retries,
            "throttled_429": self.throttled,
            "banned_418": self.banned,
            "seconds_waited": round(self.seconds_waited, 3),
            "bytes_received": self.bytes_received,
            "requests_per_second": round(self.requests_per_second, 3),
        }


@dataclass(frozen=True)
class ApiResponse:
    url: str  # redacted
    status: int
    headers: dict[str, str]
    body: bytes  # decoded (content-encoding removed), otherwise verbatim
    payload: Any
    fetched_at: datetime


@dataclass(frozen=True)
class FetchedPage:
    symbol: str
    response: ApiResponse
    coverage_start: datetime
    coverage_end: datetime
    bar_count: int


class MarketApiClient:
    def __init__(
        self,
        adapter: ProviderAdapter,
        *,
        base_url: str,
        api_key: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        max_wait_s: float = DEFAULT_MAX_WAIT_S,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        backoff_base_s: float = 0.5,
        backoff_cap_s: float = 30.0,
        pacer: Pacer | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        register(api_key)  # before anything can print it
        adapter.check_api_key(api_key)
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.adapter = adapter
        self.provider = adapter.name
        self.endpoint = Endpoint.parse(base_url, where=f"{adapter.name} base URL")
        self._api_key = api_key or None
        # Where its answers are kept: two clients with the same feed may share snapshots.
        self.feed = Feed.of(
            adapter.name,
            self.endpoint,
            api_key=self._api_key,
            by_credential=adapter.answers_depend_on_credential,
        )
        self._max_attempts = max_attempts
        self._max_wait_s = max_wait_s
        self._max_body_bytes = max_body_bytes
        self._backoff_base_s = backoff_base_s
        self._backoff_cap_s = backoff_cap_s
        self._pacer = pacer or NoPacer()
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._now = now
        self.stats = ClientStats()
        self._budget_spent = 0.0  # seconds of retry/throttle waiting so far
        self._limits_read = False  # the provider's published limits asked for once
        # httpx logs every request URL at INFO, key included: keep it at WARNING.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        logging.getLogger("httpcore").setLevel(logging.WARNING)
        import httpx

        user = self.endpoint.username
        self._http = httpx.Client(
            # The public URL and the user apart: httpx sends them as HTTP Basic either way,
            # and nothing httpx prints (its URLs, its errors) can then hold the password.
            base_url=self.endpoint.public_url,
            auth=httpx.BasicAuth(user, self.endpoint.password or "") if user is not None else None,
            timeout=timeout_s,
            transport=transport,
            headers={"user-agent": "fin-assets/0.1", "accept-encoding": "gzip"},
            follow_redirects=False,
        )

    # -- lifecycle ---------------------------------------------------------------------------
    def close(self) -> None:
        self._http.close()
        close_pacer = getattr(self._pacer, "close", None)
        if close_pacer is not None:
            close_pacer()

    def __enter__(self) -> MarketApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- secrets -----------------------------------------------------------------------------
    @staticmethod
    def redact(text: str) -> str:
        """Remove every secret of this process, in any form, from text we are about to log,
        raise or store."""
        return redact(text)

    def _display_url(self, request: ApiRequest) -> str:
        """The URL as sent, without the base URL's user and password and with secret
        parameters shown as *** (safe to log and store)."""
        sent = self.adapter.authenticate(request, self._api_key) if self._api_key else request
        params = {
            k: (REDACTED if k in self.adapter.secret_params else v) for k, v in sent.params.items()
        }
        query = urlencode(params, safe="*:")
        path = "/" + sent.path.lstrip("/")  # as httpx merges it onto the base URL's path
        return self.redact(self.endpoint.public_url + path + (f"?{query}" if query else ""))

    # -- waiting -----------------------------------------------------------------------------
    def _wait(self, seconds: float, *, reason: str, budgeted: bool = True, cause: str = "") -> None:
        """Sleep, visibly. Retry and throttle waits count against the step's wait budget;
        pacing waits are the normal price of the quota and only a single pacing wait longer
        than the whole budget (a shared pause after a ban, say) reschedules the step.

        ``cause`` (throttled, retry; else read from the pacer's ``reason``) and the fields of
        ``resources/logfields.py`` end the log line, for queries without regular expressions."""
        if seconds <= 0:
            return
        spent = self._budget_spent if budgeted else 0.0
        if spent + seconds > self._max_wait_s:
            raise WaitBudgetExceededError(
                f"{self.provider}: need to wait {seconds:.1f} s ({reason}) but only "
                f"{max(0.0, self._max_wait_s - spent):.1f} s of the "
                f"{self._max_wait_s:.0f} s wait budget is left; reschedule instead of sleeping",
                provider=self.provider,
                seconds_to_wait=seconds,
            )
        logger.info(
            "waiting %.2f s: %s%s",
            seconds,
            reason,
            wait_fields(self.provider, seconds, reason, reason=cause),
        )
        if budgeted:
            self._budget_spent += seconds
        self.stats.seconds_waited += seconds
        self._sleep(seconds)

    def _wait_for_slot(self, units: int) -> None:
        """Book a slot in the shared quota and sleep until it comes."""
        while True:
            wait = self._pacer.reserve(units)
            self._wait(
                wait,
                reason=f"{self._pacer.describe_last_wait()} for {self.provider}",
                budgeted=False,
            )
            if not self._pacer.booked():
                continue  # we only waited for a slot in flight to free up: ask again
            if wait <= 0:
                return
            # A 429 seen by another process while we slept outranks our slot. Sit out the
            # pause, then book again: every slot booked before it would otherwise fire at the
            # same instant when it ends and draw the next 429.
            paused, why = self._pacer.pause_remaining()
            if paused <= 0:
                return
            self._wait(paused, reason=f"shared pause: {why}", budgeted=False)

    def _backoff(self, attempt: int) -> float:
        # Full jitter (AWS architecture blog): uniform over [0, min(cap, base * 2^n)].
        return self._rng.uniform(
            0, min(self._backoff_cap_s, self._backoff_base_s * 2 ** (attempt - 1))
        )

    # -- one logical request -----------------------------------------------------------------
    def _send_once(self, request: ApiRequest) -> tuple[int, dict[str, str], bytes]:
        """Send and read one response, refusing bodies over the cap while streaming."""
        sent = self.adapter.authenticate(request, self._api_key) if self._api_key else request
        self.stats.requests += 1
        if self.stats.first_sent is None:
            self.stats.first_sent = time.monotonic()
        with self._http.stream(
            "GET", sent.path, params=dict(sent.params), headers=dict(sent.headers)
        ) as resp:
            declared = resp.headers.get("content-length")
            if (
                declared
                and declared.isdigit()
                and not resp.headers.get("content-encoding")
                and int(declared) > self._max_body_bytes
            ):
                raise FatalResponseError(
                    f"{self.provider}: response of {declared} bytes from "
                    f"{self._display_url(request)} exceeds the {self._max_body_bytes}-byte cap; "
                    "ask for smaller pages",
                    provider=self.provider,
                    status=resp.status_code,
                )
            chunks: list[bytes] = []
            size = 0
            for chunk in resp.iter_bytes():  # decoded bytes: the cap holds against gzip bombs
                size += len(chunk)
                if size > self._max_body_bytes:
                    raise FatalResponseError(
                        f"{self.provider}: decoded response from {self._display_url(request)} "
                        f"exceeds the {self._max_body_bytes}-byte cap; ask for smaller pages",
                        provider=self.provider,
                        status=resp.status_code,
                    )
                chunks.append(chunk)
            headers = {k.lower(): v for k, v in resp.headers.items()}
            self.stats.bytes_received += size
            self.stats.last_answered = time.monotonic()
            return resp.status_code, headers, b"".join(chunks)

    def get(self, request: ApiRequest, *, what: str) -> ApiResponse:
        """One logical GET with pacing, retries and budgets. ``what`` names it in messages."""
        import httpx  # already loaded by __init__

        url = self._display_url(request)
        # Book the unit the provider's quota counts: weight, or one per request.
        units = request.weight if self.adapter.quota_unit == "weight" else 1
        attempt = 0
        while True:
            attempt += 1
            self._wait_for_slot(units)
            server_wait: float | None = None
            status: int | None = None
            signal = None
            body: bytes = b""
            self._pacer.sending()
            sent, sent_at = time.monotonic(), self._now()
            try:
                status, headers, body = self._send_once(request)
            except httpx.TransportError as exc:  # timeouts, refused connections, cut bodies
                self._pacer.settle()
                verdict = Verdict("retry", f"{type(exc).__name__}: {self.redact(str(exc))}")
            else:
                rtt = time.monotonic() - sent
                now = self._now()  # injectable: HTTP-date and epoch resets are relative to it
                # Quota headers describe the window the request was counted in: the one it was
                # sent in. An answer that crosses into the next window must not read a window
                # just spent as the next one (and wait all of it).
                signal = self.adapter.rate_limit_signal(headers, now=sent_at)
                verdict = self.adapter.classify(status=status, headers=headers, body=body, now=now)
                server_wait = usable_wait(verdict.server_wait_s)
                if verdict.kind != "throttled":
                    # Learns, then frees this request's slot; a throttle does both below.
                    self._pacer.observe(signal, weight=units, rtt_s=rtt)
                if verdict.kind == "ok":
                    return ApiResponse(
                        url=url,
                        status=status,
                        headers={k: headers[k] for k in RECORDED_HEADERS if k in headers},
                        body=body,
                        payload=verdict.payload,
                        fetched_at=self._now(),
                    )
            # A rejected response is not kept alive through the wait that follows, except an
            # unparseable one on the last attempt: the quarantine keeps it (the error holds it).
            unparsed = body if "malformed JSON" in verdict.reason else None
            body = b""
            reason = self.redact(verdict.reason)
            if verdict.kind == "fatal":
                raise FatalResponseError(
                    f"{self.provider}: {what}: {reason} for GET {url}; not retried "
                    "(check the symbol, the time window and the API key)",
                    provider=self.provider,
                    status=status,
                ) from None
            if verdict.kind == "throttled":
                self.stats.throttled += 1
                if status in self.adapter.ban_statuses:
                    self.stats.banned += 1
                source = (
                    f"Retry-After from {self.provider}"
                    if server_wait is not None
                    else f"quota window of {self.provider}"
                )
                # Everybody sharing this quota stops, not just this request, and the quota in
                # force learns from it (before any budget check: a step that reschedules
                # itself must still hold the others back).
                wait = self._pacer.throttled(
                    server_wait_s=server_wait,
                    signal=signal,
                    weight=units,
                    attempt=attempt,
                    ban=status in self.adapter.ban_statuses,
                    reason=f"{source} ({reason})",
                )
                if attempt >= self._max_attempts:
                    # A quota window that has not reopened is no reason to give up: the step
                    # comes back when it has.
                    raise WaitBudgetExceededError(
                        f"{self.provider}: {what}: still throttled after {attempt} attempts "
                        f"for GET {url} ({reason}); the quota reopens in {wait:.1f} s: "
                        "reschedule instead of failing",
                        provider=self.provider,
                        seconds_to_wait=wait,
                    ) from None
                self.stats.retries += 1
                self._wait(
                    wait, reason=f"{source} after {reason} (attempt {attempt})", cause="throttled"
                )
                continue
            if attempt >= self._max_attempts:
                message = (
                    f"{self.provider}: {what}: gave up after {attempt} attempts "
                    f"for GET {url}; last error: {reason}"
                )
                if unparsed is not None:
                    raise ResponseFormatError(
                        message, provider=self.provider, body=unparsed, url=url
                    ) from None
                raise RetriesExhaustedError(message, provider=self.provider) from None
            self.stats.retries += 1
            if server_wait is not None:
                wait, source = server_wait, f"Retry-After from {self.provider}"
            else:
                wait, source = self._backoff(attempt), "backoff"
            self._wait(wait, reason=f"{source} after {reason} (attempt {attempt})", cause="retry")

    def read_published_limits(self, symbol: str) -> None:
        """Ask what the provider publishes as the limits in force (Binance's
        ``exchangeInfo.rateLimits``), so every process sharing the quota paces by it at once:
        a stated quota ends the slow start and lowers a ceiling configured too high. One
        process of the instance asks, once an hour (``learning.claim_published_read``); the
        first bars request of every client calls this. Without an answer (not published, not
        reachable, not understood) pacing learns as before."""
        if self._limits_read or isinstance(self._pacer, NoPacer):
            return
        self._limits_read = True
        request = self.adapter.limits_request(symbol)
        if request is None or not self._pacer.claim_published_read():
            return
        try:
            response = self.get(request, what="published rate limits")
        except (FatalResponseError, ResponseFormatError, RetriesExhaustedError) as exc:
            logger.info("%s: no published rate limits (%s)", self.provider, self.redact(str(exc)))
            self._pacer.claim_published_read(release=True)
            return
        policy = self.adapter.parse_limits(response.payload)
        if policy is None:
            self._pacer.claim_published_read(release=True)
            return
        signal = RateLimitSignal(limit=policy.limit, policy=policy, source=policy.source)
        self._pacer.observe(signal, weight=0)

    # -- bars ----------------------------------------------------------------------------------
    def iter_pages(
        self, symbol: str, *, start: datetime, end: datetime, label: str | None = None
    ) -> Iterator[FetchedPage]:
        """Yield pages of 1-minute bars for [start, end), so callers can checkpoint each one.

        ``label`` (e.g. the partitions being filled) is added to every error message."""
        validate_symbol(symbol, provider=self.adapter.name)
        start, end = ensure_utc(start), ensure_utc(end)
        self.read_published_limits(symbol)
        request: ApiRequest | None = self.adapter.bars_request(symbol, start=start, end=end)
        while request is not None:
            what = f"symbol {symbol}, window {start:%Y-%m-%dT%H:%MZ}..{end:%Y-%m-%dT%H:%MZ}" + (
                f" ({label})" if label else ""
            )
            response = self.get(request, what=what)
            page = self.adapter.read_page(response.payload, request=request, start=start, end=end)
            self.stats.pages += 1
            yield FetchedPage(
                symbol, response, page.coverage_start, page.coverage_end, page.bar_count
            )
            if page.next_request is not None and page.coverage_end <= page.coverage_start:
                raise ResponseFormatError(
                    f"{self.provider}: {what}: pagination did not advance past "
                    f"{page.coverage_start.isoformat()}",
                    provider=self.provider,
                )
            request = page.next_request

    # -- corporate actions ---------------------------------------------------------------------
    def iter_action_pages(
        self, dataset: ActionDataset, symbol: str
    ) -> Iterator[tuple[ApiResponse, ActionsPage]]:
        """Yield every page of ``symbol``'s splits or dividends (the provider's whole history of
        them, oldest first), each with its verbatim response."""
        validate_symbol(symbol, provider=self.adapter.name)
        actions = self.adapter.corporate_actions
        if actions is None:
            raise InvalidInputError(f"provider {self.provider} has no corporate actions")
        request: ApiRequest | None = actions.request(dataset, symbol)
        seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
        while request is not None:
            marker = (request.path, tuple(sorted(request.params.items())))
            if marker in seen:
                raise ResponseFormatError(
                    f"{self.provider}: {dataset} of {symbol}: next_url repeats a page already "
                    "fetched (pagination did not advance)",
                    provider=self.provider,
                )
            seen.add(marker)
            response = self.get(request, what=f"{dataset} of {symbol}")
            page = actions.read_page(
                response.payload, dataset=dataset, symbol=symbol, request=request
            )
            self.stats.pages += 1
            yield response, page
            request = page.next_request

    def latest_bar_time(self, symbol: str) -> datetime:
        """Open time of the newest bar the provider has: the cheap 'is there new data' probe."""
        validate_symbol(symbol, provider=self.adapter.name)
        self.read_published_limits(symbol)
        response = self.get(self.adapter.latest_request(symbol), what=f"latest bar of {symbol}")
        return self.adapter.parse_latest(response.payload, symbol=symbol)
