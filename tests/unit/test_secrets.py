"""Secrets in every form, and the names derived from a base URL (``resources/secrets.py``,
``resources/endpoints.py``): what ``urllib``, ``httpx`` and ``base64`` produce is what is
redacted, and no name derived from a URL carries its password."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from urllib.parse import quote, quote_plus, unquote

import httpx
import pytest

from resources.endpoints import Endpoint, Feed, endpoint_of, public_url
from resources.errors import FatalResponseError, InvalidInputError, ResponseFormatError
from resources.http.client import MarketApiClient
from resources.ratelimit.stores import quota_key
from resources.secrets import REDACTED, Redactor
from resources.simulator.adapter import SimulatorAdapter

KEY = "sk+live/AB==%41%zz"  # every character a URL encoder treats specially
USER, PASSWORD = "svc", "p@ss:w/rd+1%"


def httpx_query_value(value: str) -> str:
    """How httpx itself writes ``value`` as a query parameter."""
    return str(httpx.URL("http://x/", params={"k": value})).split("k=", 1)[1]


def basic_auth(user: str, password: str) -> str:
    request = httpx.Request("GET", "http://x/")
    flow = httpx.BasicAuth(user, password).auth_flow(request)
    return next(flow).headers["authorization"].removeprefix("Basic ")


SPELLINGS = {
    "raw": lambda s: s,
    "percent-encoded": lambda s: quote(s, safe=""),
    "percent-encoded, slash kept": lambda s: quote(s),
    "form-encoded": lambda s: quote_plus(s, safe=""),
    "by httpx": httpx_query_value,
    "percent-decoded": unquote,
    "encoded twice": lambda s: quote(quote(s, safe=""), safe=""),
    "json-escaped": lambda s: json.dumps(s)[1:-1],
    "base64": lambda s: base64.b64encode(s.encode()).decode(),
    "base64url, unpadded": lambda s: base64.urlsafe_b64encode(s.encode()).decode().rstrip("="),
    "inside longer base64": lambda s: base64.b64encode(b"x" + s.encode() + b"yz").decode(),
}


def lower_hex(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        if text[i] == "%" and i + 2 < len(text) + 1:
            out.append(text[i : i + 3].lower())
            i += 3
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


SPELLINGS["percent-encoded, lower-case hex"] = lambda s: lower_hex(quote(s, safe=""))


@pytest.mark.parametrize("form", sorted(SPELLINGS))
@pytest.mark.parametrize("secret", [KEY, PASSWORD])
def test_every_spelling_of_a_secret_is_redacted(form: str, secret: str) -> None:
    spelled = SPELLINGS[form](secret)
    text = f"HTTP 301 redirect to https://x.example/v1?apikey={spelled}&limit=5 (got {spelled})"
    redacted = Redactor([secret])(text)
    assert spelled not in redacted
    assert redacted.count(REDACTED) >= 2 or form == "inside longer base64"
    assert "https://x.example/v1?apikey=" in redacted and "&limit=5" in redacted


def test_a_basic_authorization_header_is_redacted() -> None:
    Endpoint.parse(f"http://{USER}:{quote(PASSWORD, safe='')}@proxy.test:8080/api")
    from resources.secrets import redact

    header = f"Authorization: Basic {basic_auth(USER, PASSWORD)}"
    assert basic_auth(USER, PASSWORD) not in redact(header)


def test_text_without_a_secret_is_left_alone() -> None:
    text = "polygon: symbol AAPL, window 2026-01-05T00:00Z..2026-01-05T01:00Z: HTTP 500"
    assert Redactor([KEY, PASSWORD])(text) == text


def test_no_name_derived_from_a_base_url_carries_its_password() -> None:
    url = f"http://{USER}:{quote(PASSWORD, safe='')}@Proxy.Test:8080/api/"
    endpoint = Endpoint.parse(url)
    assert (endpoint.username, endpoint.password) == (USER, PASSWORD)
    names = [
        endpoint.public_url,
        endpoint.label,
        endpoint.netloc,
        endpoint_of(url),
        public_url(url),
        quota_key("simulator", url, "k"),
        Feed.of("simulator", endpoint, api_key="k", by_credential=True).directory,
    ]
    assert names[:5] == [
        "http://proxy.test:8080/api",
        "proxy.test:8080/api",
        "proxy.test:8080",
        "proxy.test:8080",
        "http://proxy.test:8080/api",
    ]
    for name in names:
        assert USER not in name and "p%40ss" not in name and "ss:w" not in name


@pytest.mark.parametrize(
    ("one", "other", "by_credential", "shared"),
    [
        ("https://api.binance.com", "https://api.binance.us", False, False),
        ("https://api.binance.com", "https://api.binance.com:443/", False, True),
        ("http://127.0.0.1:8001", "http://127.0.0.1:8002", False, False),
        ("https://proxy.test/a", "https://proxy.test/b", False, False),
        ("https://api.massive.com", "https://api.massive.com", True, False),  # two keys
        ("https://api.binance.com", "https://api.binance.com", False, True),  # two keys
    ],
)
def test_two_sources_share_snapshots_only_on_one_endpoint_and_plan(
    one: str, other: str, by_credential: bool, shared: bool
) -> None:
    feeds = [
        Feed.of("x", Endpoint.parse(url), api_key=key, by_credential=by_credential)
        for url, key in ((one, "key-1"), (other, "key-2"))
    ]
    assert (feeds[0].directory == feeds[1].directory) is shared
    assert "key-" not in feeds[0].directory


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://host/", "http://", "not a url", "http://host:99999/"]
)
def test_a_base_url_that_is_not_http_is_refused_naming_it(url: str) -> None:
    with pytest.raises(InvalidInputError, match="crypto base URL"):
        Endpoint.parse(url, where="crypto base URL")


def test_a_redirect_carrying_the_key_encoded_never_shows_it() -> None:
    """Issue 21: the Location header echoed the key percent-encoded; only the raw form was
    redacted."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            301, headers={"location": f"https://elsewhere.test{request.url.raw_path.decode()}"}
        )

    client = MarketApiClient(
        SimulatorAdapter(),
        base_url=f"http://{USER}:{quote(PASSWORD, safe='')}@sim.test",
        api_key=KEY,
        transport=httpx.MockTransport(handler),
    )
    start = datetime(2026, 1, 5, tzinfo=UTC)
    with client, pytest.raises(FatalResponseError) as error:
        list(client.iter_pages("AAPL", start=start, end=start.replace(hour=1)))
    message = str(error.value)
    assert "HTTP 301 redirect" in message and "elsewhere.test" in message
    for spelled in (KEY, quote(KEY, safe=""), lower_hex(quote(KEY, safe="")), PASSWORD, USER + ":"):
        assert spelled not in message


