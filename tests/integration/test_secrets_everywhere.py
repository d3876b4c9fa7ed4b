"""No secret in any form leaves the process (issue 21): an API key holding ``+ / = %`` and a
password in the base URL, through a provider behind a proxy that wants the password (HTTP Basic),
succeeds once, then redirects (301, the key echoed percent-encoded in ``Location``), refuses
the key (401, echoing it) and fails (500s, echoing the request). Every spelling of both secrets
is then searched for under DAGSTER_HOME (runs, event log, compute logs), the data directory,
the captured logs and output, the alert payloads, ``/metrics`` and the resources' config the UI
shows."""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlsplit

import dagster as dg
import httpx
import pytest

from fin_assets.definitions import build_definitions
from fin_assets.lib.alert_cursor import AlertCursor
from fin_assets.lib.alerts import run_failure_alerts
from fin_assets.tools.metrics.location import load_code_location
from fin_assets.tools.metrics.readings import InstanceMetrics
from resources.metrics.catalog import families
from resources.notify.webhook import WebhookNotifier
from resources.simulator.server import MarketSimulator
from tests.conftest import run_range, step_failure_messages
from tests.helpers import dagster_home, materialize_command, run_cli

KEY = "sk+live/AB==%41%zz"
USER, PASSWORD = "svc-user", "pw+SECRET/9=%7e"
HOURS = ["2026-01-05-00:00", "2026-01-05-01:00", "2026-01-05-02:00", "2026-01-05-03:00"]


def spellings(secret: str) -> dict[str, str]:
    """How clients, servers and libraries print a secret (computed with their own encoders)."""
    httpx_form = str(httpx.URL("http://x/", params={"k": secret})).split("k=", 1)[1]
    encoded = quote(secret, safe="")
    first, *escapes = encoded.split("%")
    lower = "%".join([first, *(e[:2].lower() + e[2:] for e in escapes)])
    return {
        "raw": secret,
        "percent-encoded": encoded,
        "percent-encoded lower-case": lower,
        "form-encoded": quote_plus(secret, safe=""),
        "httpx query": httpx_form,
        "percent-decoded": unquote(secret),
        "base64": base64.b64encode(secret.encode()).decode(),
        "json": json.dumps(secret)[1:-1],
    }


FORMS = {
    **{f"key {name}": text for name, text in spellings(KEY).items()},
    **{f"password {name}": text for name, text in spellings(PASSWORD).items()},
    "basic authorization": base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode(),
}


class Proxy(ThreadingHTTPServer):
    """A provider behind a proxy that wants HTTP Basic with the URL's user and password."""

    mode = "ok"
    upstream = ""
    unauthenticated = 0


class Handler(BaseHTTPRequestHandler):
    server: Proxy

    def log_message(self, *args: object) -> None:
        pass

    def reply(self, status: int, body: bytes, **headers: str) -> None:
        self.send_response(status)
        for name, value in {"content-type": "application/json", **headers}.items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        wanted = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        if self.headers.get("authorization") != wanted:
            self.server.unauthenticated += 1
            self.reply(407, b'{"error": "proxy authentication required"}')
            return
        mode = self.server.mode
        if mode == "redirect":
            self.reply(301, b"", location=f"https://moved.example{self.path}")
        elif mode == "unauthorized":
            key = dict(parse_qsl(urlsplit(self.path).query)).get("apikey", "")
            body = {"status": "ERROR", "error": f"Unknown API Key {key}", "url": self.path}
            self.reply(401, json.dumps(body).encode())
        elif mode == "fail":
            self.reply(500, json.dumps({"error": "upstream down", "request": self.path}).encode())
        else:
            with urllib.request.urlopen(self.server.upstream + self.path) as response:
                self.reply(response.status, response.read())


