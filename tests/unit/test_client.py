"""MarketApiClient over a mocked transport: paging, retries, waits, caps and secrets."""

from __future__ import annotations

import gzip
import json
import logging
import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
import respx

from resources.errors import (
    FatalResponseError,
    ResponseFormatError,
    RetriesExhaustedError,
    WaitBudgetExceededError,
)
from resources.http.client import REDACTED, MarketApiClient
from resources.http.retry import parse_retry_after
from resources.providers.base import ApiRequest
from resources.simulator.adapter import SimulatorAdapter
from tests.helpers import TokenBucketPacer

BASE_URL = "http://sim.test"
START = datetime(2026, 1, 5, 0, 0, tzinfo=UTC)
END = datetime(2026, 1, 5, 1, 0, tzinfo=UTC)
SECRET = "sk-SECRET-123"

Handler = Callable[[httpx.Request], httpx.Response]


def bar(t: str, close: float = 100.0) -> dict[str, object]:
    return {"t": t, "o": close, "h": close + 1, "l": close - 1, "c": close, "v": 10.0, "n": 3}


def page_body(
    start: str = "2026-01-05T00:00:00Z",
    end: str = "2026-01-05T00:02:00Z",
    bars: list[dict[str, object]] | None = None,
    next_cursor: str | None = None,
) -> dict[str, object]:
    return {
        "symbol": "AAPL",
        "interval": "1m",
        "window": {"start": start, "end": end},
        "bars": [bar(start)] if bars is None else bars,
        "next_cursor": next_cursor,
    }


def ok(payload: object) -> httpx.Response:
    return httpx.Response(200, json=payload)


class Recorder:
    """Serves scripted responses (or raises scripted exceptions) and keeps every request."""

    def __init__(self, *steps: httpx.Response | Exception | Handler) -> None:
        self.steps = list(steps)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.steps[min(len(self.requests), len(self.steps)) - 1]
        if isinstance(step, Exception):
            raise step
        if isinstance(step, httpx.Response):
            return step
        return step(request)


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def make_client(sleeps: list[float]) -> Iterator[Callable[..., MarketApiClient]]:
    clients: list[MarketApiClient] = []

    def factory(handler: Handler | None = None, **kwargs: object) -> MarketApiClient:
        if handler is not None:
            kwargs["transport"] = httpx.MockTransport(handler)
        kwargs.setdefault("rng", random.Random(0))
        kwargs.setdefault("sleep", sleeps.append)
        client = MarketApiClient(
            SimulatorAdapter(),
            base_url=BASE_URL,
            **kwargs,  # type: ignore[arg-type]
        )
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.close()


def bars_request() -> ApiRequest:
    return SimulatorAdapter().bars_request("AAPL", start=START, end=END)


# -- pagination ----------------------------------------------------------------------------


def test_iter_pages_follows_next_cursor_and_reports_coverage(make_client, sleeps) -> None:
    recorder = Recorder(
        ok(
            page_body(
                "2026-01-05T00:00:00Z",
                "2026-01-05T00:30:00Z",
                bars=[bar("2026-01-05T00:00:00Z"), bar("2026-01-05T00:01:00Z")],
                next_cursor="CUR1",
            )
        ),
        ok(page_body("2026-01-05T00:30:00Z", "2026-01-05T01:00:00Z")),
    )
    client = make_client(recorder)

    pages = list(client.iter_pages("AAPL", start=START, end=END))

    assert len(pages) == 2
    assert [(p.coverage_start, p.coverage_end) for p in pages] == [
        (START, START + timedelta(minutes=30)),
        (START + timedelta(minutes=30), END),
    ]
    assert [p.bar_count for p in pages] == [2, 1]
    assert all(p.symbol == "AAPL" and p.response.status == 200 for p in pages)
    assert json.loads(pages[1].response.body)["window"]["start"] == "2026-01-05T00:30:00Z"

    first, second = (dict(r.url.params) for r in recorder.requests)
    assert recorder.requests[0].url.path == "/v1/bars"
    assert first == {
        "symbol": "AAPL",
        "start": "2026-01-05T00:00:00Z",
        "end": "2026-01-05T01:00:00Z",
        "limit": "1000",
        # Unadjusted, said explicitly: the snapshot's URL records what it holds.
        "adjusted": "false",
    }
    assert second["cursor"] == "CUR1"
    assert "start" not in second
    assert second["end"] == "2026-01-05T01:00:00Z"
    assert client.stats.pages == 2
    assert client.stats.requests == 2
    assert sleeps == []