def test_a_garbled_body_is_kept_on_the_error() -> None:
    garbage = b"\x1f\x8b<html>502 Bad Gateway</ht"

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=garbage, headers={"content-type": "application/json"})

    client = MarketApiClient(
        SimulatorAdapter(),
        base_url="http://sim.test",
        max_attempts=2,
        transport=httpx.MockTransport(handler),
        sleep=lambda s: None,
    )
    start = datetime(2026, 1, 5, tzinfo=UTC)
    with client, pytest.raises(ResponseFormatError) as error:
        list(client.iter_pages("AAPL", start=start, end=start.replace(hour=1)))
    assert error.value.body == garbage
    assert error.value.url is not None and error.value.url.startswith("http://sim.test/")


def test_an_unexpected_error_quoting_a_secret_fails_the_step_redacted() -> None:
    import dagster as dg

    from fin_assets.lib.assets.common import dagster_errors
    from resources.secrets import register

    register(KEY)
    with pytest.raises(dg.Failure) as failure, dagster_errors(asset="raw/bars"):
        raise RuntimeError(f"a library said: GET https://x.test/?apikey={quote(KEY, safe='')}")
    assert (
        failure.value.description
        == "raw/bars: RuntimeError: a library said: GET https://x.test/?apikey=***"
    )
    assert failure.value.__cause__ is None and failure.value.__context__ is not None  # suppressed
    with pytest.raises(KeyError), dagster_errors(asset="raw/bars"):
        raise KeyError("no secret here")  # left to Dagster, stack and all


def test_service_passwords_are_known_to_every_process_that_loads_the_definitions(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fin_assets.definitions import build_definitions
    from resources.secrets import redact

    proxy_password = "proxy+Only/Here=1"  # no other test registers it
    # The declared sources read it through `{{ env('FIN_SIMULATOR_URL') }}`, from the process.
    monkeypatch.setenv(
        "FIN_SIMULATOR_URL", f"http://{USER}:{quote(proxy_password, safe='')}@127.0.0.1:8765"
    )
    build_definitions(
        {
            "FIN_DATA_DIR": str(tmp_path),
            "FIN_WAREHOUSE_URL": "postgresql://fin:wh-Secret%2F1@127.0.0.1:5432/market",
            "FIN_QUOTA_STORE": "postgresql://fin:quota-Secret-2@127.0.0.1:5432/market",
        }
    )
    text = f"wh-Secret/1 wh-Secret%2F1 quota-Secret-2 {quote(proxy_password, safe='')}"
    assert redact(text) == "*** *** *** ***"