@pytest.fixture
def proxy(sim: MarketSimulator) -> Iterator[Proxy]:
    server = Proxy(("127.0.0.1", 0), Handler)
    server.upstream = sim.url.rstrip("/")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def leaks(
    proxy: Proxy,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> Iterator[dict[str, bytes]]:
    """Every place a secret could end up, after the four runs: name -> bytes."""
    caplog.set_level(logging.DEBUG)
    home, data = dagster_home(tmp_path / "home"), tmp_path / "data"
    port = proxy.server_address[1]
    env = {
        "DAGSTER_HOME": str(home),
        "FIN_API_BASE_URL": f"http://{USER}:{quote(PASSWORD, safe='')}@127.0.0.1:{port}",
        "FIN_API_KEY": KEY,
        "FIN_DATA_DIR": str(data),
        "FIN_SYMBOLS": "AAPL",
        "FIN_QUOTA_STORE": str(data / "quota.sqlite"),
        "FIN_MAX_ATTEMPTS": "2",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    defs = build_definitions(env)
    outcomes = {}
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for mode, hour in zip(("ok", "unauthorized", "fail"), HOURS[:3], strict=True):
            proxy.mode = mode
            result = run_range(defs, "bars_hourly_job", hour, hour, instance=instance)
            outcomes[mode] = (result.success, step_failure_messages(result))
        # The redirect through the CLI, as the issue saw it: compute logs and stdout too.
        proxy.mode = "redirect"
        cli = run_cli(
            materialize_command("raw/bars", "--partition", HOURS[3]),
            env={**os.environ, **env},
            timeout=180,
        )
        alerts = run_failure_alerts(instance, AlertCursor())
        posted: list[bytes] = []
        notifier = WebhookNotifier(
            "https://hooks.example/T0/B0/token",
            transport=httpx.MockTransport(
                lambda request: (posted.append(request.content), httpx.Response(200))[1]
            ),
        )
        for alert in alerts:
            for fmt in ("slack", "plain"):
                notifier.fmt = fmt  # type: ignore[assignment]
                assert notifier.send(alert)
        metrics = InstanceMetrics(
            instance, load_code_location(env), quota_store=str(data / "quota.sqlite")
        )
        exposition = "\n".join(str(family) for family in families(metrics.read()))
        metrics.close()
    assert proxy.unauthenticated == 0  # the password did reach the proxy, as HTTP Basic
    assert outcomes["ok"] == (True, [])
    assert not outcomes["unauthorized"][0] and "HTTP 401" in outcomes["unauthorized"][1][0]
    assert not outcomes["fail"][0] and "HTTP 500" in outcomes["fail"][1][0]
    assert cli.returncode != 0 and "HTTP 301 redirect" in cli.stdout + cli.stderr
    assert len(alerts) == 3 and len(posted) == 6
    assert "fin_assets_source_info" in exposition
    out, err = capfd.readouterr()
    places = {
        str(path.relative_to(tmp_path)): path.read_bytes()
        for path in tmp_path.rglob("*")
        if path.is_file()
    }
    assert any(name.endswith(".meta.json") for name in places)  # the good run's sidecars
    assert any("compute_logs" in name or name.endswith((".out", ".err")) for name in places)
    places["captured log records"] = "\n".join(r.getMessage() for r in caplog.records).encode()
    places["captured output"] = (out + err + cli.stdout + cli.stderr).encode()
    places["webhook payloads"] = b"\n".join(posted)
    places["/metrics"] = exposition.encode()
    # What the UI shows of each resource (its config), and what a run records of it.
    places["resource config"] = json.dumps(
        {key: resource.model_dump() for key, resource in (defs.resources or {}).items()},
        default=str,
    ).encode()
    assert b"127.0.0.1" in places["resource config"]
    yield places


@pytest.mark.slow(30)
def test_no_spelling_of_a_secret_is_found_anywhere(leaks: dict[str, bytes]) -> None:
    found = {
        form: sorted(place for place, content in leaks.items() if text.encode() in content)
        for form, text in FORMS.items()
    }
    assert {form: places for form, places in found.items() if places} == {}