def test_iter_pages_refuses_a_cursor_that_does_not_advance(make_client) -> None:
    stuck = page_body("2026-01-05T00:00:00Z", "2026-01-05T00:00:00Z", bars=[], next_cursor="X")
    client = make_client(Recorder(ok(stuck)))
    pages = client.iter_pages("AAPL", start=START, end=END)
    next(pages)
    with pytest.raises(ResponseFormatError, match="pagination did not advance"):
        next(pages)


def test_iter_pages_refuses_a_bad_symbol_before_any_request(make_client) -> None:
    recorder = Recorder(ok(page_body()))
    client = make_client(recorder)
    with pytest.raises(ValueError, match="invalid symbol"):
        list(client.iter_pages("../etc", start=START, end=END))
    assert recorder.requests == []


def test_iter_pages_works_with_respx(sleeps) -> None:
    with respx.mock(base_url=BASE_URL, assert_all_called=True) as router:
        route = router.get("/v1/bars").mock(
            side_effect=[
                httpx.Response(503),
                httpx.Response(200, json=page_body("2026-01-05T00:00:00Z", "2026-01-05T01:00:00Z")),
            ]
        )
        with MarketApiClient(
            SimulatorAdapter(),
            base_url=BASE_URL,
            api_key=SECRET,
            sleep=sleeps.append,
            rng=random.Random(0),
            backoff_base_s=1.0,
        ) as client:
            pages = list(client.iter_pages("AAPL", start=START, end=END))

    assert route.call_count == 2
    assert route.calls.last.request.url.params["apikey"] == SECRET
    assert [(p.coverage_start, p.coverage_end) for p in pages] == [(START, END)]
    assert sleeps == [random.Random(0).uniform(0, 1.0)]
    assert SECRET not in pages[0].response.url


# -- throttling and retries -------------------------------------------------------------------


def test_429_with_retry_after_seconds_waits_exactly_that_long(make_client, sleeps) -> None:
    recorder = Recorder(httpx.Response(429, headers={"Retry-After": "3"}), ok(page_body()))
    client = make_client(recorder)

    response = client.get(bars_request(), what="test")

    assert response.status == 200
    assert sleeps == [3.0]
    assert client.stats.throttled == 1
    assert client.stats.retries == 1
    assert client.stats.requests == 2
    assert client.stats.seconds_waited == 3.0
    assert len(recorder.requests) == 2


def test_429_pauses_the_shared_pacer_for_the_retry_after(make_client) -> None:
    clock = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    pacer = TokenBucketPacer(rate_per_s=10, burst=1, clock=lambda: clock[0])
    client = make_client(
        Recorder(httpx.Response(429, headers={"Retry-After": "3"}), ok(page_body())),
        pacer=pacer,
        sleep=sleep,
    )
    client.get(bars_request(), what="test")
    # One 3 s wait, and the retry goes out the moment it ends; anyone else sharing the quota
    # is held until then too.
    assert slept == [3.0]
    assert pacer.reserve() == pytest.approx(0.1)


def test_parse_retry_after_forms() -> None:
    now = datetime(2026, 1, 5, 12, 0, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=90), usegmt=True)
    assert later == "Mon, 05 Jan 2026 12:01:30 GMT"
    assert parse_retry_after(later, now=now) == 90.0
    assert parse_retry_after("Mon, 05 Jan 2026 11:59:00 GMT", now=now) == 0.0  # in the past
    assert parse_retry_after("3", now=now) == 3.0
    assert parse_retry_after(" 7 ") == 7.0  # optional whitespace around the field value
    assert parse_retry_after(None) is None
    # RFC 9110 §10.2.3: delay-seconds = 1*DIGIT (ASCII); anything else is invalid, as
    # urllib3 and httpx-retries read it.
    for bad in ("soon", "", "nan", "inf", "Mon, 99 Foo 2026", "2.5", "1.0", "-4", "-1", "+1"):
        assert parse_retry_after(bad, now=now) is None, bad
    assert parse_retry_after("\u0661\u0662") is None  # Arabic-Indic digits: float() takes them
    assert parse_retry_after("\uff13") is None  # a full-width 3


def test_503_twice_then_200_backs_off_with_full_jitter(make_client, sleeps) -> None:
    recorder = Recorder(httpx.Response(503), httpx.Response(503), ok(page_body()))
    client = make_client(recorder, rng=random.Random(0), backoff_base_s=1.0)

    response = client.get(bars_request(), what="test")

    assert response.status == 200
    assert len(sleeps) == 2
    assert 0.0 <= sleeps[0] <= 1.0
    assert 0.0 <= sleeps[1] <= 2.0
    expected = random.Random(0)
    assert sleeps == [expected.uniform(0, 1.0), expected.uniform(0, 2.0)]
    assert client.stats.retries == 2
    assert client.stats.throttled == 0
    assert client.stats.requests == 3


def test_backoff_is_capped(make_client, sleeps) -> None:
    client = make_client(
        Recorder(*[httpx.Response(500)] * 4, ok(page_body())),
        rng=random.Random(7),
        backoff_base_s=1.0,
        backoff_cap_s=1.5,
    )
    client.get(bars_request(), what="test")
    expected = random.Random(7)
    assert sleeps == [expected.uniform(0, b) for b in (1.0, 1.5, 1.5, 1.5)]


def test_404_is_fatal_at_once(make_client, sleeps) -> None:
    recorder = Recorder(httpx.Response(404, json={"error": "unknown symbol"}))
    client = make_client(recorder)

    with pytest.raises(FatalResponseError) as info:
        client.get(bars_request(), what="symbol AAPL")

    assert "HTTP 404" in str(info.value)
    assert "unknown symbol" in str(info.value)
    assert info.value.status == 404
    assert info.value.provider == "simulator"
    assert len(recorder.requests) == 1
    assert sleeps == []


def test_attempts_are_capped(make_client, sleeps) -> None:
    recorder = Recorder(httpx.Response(503))
    client = make_client(recorder, max_attempts=3)

    with pytest.raises(RetriesExhaustedError) as info:
        client.get(bars_request(), what="test")

    assert len(recorder.requests) == 3
    assert len(sleeps) == 2  # between attempts, not after the last one
    assert "gave up after 3 attempts" in str(info.value)
    assert "HTTP 503" in str(info.value)


def test_wait_budget_refuses_a_long_retry_after_without_sleeping(make_client, sleeps) -> None:
    recorder = Recorder(httpx.Response(429, headers={"Retry-After": "500"}), ok(page_body()))
    client = make_client(recorder, max_wait_s=60)

    with pytest.raises(WaitBudgetExceededError) as info:
        client.get(bars_request(), what="test")

    assert info.value.seconds_to_wait == 500
    assert "reschedule" in str(info.value)
    assert sleeps == []
    assert len(recorder.requests) == 1
    assert client.stats.seconds_waited == 0.0


def test_throttle_message_in_a_200_body_is_obeyed(make_client, sleeps) -> None:
    throttled = {
        "status": "error",
        "code": "THROTTLED",
        "message": "Too many requests, slow down",
        "retry_after": 2,
    }
    recorder = Recorder(ok(throttled), ok(page_body()))
    client = make_client(recorder)

    response = client.get(bars_request(), what="test")

    assert response.payload["bars"][0]["t"] == "2026-01-05T00:00:00Z"
    assert sleeps == [2.0]
    assert client.stats.throttled == 1
    assert len(recorder.requests) == 2


def test_malformed_json_is_retried_then_reported_as_a_format_error(make_client, sleeps) -> None:
    recorder = Recorder(httpx.Response(200, content=b'{"bars": [}{"'))
    client = make_client(recorder, max_attempts=3)

    with pytest.raises(ResponseFormatError) as info:
        client.get(bars_request(), what="test")

    assert not isinstance(info.value, RetriesExhaustedError)
    assert "malformed JSON" in str(info.value)
    assert len(recorder.requests) == 3
    assert len(sleeps) == 2


def test_malformed_json_once_then_good_body_succeeds(make_client, sleeps) -> None:
    recorder = Recorder(httpx.Response(200, content=b'{"bars": [}'), ok(page_body()))
    client = make_client(recorder)
    assert client.get(bars_request(), what="test").payload == page_body()
    assert len(sleeps) == 1


@pytest.mark.parametrize(
    "exc_type", [httpx.RemoteProtocolError, httpx.ConnectTimeout, httpx.ReadTimeout]
)
def test_transport_errors_are_retried(make_client, sleeps, exc_type) -> None:
    recorder = Recorder(exc_type("connection dropped"), ok(page_body()))
    client = make_client(recorder)

    response = client.get(bars_request(), what="test")

    assert response.status == 200
    assert len(recorder.requests) == 2
    assert len(sleeps) == 1
    assert client.stats.retries == 1


def test_transport_errors_until_the_cap_name_the_last_error(make_client) -> None:
    recorder = Recorder(httpx.ConnectTimeout("timed out"))
    client = make_client(recorder, max_attempts=2)
    with pytest.raises(RetriesExhaustedError, match="ConnectTimeout: timed out"):
        client.get(bars_request(), what="test")
    assert len(recorder.requests) == 2


# -- body cap --------------------------------------------------------------------------------


def test_a_body_over_the_cap_is_refused(make_client, sleeps) -> None:
    body = json.dumps(page_body()).encode()
    recorder = Recorder(httpx.Response(200, content=body))
    client = make_client(recorder, max_body_bytes=len(body) - 1)

    with pytest.raises(FatalResponseError) as info:
        client.get(bars_request(), what="test")

    assert f"{len(body) - 1}-byte cap" in str(info.value)
    assert len(recorder.requests) == 1
    assert sleeps == []


def test_a_body_at_the_cap_is_accepted(make_client) -> None:
    body = json.dumps(page_body()).encode()
    client = make_client(Recorder(httpx.Response(200, content=body)), max_body_bytes=len(body))
    assert client.get(bars_request(), what="test").body == body


def test_a_gzip_body_is_capped_by_its_decoded_size(make_client, sleeps) -> None:
    decoded = json.dumps(page_body(bars=[bar("2026-01-05T00:00:00Z")] * 2000)).encode()
    compressed = gzip.compress(decoded)
    cap = 10_000
    assert len(compressed) < cap < len(decoded)
    recorder = Recorder(
        httpx.Response(200, content=compressed, headers={"content-encoding": "gzip"})
    )
    client = make_client(recorder, max_body_bytes=cap)

    with pytest.raises(FatalResponseError, match=f"decoded response .* exceeds the {cap}-byte cap"):
        client.get(bars_request(), what="test")
    assert sleeps == []


def test_a_small_gzip_body_is_decoded(make_client) -> None:
    decoded = json.dumps(page_body()).encode()
    client = make_client(
        Recorder(
            httpx.Response(
                200, content=gzip.compress(decoded), headers={"content-encoding": "gzip"}
            )
        )
    )
    response = client.get(bars_request(), what="test")
    assert response.body == decoded
    assert client.stats.bytes_received == len(decoded)


# -- secrets ---------------------------------------------------------------------------------


def echo_key_404(request: httpx.Request) -> httpx.Response:
    key = request.url.params.get("apikey")
    return httpx.Response(404, json={"error": f"no data for key {key}"})


def test_api_key_is_sent_but_never_recorded(make_client, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    recorder = Recorder(
        httpx.Response(429, headers={"Retry-After": "1"}),
        ok(page_body()),
        echo_key_404,
        lambda request: (_ for _ in ()).throw(
            httpx.ConnectTimeout(f"timed out connecting to {request.url}", request=request)
        ),
    )
    client = make_client(recorder, api_key=SECRET, max_attempts=2)
    assert logging.getLogger("httpx").level == logging.WARNING
    assert logging.getLogger("httpcore").level == logging.WARNING

    response = client.get(bars_request(), what="symbol AAPL")
    with pytest.raises(FatalResponseError) as fatal:
        client.get(bars_request(), what="symbol AAPL")
    with pytest.raises(RetriesExhaustedError) as exhausted:
        client.get(bars_request(), what="symbol AAPL")

    # The key did travel to the server...
    assert all(r.url.params["apikey"] == SECRET for r in recorder.requests)
    assert len(recorder.requests) == 5
    # ...but nothing we keep or show contains it.
    assert SECRET not in response.url
    assert response.url.startswith(f"{BASE_URL}/v1/bars?symbol=AAPL&start=2026-01-05T00")
    assert SECRET not in json.dumps(response.headers)
    for exc in (fatal.value, exhausted.value):
        assert SECRET not in str(exc)
        assert SECRET not in repr(exc.args)
    assert "no data for key ***" in str(fatal.value)
    assert f"limit=1000&adjusted=false&apikey={REDACTED}" in str(exhausted.value)
    assert caplog.records, "the client should log its waits"
    for record in caplog.records:
        assert SECRET not in record.getMessage()
    assert SECRET not in caplog.text


def test_adapter_that_requires_a_key_refuses_to_start_without_one() -> None:
    class KeyedAdapter(SimulatorAdapter):
        requires_key = True

    with pytest.raises(FatalResponseError, match="needs an API key"):
        MarketApiClient(KeyedAdapter(), base_url=BASE_URL)


# -- pacing ----------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_allows_a_burst_then_spaces_requests() -> None:
    clock = FakeClock()
    pacer = TokenBucketPacer(rate_per_s=10, burst=2, clock=clock)
    waits = [pacer.reserve() for _ in range(4)]
    assert waits == pytest.approx([0.0, 0.0, 0.1, 0.2])
    assert waits[:2] == [0.0, 0.0]


def test_token_bucket_refills_with_time() -> None:
    clock = FakeClock()
    pacer = TokenBucketPacer(rate_per_s=10, burst=2, clock=clock)
    assert [pacer.reserve() for _ in range(3)] == pytest.approx([0.0, 0.0, 0.1])
    clock.now = 10.0  # long idle: the whole burst is available again
    assert [pacer.reserve() for _ in range(3)] == pytest.approx([0.0, 0.0, 0.1])


def test_token_bucket_weight_costs_several_units() -> None:
    pacer = TokenBucketPacer(rate_per_s=10, burst=1, clock=FakeClock())
    assert pacer.reserve(weight=5) == pytest.approx(0.4)
    assert pacer.reserve() == pytest.approx(0.5)


def test_pause_for_delays_the_next_reservation_exactly() -> None:
    clock = FakeClock()
    pacer = TokenBucketPacer(rate_per_s=10, burst=2, clock=clock)
    pacer.pause_for(5)
    assert pacer.reserve() == 5.0
    assert pacer.reserve() == pytest.approx(5.1)


def test_pause_for_shorter_than_the_queue_does_not_shorten_it() -> None:
    clock = FakeClock()
    pacer = TokenBucketPacer(rate_per_s=1, burst=1, clock=clock)
    for _ in range(10):
        pacer.reserve()
    pacer.pause_for(2)
    assert pacer.reserve() == pytest.approx(10.0)


@pytest.mark.parametrize("kwargs", [{"rate_per_s": 0}, {"rate_per_s": 1, "burst": 0}])
def test_token_bucket_refuses_bad_settings(kwargs) -> None:
    with pytest.raises(ValueError):
        TokenBucketPacer(**kwargs)


def test_client_sleeps_what_the_pacer_asks(make_client, sleeps) -> None:
    clock = FakeClock()
    pacer = TokenBucketPacer(rate_per_s=10, burst=1, clock=clock)
    client = make_client(Recorder(ok(page_body())), pacer=pacer)
    for _ in range(3):
        client.get(bars_request(), what="test")
    assert sleeps == pytest.approx([0.1, 0.2])
    assert client.stats.seconds_waited == pytest.approx(0.3)


class FixedPacer:
    """Asks for the same pacing wait before every request."""

    def __init__(self, wait: float) -> None:
        self.wait = wait

    def reserve(self, weight: int = 1) -> float:
        return self.wait

    def booked(self) -> bool:
        return True

    def sending(self) -> None:
        return None

    def settle(self, *, rtt_s: float | None = None) -> None:
        return None

    def pause_for(self, seconds: float, *, reason: str = "") -> None:
        return None

    def throttled(self, *, server_wait_s: float | None, **kwargs: object) -> float:
        return server_wait_s or 1.0

    def observe(self, signal: object, *, weight: int = 1, rtt_s: float | None = None) -> None:
        return None

    def describe_last_wait(self) -> str:
        return "fixed pacing"

    def pause_remaining(self) -> tuple[float, str]:
        return 0.0, ""


def test_pacing_waits_do_not_use_up_the_retry_wait_budget(make_client, sleeps) -> None:
    # 10 requests paced 5 s apart = 50 s of pacing, over a 20 s budget: still fine, because
    # pacing is the normal price of the quota; only retry/throttle waits are budgeted.
    client = make_client(
        Recorder(*[ok(page_body()) for _ in range(10)]), pacer=FixedPacer(5.0), max_wait_s=20.0
    )
    for _ in range(10):
        client.get(bars_request(), what="test")
    assert sleeps == [5.0] * 10
    assert client.stats.seconds_waited == 50.0


def test_a_single_pacing_wait_beyond_the_budget_reschedules(make_client, sleeps) -> None:
    client = make_client(Recorder(ok(page_body())), pacer=FixedPacer(300.0), max_wait_s=20.0)
    with pytest.raises(WaitBudgetExceededError) as info:
        client.get(bars_request(), what="test")
    assert info.value.seconds_to_wait == 300.0
    assert sleeps == []


def test_a_redirect_is_fatal_and_names_the_target(make_client, sleeps) -> None:
    client = make_client(
        Recorder(httpx.Response(301, headers={"Location": "https://elsewhere.example/v2"}))
    )
    with pytest.raises(FatalResponseError, match="redirect .* https://elsewhere.example/v2"):
        client.get(bars_request(), what="test")
    assert sleeps == []


# -- Retry-After as RFC 9110 says (issue 12, point 6) ------------------------------------------


@pytest.mark.parametrize("value", ["0", "1.0", "-1", "+1", "1e3"])
def test_a_zero_or_invalid_retry_after_on_a_429_is_no_reason_to_resend_at_once(
    make_client, sleeps, value: str
) -> None:
    recorder = Recorder(httpx.Response(429, headers={"Retry-After": value}), ok(page_body()))
    client = make_client(recorder)
    client.get(bars_request(), what="test")
    # No window known, no usable wait: the header-less backoff (it grows past a minute).
    assert sleeps == [4.0]


def test_a_zero_retry_after_on_a_503_falls_back_to_backoff(make_client, sleeps) -> None:
    recorder = Recorder(httpx.Response(503, headers={"Retry-After": "0"}), ok(page_body()))
    client = make_client(recorder, backoff_base_s=1.0)
    client.get(bars_request(), what="test")
    assert sleeps == [random.Random(0).uniform(0, 1.0)]


def test_retry_after_http_dates_in_the_three_forms_rfc_9110_accepts() -> None:
    now = datetime(1994, 11, 6, 8, 49, 0, tzinfo=UTC)
    for value in (
        "Sun, 06 Nov 1994 08:49:37 GMT",  # IMF-fixdate
        "Sunday, 06-Nov-94 08:49:37 GMT",  # obsolete RFC 850 format
        "Sun Nov  6 08:49:37 1994",  # obsolete asctime() format
    ):
        assert parse_retry_after(value, now=now) == 37.0, value


def test_a_403_with_the_rate_limit_spent_waits_for_the_reset_then_fetches(
    make_client, sleeps
) -> None:
    """GitHub's primary rate limit is a 403 with x-ratelimit-remaining 0: the client waits until
    x-ratelimit-reset (UTC epoch seconds) instead of failing; a plain 403 still fails at once."""
    now = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    spent = {
        "x-ratelimit-limit": "60",
        "x-ratelimit-remaining": "0",
        "x-ratelimit-reset": str(int(now.timestamp()) + 25),
    }
    recorder = Recorder(
        httpx.Response(403, headers=spent, json={"message": "API rate limit exceeded"}),
        ok(page_body()),
    )
    client = make_client(recorder, now=lambda: now)

    response = client.get(bars_request(), what="test")

    assert response.status == 200
    assert sleeps == [25.0]
    assert client.stats.throttled == 1 and client.stats.requests == 2

    forbidden = make_client(
        Recorder(httpx.Response(403, json={"message": "Forbidden"})), now=lambda: now
    )
    with pytest.raises(FatalResponseError, match="HTTP 403"):
        forbidden.get(bars_request(), what="test")
    assert len(sleeps) == 1  # no wait, no retry
